//! The end-of-run summary: every instance with its status and duration, the
//! gates table, the critical path and the time the cache saved; as text for
//! people and as versioned JSON for `--summary FILE`.

use std::time::Duration;

use serde::Serialize;

use super::human;
use crate::cache::policy::Reason;
use crate::config::{Project, TaskKind};
use crate::graph::{InstanceGraph, InstanceId};
use crate::outcome::RunResult;
use crate::outcome::{Outcome, Status};

/// The summary JSON's schema version; bump on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// One line saying how an instance ended, e.g. `failed (exit 1) in 0.20s`.
pub fn verdict_line(o: &Outcome) -> String {
    match &o.status {
        Status::Ok => format!("ok in {}", human(o.duration)),
        Status::Cached => match o.saved {
            Some(s) => format!("cached (saved {})", human(s)),
            None => "cached".to_owned(),
        },
        Status::Failed { code: Some(c) } => format!("failed (exit {c}) in {}", human(o.duration)),
        Status::Failed { code: None } => {
            format!("failed (killed by a signal) in {}", human(o.duration))
        }
        Status::TimedOut => format!("timed out after {}", human(o.duration)),
        Status::Skipped { reason } => format!("skipped: {reason}"),
        Status::Interrupted => "interrupted".to_owned(),
    }
}

/// `--summary` JSON: the whole run.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    pub success: bool,
    pub exit_code: u8,
    pub interrupted: bool,
    pub duration_ms: u64,
    pub cache_saved_ms: u64,
    pub counts: Counts,
    pub instances: Vec<InstanceSummary>,
    pub gates: Vec<GateSummary>,
    pub critical_path: Vec<String>,
    /// What the remote cache did, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_cache: Option<crate::cache::remote::RemoteReport>,
}

/// How many instances ended which way.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub total: usize,
    pub ran: usize,
    pub cached: usize,
    pub failed: usize,
    /// Stopped by Ctrl-C (or SIGTERM) or cancelled: not failures.
    pub interrupted: usize,
    pub skipped: usize,
    /// Partition instances in the run, and how many of them are done (ran
    /// well or came from the cache): a backfill's progress.
    pub partitions: usize,
    pub partitions_complete: usize,
}

/// One instance in the summary.
#[derive(Debug, Serialize)]
pub struct InstanceSummary {
    pub name: String,
    pub task: String,
    pub partition: Option<String>,
    pub kind: &'static str,
    /// ok, cached, failed, timed-out, skipped, interrupted.
    pub status: &'static str,
    /// Whether its commands ran in this run (ok, failed, timed out, interrupted).
    pub ran: bool,
    /// Whether it was restored from the cache.
    pub cached: bool,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub saved_ms: Option<u64>,
    pub key: Option<String>,
    /// Why it ran instead of hitting the cache.
    pub reason: Option<Reason>,
    /// Why it did not run at all.
    pub skip_reason: Option<String>,
    pub deps: Vec<String>,
}

