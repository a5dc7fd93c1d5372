//! The cache key: a serializable struct of everything that decides whether a
//! stored result may be reused, hashed with blake3. The same struct, kept
//! from an instance's last run, answers "why did this miss?".

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::store::OutputFile;
use super::tools::{NOT_FOUND, Tool, ToolIndex};
use crate::fileset::{FoundFile, Ignored, Patterns};
use crate::graph::{Instance, InstanceGraph, InstanceId};
use crate::hash::{Memo, hex};

/// Bumped whenever the key's meaning changes, so old entries stop matching.
/// 2: tools in the key; dependencies by the digest of their result.
/// 3: the digest is taken over the key's canonical bytes, not its JSON.
pub const FORMAT_VERSION: u32 = 3;

/// Everything an instance's result depends on. Its digest is written by
/// hand, field by field, twice: here and, from borrowed pieces, by
/// [`KeyView`] for a hit. A field added here stops the build until both
/// write it: [`CacheKey::digest`] names every field, [`KeyView::to_key`]
/// must fill it in, and `a_view_digests_as_its_owned_key` fails until the
/// view's digest writes it as this one does.
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
    /// Dependency instance → the digest of its result: its outputs'
    /// content, or its key when it declares no outputs (early cutoff).
    pub deps: BTreeMap<String, String>,
    /// Tool name → content hash, 128 bits (or `not-found`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, String>,
    /// With `env_mode = "strict"`: the `pass_env` globs (absent when loose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_env: Option<Vec<String>>,
}

impl CacheKey {
    /// The key as the bytes the last-run record stores (JSON, read back by
    /// [`CacheKey::decode`] for `explain` and reasons).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("key serialises")
    }

    /// The key's hex digest: blake3 of its canonical bytes (see
    /// `KeyBytes`), the same [`KeyView::digest`] gives.
    pub fn digest(&self) -> String {
        // Every field named: one added to the struct is not left out.
        let CacheKey {
            version,
            task,
            partition,
            commands,
            cwd,
            env,
            env_inputs,
            files,
            outputs,
            deps,
            tools,
            pass_env,
        } = self;
        with_key_buffer(|buf| {
            let mut w = KeyBytes(buf);
            w.head(*version, task, partition.as_deref());
            w.list(commands.iter());
            w.str(cwd);
            w.sorted(map_pairs(env));
            w.sorted(map_pairs(env_inputs));
            w.sorted(files.iter().map(|(p, h)| (p.as_str(), HashText(h))));
            w.list(outputs.iter());
            w.sorted(map_pairs(deps));
            w.sorted(map_pairs(tools));
            w.optional_list(pass_env.as_deref());
            crate::hash::hex(blake3::hash(buf).as_bytes())
        })
    }

    /// Reads back what [`CacheKey::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Option<CacheKey> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The canonical bytes a key's digest is taken over: each field in a fixed
/// order, strings and lists prefixed by their length, maps sorted by name
/// with the last of equal names kept (as a `BTreeMap` collects them), so
/// no two different keys write the same bytes. Written into a buffer and
/// hashed at once: a hit needs the digest alone, and writing JSON (every
/// string scanned for escapes) had been a fifth of a hit's work.
struct KeyBytes<'b>(&'b mut Vec<u8>);

impl KeyBytes<'_> {
    fn len(&mut self, n: usize) {
        self.0.extend_from_slice(&(n as u64).to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn head(&mut self, version: u32, task: &str, partition: Option<&str>) {
        self.0.extend_from_slice(b"hotpass key\0");
        self.0.extend_from_slice(&version.to_le_bytes());
        self.str(task);
        match partition {
            Some(p) => {
                self.0.push(1);
                self.str(p);
            }
            None => self.0.push(0),
        }
    }

    fn list<'s>(&mut self, items: impl ExactSizeIterator<Item = &'s String>) {
        self.len(items.len());
        for s in items {
            self.str(s);
        }
    }

    fn optional_list(&mut self, items: Option<&[String]>) {
        match items {
            Some(items) => {
                self.0.push(1);
                self.list(items.iter());
            }
            None => self.0.push(0),
        }
    }

    /// A map from name-value pairs: written as they come when they are in
    /// strict order (the usual case), else sorted, the last of equal names
    /// kept.
    fn sorted<'a, V: KeyValue>(&mut self, pairs: impl Iterator<Item = (&'a str, V)> + Clone) {
        let mut names = pairs.clone().map(|(n, _)| n);
        let mut in_order = true;
        let mut count = 0;
        if let Some(mut last) = names.next() {
            count = 1;
            for n in names {
                in_order &= last < n;
                last = n;
                count += 1;
            }
        }
        if in_order {
            self.len(count);
            for (n, v) in pairs {
                self.str(n);
                v.write(self);
            }
            return;
        }
        let mut v: Vec<(&str, V)> = pairs.collect();
        // Stable: among equal names the last stays last.
        v.sort_by(|a, b| a.0.cmp(b.0));
        let mut kept: Vec<(&str, V)> = Vec::with_capacity(v.len());
        for pair in v {
            match kept.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => kept.push(pair),
            }
        }
        self.len(kept.len());
        for (n, v) in kept {
            self.str(n);
            v.write(self);
        }
    }
}

