//! The scheduler: a state machine over instances that starts what is ready
//! within `-j` and each task's `max_parallel`, skips the dependents of a
//! failure, enforces timeouts, and stops everything on Ctrl-C.
//!
//! ```text
//! Waiting --all deps succeeded--> Ready --slot free--> Running --> Done
//!    \                                \                             (ok, cached, failed, timed out)
//!     `--a dep failed / run stopped----`--> Skipped
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::process::Control;
use super::{Outcome, Status, Stream};
use crate::config::{Project, TaskId};
use crate::graph::{InstanceGraph, InstanceId};
use crate::report::Reporter;

/// How often the reporter gets a chance to redraw while nothing happens.
const TICK: Duration = Duration::from_millis(250);

/// Does the work of one instance on a worker thread.
pub trait Runner: Sync {
    /// Runs or restores `id`, whose dependencies all succeeded with the given
    /// outcomes. Output lines go to `sink` as they arrive.
    fn run(
        &self,
        id: InstanceId,
        deps: &[(InstanceId, &Outcome)],
        ctl: &Control,
        sink: &(dyn Fn(Stream, &[u8]) + Sync),
    ) -> Outcome;
}

/// Knobs of one scheduler run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Most instances running at once (at least 1).
    pub jobs: usize,
    /// Keep starting what does not depend on a failure.
    pub keep_going: bool,
    /// How long a SIGTERM'd group gets before SIGKILL on Ctrl-C.
    pub grace: Duration,
    /// Instances already finished before this run (watch mode re-runs only
    /// what a change affects): they are not run or reported again, and a
    /// success satisfies its dependents.
    pub done: HashMap<InstanceId, Outcome>,
}

/// Lets another thread cancel running or pending instances of a run.
#[derive(Clone)]
pub struct Canceller(mpsc::Sender<Event>);

impl Canceller {
    /// Kills these instances if running, or skips them if not started; their
    /// dependents are skipped. Returns false if the run is already over.
    pub fn cancel(&self, ids: Vec<InstanceId>) -> bool {
        self.0.send(Event::Cancel(ids)).is_ok()
    }
}

/// Where one instance is in its life.
enum State {
    /// Waiting for `missing` dependencies to succeed.
    Waiting { missing: usize },
    /// All dependencies succeeded; queued for a slot.
    Ready,
    /// A worker thread owns it; `ctl` reaches its process group.
    Running {
        deadline: Option<Instant>,
        ctl: Arc<Control>,
    },
    /// Finished, with its outcome.
    Done(Outcome),
}

/// Work handed to the pool: an instance whose dependencies all succeeded.
struct Job {
    id: InstanceId,
    deps: Vec<(InstanceId, Outcome)>,
    ctl: Arc<Control>,
}

enum Event {
    Output(InstanceId, Stream, Vec<u8>),
    Finished(InstanceId, Outcome),
    Signal,
    Cancel(Vec<InstanceId>),
}

