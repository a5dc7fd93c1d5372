//! The work of one instance: answer from the cache when its key is known and
//! stored, otherwise run its commands in turn and store the success.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use super::process::{self, Control, Spec};
use super::scheduler::{Check, Runner};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;

use crate::cache::key::{CacheKey, KeyView, Scan, dep_digests, dep_key_tag, result_of};
use crate::cache::policy::{Blobs, Decision, Reason};
use crate::cache::{Cache, Success};
use crate::capture::{Captured, Stream};
use crate::config::Project;
use crate::graph::{Instance, InstanceGraph, InstanceId};
use crate::outcome::{Outcome, Span, Status};
use crate::warning::Warning;

/// Variables every task sees in strict env mode.
const BASE_ENV: &[&str] = &["PATH", "HOME", "USER", "LANG", "TERM", "TMPDIR", "SHELL"];

/// In strict env mode, what a task inherits from hotpass: the base set
/// (with `LC_*`), its `$NAME` inputs and its `pass_env` globs. `None` when
/// the mode is loose (it inherits everything).
fn inherited(inst: &Instance) -> Option<Vec<(OsString, OsString)>> {
    let pass = inst.resolved.pass_env.as_ref()?;
    let mut globs = globset::GlobSetBuilder::new();
    for p in pass {
        if let Ok(g) = globset::Glob::new(p) {
            globs.add(g);
        }
    }
    let globs = globs.build().unwrap_or_else(|_| globset::GlobSet::empty());
    let named = &inst.resolved.env_inputs;
    Some(
        std::env::vars_os()
            .filter(|(k, _)| {
                let k = k.to_string_lossy();
                BASE_ENV.contains(&k.as_ref())
                    || k.starts_with("LC_")
                    || named.iter().any(|n| *n == k)
                    || globs.is_match(k.as_ref())
            })
            .collect(),
    )
}

/// What tells common tools to colour their output though it goes to a pipe.
const COLOR_ENV: &[(&str, &str)] = &[
    ("FORCE_COLOR", "1"),
    ("CLICOLOR_FORCE", "1"),
    ("CARGO_TERM_COLOR", "always"),
    ("PY_COLORS", "1"),
];

/// How an instance's processes are watched or confined.
#[derive(Default, Clone, Copy)]
pub struct Confinement<'a> {
    /// Record every file they touch.
    pub audit: Option<&'a crate::audit::notify::Recorder>,
    /// Enforce this sandbox.
    pub sandbox: Option<&'a crate::sandbox::Prepared>,
}