/// A map value as [`KeyBytes`] writes it.
trait KeyValue {
    fn write(&self, w: &mut KeyBytes);
}

impl KeyValue for &[u8] {
    fn write(&self, w: &mut KeyBytes) {
        w.bytes(self);
    }
}

/// A content hash as its 32 bytes.
impl KeyValue for &[u8; 32] {
    fn write(&self, w: &mut KeyBytes) {
        w.bytes(&self[..]);
    }
}

/// A content hash as the owned key keeps it (hex): written as its 32
/// bytes, as the view writes them; text that is not a digest as it is.
struct HashText<'a>(&'a str);

impl KeyValue for HashText<'_> {
    fn write(&self, w: &mut KeyBytes) {
        match crate::hash::unhex(self.0) {
            Some(h) => w.bytes(&h),
            None => w.str(self.0),
        }
    }
}

/// What computing a key needs beyond the instance.
pub struct KeyContext<'a> {
    pub memo: &'a Memo,
    pub salt: [u8; 32],
    /// Absolute folders never hashed (the cache).
    pub skip: &'a [PathBuf],
    /// Where tools are found.
    pub tools: &'a ToolIndex,
}

/// What an instance's key covers, as found in the tree now.
pub struct Scan {
    /// Input files, sorted by path relative to the cwd.
    pub files: Vec<FoundFile>,
    /// The content hash of each of `files`.
    pub hashes: Vec<[u8; 32]>,
    /// The input globs (positions in `resolved.input_globs`) that match no file.
    pub unmatched: Vec<usize>,
    /// For each file, the position of the first glob that matched it
    /// (empty unless asked for: it costs a glob match per file).
    pub matched_by: Vec<Option<usize>>,
    /// Each tool with what was found, in `resolved.tools` order.
    pub tools: Vec<(String, Option<Arc<Tool>>)>,
    /// Each `$NAME` input with the salted digest of its value.
    pub env_inputs: Vec<(String, String)>,
}

impl Scan {
    /// Expands and hashes what `inst`'s key covers; with `by_glob`, also
    /// which glob matched each file.
    pub fn of(cx: &KeyContext, inst: &Instance, by_glob: bool) -> io::Result<Scan> {
        let r = &inst.resolved;
        let mut scan = Scan {
            files: Vec::new(),
            hashes: Vec::new(),
            unmatched: Vec::new(),
            matched_by: Vec::new(),
            tools: r
                .tools
                .iter()
                .map(|t| (t.clone(), cx.tools.resolve(t, &r.cwd, cx.memo)))
                .collect(),
            env_inputs: r
                .env_inputs
                .iter()
                .map(|v| {
                    (
                        v.clone(),
                        env_digest(&cx.salt, std::env::var_os(v).as_deref()),
                    )
                })
                .collect(),
        };
        if !r.input_globs.is_empty() {
            let patterns = Patterns::new(&r.input_globs).map_err(|(g, e)| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("bad glob `{g}`: {e}"))
            })?;
            let found = patterns.expand(&r.cwd, Ignored::Skip, cx.skip)?;
            scan.unmatched = patterns
                .unmatched(&found)
                .into_iter()
                .filter(|i| !r.input_globs[*i].starts_with('!'))
                .collect();
            scan.hashes = crate::fileset::hash_found(cx.memo, &found)?;
            if by_glob {
                scan.matched_by = found.iter().map(|f| patterns.first_match(&f.rel)).collect();
            }
            scan.files = found;
        }
        Ok(scan)
    }
}