/// The result of a whole run.
#[derive(Debug)]
pub struct RunResult {
    /// One outcome per instance, by `InstanceId`.
    pub outcomes: Vec<Outcome>,
    /// Whether Ctrl-C (or SIGTERM) stopped the run.
    pub interrupted: bool,
    /// When the run started.
    pub begin: Instant,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// Runs every instance of `graph`, dependencies first.
pub fn run(
    project: &Project,
    graph: &InstanceGraph,
    runner: &dyn Runner,
    reporter: &mut dyn Reporter,
    opts: &Options,
) -> RunResult {
    run_with(project, graph, runner, reporter, opts, |_| {})
}

/// Like [`run`], handing `on_start` a [`Canceller`] for this run first.
pub fn run_with(
    project: &Project,
    graph: &InstanceGraph,
    runner: &dyn Runner,
    reporter: &mut dyn Reporter,
    opts: &Options,
    on_start: impl FnOnce(Canceller),
) -> RunResult {
    let begin = Instant::now();
    let n = graph.instances.len();
    let mut dependents: Vec<Vec<InstanceId>> = vec![Vec::new(); n];
    let mut states: Vec<State> = Vec::with_capacity(n);
    let mut pre_skipped = Vec::new();
    for (i, inst) in graph.instances.iter().enumerate() {
        for d in &inst.deps {
            dependents[d.index()].push(InstanceId(i as u32));
        }
        let id = InstanceId(i as u32);
        if let Some(o) = opts.done.get(&id) {
            states.push(State::Done(o.clone()));
            continue;
        }
        let satisfied = |d: &InstanceId| opts.done.get(d).is_some_and(|o| o.status.is_success());
        let failed = |d: &&InstanceId| opts.done.get(d).is_some_and(|o| !o.status.is_success());
        if let Some(f) = inst.deps.iter().find(failed) {
            pre_skipped.push((id, *f));
        }
        let missing = inst.deps.iter().filter(|d| !satisfied(d)).count();
        states.push(State::Waiting { missing });
    }
    for (id, failed) in pre_skipped {
        if matches!(states[id.index()], State::Waiting { .. }) {
            let reason = format!("dependency `{}` failed", graph.get(failed).name);
            let o = Outcome::new(Status::Skipped { reason });
            reporter.finished(id, &o);
            states[id.index()] = State::Done(o);
            skip_dependents(graph, id, &dependents, &mut states, reporter);
        }
    }
    let order = graph.topo_order();
    let rank: HashMap<InstanceId, usize> =
        order.iter().enumerate().map(|(r, id)| (*id, r)).collect();
    let mut ready: VecDeque<InstanceId> = VecDeque::new();
    for id in &order {
        if let State::Waiting { missing: 0 } = states[id.index()] {
            states[id.index()] = State::Ready;
            ready.push_back(*id);
        }
    }

    let (tx, rx) = mpsc::channel::<Event>();
    on_start(Canceller(tx.clone()));
    let signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM]).ok();
    let signal_handle = signals.as_ref().map(|s| s.handle());
    let jobs = opts.jobs.max(1);
    let mut running = 0usize;
    let mut per_task: HashMap<TaskId, usize> = HashMap::new();
    let mut failed = false;
    let mut interrupted = false;
    let mut interrupt_at: Option<Instant> = None;
    let mut killed_hard = false;

    // A fixed pool of `jobs` workers; they log through the caller's subscriber.
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = std::sync::Mutex::new(job_rx);
    std::thread::scope(|scope| {
        for lane in 0..opts.jobs.max(1).min(n.max(1)) {
            let (tx, job_rx, dispatch) = (tx.clone(), &job_rx, dispatch.clone());
            scope.spawn(move || {
                let _log = tracing::dispatcher::set_default(&dispatch);
                loop {
                    let job = match job_rx.lock().expect("job queue").recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    let Job { id, deps, ctl } = job;
                    let out_tx = tx.clone();
                    let sink = move |stream: Stream, line: &[u8]| {
                        let _ = out_tx.send(Event::Output(id, stream, line.to_vec()));
                    };
                    let dep_refs: Vec<(InstanceId, &Outcome)> =
                        deps.iter().map(|(d, o)| (*d, o)).collect();
                    let began = Instant::now();
                    let mut outcome = runner.run(id, &dep_refs, &ctl, &sink);
                    outcome.lane = Some((lane, began, Instant::now()));
                    if ctl.is_timed_out() && !outcome.status.is_success() {
                        outcome.status = Status::TimedOut;
                    }
                    let _ = tx.send(Event::Finished(id, outcome));
                }
            });
        }
        if let Some(mut signals) = signals {
            let tx = tx.clone();
            scope.spawn(move || {
                for _ in signals.forever() {
                    if tx.send(Event::Signal).is_err() {
                        return;
                    }
                }
            });
        }
        loop {
            // Start what may start.
            if !interrupted && (!failed || opts.keep_going) {
                let mut deferred = Vec::new();
                while running < jobs {
                    let Some(id) = ready.pop_front() else { break };
                    if !matches!(states[id.index()], State::Ready) {
                        continue; // skipped while queued
                    }
                    let inst = graph.get(id);
                    let task = project.task(inst.task);
                    let busy = per_task.get(&inst.task).copied().unwrap_or(0);
                    if task.max_parallel.is_some_and(|m| busy >= m) {
                        deferred.push(id);
                        continue;
                    }
                    *per_task.entry(inst.task).or_default() += 1;
                    running += 1;
                    let ctl = Arc::new(Control::default());
                    let deadline = task.timeout.map(|t| Instant::now() + t);
                    states[id.index()] = State::Running {
                        deadline,
                        ctl: ctl.clone(),
                    };
                    reporter.started(id);
                    let dep_outcomes: Vec<(InstanceId, Outcome)> = inst
                        .deps
                        .iter()
                        .map(|d| match &states[d.index()] {
                            State::Done(o) => (*d, o.clone()),
                            _ => (*d, Outcome::new(Status::Ok)),
                        })
                        .collect();
                    let _ = job_tx.send(Job {
                        id,
                        deps: dep_outcomes,
                        ctl,
                    });
                }
                for id in deferred.into_iter().rev() {
                    ready.push_front(id);
                }
            }
            if running == 0 {
                break;
            }

            // Wait for the next event, or the nearest deadline.
            let now = Instant::now();
            let mut wake = now + Duration::from_secs(3600);
            for s in &states {
                if let State::Running {
                    deadline: Some(d), ..
                } = s
                {
                    wake = wake.min(*d);
                }
            }
            if let Some(at) = interrupt_at {
                wake = wake.min(at + opts.grace);
            }
            wake = wake.min(now + TICK);
            let event = rx.recv_timeout(wake.saturating_duration_since(now));
            match event {
                Ok(Event::Output(id, stream, line)) => reporter.output(id, stream, &line),
                Ok(Event::Finished(id, mut outcome)) => {
                    running -= 1;
                    let task = graph.get(id).task;
                    if let Some(c) = per_task.get_mut(&task) {
                        *c -= 1;
                    }
                    let cancelled = matches!(&states[id.index()], State::Running { ctl, .. } if ctl.is_cancelled());
                    if (interrupted || cancelled)
                        && !outcome.status.is_success()
                        && outcome.status != Status::TimedOut
                    {
                        outcome.status = Status::Interrupted;
                    }
                    let success = outcome.status.is_success();
                    reporter.finished(id, &outcome);
                    states[id.index()] = State::Done(outcome);
                    if success {
                        let mut newly: Vec<InstanceId> = Vec::new();
                        for &d in &dependents[id.index()] {
                            if let State::Waiting { missing } = &mut states[d.index()] {
                                *missing -= 1;
                                if *missing == 0 {
                                    newly.push(d);
                                }
                            }
                        }
                        newly.sort_by_key(|d| rank[d]);
                        for d in newly {
                            states[d.index()] = State::Ready;
                            ready.push_back(d);
                        }
                    } else {
                        failed = true;
                        skip_dependents(graph, id, &dependents, &mut states, reporter);
                    }
                }
                Ok(Event::Signal) => {
                    if !interrupted {
                        tracing::info!("interrupted: stopping every running task");
                        interrupted = true;
                        interrupt_at = Some(Instant::now());
                        for s in &states {
                            if let State::Running { ctl, .. } = s {
                                ctl.kill(libc::SIGTERM);
                            }
                        }
                    } else if !killed_hard {
                        killed_hard = true;
                        kill_all(&states);
                    }
                }
                Ok(Event::Cancel(ids)) => {
                    for id in ids {
                        match &states[id.index()] {
                            State::Running { ctl, .. } => ctl.kill(libc::SIGKILL),
                            State::Waiting { .. } | State::Ready => {
                                let o = Outcome::new(Status::Skipped {
                                    reason: "cancelled by a change".into(),
                                });
                                reporter.finished(id, &o);
                                states[id.index()] = State::Done(o);
                                skip_dependents(graph, id, &dependents, &mut states, reporter);
                            }
                            State::Done(_) => {}
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => reporter.tick(),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            for s in &states {
                if let State::Running {
                    deadline: Some(d),
                    ctl,
                } = s
                    && *d <= now
                    && !ctl.is_timed_out()
                {
                    ctl.time_out();
                }
            }
            if let Some(at) = interrupt_at
                && !killed_hard
                && now >= at + opts.grace
            {
                killed_hard = true;
                kill_all(&states);
            }
        }
        drop(job_tx);
        if let Some(h) = &signal_handle {
            h.close();
        }
    });

    // Whatever never started was skipped because the run stopped.
    let reason = if interrupted {
        "the run was interrupted"
    } else {
        "the run stopped after a failure"
    };
    for id in graph.topo_order() {
        if !matches!(states[id.index()], State::Done(_)) {
            let o = Outcome::new(Status::Skipped {
                reason: reason.to_owned(),
            });
            reporter.finished(id, &o);
            states[id.index()] = State::Done(o);
        }
    }
    let outcomes = states
        .into_iter()
        .map(|s| match s {
            State::Done(o) => o,
            _ => Outcome::new(Status::Skipped {
                reason: reason.to_owned(),
            }),
        })
        .collect();
    RunResult {
        outcomes,
        interrupted,
        begin,
        elapsed: begin.elapsed(),
    }
}

fn kill_all(states: &[State]) {
    for s in states {
        if let State::Running { ctl, .. } = s {
            ctl.kill(libc::SIGKILL);
        }
    }
}

/// Marks every transitive dependent of a failed instance as skipped.
fn skip_dependents(
    graph: &InstanceGraph,
    failed: InstanceId,
    dependents: &[Vec<InstanceId>],
    states: &mut [State],
    reporter: &mut dyn Reporter,
) {
    let cause = &graph.get(failed).name;
    let mut stack: Vec<InstanceId> = dependents[failed.index()].clone();
    while let Some(d) = stack.pop() {
        if matches!(states[d.index()], State::Waiting { .. } | State::Ready) {
            let o = Outcome::new(Status::Skipped {
                reason: format!("dependency `{cause}` failed"),
            });
            reporter.finished(d, &o);
            states[d.index()] = State::Done(o);
            stack.extend(dependents[d.index()].iter().copied());
        }
    }
}
