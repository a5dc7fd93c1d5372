//! Output for a person at a terminal: a live progress view on stderr (a bar,
//! counts of done, cached, failed and remaining, and the running instances
//! with their elapsed time), and each instance's output grouped under a
//! header when it ends — failures in full, successes up to a limit — or
//! streamed as it comes while the instance runs alone (`--output stream`:
//! always).

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{OutputMode, Reporter, out, with_newline};
use crate::capture::Stream;
use crate::graph::{InstanceGraph, InstanceId};
use crate::outcome::{Outcome, Status};

/// Most lines of a successful instance's output shown (failures: all).
const SUCCESS_LINES: usize = 40;

/// Grouped output with a live progress view.
pub struct TerminalReporter<'a> {
    graph: &'a InstanceGraph,
    buffered: Vec<Vec<Vec<u8>>>,
    running: Vec<(InstanceId, Instant)>,
    cached: usize,
    failed: usize,
    color: bool,
    /// `-q`: only failures are shown.
    quiet: bool,
    mode: OutputMode,
    /// Per instance: whether its output has begun streaming live.
    streaming: Vec<bool>,
    bar: ProgressBar,
}

impl<'a> TerminalReporter<'a> {
    /// A reporter for `graph`; `color` enables ANSI colours.
    pub fn new(graph: &'a InstanceGraph, color: bool, quiet: bool, mode: OutputMode) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(graph.len() as u64),
            ProgressDrawTarget::stderr_with_hz(10),
        );
        let style = ProgressStyle::with_template("{spinner} [{bar:24}] {pos}/{len} {wide_msg}")
            .expect("valid template")
            .progress_chars("=> ");
        bar.set_style(style);
        TerminalReporter {
            graph,
            buffered: vec![Vec::new(); graph.len()],
            running: Vec::new(),
            cached: 0,
            failed: 0,
            color,
            quiet,
            mode,
            streaming: vec![false; graph.len()],
            bar,
        }
    }

    fn redraw(&self) {
        let remaining = self
            .bar
            .length()
            .unwrap_or(0)
            .saturating_sub(self.bar.position());
        let names: Vec<String> = self
            .running
            .iter()
            .take(3)
            .map(|(id, t)| format!("{} {}", self.graph.get(*id).name, secs(t.elapsed())))
            .collect();
        let more = self.running.len().saturating_sub(3);
        self.bar.set_message(format!(
            "{} cached, {} failed, {remaining} left | {}{}",
            self.cached,
            self.failed,
            names.join(", "),
            if more > 0 {
                format!(" +{more}")
            } else {
                String::new()
            }
        ));
        self.bar.tick();
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.0}s", d.as_secs_f64().floor())
}

impl Reporter for TerminalReporter<'_> {
    fn plan(&mut self, total: usize) {
        self.bar.set_length(total as u64);
    }

    fn started(&mut self, id: InstanceId) {
        self.running.push((id, Instant::now()));
        self.redraw();
    }

    fn output(&mut self, id: InstanceId, _stream: Stream, line: &[u8]) {
        let line = with_newline(line);
        // -q shows only what failed, so nothing streams before the verdict.
        let alone = self.running.len() == 1 && self.running[0].0 == id;
        let live = !self.quiet
            && match self.mode {
                OutputMode::Stream | OutputMode::Prefixed => true,
                // Streams while it runs alone; once lines are held back
                // (another instance started), the rest waits for the verdict
                // so that its lines stay in order.
                OutputMode::Grouped => alone && self.buffered[id.index()].is_empty(),
            };
        if !live {
            self.buffered[id.index()].push(line.into_owned());
            return;
        }
        let name = &self.graph.get(id).name;
        let mut text = Vec::new();
        if self.mode == OutputMode::Grouped {
            if !self.streaming[id.index()] {
                text.extend(
                    format!("{} {}\n", self.paint("36", "▶"), self.paint("1", name)).into_bytes(),
                );
            }
        } else if !alone {
            text.extend(format!("{} | ", self.paint("2", name)).into_bytes());
        }
        self.streaming[id.index()] = true;
        text.extend_from_slice(&line);
        self.bar.suspend(|| out(&text));
    }

    fn finished(&mut self, id: InstanceId, outcome: &Outcome) {
        self.running.retain(|(r, _)| *r != id);
        let name = &self.graph.get(id).name;
        let (mark, code) = match outcome.status {
            Status::Ok => ("✓", "32"),
            Status::Cached => ("✓", "36"),
            Status::Skipped { .. } => ("-", "33"),
            _ => ("✗", "31"),
        };
        match outcome.status {
            Status::Cached => self.cached += 1,
            Status::Failed { .. } | Status::TimedOut => self.failed += 1,
            _ => {}
        }
        let verdict = super::summary::verdict_line(outcome);
        let mut lines = std::mem::take(&mut self.buffered[id.index()]);
        if outcome.status == Status::Cached {
            lines = outcome
                .output
                .iter()
                .map(|c| with_newline(&c.data).into_owned())
                .collect();
        }
        let mut text = format!(
            "{} {} {}\n",
            self.paint(code, mark),
            self.paint("1", name),
            verdict
        )
        .into_bytes();
        let hidden = if outcome.status.is_success() {
            lines.len().saturating_sub(SUCCESS_LINES)
        } else {
            0
        };
        if hidden > 0 {
            text.extend(format!("  … {hidden} earlier lines hidden\n").into_bytes());
        }
        for l in &lines[hidden..] {
            text.extend_from_slice(l);
        }
        if !self.quiet || outcome.status.is_failure() {
            self.bar.suspend(|| out(&text));
        }
        self.bar.inc(1);
        self.redraw();
        if Some(self.bar.position()) == self.bar.length() {
            self.bar.finish_and_clear();
        }
    }

    fn tick(&mut self) {
        if !self.running.is_empty() {
            self.redraw();
        }
    }
}

impl Drop for TerminalReporter<'_> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
