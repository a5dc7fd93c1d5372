//! Output for a person at a terminal: each instance's output grouped under a
//! header when it ends, and a one-line live status on stderr.

use std::io::Write;
use std::time::Instant;

use super::{Reporter, out, with_newline};
use crate::exec::{Outcome, Status, Stream};
use crate::graph::{InstanceGraph, InstanceId};

/// Grouped output with a live status line.
pub struct TerminalReporter<'a> {
    graph: &'a InstanceGraph,
    buffered: Vec<Vec<u8>>,
    running: Vec<(InstanceId, Instant)>,
    done: usize,
    cached: usize,
    failed: usize,
    color: bool,
    status_shown: bool,
}

impl<'a> TerminalReporter<'a> {
    /// A reporter for `graph`; `color` enables ANSI colours.
    pub fn new(graph: &'a InstanceGraph, color: bool) -> Self {
        TerminalReporter {
            graph,
            buffered: vec![Vec::new(); graph.instances.len()],
            running: Vec::new(),
            done: 0,
            cached: 0,
            failed: 0,
            color,
            status_shown: false,
        }
    }

    fn clear_status(&mut self) {
        if self.status_shown {
            let _ = std::io::stderr().write_all(b"\r\x1b[2K");
            self.status_shown = false;
        }
    }

    fn draw_status(&mut self) {
        let total = self.graph.instances.len();
        let names: Vec<String> = self
            .running
            .iter()
            .take(4)
            .map(|(id, t)| {
                format!(
                    "{} {:.0}s",
                    self.graph.get(*id).name,
                    t.elapsed().as_secs_f64()
                )
            })
            .collect();
        let more = self.running.len().saturating_sub(4);
        let line = format!(
            "[{}/{total}] {} cached, {} failed | running: {}{}",
            self.done,
            self.cached,
            self.failed,
            names.join(", "),
            if more > 0 {
                format!(" +{more}")
            } else {
                String::new()
            }
        );
        let width = terminal_width().saturating_sub(1);
        let line: String = line.chars().take(width).collect();
        let _ = write!(std::io::stderr(), "\r\x1b[2K{line}");
        self.status_shown = true;
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
}

fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct; failure leaves the default.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if rc == 0 && ws.ws_col > 0 {
        ws.ws_col as usize
    } else {
        80
    }
}

impl Reporter for TerminalReporter<'_> {
    fn started(&mut self, id: InstanceId) {
        self.running.push((id, Instant::now()));
        self.draw_status();
    }

    fn output(&mut self, id: InstanceId, _stream: Stream, line: &[u8]) {
        self.buffered[id.index()].extend_from_slice(&with_newline(line));
    }

    fn finished(&mut self, id: InstanceId, outcome: &Outcome) {
        self.clear_status();
        self.running.retain(|(r, _)| *r != id);
        self.done += 1;
        let name = &self.graph.get(id).name;
        let (mark, code) = match outcome.status {
            Status::Ok => ("✓", "32"),
            Status::Cached => ("✓", "36"),
            Status::Skipped { .. } => ("-", "33"),
            _ => ("✗", "31"),
        };
        match outcome.status {
            Status::Cached => self.cached += 1,
            Status::Failed { .. } | Status::TimedOut | Status::Interrupted => self.failed += 1,
            _ => {}
        }
        let verdict = super::summary::verdict_line(outcome);
        let mut text = format!(
            "{} {} {}\n",
            self.paint(code, mark),
            self.paint("1", name),
            verdict
        )
        .into_bytes();
        let body = std::mem::take(&mut self.buffered[id.index()]);
        text.extend(body);
        if outcome.status == Status::Cached {
            for c in &outcome.output {
                text.extend_from_slice(&with_newline(&c.data));
            }
        }
        out(&text);
        if !self.running.is_empty() {
            self.draw_status();
        }
    }
}