/// Runs an instance's commands in turn, stopping at the first failure.
/// With `color`, the commands are asked for colour (unless the task says
/// `color = false`); the task's own `env` still wins.
pub fn execute(
    inst: &Instance,
    color: bool,
    traceparent: Option<String>,
    ctl: &Control,
    sink: &(dyn Fn(Stream, &[u8]) + Sync),
    confine: Confinement,
) -> Outcome {
    let r = &inst.resolved;
    let mut env: Vec<(String, String)> = Vec::with_capacity(r.env.len() + 5);
    if color && r.color {
        env.extend(
            COLOR_ENV
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
    }
    env.extend(r.env.iter().cloned());
    env.push(("HOTPASS_TASK".into(), inst.name.clone()));
    // The task's own span in the run's trace; never part of the key.
    if let Some(tp) = traceparent {
        env.push(("TRACEPARENT".into(), tp));
    }
    if let Some(sandbox) = confine.sandbox {
        // The one folder a sandboxed task may write besides its outputs.
        let tmp = sandbox.tmp().to_string_lossy().into_owned();
        for var in ["TMPDIR", "TMP", "TEMP"] {
            env.push((var.into(), tmp.clone()));
        }
    }
    let inherit_only = inherited(inst);
    let captured: Mutex<Captured> = Mutex::new(Captured::default());
    let denied = std::sync::atomic::AtomicBool::new(false);
    let capture = |stream: Stream, line: &[u8]| {
        if confine.sandbox.is_some() && crate::sandbox::looks_denied(line) {
            denied.store(true, Relaxed);
        }
        captured.lock().expect("capture lock").push(stream, line);
        sink(stream, line);
    };
    let start = Instant::now();
    let mut status = Status::Ok;
    for command in &r.commands {
        if ctl.is_cancelled() {
            status = Status::Interrupted;
            break;
        }
        let spec = Spec {
            command,
            cwd: &r.cwd,
            env: &env,
            inherit_only: inherit_only.as_deref(),
            audit: confine.audit,
            landlock: confine.sandbox.map(|s| s.ruleset()),
        };
        match process::run(&spec, ctl, &capture) {
            Ok(s) if s.success() => {}
            Ok(s) => {
                status = Status::Failed { code: s.code() };
                break;
            }
            Err(err) => {
                let msg = format!(
                    "hotpass: could not start `sh -c {command}` in {}: {err}\n",
                    r.cwd.display()
                );
                capture(Stream::Stderr, msg.as_bytes());
                status = Status::Failed { code: None };
                break;
            }
        }
    }
    if matches!(status, Status::Failed { .. }) && confine.sandbox.is_some() {
        let msg = if denied.load(Relaxed) {
            tracing::warn!(
                "{0}: the sandbox denied an access; `hotpass audit {0}` shows every file it touches",
                inst.name
            );
            format!(
                "hotpass: the sandbox denied an access: {0} may read or write a file it does \
                 not declare. Run `hotpass audit {0}` to see every file it touches.\n",
                inst.name
            )
        } else {
            format!(
                "hotpass: {0} ran in the sandbox; if it failed to open a file, run \
                 `hotpass audit {0}` to see every file it touches.\n",
                inst.name
            )
        };
        capture(Stream::Stderr, msg.as_bytes());
    }
    let mut outcome = Outcome::new(status);
    outcome.duration = start.elapsed();
    outcome.output = captured.into_inner().expect("capture lock");
    outcome
}

/// The runner `hotpass run` and watch mode use: compute the key, answer
/// from the cache when [`Cache::decide`] says so, otherwise execute and
/// store the success.
pub struct CachedRunner<'a> {
    project: &'a Project,
    graph: &'a InstanceGraph,
    cache: Cache,
    /// Whether hotpass's own output is coloured: tasks are asked for colour.
    color: bool,
    hits: AtomicUsize,
    misses: AtomicUsize,
    /// Keys computed ahead of their checks, by [`Runner::prepare`].
    ahead: Mutex<HashMap<InstanceId, Computed>>,
    /// This run's invocation id, stored with every entry it stores.
    invocation: String,
    /// The run's trace, when exported: each task learns its span.
    telemetry: Option<std::sync::Arc<crate::report::telemetry::Telemetry>>,
    /// For each instance, whether it runs under the input audit.
    audited: Vec<bool>,
    /// Each audited instance's report, in the order they finished.
    audits: Mutex<Vec<crate::audit::Report>>,
}

/// Which instances an audited run audits (each runs, whatever the cache holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditScope {
    /// Every instance of the run (`hotpass run --audit`).
    All,
    /// The selected ones; their dependencies run as usual (`hotpass audit`).
    Selected,
}

impl AuditScope {
    /// For each instance of `graph`, whether the audit covers it. A group
    /// (no commands) has nothing to audit.
    pub fn instances(scope: Option<AuditScope>, graph: &InstanceGraph) -> Vec<bool> {
        let mut audited = vec![false; graph.len()];
        let named: Vec<InstanceId> = match scope {
            None => Vec::new(),
            Some(AuditScope::All) => graph.iter().map(|(id, _)| id).collect(),
            Some(AuditScope::Selected) => graph.selected().to_vec(),
        };
        for id in named {
            audited[id.index()] = !graph.get(id).resolved.commands.is_empty();
        }
        audited
    }
}

/// A key as [`CachedRunner`] computes it, and the time that took.
type Computed = (Option<Keyed>, Vec<Span>);

/// An instance's key as a check has it: what it is made of, and its
/// digest (taken from a borrowed [`KeyView`]). The owned key is made only
/// when something keeps it: a miss, or a run record.
struct Keyed {
    scan: Scan,
    deps: BTreeMap<String, String>,
    digest: String,
}

impl Keyed {
    fn new(scan: Scan, task: &str, inst: &Instance, deps: BTreeMap<String, String>) -> Keyed {
        let digest = KeyView::of(task, inst, &scan, &deps).digest();
        Keyed { scan, deps, digest }
    }

