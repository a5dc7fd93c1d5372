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
//! `Scheduler::work` is the loop: `check_ready`
//! (cache checks, on the scheduler's own thread or in parallel batches, so a
//! run of hits never hands work between threads),
//! `start_prepared` (misses go to a fixed pool
//! of `-j` workers), then `wait` for one event and
//! `handle` it.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::Scope;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::process::Control;
use crate::capture::Stream;
use crate::config::{Project, TaskId};
use crate::graph::{InstanceGraph, InstanceId};
use crate::outcome::{Outcome, RunResult, Status};
use crate::report::{Fanout, Reporter};

/// Most ready instances checked in one parallel batch.
const CHECK_BATCH: usize = 256;

/// How often the reporters get a chance to redraw while nothing happens.
const TICK: Duration = Duration::from_millis(250);

/// What the check of a ready instance decided.
pub enum Check<P> {
    /// Finished without running (a cache hit): here is the outcome.
    Done(Box<Outcome>),
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
    /// Called with a batch of ready instances (each with its dependencies'
    /// outcomes) before each is checked: a runner may look them up together
    /// (a remote cache, many requests in flight) rather than one by one.
    /// `dispatch` is the run's log subscriber, for work on other threads.
    fn prepare(
        &self,
        batch: &[(InstanceId, Vec<(InstanceId, &Outcome)>)],
        dispatch: &tracing::Dispatch,
    ) {
        let _ = (batch, dispatch);
    }
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
    /// Instances already finished before this run (watch mode re-runs only
    /// what a change affects): they are not run or reported again, and a
    /// success satisfies its dependents.
    pub done: HashMap<InstanceId, Outcome>,
    /// Watch mode: services stay up when their dependents are done (a
    /// change restarts them instead); the run then lasts until Ctrl-C.
    pub keep_services: bool,
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

    /// Runs these instances and their dependents again, now: stopped first
    /// if running; whatever else runs keeps running. Returns false if the
    /// run is already over.
    pub fn restart(&self, ids: Vec<InstanceId>) -> bool {
        self.0.send(Event::Restart(ids)).is_ok()
    }
}

/// Where one instance is in its life. Every instance ends `Done`, so
/// boxing the outcome would add an allocation each and save nothing.
#[allow(clippy::large_enum_variant)]
enum State {
    /// Waiting for `missing` dependencies to succeed.
    Waiting { missing: usize },
    /// All dependencies succeeded; queued to be checked.
    Ready,
    /// Checked: it must run, and waits in `prepared` for a free slot.
    Prepared,
    /// A worker owns it; `ctl` reaches its process group.
    Running {
        deadline: Option<Instant>,
        ctl: Arc<Control>,
    },
    /// Finished, with its outcome. Nothing changes it any more.
    Done(Outcome),
}

/// Work handed to the pool.
struct Job<P> {
    id: InstanceId,
    prepared: P,
    ctl: Arc<Control>,
}

/// What reaches the scheduler's thread.
enum Event {
    Output(InstanceId, Stream, Vec<u8>),
    Finished(InstanceId, Box<Outcome>),
    Signal(i32),
    Cancel(Vec<InstanceId>),
    /// A service's readiness check (TCP or HTTP) succeeded.
    Ready(InstanceId),
    /// Watch mode: run these (and their dependents) again.
    Restart(Vec<InstanceId>),
}

/// Bytes of task output that may wait between the workers and the
/// scheduler's thread, which shows it: past this, a worker waits before it
/// reads more. A slow reader of hotpass's own output (a pager, a slow CI
/// log) then slows the task's pipe instead of filling hotpass's memory.
const OUTPUT_BACKLOG: usize = 4 << 20;

/// What one line costs the backlog besides its bytes (its event): a task
/// printing empty lines is held back too.
const LINE_COST: usize = 64;

/// The output on its way to the scheduler's thread, in bytes; closed once
/// that thread stops reading, so that no worker waits for it then.
#[derive(Default)]
struct Backlog {
    queued: Mutex<Queued>,
    room: std::sync::Condvar,
}

#[derive(Default)]
struct Queued {
    bytes: usize,
    closed: bool,
}

