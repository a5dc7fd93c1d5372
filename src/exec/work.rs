//! The work of one instance: resolve its commands, env and cwd, answer from
//! the cache when its key is known, otherwise run its commands in turn.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use super::process::{self, Control, Spec};
use super::scheduler::{Check, Runner};
use super::{Chunk, Outcome, Span, Status, Stream};
use crate::config::{Project, Task};
use crate::graph::{Instance, InstanceGraph, InstanceId};

/// Substitutes `{partition}` in a config string.
pub fn substitute(s: &str, partition: Option<&str>) -> String {
    match partition {
        Some(p) => s.replace("{partition}", p),
        None => s.to_owned(),
    }
}

/// The folder an instance runs in.
pub fn instance_cwd(project: &Project, task: &Task, inst: &Instance) -> PathBuf {
    let cwd = substitute(&task.cwd, inst.partition.as_deref());
    if cwd == "." {
        project.root.clone()
    } else {
        project.root.join(cwd)
    }
}

/// The environment an instance's commands get on top of hotpass's own.
pub fn instance_env(task: &Task, inst: &Instance) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = task
        .env
        .iter()
        .map(|(k, v)| (k.clone(), substitute(v, inst.partition.as_deref())))
        .collect();
    if let Some(p) = &inst.partition {
        env.push(("HOTPASS_PARTITION".into(), p.clone()));
    }
    env.push(("HOTPASS_TASK".into(), inst.name.clone()));
    env
}

/// The commands of an instance, with `{partition}` substituted.
pub fn instance_commands(task: &Task, inst: &Instance) -> Vec<String> {
    task.run
        .iter()
        .map(|c| substitute(c, inst.partition.as_deref()))
        .collect()
}

/// Runs an instance's commands in turn, stopping at the first failure.
pub fn execute(
    project: &Project,
    inst: &Instance,
    ctl: &Control,
    sink: &(dyn Fn(Stream, &[u8]) + Sync),
) -> Outcome {
    let task = project.task(inst.task);
    let cwd = instance_cwd(project, task, inst);
    let env = instance_env(task, inst);
    let captured: Mutex<Vec<Chunk>> = Mutex::new(Vec::new());
    let capture = |stream: Stream, line: &[u8]| {
        captured.lock().expect("capture lock").push(Chunk {
            stream,
            data: line.to_vec(),
        });
        sink(stream, line);
    };
    let start = Instant::now();
    let mut status = Status::Ok;
    for command in instance_commands(task, inst) {
        if ctl.is_cancelled() {
            status = Status::Interrupted;
            break;
        }
        let spec = Spec {
            command: &command,
            cwd: &cwd,
            env: &env,
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
                    cwd.display()
                );
                capture(Stream::Stderr, msg.as_bytes());
                status = Status::Failed { code: None };
                break;
            }
        }
    }
    let mut outcome = Outcome::new(status);
    outcome.duration = start.elapsed();
    outcome.output = captured.into_inner().expect("capture lock");
    outcome
}

/// The runner `hotpass run` uses: compute the key, answer from the cache when
/// allowed, otherwise execute and store the success.
pub struct CachedRunner<'a> {
    project: &'a Project,
    graph: &'a InstanceGraph,
    mode: crate::cache::Mode,
    cache: Option<crate::cache::Cache>,
    memo: crate::hash::Memo,
    salt: [u8; 32],
    hits: std::sync::atomic::AtomicUsize,
    misses: std::sync::atomic::AtomicUsize,
}

impl<'a> CachedRunner<'a> {
    /// Opens the cache (unless `--no-cache`) and loads the stat memo.
    pub fn new(
        project: &'a Project,
        graph: &'a InstanceGraph,
        mode: crate::cache::Mode,
    ) -> std::io::Result<Self> {
        let cache = match mode {
            crate::cache::Mode::Disabled => None,
            _ => Some(crate::cache::Cache::open(&project.settings.cache_dir)?),
        };
        let salt = match &cache {
            Some(c) => c.salt()?,
            None => [0; 32],
        };
        let memo = crate::hash::Memo::load(cache.as_ref().map(|c| c.memo_path()));
        Ok(CachedRunner {
            project,
            graph,
            mode,
            cache,
            memo,
            salt,
            hits: Default::default(),
            misses: Default::default(),
        })
    }

