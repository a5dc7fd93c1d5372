//! The scheduler: a state machine over instances that starts what is ready
//! within `-j` and each task's `max_parallel`, skips the dependents of a
//! failure, enforces timeouts, and stops everything on Ctrl-C.
//!
//! ```text
//! Waiting --all deps succeeded--> Ready --check--> hit: Done(cached)
//!    |                              |        `---> miss: Prepared --slot free--> Running --> Done
//!    `--a dep failed / run stopped--`--> Done(skipped)
//! ```
//!
//! The cache check runs on the scheduler's own thread as soon as an instance
//! is ready, so a run of cache hits never hands work between threads; only
//! instances that must run go to the pool of `-j` workers.

use std::collections::{HashMap, VecDeque};

use rayon::prelude::*;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::process::Control;
use super::{Outcome, Status, Stream};
use crate::config::{Project, TaskId};
use crate::graph::{InstanceGraph, InstanceId};
use crate::report::Reporter;

/// Most ready instances checked in one parallel batch.
const CHECK_BATCH: usize = 256;

/// How often the reporter gets a chance to redraw while nothing happens.
const TICK: Duration = Duration::from_millis(250);

/// What the check of a ready instance decided.
pub enum Check<P> {
    /// Finished without running (a cache hit): here is the outcome.
    Done(Outcome),
    /// Must run; `P` carries what the check learned (the key, the reason).
    Run(P),
}

/// Does the work of instances: a quick check on the scheduler's thread, and
/// the run itself on a worker thread.
pub trait Runner: Sync {
    /// What a check hands to the run.
    type Prepared: Send;
    /// Decides whether `id` (all of whose dependencies succeeded with these
    /// outcomes) can finish without running, e.g. from the cache.
    fn check(&self, id: InstanceId, deps: &[(InstanceId, &Outcome)]) -> Check<Self::Prepared>;
    /// Runs `id`; output lines go to `sink` as they arrive.
    fn run(
        &self,
        id: InstanceId,
        prepared: Self::Prepared,
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
    /// All dependencies succeeded; queued to be checked.
    Ready,
    /// Checked: it must run, and waits for a free slot.
    Prepared,
    /// A worker owns it; `ctl` reaches its process group.
    Running {
        deadline: Option<Instant>,
        ctl: Arc<Control>,
    },
    /// Finished, with its outcome.
    Done(Outcome),
}

/// Work handed to the pool.
struct Job<P> {
    id: InstanceId,
    prepared: P,
    ctl: Arc<Control>,
}

/// What reaches the scheduler's thread.
pub enum Event {
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
pub fn run<R: Runner>(
    project: &Project,
    graph: &InstanceGraph,
    runner: &R,
    reporter: &mut dyn Reporter,
    opts: &Options,
) -> RunResult {
    run_with(project, graph, runner, reporter, opts, |_| {})
}

/// The scheduler's bookkeeping, owned by its thread.
struct Book<'g, P> {
    graph: &'g InstanceGraph,
    states: Vec<State>,
    dependents: Vec<Vec<InstanceId>>,
    rank: Vec<usize>,
    ready: VecDeque<InstanceId>,
    prepared: VecDeque<(InstanceId, P)>,
    running: usize,
    per_task: HashMap<TaskId, usize>,
    failed: bool,
}

impl<P> Book<'_, P> {
    /// Records a finished instance and releases or skips what depends on it.
    fn finish(&mut self, id: InstanceId, outcome: Outcome, reporter: &mut dyn Reporter) {
        let success = outcome.status.is_success();
        reporter.finished(id, &outcome);
        self.states[id.index()] = State::Done(outcome);
        if success {
            let mut newly: Vec<InstanceId> = Vec::new();
            for &d in &self.dependents[id.index()] {
                if let State::Waiting { missing } = &mut self.states[d.index()] {
                    *missing -= 1;
                    if *missing == 0 {
                        newly.push(d);
                    }
                }
            }
            newly.sort_by_key(|d| self.rank[d.index()]);
            for d in newly {
                self.states[d.index()] = State::Ready;
                self.ready.push_back(d);
            }
        } else {
            self.failed = true;
            self.skip_dependents(
                id,
                &format!("dependency `{}` failed", self.graph.get(id).name),
                reporter,
            );
        }
    }