impl Backlog {
    fn queued(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `n` bytes in, first waiting while the backlog is full (one
    /// line longer than the whole backlog still passes, alone).
    fn add(&self, n: usize) {
        let mut q = self.queued();
        while !q.closed && q.bytes > 0 && q.bytes + n > OUTPUT_BACKLOG {
            q = self.room.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        q.bytes += n;
    }

    /// Counts `n` bytes out: the scheduler showed them.
    fn done(&self, n: usize) {
        let mut q = self.queued();
        q.bytes = q.bytes.saturating_sub(n);
        drop(q);
        self.room.notify_all();
    }

    /// Nobody reads any more: nobody waits either.
    fn close(&self) {
        self.queued().closed = true;
        self.room.notify_all();
    }
}

/// A running service: when it must be ready, and what its dependents see.
struct ServiceRun {
    ready_by: Instant,
    /// Once ready: the outcome its dependents read (its result digest).
    ready: Option<Outcome>,
    /// hotpass stopped it (its dependents are done): not a failure.
    stopping: bool,
    /// It was not ready in time.
    not_ready: bool,
}

/// Polls a TCP or HTTP readiness check until it succeeds (then says so),
/// the service stops, or its time runs out.
fn probe(
    id: InstanceId,
    ready: crate::config::Ready,
    until: Instant,
    ctl: Arc<Control>,
    tx: mpsc::Sender<Event>,
) {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let check = || -> bool {
        match &ready {
            crate::config::Ready::Tcp(port) => {
                TcpStream::connect_timeout(&([127, 0, 0, 1], *port).into(), Duration::from_secs(1))
                    .is_ok()
            }
            crate::config::Ready::Http(url) => {
                let rest = url.trim_start_matches("http://");
                let (host, path) = rest
                    .split_once('/')
                    .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
                let addr = if host.contains(':') {
                    host.to_owned()
                } else {
                    format!("{host}:80")
                };
                let Ok(addrs) = std::net::ToSocketAddrs::to_socket_addrs(&addr) else {
                    return false;
                };
                addrs.into_iter().any(|a| {
                    let Ok(mut s) = TcpStream::connect_timeout(&a, Duration::from_secs(1)) else {
                        return false;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let req =
                        format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
                    let mut head = [0u8; 16];
                    s.write_all(req.as_bytes()).is_ok()
                        && s.read(&mut head).is_ok_and(|n| {
                            let line = String::from_utf8_lossy(&head[..n]);
                            line.starts_with("HTTP/")
                                && line
                                    .split_whitespace()
                                    .nth(1)
                                    .is_some_and(|c| c.starts_with('2'))
                        })
                })
            }
            _ => false,
        }
    };
    while Instant::now() < until && !ctl.is_cancelled() {
        if check() {
            let _ = tx.send(Event::Ready(id));
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs every instance of `graph`, dependencies first.
pub fn run<R: Runner>(
    project: &Project,
    graph: &InstanceGraph,
    runner: &R,
    reporters: &mut Fanout,
    opts: &Options,
) -> RunResult {
    run_with(project, graph, runner, reporters, opts, |_| {})
}

/// Like [`run`], handing `on_start` a [`Canceller`] for this run first.
pub fn run_with<R: Runner>(
    project: &Project,
    graph: &InstanceGraph,
    runner: &R,
    reporters: &mut Fanout,
    opts: &Options,
    on_start: impl FnOnce(Canceller),
) -> RunResult {
    let begin = Instant::now();
    // Orphans of tasks come back to hotpass, to be stopped with their task.
    super::orphans::become_subreaper();
    let (tx, rx) = mpsc::channel::<Event>();
    on_start(Canceller(tx.clone()));
    let mut s = Scheduler::new(project, graph, reporters, opts);
    s.probes = Some(tx.clone());
    let signals = signal_hook::iterator::Signals::new(crate::error::STOP_SIGNALS).ok();
    let signal_handle = signals.as_ref().map(|s| s.handle());
    let (job_tx, job_rx) = mpsc::channel();
    let job_rx = Mutex::new(job_rx);
    let backlog = Arc::clone(&s.backlog);
    /// Closes the backlog when the scheduler's loop ends, however it ends:
    /// a worker waiting for room must not keep the scope open.
    struct CloseBacklog(Arc<Backlog>);
    impl Drop for CloseBacklog {
        fn drop(&mut self) {
            self.0.close();
        }
    }
    /// Ends the signal thread when the scope ends, however it ends: a
    /// panic in the loop below must not leave the scope waiting for it.
    struct CloseSignals(Option<signal_hook::iterator::Handle>);
    impl Drop for CloseSignals {
        fn drop(&mut self) {
            if let Some(h) = &self.0 {
                h.close();
            }
        }
    }
    std::thread::scope(|scope| {
        let _close = CloseSignals(signal_handle);
        if let Some(mut signals) = signals {
            let tx = tx.clone();
            scope.spawn(move || {
                for signal in signals.forever() {
                    if tx.send(Event::Signal(signal)).is_err() {
                        return;
                    }
                }
            });
        }
        let mut pool = Pool::new(scope, runner, job_tx, &job_rx, tx.clone(), &backlog, s.jobs);
        let _close_backlog = CloseBacklog(backlog);
        s.work(runner, &mut pool, &rx);
        pool.close();
    });
    // Nothing a task started outlives the run.
    super::orphans::stop(
        None,
        project.settings.stop_signal,
        project.settings.stop_timeout,
    );
    s.into_result(begin)
}

/// A fixed pool of at most `-j` workers, started as the first misses need
/// them (a run of cache hits starts none); they log through the caller's
/// tracing subscriber.
struct Pool<'scope, 'env, R: Runner> {
    scope: &'scope Scope<'scope, 'env>,
    runner: &'env R,
    queue: &'env Mutex<mpsc::Receiver<Job<R::Prepared>>>,
    jobs: Option<mpsc::Sender<Job<R::Prepared>>>,
    events: mpsc::Sender<Event>,
    backlog: Arc<Backlog>,
    workers: usize,
    size: usize,
    dispatch: tracing::Dispatch,
}

impl<'scope, 'env, R: Runner> Pool<'scope, 'env, R> {
    fn new(
        scope: &'scope Scope<'scope, 'env>,
        runner: &'env R,
        job_tx: mpsc::Sender<Job<R::Prepared>>,
        queue: &'env Mutex<mpsc::Receiver<Job<R::Prepared>>>,
        events: mpsc::Sender<Event>,
        backlog: &Arc<Backlog>,
        size: usize,
    ) -> Self {
        Pool {
            scope,
            runner,
            queue,
            jobs: Some(job_tx),
            events,
            backlog: Arc::clone(backlog),
            workers: 0,
            size,
            dispatch: tracing::dispatcher::get_default(|d| d.clone()),
        }
    }

    /// Hands a job to the pool, starting a worker while fewer than `-j` run.
    fn submit(&mut self, job: Job<R::Prepared>) {
        if self.workers < self.size {
            self.workers += 1;
            let (lane, runner, queue) = (self.workers, self.runner, self.queue);
            let (events, dispatch) = (self.events.clone(), self.dispatch.clone());
            let backlog = Arc::clone(&self.backlog);
            self.scope
                .spawn(move || worker(lane, runner, queue, events, &backlog, dispatch));
        }
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Closes the queue: each worker ends after its current job.
    fn close(&mut self) {
        self.jobs = None;
    }
}

/// One worker of the pool: runs jobs until the queue closes.
fn worker<R: Runner>(
    lane: usize,
    runner: &R,
    queue: &Mutex<mpsc::Receiver<Job<R::Prepared>>>,
    events: mpsc::Sender<Event>,
    backlog: &Backlog,
    dispatch: tracing::Dispatch,
) {
    let _log = tracing::dispatcher::set_default(&dispatch);
    loop {
        let job = match queue.lock().expect("job queue").recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let Job { id, prepared, ctl } = job;
        let out = events.clone();
        let sink = move |stream: Stream, line: &[u8]| {
            backlog.add(line.len() + LINE_COST);
            let _ = out.send(Event::Output(id, stream, line.to_vec()));
        };
        let began = Instant::now();
        let mut outcome = runner.run(id, prepared, &ctl, &sink);
        outcome.lane = Some((lane, began, Instant::now()));
        // A timed-out instance is reported so, even if its stop handler
        // exited 0: it did not finish its work in time.
        if ctl.is_timed_out() {
            outcome.status = Status::TimedOut;
        }
        let _ = events.send(Event::Finished(id, Box::new(outcome)));
    }
}

/// The scheduler's state, owned by its thread.
struct Scheduler<'a, 'r, P> {
    project: &'a Project,
    graph: &'a InstanceGraph,
    reporters: &'a mut Fanout<'r>,
    opts: &'a Options,
    jobs: usize,
    states: Vec<State>,
    /// Each instance's position in the dependency order (earlier first).
    rank: Vec<usize>,
    ready: VecDeque<InstanceId>,
    prepared: VecDeque<(InstanceId, P)>,
    running: usize,
    /// The instances running now (`State::Running`): what deadlines and
    /// waits look at, so an event costs the running, not the whole graph.
    live: Vec<InstanceId>,
    per_task: HashMap<TaskId, usize>,
    failed: bool,
    interrupted: bool,
    /// The first signal that stopped the run.
    signal: Option<i32>,
    killed_hard: bool,
    dispatch: tracing::Dispatch,
    /// Each running service's state, by instance.
    /// Boxed: nearly every instance is not a service.
    services: Vec<Option<Box<ServiceRun>>>,
    /// Where readiness probes report.
    probes: Option<mpsc::Sender<Event>>,
    /// Output the workers sent that this thread has not shown yet.
    backlog: Arc<Backlog>,
    /// The services started in this run (their states are in `services`).
    service_ids: Vec<InstanceId>,
    /// Running instances stopped to be started again when they end.
    restart_pending: std::collections::HashSet<InstanceId>,
}

impl<'a, 'r, P: Send> Scheduler<'a, 'r, P> {
    /// The starting states: instances finished before this run are done,
    /// those behind a failure among them are skipped, and those with every
    /// dependency satisfied are ready.
    fn new(
        project: &'a Project,
        graph: &'a InstanceGraph,
        reporters: &'a mut Fanout<'r>,
        opts: &'a Options,
    ) -> Self {
        let mut rank = vec![0; graph.len()];
        for (r, id) in graph.order().iter().enumerate() {
            rank[id.index()] = r;
        }
        reporters.plan(graph.len() - opts.done.len());
        let mut s = Scheduler {
            project,
            graph,
            reporters,
            opts,
            jobs: opts.jobs.max(1),
            states: Vec::with_capacity(graph.len()),
            rank,
            ready: VecDeque::new(),
            prepared: VecDeque::new(),
            running: 0,
            live: Vec::new(),
            per_task: HashMap::new(),
            failed: false,
            interrupted: false,
            signal: None,
            killed_hard: false,
            services: (0..graph.len()).map(|_| None).collect(),
            probes: None,
            backlog: Arc::default(),
            restart_pending: Default::default(),
            service_ids: Vec::new(),
            dispatch: tracing::dispatcher::get_default(|d| d.clone()),
        };
        let mut behind_failure = Vec::new();
        for (id, inst) in graph.iter() {
            if let Some(o) = opts.done.get(&id) {
                s.states.push(State::Done(o.clone()));
                continue;
            }
            let done = |d: &InstanceId| opts.done.get(d).map(|o| o.status.is_success());
            if let Some(f) = inst.deps.iter().find(|d| done(d) == Some(false)) {
                behind_failure.push((id, *f));
            }
            let missing = inst.deps.iter().filter(|d| done(d) != Some(true)).count();
            s.states.push(State::Waiting { missing });
        }
        for (id, failed) in behind_failure {
            if matches!(s.states[id.index()], State::Waiting { .. }) {
                let reason = format!("dependency `{}` failed", graph.get(failed).name);
                s.skip(id, &reason);
            }
        }
        for &id in graph.order() {
            if let State::Waiting { missing: 0 } = s.states[id.index()] {
                s.states[id.index()] = State::Ready;
                s.ready.push_back(id);
            }
        }
        s
    }

    /// The loop: check and start what may start, then wait for an event,
    /// until nothing runs and nothing more may start.
    fn work<R: Runner<Prepared = P>>(
        &mut self,
        runner: &R,
        pool: &mut Pool<'_, '_, R>,
        events: &mpsc::Receiver<Event>,
    ) {
        loop {
            if self.may_start() {
                // One batch at a time: a miss found in it starts at once
                // and runs while the next batches are checked, and what
                // the running ones said meanwhile is acted on.
                self.check_ready(runner);
                self.start_prepared(pool);
                if !self.ready.is_empty() && self.startable() < self.jobs {
                    while let Ok(event) = events.try_recv() {
                        self.handle(event);
                    }
                    self.enforce_deadlines();
                    continue; // slots to fill: check more before waiting
                }
            }
            if self.running == 0 {
                return;
            }
            match self.wait(events) {
                Some(event) => self.handle(event),
                None => self.reporters.tick(),
            }
            self.enforce_deadlines();
        }
    }

    /// Whether new instances may be checked and started.
    fn may_start(&self) -> bool {
        !self.interrupted && (!self.failed || self.opts.keep_going)
    }

    /// Prepared instances that could take a free slot (not held back by
    /// their task's `max_parallel`): the bound on checking ahead.
    fn startable(&self) -> usize {
        self.prepared
            .iter()
            .filter(|(id, _)| self.under_task_limit(*id))
            .count()
    }

    /// Whether `id`'s task may start one more instance.
    fn under_task_limit(&self, id: InstanceId) -> bool {
        let task = self.graph.get(id).task;
        let busy = self.per_task.get(&task).copied().unwrap_or(0);
        self.project
            .task(task)
            .max_parallel
            .is_none_or(|m| busy < m)
    }

    /// Checks one batch of ready instances when fewer than `-j` could
    /// start: hits finish here, misses become Prepared.
    fn check_ready<R: Runner<Prepared = P>>(&mut self, runner: &R) {
        if self.startable() < self.jobs && !self.ready.is_empty() && self.may_start() {
            let batch = self.pop_ready_batch();
            for (id, began, check) in self.check_batch(runner, &batch) {
                match check {
                    Check::Done(mut outcome) => {
                        tracing::debug!("{}: finished by its check", self.graph.get(id).name);
                        outcome.lane = Some((0, began, Instant::now()));
                        // Consumers see every instance begin and end, hits too.
                        self.reporters.started(id);
                        self.complete(id, *outcome);
                    }
                    Check::Run(p) => {
                        tracing::debug!(
                            "{}: prepared, waiting for a slot",
                            self.graph.get(id).name
                        );
                        self.states[id.index()] = State::Prepared;
                        self.prepared.push_back((id, p));
                    }
                }
            }
        }
    }

    /// Up to [`CHECK_BATCH`] ready instances, in readiness order.
    fn pop_ready_batch(&mut self) -> Vec<InstanceId> {
        let mut batch = Vec::new();
        while batch.len() < CHECK_BATCH {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            if matches!(self.states[id.index()], State::Ready) {
                batch.push(id);
            }
        }
        batch
    }

    /// Checks a batch: instances ready together are independent, so more
    /// than one is checked in parallel.
    fn check_batch<R: Runner<Prepared = P>>(
        &self,
        runner: &R,
        batch: &[InstanceId],
    ) -> Vec<(InstanceId, Instant, Check<P>)> {
        let inputs: Vec<(InstanceId, Vec<(InstanceId, &Outcome)>)> = batch
            .iter()
            .map(|id| (*id, self.dep_outcomes(*id)))
            .collect();
        let dispatch = &self.dispatch;
        runner.prepare(&inputs, dispatch);
        let check = |(id, deps): &(InstanceId, Vec<(InstanceId, &Outcome)>)| {
            let began = Instant::now();
            (*id, began, runner.check(*id, deps))
        };
        if inputs.len() > 1 {
            // Rayon's threads log through the caller's subscriber too: set
            // once for each piece of the batch a thread takes, not per check.
            inputs
                .par_iter()
                .map_init(
                    || tracing::dispatcher::set_default(dispatch),
                    |_, i| check(i),
                )
                .collect()
        } else {
            tracing::dispatcher::with_default(dispatch, || inputs.iter().map(check).collect())
        }
    }

    fn dep_outcomes(&self, id: InstanceId) -> Vec<(InstanceId, &Outcome)> {
        self.graph
            .get(id)
            .deps
            .iter()
            .filter_map(|d| match &self.states[d.index()] {
                State::Done(o) => Some((*d, o)),
                // A ready service: what it offers its dependents.
                State::Running { .. } => self.services[d.index()]
                    .as_ref()
                    .and_then(|s| s.ready.as_ref())
                    .map(|o| (*d, o)),
                _ => None,
            })
            .collect()
    }

    /// Starts prepared instances while slots are free; those held back by
    /// their task's `max_parallel` keep their place.
    fn start_prepared<R: Runner<Prepared = P>>(&mut self, pool: &mut Pool<'_, '_, R>) {
        let mut deferred = VecDeque::new();
        while self.running < self.jobs && self.may_start() {
            let Some((id, p)) = self.prepared.pop_front() else {
                break;
            };
            if !matches!(self.states[id.index()], State::Prepared) {
                continue; // skipped while waiting
            }
            if !self.under_task_limit(id) {
                deferred.push_back((id, p));
                continue;
            }
            self.start(id, p, pool);
        }
        deferred.append(&mut self.prepared);
        self.prepared = deferred;
    }

    /// Hands `id` to a worker.
    fn start<R: Runner<Prepared = P>>(&mut self, id: InstanceId, p: P, pool: &mut Pool<'_, '_, R>) {
        let task = self.graph.get(id).task;
        *self.per_task.entry(task).or_default() += 1;
        self.running += 1;
        self.live.push(id);
        let t = self.project.task(task);
        let ctl = Arc::new(Control::new(
            t.stop_signal.unwrap_or(self.project.settings.stop_signal),
            t.stop_timeout.unwrap_or(self.project.settings.stop_timeout),
        ));
        let deadline = t.timeout.and_then(|t| Instant::now().checked_add(t));
        self.states[id.index()] = State::Running {
            deadline,
            ctl: ctl.clone(),
        };
        tracing::debug!(
            "{}: started ({} running of -j {})",
            self.graph.get(id).name,
            self.running,
            self.jobs
        );
        self.reporters.started(id);
        if let Some(service) = &self.project.task(task).service {
            if !self.service_ids.contains(&id) {
                self.service_ids.push(id);
            }
            self.services[id.index()] = Some(Box::new(ServiceRun {
                ready_by: Instant::now() + service.ready_timeout,
                ready: None,
                stopping: false,
                not_ready: false,
            }));
            match &service.ready {
                crate::config::Ready::Started => self.serving(id),
                crate::config::Ready::Log(_) => {}
                r => {
                    if let Some(tx) = self.probes.clone() {
                        let (r, until, c) = (
                            r.clone(),
                            Instant::now() + service.ready_timeout,
                            ctl.clone(),
                        );
                        std::thread::spawn(move || probe(id, r, until, c, tx));
                    }
                }
            }
        }
        pool.submit(Job {
            id,
            prepared: p,
            ctl,
        });
    }

    /// Waits for the next event, until the nearest deadline or a tick;
    /// `None` when the time came first.
    fn wait(&self, events: &mpsc::Receiver<Event>) -> Option<Event> {
        let now = Instant::now();
        let mut wake = now + TICK;
        for id in &self.live {
            let (s, svc) = (&self.states[id.index()], &self.services[id.index()]);
            if let State::Running { deadline, ctl } = s {
                let ready_by = svc
                    .as_ref()
                    .filter(|s| s.ready.is_none())
                    .map(|s| s.ready_by);
                for d in [*deadline, ctl.escalates_at(), ready_by]
                    .into_iter()
                    .flatten()
                {
                    wake = wake.min(d);
                }
            }
        }
        events
            .recv_timeout(wake.saturating_duration_since(now))
            .ok()
    }

    /// Acts on one event.
    fn handle(&mut self, event: Event) {
        match event {
            Event::Output(id, stream, line) => {
                self.reporters.output(id, stream, &line);
                self.backlog.done(line.len() + LINE_COST);
                let task = self.project.task(self.graph.get(id).task);
                if let Some(crate::config::Service {
                    ready: crate::config::Ready::Log(re),
                    ..
                }) = &task.service
                    && self.services[id.index()]
                        .as_ref()
                        .is_some_and(|s| s.ready.is_none())
                    && re.is_match(&String::from_utf8_lossy(&line))
                {
                    self.serving(id);
                }
            }
            Event::Ready(id) => {
                if self.services[id.index()]
                    .as_ref()
                    .is_some_and(|s| s.ready.is_none())
                    && matches!(self.states[id.index()], State::Running { .. })
                {
                    self.serving(id);
                }
            }
            Event::Finished(id, outcome) => self.finished(id, *outcome),
            Event::Signal(signal) => {
                self.signal.get_or_insert(signal);
                self.interrupt();
            }
            Event::Cancel(ids) => ids.into_iter().for_each(|id| self.cancel(id)),
            Event::Restart(ids) => self.restart(ids),
        }
    }

    /// A worker finished `id`: free its slot and record the outcome (a
    /// failure of a cancelled or interrupted instance is an interruption).
    fn finished(&mut self, id: InstanceId, mut outcome: Outcome) {
        self.running -= 1;
        if let Some(at) = self.live.iter().position(|l| *l == id) {
            self.live.swap_remove(at);
        }
        if let Some(c) = self.per_task.get_mut(&self.graph.get(id).task) {
            *c -= 1;
        }
        if self.restart_pending.remove(&id) {
            // Stopped to run again: said as interrupted, then queued anew.
            self.services[id.index()] = None;
            outcome.status = Status::Interrupted;
            self.reporters.finished(id, &outcome);
            self.requeue(id);
            return;
        }
        let cancelled =
            matches!(&self.states[id.index()], State::Running { ctl, .. } if ctl.is_cancelled());
        if let Some(svc) = self.services[id.index()].take() {
            let name = &self.graph.get(id).name;
            // Said like its own output: live, and kept with the outcome.
            let reporters = &mut self.reporters;
            let mut note = |text: String| {
                reporters.output(id, Stream::Stderr, text.trim_end().as_bytes());
                outcome.output.push(Stream::Stderr, text.as_bytes());
            };
            if svc.stopping && svc.ready.is_some() {
                // hotpass stopped it: its dependents are done.
                outcome.status = Status::Ok;
            } else if svc.not_ready {
                let t = self.project.task(self.graph.get(id).task);
                let limit = t
                    .service
                    .as_ref()
                    .map(|s| s.ready_timeout)
                    .unwrap_or_default();
                note(format!(
                    "hotpass: service {name} was not ready after {limit:?}\n"
                ));
                outcome.status = Status::Failed { code: None };
                // hotpass stopped it, but the failure is the service's.
                self.complete(id, outcome);
                return;
            } else if !self.interrupted && !cancelled {
                note(format!("hotpass: service {name} exited by itself\n"));
                if outcome.status.is_success() {
                    outcome.status = Status::Failed { code: None };
                }
            }
            if svc.ready.is_some() && outcome.status.is_success() {
                // Its dependents were released when it became ready.
                self.reporters.finished(id, &outcome);
                self.states[id.index()] = State::Done(outcome);
                return;
            }
        }
        if (self.interrupted || cancelled)
            && !outcome.status.is_success()
            && outcome.status != Status::TimedOut
        {
            outcome.status = Status::Interrupted;
        }
        self.complete(id, outcome);
    }

    /// Ctrl-C, SIGTERM or SIGHUP: the first stops every running group (its
    /// stop signal, then SIGKILL after its stop timeout); the second kills
    /// them all at once.
    fn interrupt(&mut self) {
        if !self.interrupted {
            tracing::info!("interrupted: stopping every running task");
            self.interrupted = true;
            for s in &self.states {
                if let State::Running { ctl, .. } = s {
                    ctl.stop();
                }
            }
        } else if !self.killed_hard {
            self.killed_hard = true;
            for s in &self.states {
                if let State::Running { ctl, .. } = s {
                    ctl.kill(libc::SIGKILL);
                }
            }
        }
    }

    /// Watch mode cancels `id`: stopped if running, skipped if not started.
    fn cancel(&mut self, id: InstanceId) {
        match &self.states[id.index()] {
            State::Running { ctl, .. } => ctl.stop(),
            State::Waiting { .. } | State::Ready | State::Prepared => {
                self.skip(id, "cancelled by a change");
            }
            State::Done(_) => {}
        }
    }

    /// Stops running instances past their deadline, and SIGKILLs those
    /// whose stop timeout has run out.
    fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        for &id in &self.live {
            let inst = self.graph.get(id);
            if let (Some(svc), State::Running { ctl, .. }) =
                (self.services[id.index()].as_mut(), &self.states[id.index()])
                && svc.ready.is_none()
                && !svc.not_ready
                && svc.ready_by <= now
            {
                tracing::warn!("{}: not ready in time; stopping it", inst.name);
                svc.not_ready = true;
                ctl.stop();
            }
            if let State::Running { deadline, ctl } = &self.states[id.index()] {
                if deadline.is_some_and(|d| d <= now) && !ctl.is_timed_out() {
                    ctl.time_out();
                }
                ctl.escalate_if_due(now, &inst.name);
            }
        }
    }

    /// A service is ready: its dependents may start (they read the outcome
    /// kept for them); it keeps running.
    fn serving(&mut self, id: InstanceId) {
        let inst = self.graph.get(id);
        tracing::info!("{}: ready", inst.name);
        let mut o = Outcome::new(Status::Ok);
        o.result = Some(
            blake3::hash(format!("service {} {:?}", inst.name, inst.resolved.commands).as_bytes())
                .to_hex()
                .to_string(),
        );
        if let Some(s) = self.services[id.index()].as_mut() {
            s.ready = Some(o);
        }
        self.release(id);
        self.stop_idle_services();
    }

    /// Stops each ready service whose dependents are all done (a service
    /// that no instance of the run depends on stays up until Ctrl-C).
    fn stop_idle_services(&mut self) {
        // Called after every instance ends: only the running services are
        // looked at, never the whole graph.
        if self.opts.keep_services || self.service_ids.is_empty() {
            return;
        }
        self.service_ids
            .retain(|id| self.services[id.index()].is_some());
        for id in self.service_ids.clone() {
            let Some(svc) = self.services[id.index()].as_mut() else {
                continue;
            };
            let deps = self.graph.dependents(id);
            let idle = svc.ready.is_some()
                && !svc.stopping
                && !deps.is_empty()
                && deps
                    .iter()
                    .all(|d| matches!(self.states[d.index()], State::Done(_)));
            if idle && let State::Running { ctl, .. } = &self.states[id.index()] {
                tracing::info!(
                    "{}: its dependents are done; stopping it",
                    self.graph.get(id).name
                );
                svc.stopping = true;
                ctl.stop();
            }
        }
    }

    /// Whether `d` satisfies its dependents: done well, or a ready service.
    fn satisfied(&self, d: InstanceId) -> bool {
        if self.restart_pending.contains(&d) {
            return false; // being stopped, to run again
        }
        match &self.states[d.index()] {
            State::Done(o) => o.status.is_success(),
            State::Running { .. } => self.services[d.index()]
                .as_ref()
                .is_some_and(|s| s.ready.is_some()),
            _ => false,
        }
    }

    /// Puts `id` back to waiting for its dependencies (ready if none is
    /// missing).
    fn requeue(&mut self, id: InstanceId) {
        let missing = self
            .graph
            .get(id)
            .deps
            .iter()
            .filter(|d| !self.satisfied(**d))
            .count();
        if missing == 0 {
            self.states[id.index()] = State::Ready;
            self.ready.push_back(id);
        } else {
            self.states[id.index()] = State::Waiting { missing };
        }
    }

    /// Watch mode: `ids` and everything that depends on them run again. A
    /// running one is stopped and queued again when it ends; the rest are
    /// queued now. Unrelated instances are left as they are.
    fn restart(&mut self, ids: Vec<InstanceId>) {
        let all = self.graph.with_dependents(ids);
        self.prepared.retain(|(id, _)| !all.contains(id));
        self.ready.retain(|id| !all.contains(id));
        // Dependencies first, so that each sees the others' new states.
        for &id in self.graph.order() {
            if !all.contains(&id) {
                continue;
            }
            match &self.states[id.index()] {
                State::Running { ctl, .. } => {
                    if self.restart_pending.insert(id) {
                        tracing::info!("{}: restarting", self.graph.get(id).name);
                        ctl.stop();
                    }
                }
                _ => {
                    self.states[id.index()] = State::Waiting {
                        missing: usize::MAX,
                    }
                }
            }
        }
        for &id in self.graph.order() {
            if all.contains(&id) && matches!(self.states[id.index()], State::Waiting { .. }) {
                self.requeue(id);
            }
        }
        // A failure among them no longer stops the run.
        self.failed = self
            .states
            .iter()
            .any(|s| matches!(s, State::Done(o) if o.status.is_failure()));
    }

    /// Lets `id`'s dependents whose dependencies are all satisfied start.
    fn release(&mut self, id: InstanceId) {
        let mut newly: Vec<InstanceId> = Vec::new();
        for &d in self.graph.dependents(id) {
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
    }

    /// Records a finished instance, then releases its dependents (in
    /// dependency order) or skips them.
    fn complete(&mut self, id: InstanceId, outcome: Outcome) {
        let success = outcome.status.is_success();
        tracing::debug!(
            "{}: done, {}",
            self.graph.get(id).name,
            outcome.status.word()
        );
        self.reporters.finished(id, &outcome);
        self.states[id.index()] = State::Done(outcome);
        if success {
            self.release(id);
        } else {
            self.failed = true;
            let reason = format!("dependency `{}` failed", self.graph.get(id).name);
            self.skip_dependents(id, &reason);
        }
        self.stop_idle_services();
    }

    /// Marks `id` skipped (it never started), and everything behind it.
    fn skip(&mut self, id: InstanceId, reason: &str) {
        tracing::debug!("{}: skipped, {reason}", self.graph.get(id).name);
        let o = Outcome::skipped(reason);
        self.reporters.finished(id, &o);
        self.states[id.index()] = State::Done(o);
        self.skip_dependents(id, reason);
    }

    /// Skips every transitive dependent of `id` that has not started.
    fn skip_dependents(&mut self, id: InstanceId, reason: &str) {
        let mut stack: Vec<InstanceId> = self.graph.dependents(id).to_vec();
        while let Some(d) = stack.pop() {
            if matches!(
                self.states[d.index()],
                State::Waiting { .. } | State::Ready | State::Prepared
            ) {
                let o = Outcome::skipped(reason);
                self.reporters.finished(d, &o);
                self.states[d.index()] = State::Done(o);
                stack.extend(self.graph.dependents(d).iter().copied());
            }
        }
    }

    /// Skips whatever never started (the run stopped) and hands back every outcome.
    fn into_result(mut self, begin: Instant) -> RunResult {
        let reason = if self.interrupted {
            "the run was interrupted"
        } else {
            "the run stopped after a failure"
        };
        for &id in self.graph.order() {
            if !matches!(self.states[id.index()], State::Done(_)) {
                let o = Outcome::skipped(reason);
                self.reporters.finished(id, &o);
                self.states[id.index()] = State::Done(o);
            }
        }
        let outcomes = self
            .states
            .into_iter()
            .map(|s| match s {
                State::Done(o) => o,
                _ => unreachable!("every instance is done"),
            })
            .collect();
        RunResult {
            outcomes,
            interrupted: self.interrupted,
            signal: self.signal,
            begin,
            elapsed: begin.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LoadOptions;
    use crate::graph::{PartitionArgs, parse_selectors};

    fn project(toml: &str) -> (tempfile::TempDir, Project, InstanceGraph) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hotpass.toml"), toml).unwrap();
        let project = crate::config::load(&LoadOptions {
            cwd: dir.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        let sel = parse_selectors(&project, &[]).unwrap();
        let graph = InstanceGraph::build(&project, &sel, &PartitionArgs::default(), None).unwrap();
        (dir, project, graph)
    }

    /// Finishes instances of tasks named `hit*` in the check, fails those
    /// named `bad*`, runs the rest.
    struct Fake<'a>(&'a InstanceGraph);

    impl Runner for Fake<'_> {
        type Prepared = ();
        fn check(&self, id: InstanceId, _: &[(InstanceId, &Outcome)]) -> Check<()> {
            if self.0.get(id).name.starts_with("hit") {
                Check::Done(Box::new(Outcome::new(Status::Cached)))
            } else {
                Check::Run(())
            }
        }
        fn run(
            &self,
            id: InstanceId,
            _: (),
            _: &Control,
            sink: &(dyn Fn(Stream, &[u8]) + Sync),
        ) -> Outcome {
            sink(Stream::Stdout, b"line\n");
            if self.0.get(id).name.starts_with("bad") {
                Outcome::new(Status::Failed { code: Some(1) })
            } else {
                Outcome::new(Status::Ok)
            }
        }
    }

    /// Writes every event it is told as a line.
    struct Log<'a>(&'a InstanceGraph, Arc<Mutex<Vec<String>>>);

    impl Reporter for Log<'_> {
        fn started(&mut self, id: InstanceId) {
            self.1
                .lock()
                .unwrap()
                .push(format!("start {}", self.0.get(id).name));
        }
        fn output(&mut self, id: InstanceId, _: Stream, _: &[u8]) {
            self.1
                .lock()
                .unwrap()
                .push(format!("output {}", self.0.get(id).name));
        }
        fn finished(&mut self, id: InstanceId, o: &Outcome) {
            let name = &self.0.get(id).name;
            self.1
                .lock()
                .unwrap()
                .push(format!("finish {name} {}", o.status.word()));
        }
    }

    fn run_logged(
        graph: &InstanceGraph,
        project: &Project,
        keep_going: bool,
    ) -> (RunResult, Vec<String>, Vec<String>) {
        let (a, b) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        let mut fan = Fanout::new(vec![
            Box::new(Log(graph, a.clone())),
            Box::new(Log(graph, b.clone())),
        ]);
        let opts = Options {
            jobs: 2,
            keep_going,
            done: HashMap::new(),
            keep_services: false,
        };
        let r = run(project, graph, &Fake(graph), &mut fan, &opts);
        drop(fan);
        let a = a.lock().unwrap().clone();
        let b = b.lock().unwrap().clone();
        (r, a, b)
    }

    /// A cache hit is reported as started, then finished, to every reporter
    /// of the fan-out, like an instance that ran, and before its dependents start.
    #[test]
    fn hits_are_reported_started_then_finished_to_every_reporter() {
        let (_dir, project, graph) = project(
            "[tasks.hit1]\nrun = \"true\"\n[tasks.after]\nrun = \"true\"\ndeps = [\"hit1\"]\n",
        );
        let (result, log, other) = run_logged(&graph, &project, false);
        assert_eq!(log, other, "every reporter hears the same events");
        let pos = |line: &str| {
            log.iter()
                .position(|l| l == line)
                .unwrap_or_else(|| panic!("{line} missing from {log:?}"))
        };
        assert!(pos("start hit1") < pos("finish hit1 cached"));
        assert!(pos("finish hit1 cached") < pos("start after"));
        assert!(pos("start after") < pos("output after"));
        assert!(pos("output after") < pos("finish after ok"));
        assert_eq!(log.len(), 5);
        assert!(!result.any_failed());
    }

    /// A failure skips its dependents (once each) and, without
    /// --keep-going, nothing new starts.
    #[test]
    fn a_failure_skips_dependents_once() {
        let (_dir, project, graph) = project(
            "[tasks.bad]\nrun = \"false\"\n[tasks.mid]\nrun = \"true\"\ndeps = [\"bad\"]\n[tasks.top]\nrun = \"true\"\ndeps = [\"mid\"]\n",
        );
        let (result, log, _) = run_logged(&graph, &project, false);
        assert!(result.any_failed());
        for name in ["mid", "top"] {
            let finished: Vec<&String> = log
                .iter()
                .filter(|l| l.starts_with(&format!("finish {name} ")))
                .collect();
            assert_eq!(finished, vec![&format!("finish {name} skipped")], "{log:?}");
            assert!(!log.contains(&format!("start {name}")));
        }
        let top = graph.iter().find(|(_, i)| i.name == "top").unwrap().0;
        assert_eq!(
            result.outcomes[top.index()].status,
            Status::Skipped {
                reason: "dependency `bad` failed".into()
            }
        );
    }

    /// A full backlog holds a worker back until the scheduler shows some
    /// output, or stops reading; a line longer than the whole backlog
    /// passes alone.
    #[test]
    fn a_full_output_backlog_waits_for_room_or_its_close() {
        use std::sync::mpsc::RecvTimeoutError;
        let long = Duration::from_secs(10);
        let backlog = Arc::new(Backlog::default());
        backlog.add(OUTPUT_BACKLOG * 2); // alone: passes at once
        let (tx, rx) = mpsc::channel();
        let b = Arc::clone(&backlog);
        let waiting = std::thread::spawn(move || {
            b.add(1);
            tx.send(()).unwrap();
            b.add(OUTPUT_BACKLOG);
            tx.send(()).unwrap();
        });
        // Held back while full (it can only be early if the backlog is broken).
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(100)),
            Err(RecvTimeoutError::Timeout)
        );
        backlog.done(OUTPUT_BACKLOG * 2);
        rx.recv_timeout(long).expect("room made: the line passes");
        // Full again (1 + OUTPUT_BACKLOG > OUTPUT_BACKLOG): held until closed.
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(100)),
            Err(RecvTimeoutError::Timeout)
        );
        backlog.close();
        rx.recv_timeout(long).expect("closed: nobody waits");
        waiting.join().unwrap();
    }
}
