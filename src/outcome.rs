//! What running instances produced: each one's status, timing, cache reason
//! and captured output, and the outcomes of a whole run. The scheduler makes
//! these; reports, watch mode and the commands read them.

use std::time::{Duration, Instant};

use crate::cache::policy::Reason;
use crate::capture::Captured;

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

    /// Whether this counts as a failure of the run (not a skip).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Status::Failed { .. } | Status::TimedOut | Status::Interrupted
        )
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
    /// The digest of what a success produced — its outputs' content, or its
    /// key when it declares no outputs — which its dependents' keys take
    /// (early cutoff). `None` when unknown: dependents then run uncached.
    pub result: Option<String>,
    /// Why it ran instead of hitting the cache.
    pub reason: Option<Reason>,
    /// Captured output, stdout and stderr interleaved in order.
    pub output: Captured,
    /// Which worker lane ran it, and when it started and ended there.
    pub lane: Option<(usize, Instant, Instant)>,
    /// Phases inside the instance (hash, restore, run, store), for `--profile`.
    pub spans: Vec<Span>,
    /// For a hit: the invocation id of the run that stored it, if known.
    pub origin: Option<String>,
}

impl Outcome {
    /// An outcome with just a status.
    pub fn new(status: Status) -> Outcome {
        Outcome {
            status,
            duration: Duration::ZERO,
            saved: None,
            key: None,
            result: None,
            reason: None,
            output: Captured::default(),
            lane: None,
            spans: Vec::new(),
            origin: None,
        }
    }

    /// An instance that never started, and why.
    pub fn skipped(reason: impl Into<String>) -> Outcome {
        Outcome::new(Status::Skipped {
            reason: reason.into(),
        })
    }
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

/// The result of a whole run.
#[derive(Debug)]
pub struct RunResult {
    /// One outcome per instance, by `InstanceId::index`.
    pub outcomes: Vec<Outcome>,
    /// Whether Ctrl-C (or SIGTERM, or SIGHUP) stopped the run.
    pub interrupted: bool,
    /// The signal that stopped it.
    pub signal: Option<i32>,
    /// When the run started.
    pub begin: Instant,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl RunResult {
    /// Whether any instance failed, timed out or was interrupted.
    pub fn any_failed(&self) -> bool {
        self.outcomes.iter().any(|o| o.status.is_failure())
    }
}
