//! Output for logs and CI (not a terminal): every line prefixed with its
//! instance name as it arrives; under GitHub Actions, one collapsible group per
//! instance and an error annotation per failure.

use super::{Reporter, out, plain, with_newline};
use crate::capture::Stream;
use crate::graph::{InstanceGraph, InstanceId};
use crate::outcome::{Outcome, Status};

/// Prefixed line output.
pub struct LineReporter<'a> {
    graph: &'a InstanceGraph,
    width: usize,
    github: bool,
    /// `-q`: only failures are shown (their output held until they end).
    quiet: bool,
}

impl<'a> LineReporter<'a> {
    /// `github` groups each instance's output with `::group::`; `quiet`
    /// shows failures only.
    pub fn new(graph: &'a InstanceGraph, github: bool, quiet: bool) -> Self {
        let width = graph
            .iter()
            .map(|(_, i)| i.name.len())
            .max()
            .unwrap_or(0)
            .min(40);
        LineReporter {
            graph,
            width,
            github,
            quiet,
        }
    }

    fn prefixed(&self, id: InstanceId, line: &[u8]) -> Vec<u8> {
        let name = &self.graph.get(id).name;
        let mut v = format!("{name:<w$} | ", w = self.width).into_bytes();
        v.extend_from_slice(&with_newline(&plain(line)));
        v
    }
}

impl Reporter for LineReporter<'_> {
    fn started(&mut self, _id: InstanceId) {}

    fn output(&mut self, id: InstanceId, _stream: Stream, line: &[u8]) {
        // Grouped (GitHub) or failures-only (-q) output waits for the
        // verdict, then comes from the outcome's capture (on disk past a
        // bound): nothing is held here.
        if !self.github && !self.quiet {
            out(&self.prefixed(id, line));
        }
    }

    fn finished(&mut self, id: InstanceId, outcome: &Outcome) {
        if self.quiet && !outcome.status.is_failure() {
            return;
        }
        let name = &self.graph.get(id).name;
        // What was not streamed as it came: a hit's replay, or everything
        // when grouping or showing failures only.
        let replay = outcome.status == Status::Cached || self.github || self.quiet;
        let verdict = super::summary::verdict_line(outcome);
        let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        let mut write = |bytes: &[u8]| {
            let _ = std::io::Write::write_all(&mut stdout, bytes);
        };
        if self.github && matches!(outcome.status, Status::Skipped { .. }) {
            write(format!("{name:<w$} | {verdict}\n", w = self.width).as_bytes());
            return;
        }
        if self.github {
            write(format!("::group::{name} ({})\n", outcome.status.word()).as_bytes());
        }
        if replay {
            let _ = outcome
                .output
                .for_each(&mut |_, line| write(&self.prefixed(id, line)));
        }
        write(format!("{name:<w$} | {verdict}\n", w = self.width).as_bytes());
        if self.github {
            write(b"::endgroup::\n");
            if matches!(outcome.status, Status::Failed { .. } | Status::TimedOut) {
                write(
                    format!("::error title=hotpass: {name} failed::{name} {verdict}\n").as_bytes(),
                );
            }
        }
    }
}
