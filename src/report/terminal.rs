//! Output for a person at a terminal: a live progress view on stderr (a bar,
//! counts of done, cached, failed and remaining, and the running instances
//! with their elapsed time), and each instance's output grouped under a
//! header when it ends — failures in full, successes up to a limit — or
//! streamed as it comes while the instance runs alone (`--output stream`:
//! always).

use std::io::Write;
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
    held: Vec<usize>,
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
            held: vec![0; graph.len()],
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
                OutputMode::Grouped => alone && self.held[id.index()] == 0,
            };
        if !live {
            // Held back: shown from the outcome's capture at the verdict.
            self.held[id.index()] += 1;
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
        // The lines not yet shown are the last `held` of the capture (all
        // of a hit's); a success shows only its last few of them.
        let held = match outcome.status {
            Status::Cached => outcome.output.len(),
            _ => std::mem::take(&mut self.held[id.index()]).min(outcome.output.len()),
        };
        let mut text = format!(
            "{} {} {}\n",
            self.paint(code, mark),
            self.paint("1", name),
            verdict
        )
        .into_bytes();
        let hidden = if outcome.status.is_success() {
            held.saturating_sub(SUCCESS_LINES)
        } else {
            0
        };
        if hidden > 0 {
            text.extend(format!("  … {hidden} earlier lines hidden\n").into_bytes());
        }
        if !self.quiet || outcome.status.is_failure() {
            let skip = outcome.output.len() - held + hidden;
            self.bar.suspend(|| {
                let mut stdout =
                    std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
                let _ = stdout.write_all(&text);
                let mut at = 0;
                let _ = outcome.output.for_each(&mut |_, line| {
                    if at >= skip {
                        let _ = stdout.write_all(&with_newline(line));
                    }
                    at += 1;
                });
            });
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