    /// Skips every transitive dependent of `id` that has not started.
    fn skip_dependents(&mut self, id: InstanceId, reason: &str, reporter: &mut dyn Reporter) {
        let mut stack: Vec<InstanceId> = self.dependents[id.index()].clone();
        while let Some(d) = stack.pop() {
            if matches!(
                self.states[d.index()],
                State::Waiting { .. } | State::Ready | State::Prepared
            ) {
                let o = Outcome::new(Status::Skipped {
                    reason: reason.to_owned(),
                });
                reporter.finished(d, &o);
                self.states[d.index()] = State::Done(o);
                stack.extend(self.dependents[d.index()].iter().copied());
            }
        }
    }

    fn dep_outcomes(&self, id: InstanceId) -> Vec<(InstanceId, &Outcome)> {
        self.graph
            .get(id)
            .deps
            .iter()
            .filter_map(|d| match &self.states[d.index()] {
                State::Done(o) => Some((*d, o)),
                _ => None,
            })
            .collect()
    }

    /// Prepared instances that could take a free slot (not held back by
    /// their task's `max_parallel`): the bound on checking ahead.
    fn startable(&self, project: &Project) -> usize {
        self.prepared
            .iter()
            .filter(|(id, _)| {
                let task = self.graph.get(*id).task;
                let busy = self.per_task.get(&task).copied().unwrap_or(0);
                project.task(task).max_parallel.is_none_or(|m| busy < m)
            })
            .count()
    }

    fn running_ctls(&self) -> impl Iterator<Item = &Arc<Control>> {
        self.states.iter().filter_map(|s| match s {
            State::Running { ctl, .. } => Some(ctl),
            _ => None,
        })
    }
}

