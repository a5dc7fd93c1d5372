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
    buffered: Vec<Vec<u8>>,
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
            buffered: vec![Vec::new(); graph.len()],
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
        let l = self.prefixed(id, line);
        if self.github || self.quiet {
            self.buffered[id.index()].extend_from_slice(&l);
        } else {
            out(&l);
        }
    }

    fn finished(&mut self, id: InstanceId, outcome: &Outcome) {
        if self.quiet && !outcome.status.is_failure() {
            self.buffered[id.index()] = Vec::new();
            return;
        }
        let name = &self.graph.get(id).name;
        let mut text = Vec::new();
        if outcome.status == Status::Cached {
            for c in &outcome.output {
                text.extend(self.prefixed(id, &c.data));
            }
        }
        let verdict = super::summary::verdict_line(outcome);
        if self.github {
            if matches!(outcome.status, Status::Skipped { .. }) {
                out(format!("{name:<w$} | {verdict}\n", w = self.width).as_bytes());
                return;
            }
            let mut all = format!("::group::{name} ({})\n", outcome.status.word()).into_bytes();
            all.extend(std::mem::take(&mut self.buffered[id.index()]));
            all.extend(text);
            all.extend(
                format!("{name:<w$} | {verdict}\n::endgroup::\n", w = self.width).into_bytes(),
            );
            if matches!(outcome.status, Status::Failed { .. } | Status::TimedOut) {
                all.extend(
                    format!("::error title=hotpass: {name} failed::{name} {verdict}\n")
                        .into_bytes(),
                );
            }
            out(&all);
        } else {
            let mut all = std::mem::take(&mut self.buffered[id.index()]);
            all.extend(text);
            all.extend(format!("{name:<w$} | {verdict}\n", w = self.width).into_bytes());
            out(&all);
        }
    }
}