/// One gate's verdict.
#[derive(Debug, Serialize)]
pub struct GateSummary {
    pub name: String,
    /// passed, failed or skipped.
    pub verdict: &'static str,
    pub duration_ms: u64,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Summary {
    /// The counts and times of a finished run, without the per-instance
    /// lists: all that [`Summary::counts_line`] reads (`-q` prints nothing
    /// else, and building the lists took a 1,000-task no-op a quarter of a
    /// millisecond).
    pub fn counts_only(graph: &InstanceGraph, result: &RunResult, exit_code: u8) -> Summary {
        let mut counts = Counts {
            total: graph.len(),
            ..Counts::default()
        };
        let mut saved = Duration::ZERO;
        for &id in graph.order() {
            let (inst, o) = (graph.get(id), &result.outcomes[id.index()]);
            if inst.partition.is_some() {
                counts.partitions += 1;
                if matches!(o.status, Status::Ok | Status::Cached) {
                    counts.partitions_complete += 1;
                }
            }
            match &o.status {
                Status::Ok => counts.ran += 1,
                Status::Cached => counts.cached += 1,
                Status::Failed { .. } | Status::TimedOut => {
                    counts.ran += 1;
                    counts.failed += 1
                }
                Status::Interrupted => {
                    counts.ran += 1;
                    counts.interrupted += 1
                }
                Status::Skipped { .. } => counts.skipped += 1,
            }
            saved += o.saved.unwrap_or_default();
        }
        Summary {
            schema_version: SCHEMA_VERSION,
            success: exit_code == 0,
            exit_code,
            interrupted: result.interrupted,
            duration_ms: ms(result.elapsed),
            cache_saved_ms: ms(saved),
            counts,
            instances: Vec::new(),
            gates: Vec::new(),
            critical_path: Vec::new(),
            remote_cache: None,
        }
    }

    /// Builds the summary of a finished run.
    pub fn new(
        project: &Project,
        graph: &InstanceGraph,
        result: &RunResult,
        exit_code: u8,
    ) -> Summary {
        let brief = Summary::counts_only(graph, result, exit_code);
        let mut instances = Vec::new();
        let mut gates = Vec::new();
        let order = graph.order();
        for &id in order {
            let (inst, o) = (graph.get(id), &result.outcomes[id.index()]);
            let task = project.task(inst.task);
            if task.kind == TaskKind::Gate {
                gates.push(GateSummary {
                    name: inst.name.clone(),
                    verdict: match o.status {
                        Status::Ok | Status::Cached => "passed",
                        Status::Skipped { .. } => "skipped",
                        Status::Interrupted => "interrupted",
                        Status::Failed { .. } | Status::TimedOut => "failed",
                    },
                    duration_ms: ms(o.duration),
                });
            }
            instances.push(InstanceSummary {
                name: inst.name.clone(),
                task: task.name.clone(),
                partition: inst.partition.clone(),
                kind: if task.kind == TaskKind::Gate {
                    "gate"
                } else {
                    "task"
                },
                status: o.status.word(),
                ran: matches!(
                    o.status,
                    Status::Ok | Status::Failed { .. } | Status::TimedOut | Status::Interrupted
                ),
                cached: o.status == Status::Cached,
                exit_code: match o.status {
                    Status::Failed { code } => code,
                    Status::Ok => Some(0),
                    _ => None,
                },
                duration_ms: ms(o.duration),
                saved_ms: o.saved.map(ms),
                key: o.key.clone(),
                reason: if matches!(o.status, Status::Cached | Status::Skipped { .. }) {
                    None
                } else {
                    o.reason.clone()
                },
                skip_reason: match &o.status {
                    Status::Skipped { reason } => Some(reason.clone()),
                    _ => None,
                },
                deps: inst
                    .deps
                    .iter()
                    .map(|d| graph.get(*d).name.clone())
                    .collect(),
            });
        }
        Summary {
            instances,
            gates,
            critical_path: critical_path(graph, order, &result.outcomes),
            ..brief
        }
    }

    /// The last line of the summary: the counts, the time, the time saved.
    /// All that `-q` prints of a run that went well.
    pub fn counts_line(&self) -> String {
        let c = &self.counts;
        let interrupted = if c.interrupted > 0 {
            format!(", {} interrupted", c.interrupted)
        } else {
            String::new()
        };
        let mut s = format!(
            "{} instances: {} ran, {} cached, {} failed{interrupted}, {} skipped in {}",
            c.total,
            c.ran,
            c.cached,
            c.failed,
            c.skipped,
            human(Duration::from_millis(self.duration_ms))
        );
        if self.cache_saved_ms > 0 {
            s.push_str(&format!(
                " (the cache saved {})",
                human(Duration::from_millis(self.cache_saved_ms))
            ));
        }
        if c.partitions > 0 {
            s.push_str(&format!(
                "; {} of {} partitions complete",
                c.partitions_complete, c.partitions
            ));
        }
        s.push('\n');
        s
    }

    /// The summary as people read it.
    pub fn render(&self, color: bool) -> String {
        let paint = |code: &str, s: &str| {
            if color {
                format!("\x1b[{code}m{s}\x1b[0m")
            } else {
                s.to_owned()
            }
        };
        let mut s = String::new();
        let width = self
            .instances
            .iter()
            .map(|i| i.name.len())
            .max()
            .unwrap_or(4)
            .min(48);
        s.push_str("\nSummary\n");
        for i in &self.instances {
            let word = match i.status {
                "ok" => paint("32", "ok"),
                "cached" => paint("36", "cached"),
                "skipped" => paint("33", "skipped"),
                other => paint("31", other),
            };
            let pad = 11usize.saturating_sub(i.status.len());
            let detail = match (i.status, &i.skip_reason, i.exit_code) {
                ("skipped", Some(r), _) => r.clone(),
                ("failed", _, Some(c)) => format!("exit {c}"),
                ("cached", _, _) => i
                    .saved_ms
                    .map(|m| format!("saved {}", human(Duration::from_millis(m))))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let time = if i.status == "skipped" {
                String::new()
            } else {
                human(Duration::from_millis(i.duration_ms))
            };
            s.push_str(
                format!(
                    "  {word}{:pad$} {:<width$}  {:>8}  {detail}\n",
                    "", i.name, time
                )
                .trim_end(),
            );
            s.push('\n');
        }
        if !self.gates.is_empty() {
            s.push_str("\nGates\n");
            let gw = self
                .gates
                .iter()
                .map(|g| g.name.len())
                .max()
                .unwrap_or(4)
                .min(48);
            for g in &self.gates {
                let v = match g.verdict {
                    "passed" => paint("32", "passed"),
                    "skipped" => paint("33", "skipped"),
                    "interrupted" => paint("33", "interrupted"),
                    _ => paint("31", "FAILED"),
                };
                let pad = 11usize.saturating_sub(g.verdict.len());
                s.push_str(&format!(
                    "  {:<gw$}  {v}{:pad$} {:>8}\n",
                    g.name,
                    "",
                    human(Duration::from_millis(g.duration_ms))
                ));
            }
        }
        s.push('\n');
        if let Some(r) = &self.remote_cache {
            s.push_str(&remote_line(r));
        }
        s.push_str(&self.counts_line());
        if self.critical_path.len() > 1 {
            s.push_str(&format!(
                "critical path: {}\n",
                self.critical_path.join(" -> ")
            ));
        }
        s
    }
}

/// What the remote cache did: its mode and why, hits, uploads, bytes moved.
pub fn remote_line(r: &crate::cache::remote::RemoteReport) -> String {
    format!(
        "remote cache {} {}: {} remote hits, {} uploaded, {} down, {} up{}\n",
        r.url,
        r.mode,
        r.hits,
        r.uploads,
        super::human_bytes(r.bytes_down),
        super::human_bytes(r.bytes_up),
        if r.unavailable { " (unavailable)" } else { "" }
    )
}

/// The chain of instances that ran with the longest total duration; empty
/// when nothing ran (instances from the cache took no time of their own).
fn critical_path(graph: &InstanceGraph, order: &[InstanceId], outcomes: &[Outcome]) -> Vec<String> {
    let n = graph.len();
    let mut best: Vec<(Duration, Option<InstanceId>)> = vec![(Duration::ZERO, None); n];
    let ran = |id: InstanceId| {
        matches!(
            outcomes[id.index()].status,
            Status::Ok | Status::Failed { .. } | Status::TimedOut | Status::Interrupted
        )
    };
    for &id in order {
        let own = if ran(id) {
            outcomes[id.index()].duration
        } else {
            Duration::ZERO
        };
        let (mut total, mut prev) = (own, None);
        for d in &graph.get(id).deps {
            let cand = best[d.index()].0 + own;
            if cand > total {
                total = cand;
                prev = Some(*d);
            }
        }
        best[id.index()] = (total, prev);
    }
    let Some(mut cur) = order
        .iter()
        .copied()
        .filter(|id| ran(*id))
        .max_by_key(|id| best[id.index()].0)
    else {
        return Vec::new();
    };
    let mut path = vec![graph.get(cur).name.clone()];
    while let Some(p) = best[cur.index()].1 {
        if ran(p) {
            path.push(graph.get(p).name.clone());
        }
        cur = p;
    }
    path.reverse();
    path
}