    /// Saves the stat memo and the run's hit counts.
    pub fn finish(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(c) = &self.cache {
            if let Err(e) = self.memo.save() {
                tracing::warn!("could not save the stat memo: {e}");
            }
            let _ = c.record_history(self.hits.load(Relaxed), self.misses.load(Relaxed));
        }
    }

    fn key_context(&self) -> crate::cache::key::KeyContext<'_> {
        crate::cache::key::KeyContext::new(self.project, &self.memo, self.salt)
    }

    /// Stores a success: output files as blobs, the log, then the entry.
    fn store(
        &self,
        cache: &crate::cache::Cache,
        inst: &Instance,
        key: &str,
        outcome: &Outcome,
    ) -> std::io::Result<()> {
        use crate::cache::store::{Entry, OutputFile};
        use std::os::unix::fs::PermissionsExt;
        let task = self.project.task(inst.task);
        let cwd = instance_cwd(self.project, task, inst);
        let globs: Vec<String> = task
            .outputs
            .iter()
            .map(|o| substitute(o, inst.partition.as_deref()))
            .collect();
        let mut outputs = Vec::new();
        if !globs.is_empty() {
            let patterns = crate::fileset::Patterns::new(&globs)
                .map_err(|(g, e)| std::io::Error::other(format!("bad glob `{g}`: {e}")))?;
            let found = patterns.expand(
                &cwd,
                crate::fileset::Ignored::Include,
                std::slice::from_ref(&self.project.settings.cache_dir),
            )?;
            let pairs: Vec<(&std::path::Path, &std::fs::Metadata)> =
                found.iter().map(|f| (f.abs.as_path(), &f.meta)).collect();
            let hashes = self.memo.hash_files(&pairs)?;
            for (f, h) in found.iter().zip(hashes) {
                let hash = crate::hash::hex(&h);
                cache.put_file(&hash, &f.abs)?;
                let rel = f
                    .abs
                    .strip_prefix(&self.project.root)
                    .map(crate::fileset::rel_string)
                    .unwrap_or_else(|_| f.rel.clone());
                outputs.push(OutputFile {
                    path: rel,
                    hash,
                    size: f.meta.len(),
                    mode: f.meta.permissions().mode() & 0o7777,
                });
            }
        }
        let log = if outcome.output.is_empty() {
            None
        } else {
            Some(cache.put_bytes(&crate::cache::blobs::encode_log(&outcome.output))?)
        };
        cache.store(&Entry {
            format: crate::cache::key::FORMAT_VERSION,
            key: key.to_owned(),
            instance: inst.name.clone(),
            exit_code: 0,
            duration_ms: outcome.duration.as_millis() as u64,
            created_unix: crate::cache::store::now_unix(),
            log,
            outputs,
        })
    }

    /// Tries to answer from a found entry; the error says why it could not.
    fn restore(
        &self,
        cache: &crate::cache::Cache,
        entry: &crate::cache::store::Entry,
    ) -> Result<Outcome, String> {
        let output = match &entry.log {
            Some(h) => {
                let bytes = cache
                    .get_bytes(h)
                    .map_err(|e| format!("captured output: {e}"))?;
                crate::cache::blobs::decode_log(&bytes).map_err(|e| e.to_string())?
            }
            None => Vec::new(),
        };
        let start = Instant::now();
        cache.restore(entry, &self.project.root, &self.memo)?;
        let mut o = Outcome::new(Status::Cached);
        o.duration = start.elapsed();
        o.saved = Some(std::time::Duration::from_millis(entry.duration_ms));
        o.output = output;
        Ok(o)
    }
}

/// What a cache check learned about an instance that must run.
pub struct Prepared {
    /// The encoded key and its digest, when the inputs could be hashed.
    key: Option<(Vec<u8>, String)>,
    /// Why it runs instead of hitting the cache.
    reason: String,
    /// Phases so far (hashing).
    spans: Vec<Span>,
}

