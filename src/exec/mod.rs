//! Running a graph of instances: outcomes, the scheduler and the processes.

pub mod plan;
pub mod process;
pub mod scheduler;
pub mod work;

use std::time::{Duration, Instant};

/// Which stream a chunk of task output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line (or final partial line) of task output, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    pub stream: Stream,
    pub data: Vec<u8>,
}

/// How one instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Ran and exited 0.
    Ok,
    /// Restored from the cache; nothing ran.
    Cached,
    /// Ran and failed: the exit code, or `None` when killed by a signal.
    Failed { code: Option<i32> },
    /// Killed after its `timeout`.
    TimedOut,
    /// Never started: a dependency failed, or the run stopped.
    Skipped { reason: String },
    /// Killed because the run was interrupted (Ctrl-C).
    Interrupted,
}

impl Status {
    /// Whether dependents may run after this.
    pub fn is_success(&self) -> bool {
        matches!(self, Status::Ok | Status::Cached)
    }

    /// A short word for summaries: ok, cached, failed, timed-out, skipped, interrupted.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Cached => "cached",
            Status::Failed { .. } => "failed",
            Status::TimedOut => "timed-out",
            Status::Skipped { .. } => "skipped",
            Status::Interrupted => "interrupted",
        }
    }
}

/// Everything known about one finished instance.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    /// Wall time of this run (for a hit: of restoring).
    pub duration: Duration,
    /// For a hit: how long the original run took.
    pub saved: Option<Duration>,
    /// The cache key, when one was computed.
    pub key: Option<String>,
    /// Why it ran instead of hitting the cache (`no-entry`, `forced`, ...).
    pub reason: Option<String>,
    /// Captured output, stdout and stderr interleaved in order.
    pub output: Vec<Chunk>,
    /// Which worker lane ran it, and when it started and ended there.
    pub lane: Option<(usize, Instant, Instant)>,
    /// Phases inside the instance (hash, restore, run, store), for `--profile`.
    pub spans: Vec<Span>,
}

/// One timed phase of an instance's work.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: &'static str,
    pub start: Instant,
    pub end: Instant,
}

impl Span {
    /// Times `f` as a phase called `name`, appending it to `spans`.
    pub fn time<T>(spans: &mut Vec<Span>, name: &'static str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        spans.push(Span {
            name,
            start,
            end: Instant::now(),
        });
        out
    }
}

impl Outcome {
    /// An outcome with just a status.
    pub fn new(status: Status) -> Outcome {
        Outcome {
            status,
            duration: Duration::ZERO,
            saved: None,
            key: None,
            reason: None,
            output: Vec::new(),
            lane: None,
            spans: Vec::new(),
        }
    }
}