/// The digest of a result made of these output files.
pub fn result_digest(outputs: &[OutputFile]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"outputs\n");
    for o in outputs {
        h.update(o.path.as_bytes());
        h.update(b"\0");
        h.update(o.hash.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
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

/// The dependency part of a key: each dependency's name with the digest of
/// its result. `None` when one of them has no known result (it ran
/// uncached, or its outputs could not be read): a key without it could
/// match a result made from other inputs, so the instance runs uncached.
pub fn dep_digests<'a>(
    graph: &InstanceGraph,
    inst: &Instance,
    digest: impl Fn(InstanceId) -> Option<&'a str>,
) -> Option<BTreeMap<String, String>> {
    inst.deps
        .iter()
        .map(|d| Some((graph.get(*d).name.clone(), digest(*d)?.to_owned())))
        .collect()
}

/// What an entry keeps of each dependency's key: enough to tell that the
/// dependency re-ran since (early cutoff), no more.
pub fn dep_key_tag(key_digest: &str) -> &str {
    &key_digest[..16.min(key_digest.len())]
}

/// The digest of an instance's result: its outputs' content when it
/// declares outputs, else its key.
pub fn result_of(inst: &Instance, key_digest: &str, outputs: &[OutputFile]) -> String {
    if inst.resolved.outputs.is_empty() {
        key_digest.to_owned()
    } else {
        result_digest(outputs)
    }
}

/// Computes an instance's key from what [`Scan::of`] found: the resolved
/// instance, plus the content of its input files and tools and the digests
/// of its `$NAME` inputs.
pub fn compute(
    scan: Scan,
    task: &str,
    inst: &Instance,
    deps: BTreeMap<String, String>,
) -> CacheKey {
    KeyView::of(task, inst, &scan, &deps).to_key()
}

/// An instance's key as the pieces it is made of, borrowed: its digest is
/// the owned [`CacheKey`]'s (the same JSON, written field by field in the
/// same order, maps sorted and the last of equal names kept, as a
/// `BTreeMap` collects them), without copying a string. A hit needs the
/// digest alone; the owned key is made for a miss, or for a run record.
pub struct KeyView<'a> {
    pub task: &'a str,
    pub partition: Option<&'a str>,
    pub commands: &'a [String],
    pub cwd: &'a str,
    pub env: &'a [(String, String)],
    pub scan: &'a Scan,
    pub outputs: &'a [String],
    pub deps: &'a BTreeMap<String, String>,
    pub pass_env: Option<&'a [String]>,
}

impl<'a> KeyView<'a> {
    /// The view of `inst`'s key from what was found of it.
    pub fn of(
        task: &'a str,
        inst: &'a Instance,
        scan: &'a Scan,
        deps: &'a BTreeMap<String, String>,
    ) -> KeyView<'a> {
        let r = &inst.resolved;
        KeyView {
            task,
            partition: inst.partition.as_deref(),
            commands: &r.commands,
            cwd: &r.cwd_rel,
            env: &r.env,
            scan,
            outputs: &r.outputs,
            deps,
            pass_env: r.pass_env.as_deref(),
        }
    }

    /// The owned key.
    pub fn to_key(&self) -> CacheKey {
        let scan = self.scan;
        CacheKey {
            version: FORMAT_VERSION,
            task: self.task.to_owned(),
            partition: self.partition.map(str::to_owned),
            commands: self.commands.to_vec(),
            cwd: self.cwd.to_owned(),
            env: self.env.iter().cloned().collect(),
            env_inputs: scan.env_inputs.iter().cloned().collect(),
            files: scan
                .files
                .iter()
                .zip(&scan.hashes)
                .map(|(f, h)| (f.rel.clone(), hex(h)))
                .collect(),
            outputs: self.outputs.to_vec(),
            deps: self.deps.clone(),
            tools: scan
                .tools
                .iter()
                .map(|(name, t)| (name.clone(), tool_hash(t).to_owned()))
                .collect(),
            pass_env: self.pass_env.map(<[String]>::to_vec),
        }
    }

    /// The key's hex digest, as [`CacheKey::digest`] gives it.
    pub fn digest(&self) -> String {
        // Every field named, the scan's too: one added is not left out.
        let KeyView {
            task,
            partition,
            commands,
            cwd,
            env,
            scan,
            outputs,
            deps,
            pass_env,
        } = *self;
        let Scan {
            files,
            hashes,
            unmatched: _,  // which globs matched nothing: a warning, not the key
            matched_by: _, // which glob found each file: for `inputs`
            tools,
            env_inputs,
        } = scan;
        with_key_buffer(|buf| {
            let mut w = KeyBytes(buf);
            w.head(FORMAT_VERSION, task, partition);
            w.list(commands.iter());
            w.str(cwd);
            w.sorted(pairs(env));
            w.sorted(pairs(env_inputs));
            let files = files.iter().zip(hashes);
            w.sorted(files.map(|(f, h)| (f.rel.as_str(), h)));
            w.list(outputs.iter());
            w.sorted(deps.iter().map(|(n, d)| (n.as_str(), d.as_bytes())));
            let tools = tools.iter();
            w.sorted(tools.map(|(n, t)| (n.as_str(), tool_hash(t).as_bytes())));
            w.optional_list(pass_env);
            crate::hash::hex(blake3::hash(buf).as_bytes())
        })
    }
}