/// Like [`run`], handing `on_start` a [`Canceller`] for this run first.
pub fn run_with<R: Runner>(
    project: &Project,
    graph: &InstanceGraph,
    runner: &R,
    reporter: &mut dyn Reporter,
    opts: &Options,
    on_start: impl FnOnce(Canceller),
) -> RunResult {
    let begin = Instant::now();
    let n = graph.instances.len();
    let order = graph.topo_order();
    let mut rank = vec![0; n];
    for (r, id) in order.iter().enumerate() {
        rank[id.index()] = r;
    }
    let mut book: Book<R::Prepared> = Book {
        graph,
        states: Vec::with_capacity(n),
        dependents: vec![Vec::new(); n],
        rank,
        ready: VecDeque::new(),
        prepared: VecDeque::new(),
        running: 0,
        per_task: HashMap::new(),
        failed: false,
    };
    reporter.plan(n - opts.done.len());
    let mut pre_skipped = Vec::new();
    for (i, inst) in graph.instances.iter().enumerate() {
        let id = InstanceId(i as u32);
        for d in &inst.deps {
            book.dependents[d.index()].push(id);
        }
        if let Some(o) = opts.done.get(&id) {
            book.states.push(State::Done(o.clone()));
            continue;
        }
        let satisfied = |d: &InstanceId| opts.done.get(d).is_some_and(|o| o.status.is_success());
        if let Some(f) = inst
            .deps
            .iter()
            .find(|d| opts.done.get(d).is_some_and(|o| !o.status.is_success()))
        {
            pre_skipped.push((id, *f));
        }
        let missing = inst.deps.iter().filter(|d| !satisfied(d)).count();
        book.states.push(State::Waiting { missing });
    }
    for (id, failed) in pre_skipped {
        if matches!(book.states[id.index()], State::Waiting { .. }) {
            let reason = format!("dependency `{}` failed", graph.get(failed).name);
            reporter.finished(
                id,
                &Outcome::new(Status::Skipped {
                    reason: reason.clone(),
                }),
            );
            book.states[id.index()] = State::Done(Outcome::new(Status::Skipped {
                reason: reason.clone(),
            }));
            book.skip_dependents(id, &reason, reporter);
        }
    }
    for id in &order {
        if let State::Waiting { missing: 0 } = book.states[id.index()] {
            book.states[id.index()] = State::Ready;
            book.ready.push_back(*id);
        }
    }

    let (tx, rx) = mpsc::channel::<Event>();
    on_start(Canceller(tx.clone()));
    let signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM]).ok();
    let signal_handle = signals.as_ref().map(|s| s.handle());
    let jobs = opts.jobs.max(1);
    let mut interrupted = false;
    let mut interrupt_at: Option<Instant> = None;
    let mut killed_hard = false;

    // A fixed pool of `jobs` workers; they log through the caller's subscriber.
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let (job_tx, job_rx) = mpsc::channel::<Job<R::Prepared>>();
    let job_rx = Mutex::new(job_rx);
    std::thread::scope(|scope| {
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
        let mut workers = 0;
        loop {
            let may_start = !interrupted && (!book.failed || opts.keep_going);
            if may_start {
                // Check ready instances: hits finish here; misses wait for a slot.
                // Instances ready together are independent: check them in parallel.
                while book.startable(project) < jobs
                    && !book.ready.is_empty()
                    && (!book.failed || opts.keep_going)
                {
                    let mut batch = Vec::new();
                    while batch.len() < CHECK_BATCH {
                        let Some(id) = book.ready.pop_front() else {
                            break;
                        };
                        if matches!(book.states[id.index()], State::Ready) {
                            batch.push(id);
                        }
                    }
                    let inputs: Vec<(InstanceId, Vec<(InstanceId, &Outcome)>)> = batch
                        .iter()
                        .map(|id| (*id, book.dep_outcomes(*id)))
                        .collect();
                    let check = |(id, deps): &(InstanceId, Vec<(InstanceId, &Outcome)>)| {
                        let began = Instant::now();
                        // Rayon's threads log through the caller's subscriber too.
                        let c = tracing::dispatcher::with_default(&dispatch, || {
                            runner.check(*id, deps)
                        });
                        (*id, began, c)
                    };
                    let checked: Vec<(InstanceId, Instant, Check<R::Prepared>)> =
                        if inputs.len() > 1 {
                            inputs.par_iter().map(check).collect()
                        } else {
                            inputs.iter().map(check).collect()
                        };
                    for (id, began, c) in checked {
                        match c {
                            Check::Done(mut outcome) => {
                                outcome.lane = Some((0, began, Instant::now()));
                                book.finish(id, outcome, reporter);
                            }
                            Check::Run(p) => {
                                book.states[id.index()] = State::Prepared;
                                book.prepared.push_back((id, p));
                            }
                        }
                    }
                }
                // Start prepared instances while slots are free.
                let mut deferred = VecDeque::new();
                while book.running < jobs && (!book.failed || opts.keep_going) {
                    let Some((id, p)) = book.prepared.pop_front() else {
                        break;
                    };
                    if !matches!(book.states[id.index()], State::Prepared) {
                        continue; // skipped while waiting
                    }
                    let inst = graph.get(id);
                    let task = project.task(inst.task);
                    let busy = book.per_task.get(&inst.task).copied().unwrap_or(0);
                    if task.max_parallel.is_some_and(|m| busy >= m) {
                        deferred.push_back((id, p));
                        continue;
                    }
                    *book.per_task.entry(inst.task).or_default() += 1;
                    book.running += 1;
                    let ctl = Arc::new(Control::default());
                    let deadline = task.timeout.map(|t| Instant::now() + t);
                    book.states[id.index()] = State::Running {
                        deadline,
                        ctl: ctl.clone(),
                    };
                    reporter.started(id);
                    if workers < jobs {
                        workers += 1;
                        let lane = workers;
                        let (tx, job_rx, dispatch) = (tx.clone(), &job_rx, dispatch.clone());
                        scope.spawn(move || worker(lane, runner, job_rx, tx, dispatch));
                    }
                    let _ = job_tx.send(Job {
                        id,
                        prepared: p,
                        ctl,
                    });
                }
                deferred.append(&mut book.prepared);
                book.prepared = deferred;
            }
            if may_start && !book.ready.is_empty() && book.startable(project) < jobs {
                continue; // a slot freed up: check more before waiting
            }
            if book.running == 0 {
                break;
            }

            // Wait for the next event, the nearest deadline, or a tick.
            let now = Instant::now();
            let mut wake = now + TICK;
            for s in &book.states {
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
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(Event::Output(id, stream, line)) => reporter.output(id, stream, &line),
                Ok(Event::Finished(id, mut outcome)) => {
                    book.running -= 1;
                    if let Some(c) = book.per_task.get_mut(&graph.get(id).task) {
                        *c -= 1;
                    }
                    let cancelled = matches!(&book.states[id.index()], State::Running { ctl, .. } if ctl.is_cancelled());
                    if (interrupted || cancelled)
                        && !outcome.status.is_success()
                        && outcome.status != Status::TimedOut
                    {
                        outcome.status = Status::Interrupted;
                    }
                    book.finish(id, outcome, reporter);
                }
                Ok(Event::Signal) => {
                    if !interrupted {
                        tracing::info!("interrupted: stopping every running task");
                        interrupted = true;
                        interrupt_at = Some(Instant::now());
                        book.running_ctls().for_each(|c| c.kill(libc::SIGTERM));
                    } else if !killed_hard {
                        killed_hard = true;
                        book.running_ctls().for_each(|c| c.kill(libc::SIGKILL));
                    }
                }
                Ok(Event::Cancel(ids)) => {
                    for id in ids {
                        match &book.states[id.index()] {
                            State::Running { ctl, .. } => ctl.kill(libc::SIGKILL),
                            State::Waiting { .. } | State::Ready | State::Prepared => {
                                let reason = "cancelled by a change";
                                let o = Outcome::new(Status::Skipped {
                                    reason: reason.into(),
                                });
                                reporter.finished(id, &o);
                                book.states[id.index()] = State::Done(o);
                                book.skip_dependents(id, reason, reporter);
                            }
                            State::Done(_) => {}
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => reporter.tick(),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            for s in &book.states {
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
                book.running_ctls().for_each(|c| c.kill(libc::SIGKILL));
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
    for id in order {
        if !matches!(book.states[id.index()], State::Done(_)) {
            let o = Outcome::new(Status::Skipped {
                reason: reason.to_owned(),
            });
            reporter.finished(id, &o);
            book.states[id.index()] = State::Done(o);
        }
    }
    let outcomes = book
        .states
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

/// One worker of the pool: runs jobs until the queue closes.
fn worker<R: Runner>(
    lane: usize,
    runner: &R,
    jobs: &Mutex<mpsc::Receiver<Job<R::Prepared>>>,
    tx: mpsc::Sender<Event>,
    dispatch: tracing::Dispatch,
) {
    let _log = tracing::dispatcher::set_default(&dispatch);
    loop {
        let job = match jobs.lock().expect("job queue").recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let Job { id, prepared, ctl } = job;
        let out_tx = tx.clone();
        let sink = move |stream: Stream, line: &[u8]| {
            let _ = out_tx.send(Event::Output(id, stream, line.to_vec()));
        };
        let began = Instant::now();
        let mut outcome = runner.run(id, prepared, &ctl, &sink);
        outcome.lane = Some((lane, began, Instant::now()));
        if ctl.is_timed_out() && !outcome.status.is_success() {
            outcome.status = Status::TimedOut;
        }
        let _ = tx.send(Event::Finished(id, outcome));
    }
}
