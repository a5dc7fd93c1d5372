//! Reporting: the [`Reporter`](crate::report::Reporter) trait the scheduler calls as instances start,
//! print and finish, and the ways of showing that to a person or to CI.

pub mod junit;
/// OpenLineage events for every instance and the run.
pub mod lineage;
pub mod lines;
/// SLSA provenance of a run's outputs, optionally signed (DSSE).
pub mod provenance;
pub mod summary;
/// OpenTelemetry traces of a run over OTLP.
pub mod telemetry;
pub mod terminal;
pub mod trace;

use crate::capture::Stream;
use crate::graph::InstanceId;
use crate::outcome::Outcome;

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

/// How task output is shown (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputMode {
    /// Each instance's output under its verdict when it ends; while only one
    /// instance runs, its output streams as it is produced.
    #[default]
    Grouped,
    /// Every line as it arrives, prefixed with its instance when several run.
    Stream,
    /// Every line as it arrives, prefixed with its instance: the format off a
    /// terminal, also on one.
    Prefixed,
}

/// Every reporter of a run, told each event in turn: the scheduler reports
/// to this, so a run can show itself on the terminal and feed other
/// consumers at once.
#[derive(Default)]
pub struct Fanout<'a> {
    reporters: Vec<Box<dyn Reporter + Send + 'a>>,
}

impl<'a> Fanout<'a> {
    /// A fan-out to `reporters`, told in this order.
    pub fn new(reporters: Vec<Box<dyn Reporter + Send + 'a>>) -> Self {
        Fanout { reporters }
    }

    /// Adds one more reporter.
    pub fn push(&mut self, reporter: Box<dyn Reporter + Send + 'a>) {
        self.reporters.push(reporter);
    }
}

impl Reporter for Fanout<'_> {
    fn plan(&mut self, total: usize) {
        self.reporters.iter_mut().for_each(|r| r.plan(total));
    }
    fn started(&mut self, id: InstanceId) {
        self.reporters.iter_mut().for_each(|r| r.started(id));
    }
    fn output(&mut self, id: InstanceId, stream: Stream, line: &[u8]) {
        self.reporters
            .iter_mut()
            .for_each(|r| r.output(id, stream, line));
    }
    fn finished(&mut self, id: InstanceId, outcome: &Outcome) {
        self.reporters
            .iter_mut()
            .for_each(|r| r.finished(id, outcome));
    }
    fn tick(&mut self) {
        self.reporters.iter_mut().for_each(|r| r.tick());
    }
}

/// Writes bytes to stdout, ignoring a closed pipe: a run goes on (and
/// cleans up after itself) when whoever reads its output goes away.
pub fn out(bytes: &[u8]) {
    use std::io::Write;
    let mut s = std::io::stdout().lock();
    let _ = s.write_all(bytes);
}

/// Points stdout at stderr, and gives back the real stdout: for a command
/// whose stdout must carry one JSON document while the run goes on talking.
pub fn stdout_to_stderr() -> std::io::Result<std::fs::File> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let _ = std::io::stdout().flush();
    // SAFETY: duplicating and replacing standard descriptors we own.
    unsafe {
        let saved = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if saved < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::dup2(2, 1) < 0 {
            let e = std::io::Error::last_os_error();
            libc::close(saved);
            return Err(e);
        }
        Ok(std::fs::File::from_raw_fd(saved))
    }
}

/// Task output without its terminal escapes (colours, cursor moves), for
/// prefixed lines, CI logs and JUnit.
pub(crate) fn plain(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if bytes.contains(&0x1b) {
        std::borrow::Cow::Owned(strip_ansi_escapes::strip(bytes))
    } else {
        std::borrow::Cow::Borrowed(bytes)
    }
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

/// A byte count for people: `512 B`, `1.2 MB`.
pub fn human_bytes(b: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[i])
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
