//! Reporting: the [`Reporter`](crate::report::Reporter) trait the scheduler calls as instances start,
//! print and finish, and the ways of showing that to a person or to CI.

pub mod junit;
pub mod lines;
pub mod summary;
pub mod terminal;
pub mod trace;

use crate::exec::{Outcome, Stream};
use crate::graph::InstanceId;

/// Receives the life of a run, in order, from the scheduler's thread.
pub trait Reporter {
    /// The run is about to start `total` instances (watch cycles run fewer
    /// than the whole graph).
    fn plan(&mut self, _total: usize) {}
    /// The instance started running.
    fn started(&mut self, id: InstanceId);
    /// One line of live output from a running instance.
    fn output(&mut self, id: InstanceId, stream: Stream, line: &[u8]);
    /// The instance ended; `outcome.output` holds everything it printed
    /// (for a cache hit, the replayed output).
    fn finished(&mut self, id: InstanceId, outcome: &Outcome);
    /// Called a few times a second while nothing else happens (to redraw).
    fn tick(&mut self) {}
}

/// Writes bytes to stdout, ignoring a closed pipe: a run goes on (and
/// cleans up after itself) when whoever reads its output goes away.
pub fn out(bytes: &[u8]) {
    use std::io::Write;
    let mut s = std::io::stdout().lock();
    let _ = s.write_all(bytes);
}

/// A line of task output, with its newline ensured.
pub(crate) fn with_newline(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if line.ends_with(b"\n") {
        std::borrow::Cow::Borrowed(line)
    } else {
        let mut v = line.to_vec();
        v.push(b'\n');
        std::borrow::Cow::Owned(v)
    }
}

/// A duration the way a person reads it: `0.25s`, `12.3s`, `2m05s`.
pub fn human(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.2}s")
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let m = (s / 60.0).floor();
        format!("{}m{:02}s", m as u64, (s - m * 60.0) as u64)
    }
}