    /// The owned key of `inst`, of task `task`.
    fn owned(&self, task: &str, inst: &Instance) -> CacheKey {
        KeyView::of(task, inst, &self.scan, &self.deps).to_key()
    }
}

/// What a cache check learned about an instance that must run.
pub struct Prepared {
    /// The key and its digest, when the inputs could be hashed. Its files
    /// are checked again after the run.
    key: Option<(CacheKey, String)>,
    /// Why it runs instead of hitting the cache.
    reason: Reason,
    /// Phases so far (hashing).
    spans: Vec<Span>,
    /// Each dependency's key digest, stored with the entry.
    dep_keys: BTreeMap<String, String>,
}

impl<'a> CachedRunner<'a> {
    /// A runner over `graph` using `cache`; with `color`, tasks are asked
    /// for coloured output.
    pub fn new(project: &'a Project, graph: &'a InstanceGraph, cache: Cache, color: bool) -> Self {
        CachedRunner {
            project,
            graph,
            cache,
            color,
            hits: AtomicUsize::new(0),
            misses: AtomicUsize::new(0),
            ahead: Mutex::new(HashMap::new()),
            invocation: uuid::Uuid::now_v7().to_string(),
            telemetry: None,
            audited: vec![false; graph.len()],
            audits: Mutex::new(Vec::new()),
        }
    }

    /// Audits the instances marked in `audited` ([`AuditScope::instances`]):
    /// each runs with every file it touches recorded, and is stored only
    /// when it read no undeclared file.
    pub fn with_audit(mut self, audited: Vec<bool>) -> Self {
        self.audited = audited;
        self
    }

    /// The audit reports of the instances audited so far.
    pub fn take_audits(&self) -> Vec<crate::audit::Report> {
        std::mem::take(&mut *self.audits.lock().expect("audits"))
    }

    /// Whether `id` runs under the audit.
    fn audited(&self, id: InstanceId) -> bool {
        self.audited[id.index()]
    }