/// What the key holds for a tool: 128 bits of its content hash.
fn tool_hash(t: &Option<Arc<Tool>>) -> &str {
    t.as_ref().map_or(NOT_FOUND, |t| &t.hash[..32])
}

/// A map's names and values, borrowed.
fn map_pairs(m: &BTreeMap<String, String>) -> impl Iterator<Item = (&str, &[u8])> + Clone {
    m.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))
}

/// Name and value pairs, borrowed.
fn pairs(v: &[(String, String)]) -> impl Iterator<Item = (&str, &[u8])> + Clone {
    v.iter().map(|(a, b)| (a.as_str(), b.as_bytes()))
}

/// Runs `f` with an empty buffer this thread keeps for keys (a hit needs
/// the digest alone; hashing as serde writes, token by token, costs more).
fn with_key_buffer<T>(f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        let out = f(buf);
        // A key of many thousand files is not kept for the thread's life.
        if buf.capacity() > 1 << 20 {
            *buf = Vec::new();
        }
        out
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
    /// A tool's content hash (or whether it is found).
    Tool {
        name: String,
    },
    /// `env_mode` or `pass_env`.
    EnvMode,
    Format,
}

impl Change {
    /// The key component this change is in: what a run reason names.
    pub fn component(&self) -> Component {
        match self {
            Change::Command { .. } => Component::Command,
            Change::Cwd { .. } => Component::Cwd,
            Change::Env { name, .. } | Change::EnvInput { name } => Component::Env(name.clone()),
            Change::FileAdded { path }
            | Change::FileRemoved { path }
            | Change::FileChanged { path } => Component::File(path.clone()),
            Change::Outputs { .. } => Component::Outputs,
            Change::Dep { name } => Component::Dep(name.clone()),
            Change::Tool { name } => Component::Tool(name.clone()),
            Change::EnvMode => Component::EnvMode,
            Change::Format => Component::Format,
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
            Change::Dep { name } => format!("dependency {name} changed its result"),
            Change::Tool { name } => {
                format!("tool {name} changed (another program, or another version of it)")
            }
            Change::EnvMode => "env_mode or pass_env changed".into(),
            Change::Format => "the cache format changed".into(),
        }
    }
}

