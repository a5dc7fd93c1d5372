//! The cache key: a serializable struct of everything that decides whether a
//! stored result may be reused, hashed with blake3. The same struct, kept
//! from an instance's last run, answers "why did this miss?".

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{Project, Task};
use crate::exec::work::{instance_commands, instance_cwd, instance_env, substitute};
use crate::fileset::{Ignored, Patterns};
use crate::graph::Instance;
use crate::hash::{Memo, hex};

/// Bumped whenever the key's meaning changes, so old entries stop matching.
pub const FORMAT_VERSION: u32 = 1;

/// Everything an instance's result depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    pub version: u32,
    pub task: String,
    pub partition: Option<String>,
    pub commands: Vec<String>,
    /// Relative to the root.
    pub cwd: String,
    /// The task's `env` table (config, may be shown).
    pub env: BTreeMap<String, String>,
    /// `$NAME` inputs: name → salted digest of the value (never the value).
    pub env_inputs: BTreeMap<String, String>,
    /// Input files relative to the cwd → content hash.
    pub files: BTreeMap<String, String>,
    /// Output globs, as substituted.
    pub outputs: Vec<String>,
    /// Dependency instance → its key.
    pub deps: BTreeMap<String, String>,
}

impl CacheKey {
    /// The key as the bytes its digest is taken over (also what the last-run
    /// record stores, so a hit serializes its key once).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("key serialises")
    }

    /// The key's hex digest.
    pub fn digest(&self) -> String {
        digest_of(&self.encode())
    }
}

/// The hex digest of an encoded key.
pub fn digest_of(encoded: &[u8]) -> String {
    blake3::hash(encoded).to_hex().to_string()
}

impl CacheKey {
    /// Reads back what [`CacheKey::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Option<CacheKey> {
        serde_json::from_slice(bytes).ok()
    }
}

/// What computing a key needs beyond the instance.
pub struct KeyContext<'a> {
    pub project: &'a Project,
    pub memo: &'a Memo,
    pub salt: [u8; 32],
    /// Absolute folders never hashed (the cache).
    pub skip: Vec<PathBuf>,
}

impl<'a> KeyContext<'a> {
    /// The context for `project`, never hashing inside its cache folder.
    pub fn new(project: &'a Project, memo: &'a Memo, salt: [u8; 32]) -> Self {
        KeyContext {
            project,
            memo,
            salt,
            skip: vec![project.settings.cache_dir.clone()],
        }
    }
}

/// Splits a task's inputs into file patterns and `$NAME` variables.
pub fn split_inputs(task: &Task, partition: Option<&str>) -> (Vec<String>, Vec<String>) {
    let mut globs = Vec::new();
    let mut vars = Vec::new();
    for i in &task.inputs {
        let i = substitute(i, partition);
        match i.strip_prefix('$') {
            Some(name) => vars.push(name.to_owned()),
            None => globs.push(i),
        }
    }
    (globs, vars)
}

/// The salted digest of an environment value (`unset` when not set).
pub fn env_digest(salt: &[u8; 32], value: Option<&std::ffi::OsStr>) -> String {
    match value {
        Some(v) => {
            let h = blake3::keyed_hash(salt, v.as_encoded_bytes());
            h.to_hex()[..16].to_owned()
        }
        None => "unset".to_owned(),
    }
}

/// Computes an instance's key from the tree as it is now.
pub fn compute(
    cx: &KeyContext,
    inst: &Instance,
    deps: BTreeMap<String, String>,
) -> io::Result<CacheKey> {
    let task = cx.project.task(inst.task);
    let p = inst.partition.as_deref();
    let cwd_abs = instance_cwd(cx.project, task, inst);
    let (globs, vars) = split_inputs(task, p);
    let mut files = BTreeMap::new();
    if !globs.is_empty() {
        let patterns = Patterns::new(&globs)
            .map_err(|(g, e)| io::Error::other(format!("bad glob `{g}`: {e}")))?;
        let found = patterns.expand(&cwd_abs, Ignored::Skip, &cx.skip)?;
        let pairs: Vec<(&std::path::Path, &std::fs::Metadata)> =
            found.iter().map(|f| (f.abs.as_path(), &f.meta)).collect();
        let hashes = cx.memo.hash_files(&pairs)?;
        for (f, h) in found.iter().zip(hashes) {
            files.insert(f.rel.clone(), hex(&h));
        }
    }
    let env_inputs = vars
        .into_iter()
        .map(|v| {
            let d = env_digest(&cx.salt, std::env::var_os(&v).as_deref());
            (v, d)
        })
        .collect();
    Ok(CacheKey {
        version: FORMAT_VERSION,
        task: task.name.clone(),
        partition: inst.partition.clone(),
        commands: instance_commands(task, inst),
        cwd: substitute(&task.cwd, p),
        env: instance_env(task, inst)
            .into_iter()
            .filter(|(k, _)| k != "HOTPASS_TASK")
            .collect(),
        env_inputs,
        files,
        outputs: task.outputs.iter().map(|o| substitute(o, p)).collect(),
        deps,
    })
}

/// One difference between two keys of the same instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Change {
    Command {
        before: Vec<String>,
        after: Vec<String>,
    },
    Cwd {
        before: String,
        after: String,
    },
    Env {
        name: String,
        before: Option<String>,
        after: Option<String>,
    },
    /// A `$NAME` input: only the name is ever shown.
    EnvInput {
        name: String,
    },
    FileAdded {
        path: String,
    },
    FileRemoved {
        path: String,
    },
    FileChanged {
        path: String,
    },
    Outputs {
        before: Vec<String>,
        after: Vec<String>,
    },
    Dep {
        name: String,
    },
    Format,
}