    /// The sandbox `id` runs in, if its task asks for one (never while it
    /// is audited: the audit is there to see what it would be denied).
    fn sandbox(&self, id: InstanceId) -> Result<Option<crate::sandbox::Prepared>, String> {
        use crate::config::Sandbox;
        let inst = self.graph.get(id);
        let mode = self.project.task(inst.task).sandbox;
        if mode == Sandbox::Off || self.audited(id) {
            return Ok(None);
        }
        if let Err(why) = crate::sandbox::available() {
            return match mode {
                Sandbox::BestEffort => Ok(None),
                _ => Err(format!("Landlock is unavailable: {why}")),
            };
        }
        let skip = [self.project.settings.cache_dir.clone()];
        match crate::sandbox::prepare(self.project, self.graph, id, &skip) {
            Ok(p) => Ok(Some(p)),
            Err(e) if mode == Sandbox::BestEffort => {
                tracing::warn!("{}: runs outside the sandbox: {e}", inst.name);
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// This run's invocation id (for provenance).
    pub fn invocation(&self) -> &str {
        &self.invocation
    }

    /// The cache this runner uses (for provenance, after the run).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Tells each task its span in `telemetry`'s trace (`TRACEPARENT`).
    pub fn with_telemetry(
        mut self,
        telemetry: Option<std::sync::Arc<crate::report::telemetry::Telemetry>>,
    ) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// What the remote cache did this run (after [`CachedRunner::finish`],
    /// which flushes its uploads).
    pub fn remote_report(&self) -> Option<crate::cache::remote::RemoteReport> {
        self.cache.remote_report()
    }

    /// Saves the stat memo and the run's hit counts.
    pub fn finish(&self) {
        self.cache
            .finish(self.hits.load(Relaxed), self.misses.load(Relaxed));
    }

    /// Tries to answer `inst` from a hit; `None` when it could not be restored.
    fn restore(&self, inst: &Instance, entry: &crate::cache::store::Entry) -> Option<Outcome> {
        let start = Instant::now();
        match self.cache.restore(entry, &self.project.root, inst) {
            Ok(restored) => {
                let (files, bytes) = restored.written;
                tracing::info!(
                    "{}: cached; restored {files} files ({bytes} bytes)",
                    inst.name
                );
                let mut o = Outcome::new(Status::Cached);
                o.duration = start.elapsed();
                o.saved = Some(restored.saved);
                o.output = restored.output;
                Some(o)
            }
            Err(e) => {
                Warning::RestoreFailed {
                    instance: inst.name.clone(),
                    source: Box::new(e),
                }
                .emit();
                None
            }
        }
    }
}

impl CachedRunner<'_> {
    /// The key of `inst`, from its dependencies' results: `None` when the
    /// cache is off, a dependency's result is unknown, or the inputs cannot
    /// be hashed. Input globs that match nothing are warned about here.
    fn key(
        &self,
        inst: &Instance,
        deps: &[(InstanceId, &Outcome)],
        spans: &mut Vec<Span>,
    ) -> Option<Keyed> {
        self.cache.store()?;
        let task = self.project.task(inst.task);
        let outcome = |d: InstanceId| deps.iter().find(|(i, _)| *i == d).map(|(_, o)| *o);
        let Some(digests) = dep_digests(self.graph, inst, |d| {
            outcome(d).and_then(|o| o.result.as_deref())
        }) else {
            tracing::debug!(
                "{}: a dependency's result is unknown; running it without the cache",
                inst.name
            );
            return None;
        };
        let computed = Span::time(spans, "hash", || self.cache.key_scan(inst));
        match computed {
            Ok(scan) => {
                for n in &scan.unmatched {
                    let n = *n;
                    Warning::EmptyInputGlob {
                        instance: inst.name.clone(),
                        glob: inst.resolved.input_globs[n].clone(),
                        at: self.project.input_glob_location(task, n),
                    }
                    .emit();
                }
                let keyed = Keyed::new(scan, &task.name, inst, digests);
                tracing::info!("{}: key {}", inst.name, &keyed.digest[..12]);
                Some(keyed)
            }
            Err(source) => {
                Warning::Unhashable {
                    instance: inst.name.clone(),
                    source,
                }
                .emit();
                None
            }
        }
    }

    /// The first input file that differs now from what the key was made
    /// of (added, removed or changed): a run that saw another version of
    /// its inputs than its key says must not be stored. Costs stats, not
    /// reads, for files that did not change (the stat memo).
    fn changed_input(&self, inst: &Instance, before: &BTreeMap<String, String>) -> Option<String> {
        let scan = match self.cache.scan(inst, false) {
            Ok(s) => s,
            Err(e) => return Some(format!("(the inputs cannot be read again: {e})")),
        };
        let mut now = scan.files.iter().zip(&scan.hashes);
        let mut then = before.iter();
        loop {
            match (now.next(), then.next()) {
                (None, None) => return None,
                (Some((f, h)), Some((path, hash))) => {
                    if f.rel != *path {
                        return Some(f.rel.clone().min(path.clone()));
                    }
                    if crate::hash::hex(h) != *hash {
                        return Some(path.clone());
                    }
                }
                (Some((f, _)), None) => return Some(f.rel.clone()),
                (None, Some((path, _))) => return Some(path.clone()),
            }
        }
    }

    /// Completes a restored hit: counted, recorded as the instance's last
    /// run, with its key and (when a dependent reads it) its result.
    fn hit(
        &self,
        id: InstanceId,
        mut o: Outcome,
        entry: &crate::cache::store::Entry,
        key: impl FnOnce() -> CacheKey,
        digest: &str,
        spans: Vec<Span>,
    ) -> Outcome {
        let inst = self.graph.get(id);
        self.hits.fetch_add(1, Relaxed);
        self.cache.record_run_with(&inst.name, digest, key);
        if !self.graph.dependents(id).is_empty() {
            o.result = Some(result_of(inst, digest, &entry.outputs));
        }
        o.key = Some(digest.to_owned());
        o.origin = entry.invocation.clone();
        o.spans = spans;
        o
    }

    /// After a success: stores it (or, for a task that is not cached, only
    /// hashes its outputs) and gives the digest of its result — computed
    /// only for instances that have dependents: nothing else reads it.
    fn keep(
        &self,
        id: InstanceId,
        digest: &str,
        o: &Outcome,
        dep_keys: &BTreeMap<String, String>,
    ) -> Option<String> {
        let inst = self.graph.get(id);
        let task = self.project.task(inst.task);
        if !task.cache && self.graph.dependents(id).is_empty() {
            return None; // nothing stored, and no dependent reads a result
        }
        let collected = if task.cache {
            self.cache.save(
                &self.project.root,
                inst,
                &Success {
                    digest,
                    duration: o.duration,
                    output: &o.output,
                    dep_keys,
                    invocation: Some(&self.invocation),
                },
            )
        } else {
            self.cache.outputs_of(&self.project.root, inst)
        };
        match collected {
            Ok(c) => {
                if task.cache {
                    let bytes: u64 = c.outputs.iter().map(|o| o.size).sum();
                    tracing::info!(
                        "{}: stored {} output files ({bytes} bytes)",
                        inst.name,
                        c.outputs.len()
                    );
                }
                for n in c.unmatched {
                    Warning::EmptyOutputGlob {
                        instance: inst.name.clone(),
                        glob: inst.resolved.outputs[n].clone(),
                        at: self.project.output_glob_location(task, n),
                    }
                    .emit();
                }
                Some(result_of(inst, digest, &c.outputs))
                    .filter(|_| !self.graph.dependents(id).is_empty())
            }
            Err(e) => {
                if task.cache {
                    Warning::StoreFailed {
                        instance: inst.name.clone(),
                        source: Box::new(e),
                    }
                    .emit();
                } else {
                    tracing::debug!("{}: its outputs could not be hashed: {e}", inst.name);
                }
                None
            }
        }
    }
}

impl Runner for CachedRunner<'_> {
    type Prepared = Prepared;

    fn check(&self, id: InstanceId, deps: &[(InstanceId, &Outcome)]) -> Check<Prepared> {
        let inst = self.graph.get(id);
        let task = self.project.task(inst.task);
        // A hit has two phases (hash, restore): room for them, no more.
        let mut spans = Vec::with_capacity(2);
        // Keys are computed ahead only for a remote cache's batches.
        let ahead = if self.cache.has_remote() {
            self.ahead.lock().expect("keys ahead").remove(&id)
        } else {
            None
        };
        let key = match ahead {
            Some((key, mut hashing)) => {
                spans.append(&mut hashing);
                key
            }
            None => self.key(inst, deps, &mut spans),
        };
        let owned = |k: &Keyed| k.owned(&task.name, inst);
        let decision = if self.audited(id) {
            Decision::Run(Reason::Forced)
        } else {
            let make = || owned(key.as_ref().expect("decided with a key"));
            self.cache.decide_with(
                &inst.name,
                task.cache,
                key.as_ref()
                    .map(|k| (&make as &dyn Fn() -> CacheKey, k.digest.as_str())),
                Blobs::OnRestore,
            )
        };
        let reason = match decision {
            Decision::Hit(entry) => {
                match Span::time(&mut spans, "restore", || self.restore(inst, &entry)) {
                    Some(o) => {
                        let k = key.expect("a hit has a key");
                        let o = self.hit(id, o, &entry, || owned(&k), &k.digest, spans);
                        return Check::Done(Box::new(o));
                    }
                    None => Reason::RestoreFailed,
                }
            }
            Decision::Run(reason) => reason,
        };
        tracing::info!("{}: runs ({reason})", inst.name);
        // Stored with its entry, should it succeed.
        let dep_keys: BTreeMap<String, String> = deps
            .iter()
            .filter_map(|(d, o)| {
                let key = o.key.as_deref()?;
                Some((self.graph.get(*d).name.clone(), dep_key_tag(key).to_owned()))
            })
            .collect();
        Check::Run(Prepared {
            key: key.map(|k| (owned(&k), k.digest)),
            reason,
            spans,
            dep_keys,
        })
    }

    fn prepare(
        &self,
        batch: &[(InstanceId, Vec<(InstanceId, &Outcome)>)],
        dispatch: &tracing::Dispatch,
    ) {
        if !self.cache.has_remote() || batch.len() < 2 {
            return;
        }
        use rayon::prelude::*;
        let computed: Vec<(InstanceId, Computed)> = batch
            .par_iter()
            .map(|(id, deps)| {
                let mut spans = Vec::new();
                let key = tracing::dispatcher::with_default(dispatch, || {
                    self.key(self.graph.get(*id), deps, &mut spans)
                });
                (*id, (key, spans))
            })
            .collect();
        let wanted: Vec<(&str, &str)> = computed
            .iter()
            .filter(|(id, _)| self.project.task(self.graph.get(*id).task).cache)
            .filter_map(|(id, (key, _))| {
                Some((
                    self.graph.get(*id).name.as_str(),
                    key.as_ref()?.digest.as_str(),
                ))
            })
            .collect();
        self.cache.prefetch(&wanted);
        self.ahead.lock().expect("keys ahead").extend(computed);
    }

    fn run(
        &self,
        id: InstanceId,
        prepared: Prepared,
        ctl: &Control,
        sink: &(dyn Fn(Stream, &[u8]) + Sync),
    ) -> Outcome {
        let inst = self.graph.get(id);
        let audited = self.audited(id);
        let Prepared {
            key,
            reason,
            mut spans,
            dep_keys,
        } = prepared;
        // One process at a time runs an instance with a given key; one that
        // waited takes the other's result when it was stored meanwhile.
        let _lock = match &key {
            Some((k, digest)) if self.project.task(inst.task).cache => {
                let (lock, waited) = self.cache.lock(&inst.name, digest, &|| ctl.is_cancelled());
                if waited {
                    self.cache.forget_packs();
                }
                if waited
                    && !audited
                    && self.cache.mode() == crate::cache::Mode::Normal
                    && let Decision::Hit(entry) =
                        self.cache
                            .decide(&inst.name, true, Some((k, digest)), Blobs::OnRestore)
                    && let Some(o) = self.restore(inst, &entry)
                {
                    return self.hit(id, o, &entry, || k.clone(), digest, spans);
                }
                lock
            }
            _ => None,
        };
        let traceparent = self.telemetry.as_ref().map(|t| t.traceparent(id));
        let recorder = audited.then(crate::audit::notify::Recorder::default);
        let mut o = match self.sandbox(id) {
            Ok(sandbox) => {
                let confine = Confinement {
                    audit: recorder.as_ref(),
                    sandbox: sandbox.as_ref(),
                };
                Span::time(&mut spans, "run", || {
                    execute(inst, self.color, traceparent, ctl, sink, confine)
                })
            }
            Err(why) => {
                let msg = format!("hotpass: {} cannot run in its sandbox: {why}\n", inst.name);
                sink(Stream::Stderr, msg.as_bytes());
                let mut o = Outcome::new(Status::Failed { code: None });
                o.output.push(Stream::Stderr, msg.as_bytes());
                o
            }
        };
        o.reason = Some(reason);
        let mut report = recorder.map(|r| {
            let skip = [self.project.settings.cache_dir.clone()];
            let mut report = crate::audit::classify(self.project, self.graph, id, &r.take(), &skip);
            report.succeeded = o.status == Status::Ok;
            report
        });
        if let Some((k, digest)) = key {
            let files = &k.files;
            self.misses.fetch_add(1, Relaxed);
            let incomplete = report.as_ref().filter(|r| r.has_undeclared_inputs());
            if let Some(r) = incomplete
                && o.status == Status::Ok
            {
                tracing::warn!(
                    "{}: not stored: it read {} file(s) its inputs do not declare, so its key is incomplete",
                    inst.name,
                    r.undeclared_inputs.len()
                );
            }
            if o.status == Status::Ok && !ctl.is_cancelled() && incomplete.is_none() {
                match self.changed_input(inst, files) {
                    Some(file) => Warning::InputChangedDuringRun {
                        instance: inst.name.clone(),
                        file,
                    }
                    .emit(),
                    None => {
                        o.result = Span::time(&mut spans, "store", || {
                            self.keep(id, &digest, &o, &dep_keys)
                        });
                        if let Some(r) = report.as_mut() {
                            r.stored = self.project.task(inst.task).cache;
                        }
                    }
                }
            }
            self.cache.record_run(&inst.name, &k, &digest);
            o.key = Some(digest);
        }
        if let Some(mut r) = report {
            if r.succeeded && !r.stored {
                r.not_stored = Some(if r.has_undeclared_inputs() {
                    "it read files its inputs do not declare, so its key is incomplete".into()
                } else if !self.project.task(inst.task).cache {
                    "the task is not cached".into()
                } else if self.cache.store().is_none() {
                    "the cache is off".into()
                } else {
                    "its inputs changed while it ran".into()
                });
            }
            self.audits.lock().expect("audits").push(r);
        }
        o.spans = spans;
        o
    }
}