/// A part of a key, as a run reason names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// `command`
    Command,
    /// `cwd`
    Cwd,
    /// `env:NAME`: an `env` entry or a `$NAME` input.
    Env(String),
    /// `file:PATH`: an input file added, removed or changed.
    File(String),
    /// `outputs`
    Outputs,
    /// `dep:NAME`: a dependency's result.
    Dep(String),
    /// `tool:NAME`: a program's content.
    Tool(String),
    /// `env-mode`: `env_mode` or `pass_env`.
    EnvMode,
    /// `cache-format`
    Format,
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Component::Command => f.write_str("command"),
            Component::Cwd => f.write_str("cwd"),
            Component::Env(name) => write!(f, "env:{name}"),
            Component::File(path) => write!(f, "file:{path}"),
            Component::Outputs => f.write_str("outputs"),
            Component::Dep(name) => write!(f, "dep:{name}"),
            Component::Tool(name) => write!(f, "tool:{name}"),
            Component::EnvMode => f.write_str("env-mode"),
            Component::Format => f.write_str("cache-format"),
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
    for name in union(before.tools.keys(), after.tools.keys()) {
        if before.tools.get(&name) != after.tools.get(&name) {
            out.push(Change::Tool { name });
        }
    }
    if before.pass_env != after.pass_env {
        out.push(Change::EnvMode);
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
pub(crate) mod tests {
    use super::*;

    /// A small key for tests.
    pub(crate) fn key() -> CacheKey {
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
            tools: BTreeMap::new(),
            pass_env: None,
        }
    }

    /// Every component counts, and no two keys write the same bytes: not
    /// when a string moves from one field to the next, nor when an empty
    /// field is told from an absent one.
    #[test]
    fn digest_changes_with_any_component() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
        let map = |v: &[(&str, &str)]| -> BTreeMap<String, String> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        type Edit<'a> = Box<dyn Fn(&mut CacheKey) + 'a>;
        let edits: Vec<(&str, Edit)> = vec![
            ("nothing", Box::new(|_| {})),
            ("version", Box::new(|k| k.version += 1)),
            ("task", Box::new(|k| k.task = "u".into())),
            (
                "partition",
                Box::new(|k| k.partition = Some("2026-11-29".into())),
            ),
            (
                "empty partition",
                Box::new(|k| k.partition = Some(String::new())),
            ),
            ("command", Box::new(|k| k.commands = s(&["false"]))),
            (
                "commands split",
                Box::new(|k| k.commands = s(&["tr", "ue"])),
            ),
            ("no command", Box::new(|k| k.commands = vec![])),
            ("cwd", Box::new(|k| k.cwd = "sub".into())),
            ("env", Box::new(|k| k.env = map(&[("A", "1")]))),
            ("env input", Box::new(|k| k.env_inputs = map(&[("A", "1")]))),
            ("file hash", Box::new(|k| k.files = map(&[("a", "2")]))),
            ("file path", Box::new(|k| k.files = map(&[("b", "1")]))),
            ("no file", Box::new(|k| k.files = map(&[]))),
            ("output", Box::new(|k| k.outputs = s(&["a"]))),
            ("dep", Box::new(|k| k.deps = map(&[("a", "1")]))),
            ("tool", Box::new(|k| k.tools = map(&[("a", "1")]))),
            (
                "strict, nothing passed",
                Box::new(|k| k.pass_env = Some(vec![])),
            ),
            ("pass_env", Box::new(|k| k.pass_env = Some(s(&["a", "1"])))),
        ];
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for (what, edit) in &edits {
            let mut k = key();
            edit(&mut k);
            assert_eq!(k.digest(), k.clone().digest(), "{what}");
            if let Some(other) = seen.insert(k.digest(), what) {
                panic!("{what} and {other} give the same digest");
            }
        }
        // A file's hash counts as its bytes, whether kept as hex or not.
        let mut a = key();
        a.files = map(&[("a", &"ab".repeat(32))]);
        let mut b = key();
        b.files = map(&[("a", &"AB".repeat(32))]);
        assert_ne!(a.digest(), b.digest());
    }

    /// The digest a hit takes from the borrowed view is the owned key's,
    /// whatever order or repeats the pieces come in; a stored key stays a
    /// hit across the change.
    #[test]
    fn a_view_digests_as_its_owned_key() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), "x").unwrap();
        let meta = std::fs::metadata(t.path().join("f")).unwrap();
        let file = |rel: &str| FoundFile {
            rel: rel.into(),
            abs: t.path().join(rel),
            meta: meta.clone(),
            link: None,
        };
        let tool = |h: &str| {
            Some(Arc::new(Tool {
                path: "/bin/x".into(),
                hash: h.repeat(64),
            }))
        };
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        let scans = [
            Scan {
                files: vec![],
                hashes: vec![],
                unmatched: vec![],
                matched_by: vec![],
                tools: vec![],
                env_inputs: vec![],
            },
            Scan {
                files: vec![file("src/b.rs"), file("a \"quoted\" é"), file("src/b.rs")],
                hashes: vec![[1; 32], [2; 32], [3; 32]],
                unmatched: vec![],
                matched_by: vec![],
                tools: vec![
                    ("sh".into(), tool("a")),
                    ("cat".into(), None),
                    ("sh".into(), tool("b")),
                ],
                env_inputs: vec![
                    pair("TOKEN", "unset"),
                    pair("API", "0123"),
                    pair("TOKEN", "99"),
                ],
            },
        ];
        let deps = BTreeMap::from([pair("up", "d1"), pair("a:b", "d2")]);
        let env = vec![pair("Z", "1"), pair("A", "2"), pair("Z", "3")];
        let commands = s(&["echo hi", "cp a b"]);
        let outputs = s(&["out/**", "x"]);
        let pass = s(&["CI_*"]);
        for scan in &scans {
            for partition in [None, Some("2026-11-29")] {
                for pass_env in [None, Some(pass.as_slice())] {
                    let view = KeyView {
                        task: "pipeline:load",
                        partition,
                        commands: &commands,
                        cwd: "sub/dir",
                        env: &env,
                        scan,
                        outputs: &outputs,
                        deps: &deps,
                        pass_env,
                    };
                    let key = view.to_key();
                    assert_eq!(view.digest(), key.digest());
                    assert_eq!(CacheKey::decode(&key.encode()).as_ref(), Some(&key));
                }
            }
        }
    }

    #[test]
    fn diff_names_files_env_and_deps() {
        let a = key();
        let mut b = key();
        b.files.insert("b".into(), "3".into());
        b.env_inputs.insert("SECRET".into(), "x".into());
        b.deps.insert("up".into(), "k".into());
        let reasons: Vec<String> = diff(&a, &b)
            .iter()
            .map(|c| c.component().to_string())
            .collect();
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