impl Change {
    /// The short reason string used in summaries and dry-run JSON.
    pub fn reason(&self) -> String {
        match self {
            Change::Command { .. } => "command".into(),
            Change::Cwd { .. } => "cwd".into(),
            Change::Env { name, .. } => format!("env:{name}"),
            Change::EnvInput { name } => format!("env:{name}"),
            Change::FileAdded { path }
            | Change::FileRemoved { path }
            | Change::FileChanged { path } => {
                format!("file:{path}")
            }
            Change::Outputs { .. } => "outputs".into(),
            Change::Dep { name } => format!("dep:{name}"),
            Change::Format => "cache-format".into(),
        }
    }

    /// A sentence for `explain`.
    pub fn describe(&self) -> String {
        match self {
            Change::Command { before, after } => {
                format!("the command changed: {:?} -> {:?}", before, after)
            }
            Change::Cwd { before, after } => format!("the cwd changed: {before} -> {after}"),
            Change::Env {
                name,
                before,
                after,
            } => format!(
                "env {name} changed: {} -> {}",
                before
                    .as_deref()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_else(|| "(unset)".into()),
                after
                    .as_deref()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_else(|| "(unset)".into())
            ),
            Change::EnvInput { name } => {
                format!("environment variable ${name} changed (value not shown)")
            }
            Change::FileAdded { path } => format!("file added: {path}"),
            Change::FileRemoved { path } => format!("file removed: {path}"),
            Change::FileChanged { path } => format!("file changed: {path}"),
            Change::Outputs { before, after } => {
                format!("the outputs changed: {before:?} -> {after:?}")
            }
            Change::Dep { name } => format!("dependency {name} changed"),
            Change::Format => "the cache format changed".into(),
        }
    }
}

/// Every difference from `before` to `after`, most telling first:
/// command, cwd, env, `$NAME` inputs, files, outputs, dependencies.
pub fn diff(before: &CacheKey, after: &CacheKey) -> Vec<Change> {
    let mut out = Vec::new();
    if before.version != after.version {
        out.push(Change::Format);
    }
    if before.commands != after.commands {
        out.push(Change::Command {
            before: before.commands.clone(),
            after: after.commands.clone(),
        });
    }
    if before.cwd != after.cwd {
        out.push(Change::Cwd {
            before: before.cwd.clone(),
            after: after.cwd.clone(),
        });
    }
    for name in union(before.env.keys(), after.env.keys()) {
        let (b, a) = (before.env.get(&name), after.env.get(&name));
        if b != a {
            out.push(Change::Env {
                name,
                before: b.cloned(),
                after: a.cloned(),
            });
        }
    }
    for name in union(before.env_inputs.keys(), after.env_inputs.keys()) {
        if before.env_inputs.get(&name) != after.env_inputs.get(&name) {
            out.push(Change::EnvInput { name });
        }
    }
    for path in union(before.files.keys(), after.files.keys()) {
        match (before.files.get(&path), after.files.get(&path)) {
            (None, Some(_)) => out.push(Change::FileAdded { path }),
            (Some(_), None) => out.push(Change::FileRemoved { path }),
            (Some(b), Some(a)) if a != b => out.push(Change::FileChanged { path }),
            _ => {}
        }
    }
    if before.outputs != after.outputs {
        out.push(Change::Outputs {
            before: before.outputs.clone(),
            after: after.outputs.clone(),
        });
    }
    for name in union(before.deps.keys(), after.deps.keys()) {
        if before.deps.get(&name) != after.deps.get(&name) {
            out.push(Change::Dep { name });
        }
    }
    out
}

fn union<'a>(
    a: impl Iterator<Item = &'a String>,
    b: impl Iterator<Item = &'a String>,
) -> Vec<String> {
    let mut v: Vec<String> = a.chain(b).cloned().collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            version: FORMAT_VERSION,
            task: "t".into(),
            partition: None,
            commands: vec!["true".into()],
            cwd: ".".into(),
            env: BTreeMap::new(),
            env_inputs: BTreeMap::new(),
            files: BTreeMap::from([("a".into(), "1".into())]),
            outputs: vec![],
            deps: BTreeMap::new(),
        }
    }

    #[test]
    fn digest_changes_with_any_component() {
        let a = key();
        let mut b = key();
        assert_eq!(a.digest(), b.digest());
        b.files.insert("a".into(), "2".into());
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn diff_names_files_env_and_deps() {
        let a = key();
        let mut b = key();
        b.files.insert("b".into(), "3".into());
        b.env_inputs.insert("SECRET".into(), "x".into());
        b.deps.insert("up".into(), "k".into());
        let reasons: Vec<String> = diff(&a, &b).iter().map(Change::reason).collect();
        assert_eq!(reasons, vec!["env:SECRET", "file:b", "dep:up"]);
    }

    #[test]
    fn env_digests_hide_values_and_depend_on_salt() {
        let d1 = env_digest(&[1; 32], Some(std::ffi::OsStr::new("hunter2")));
        let d2 = env_digest(&[2; 32], Some(std::ffi::OsStr::new("hunter2")));
        assert!(!d1.contains("hunter2"));
        assert_ne!(d1, d2);
        assert_eq!(env_digest(&[1; 32], None), "unset");
    }
}