impl CachedRunner<'_> {
    fn record(&self, inst: &Instance, encoded_key: &[u8], digest: &str, o: &mut Outcome) {
        o.key = Some(digest.to_owned());
        if let Some(cache) = &self.cache
            && let Err(e) = cache.record_run(&inst.name, encoded_key)
        {
            tracing::debug!("could not record the run of {}: {e}", inst.name);
        }
    }
}

impl Runner for CachedRunner<'_> {
    type Prepared = Prepared;

    fn check(&self, id: InstanceId, deps: &[(InstanceId, &Outcome)]) -> Check<Prepared> {
        use crate::cache::Mode;
        use crate::cache::store::Lookup;
        use std::sync::atomic::Ordering::Relaxed;
        let inst = self.graph.get(id);
        let task = self.project.task(inst.task);
        let run = |key, reason: &str, spans| {
            Check::Run(Prepared {
                key,
                reason: reason.to_owned(),
                spans,
            })
        };
        let Some(cache) = &self.cache else {
            return run(None, "cache-disabled", Vec::new());
        };
        let dep_keys = deps
            .iter()
            .map(|(d, o)| {
                (
                    self.graph.get(*d).name.clone(),
                    o.key.clone().unwrap_or_else(|| "none".into()),
                )
            })
            .collect();
        let mut spans = Vec::new();
        let computed = Span::time(&mut spans, "hash", || {
            crate::cache::key::compute(&self.key_context(), inst, dep_keys)
        });
        let key = match computed {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(
                    "{}: could not hash its inputs ({e}); running it without the cache",
                    inst.name
                );
                return run(None, "cache-disabled", spans);
            }
        };
        let encoded = key.encode();
        let digest = crate::cache::key::digest_of(&encoded);
        if !task.cache {
            return run(Some((encoded, digest)), "cache-disabled", spans);
        }
        if self.mode == Mode::Force {
            return run(Some((encoded, digest)), "forced", spans);
        }
        let reason = match cache.lookup(&digest) {
            Lookup::Found(entry) => {
                match Span::time(&mut spans, "restore", || self.restore(cache, &entry)) {
                    Ok(mut o) => {
                        cache.touch(&digest);
                        self.hits.fetch_add(1, Relaxed);
                        self.record(inst, &encoded, &digest, &mut o);
                        o.spans = spans;
                        return Check::Done(o);
                    }
                    Err(why) => {
                        tracing::warn!(
                            "{}: cache entry could not be restored ({why}); running it",
                            inst.name
                        );
                        "restore-failed".to_owned()
                    }
                }
            }
            Lookup::Corrupt(why) => {
                tracing::warn!(
                    "{}: cache entry {digest} is corrupt ({why}); running it",
                    inst.name
                );
                "corrupt-entry".to_owned()
            }
            Lookup::Missing => cache.miss_reason(&inst.name, &key),
        };
        run(Some((encoded, digest)), &reason, spans)
    }

    fn run(
        &self,
        id: InstanceId,
        prepared: Prepared,
        ctl: &Control,
        sink: &(dyn Fn(Stream, &[u8]) + Sync),
    ) -> Outcome {
        use std::sync::atomic::Ordering::Relaxed;
        let inst = self.graph.get(id);
        let task = self.project.task(inst.task);
        let Prepared {
            key,
            reason,
            mut spans,
        } = prepared;
        let mut o = Span::time(&mut spans, "run", || execute(self.project, inst, ctl, sink));
        o.reason = Some(reason);
        if let (Some(cache), Some((key, digest))) = (&self.cache, &key) {
            self.misses.fetch_add(1, Relaxed);
            if o.status == Status::Ok
                && task.cache
                && !ctl.is_cancelled()
                && let Err(e) =
                    Span::time(&mut spans, "store", || self.store(cache, inst, digest, &o))
            {
                tracing::warn!(
                    "{}: could not store its result in the cache: {e}",
                    inst.name
                );
            }
            self.record(inst, key, digest, &mut o);
        }
        o.spans = spans;
        o
    }
}
