//! The cache: keys, the decision hit-or-run, and moving results in and out
//! of a `Store`. `Cache` is the one handle every command
//! opens: the store, the stat memo and the salt, read once.

/// The cache key: everything that decides whether a result can be reused.
pub mod key;
/// The local cache folder: the only code that knows its layout.
pub mod local;
/// Output files in and out of a store: collect after a success, restore on a hit.
pub mod outputs;
/// Packs: the entries and small blobs a run stores in bulk, in two files.
pub mod pack;
/// The decision: hit, or run for a typed reason.
pub mod policy;
/// The remote cache: a shared store reached through OpenDAL.
pub mod remote;
/// The run log: each instance's last recorded key, for reasons and explain.
pub mod runs;
/// The state file: the stat memo and each instance's last key and entry.
pub mod state;
/// The storage trait, entries and blobs.
pub mod store;
/// Programs in the key, found on PATH and known by their content.
pub mod tools;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::capture::Captured;
use crate::graph::Instance;
use crate::hash::Memo;
use crate::warning::Warning;
use key::{CacheKey, KeyContext, Scan};
use local::LocalStore;
use outputs::{Collected, RestoreError};
use store::{Entry, Store};

/// How a run uses the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read hits, store successes.
    Normal,
    /// `--force`: never read, always store.
    Force,
    /// `--no-cache`: neither read nor write.
    Disabled,
}

impl Mode {
    /// From the `--force` and `--no-cache` flags.
    pub fn from_flags(force: bool, no_cache: bool) -> Mode {
        if no_cache {
            Mode::Disabled
        } else if force {
            Mode::Force
        } else {
            Mode::Normal
        }
    }
}

/// An open cache: where results live, the stat memo and the `$NAME` salt.
pub struct Cache {
    mode: Mode,
    /// `None` when the cache is disabled.
    local: Option<LocalStore>,
    memo: Memo,
    /// The state file, when the cache is enabled.
    state: Option<state::State>,
    salt: [u8; 32],
    /// Folders never hashed nor collected (the cache folder itself).
    skip: Vec<PathBuf>,
    tools: tools::ToolIndex,
    /// The shared cache behind the local one, if configured.
    remote: Option<remote::Remote>,
    /// Keys already asked of the remote this run, and those it gave.
    asked: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// How often a hit the state file answers touches its entry file, which
/// `cache gc` reads as its last use.
const TOUCH_EVERY: Duration = Duration::from_secs(3600);

/// A successful run, as [`Cache::save`] stores it.
pub struct Success<'a> {
    /// The key's digest.
    pub digest: &'a str,
    pub duration: Duration,
    /// The captured output.
    pub output: &'a Captured,
    /// Each dependency's key digest.
    pub dep_keys: &'a BTreeMap<String, String>,
    /// The run's invocation id.
    pub invocation: Option<&'a str>,
}

/// A hit put back in place.
pub struct Restored {
    /// The captured output to replay.
    pub output: Captured,
    /// How long the original run took.
    pub saved: Duration,
    /// Output files written (those already in place are left alone), and their bytes.
    pub written: (usize, u64),
}

/// A cache folder's state file, read before the cache is opened (while
/// the project loads) without creating or changing anything; a warning
/// about damage is said only if the cache is then opened with it.
pub struct Preread {
    dir: PathBuf,
    state: state::State,
    files: crate::hash::Kept,
    damage: Option<Warning>,
}

impl Preread {
    /// Reads the state file of the cache folder `dir` (none: empty).
    pub fn read(dir: &Path) -> Preread {
        let (state, files, damage) = state::State::read(&local::LocalStore::at(dir).state_path());
        Preread {
            dir: dir.to_path_buf(),
            state,
            files,
            damage,
        }
    }
}

impl Cache {
    /// Opens the cache folder `dir` (creating it, unless the mode is
    /// `Disabled`), its salt and its stat memo.
    pub fn open(dir: &Path, mode: Mode) -> io::Result<Cache> {
        Cache::open_with(dir, mode, None)
    }

    /// [`Cache::open`], taking the state file from `pre` when it was read
    /// from this folder.
    pub fn open_with(dir: &Path, mode: Mode, pre: Option<Preread>) -> io::Result<Cache> {
        let (local, memo, state, salt) = match mode {
            Mode::Disabled => (None, Memo::new(), None, [0; 32]),
            Mode::Normal | Mode::Force => {
                let local = LocalStore::open(dir)?;
                let salt = match shared_salt() {
                    Some(s) => s,
                    None => local.salt()?,
                };
                let (state, files) = match pre.filter(|p| p.dir == dir) {
                    Some(p) => {
                        if let Some(warning) = p.damage {
                            warning.emit();
                        }
                        (p.state, p.files)
                    }
                    None => state::State::load(&local.state_path()),
                };
                (Some(local), Memo::with(files), Some(state), salt)
            }
        };
        Ok(Cache {
            mode,
            local,
            memo,
            state,
            salt,
            skip: vec![dir.to_path_buf()],
            tools: tools::ToolIndex::from_env(),
            remote: None,
            asked: Default::default(),
        })
    }

    /// Puts the remote cache `setting` names (if any) behind this one. Its
    /// salt replaces the folder's (unless `HOTPASS_CACHE_SALT` is set), so
    /// every machine sharing the remote computes the same keys; this cache
    /// remembers it, so only the first run asks. A disabled cache uses no
    /// remote.
    pub fn with_remote(mut self, setting: Option<&crate::config::RemoteCache>) -> Cache {
        let (Some(local), Some(setting)) = (&self.local, remote::setting(setting)) else {
            return self;
        };
        let Some(r) = remote::Remote::open(&setting) else {
            return self;
        };
        if shared_salt().is_none() {
            let note = format!("{}-salt", r.id());
            let remembered = local
                .remote_note(&note)
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok());
            match remembered.or_else(|| r.salt()) {
                Some(salt) => {
                    if remembered.is_none()
                        && let Err(e) = local.set_remote_note(&note, &salt)
                    {
                        tracing::debug!("cannot remember the remote's salt: {e}");
                    }
                    self.salt = salt;
                }
                // Unreachable (said once): keys stay this folder's own.
                None => return self,
            }
        }
        self.remote = Some(r);
        self
    }

    /// Whether the local cache holds an entry for `key` (not checked).
    pub fn has_local_entry(&self, key: &str) -> bool {
        self.local.as_ref().is_some_and(|l| l.has_entry(key))
    }

    /// Whether a remote cache is behind this one.
    pub fn has_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// What the remote did this run, when there is one.
    pub fn remote_report(&self) -> Option<remote::RemoteReport> {
        self.remote.as_ref().map(remote::Remote::report)
    }

    /// Fetches from the remote, many at once, the entries of `wanted`
    /// (instance, key) that the local cache lacks, so that deciding them
    /// finds them locally. Each key is asked at most once per run.
    pub fn prefetch(&self, wanted: &[(&str, &str)]) {
        let (Some(r), Some(local)) = (&self.remote, &self.local) else {
            return;
        };
        if self.mode != Mode::Normal {
            return;
        }
        let todo: Vec<(&str, &str)> = {
            let mut asked = self.asked.lock().expect("asked");
            wanted
                .iter()
                .filter(|(_, key)| !local.has_entry(key) && asked.insert((*key).to_owned()))
                .copied()
                .collect()
        };
        r.fetch_many(local, &todo);
    }

    /// Whether the remote has `key` (entry and blobs), for `explain`.
    pub fn remote_has(&self, key: &str) -> Option<bool> {
        Some(self.remote.as_ref()?.peek(key).is_some())
    }

    /// Like [`Cache::open`], but a cache that cannot be opened is a warning
    /// and a disabled cache: a broken cache never fails a run.
    pub fn open_or_uncached(dir: &Path, mode: Mode) -> Cache {
        Cache::open_or_uncached_with(dir, mode, None)
    }

    /// [`Cache::open_or_uncached`], with the state file read ahead.
    pub fn open_or_uncached_with(dir: &Path, mode: Mode, pre: Option<Preread>) -> Cache {
        Cache::open_with(dir, mode, pre).unwrap_or_else(|source| {
            Warning::CacheUnavailable {
                dir: dir.to_path_buf(),
                source,
            }
            .emit();
            Cache::open(dir, Mode::Disabled).expect("a disabled cache opens nothing")
        })
    }

    /// How this cache is used.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Where entries and blobs are read and written; `None` when disabled.
    pub fn store(&self) -> Option<&dyn Store> {
        self.local.as_ref().map(|l| l as &dyn Store)
    }

    /// Finds and hashes what `inst`'s key covers, as the tree is now; with
    /// `by_glob`, also which glob matched each file.
    pub fn scan(&self, inst: &Instance, by_glob: bool) -> io::Result<Scan> {
        let cx = KeyContext {
            memo: &self.memo,
            salt: self.salt,
            skip: &self.skip,
            tools: &self.tools,
        };
        Scan::of(&cx, inst, by_glob)
    }

    /// Computes the key of `inst` (of task `task`) from the tree as it is;
    /// with it, the positions of the input globs that match no file.
    pub fn key(
        &self,
        task: &str,
        inst: &Instance,
        deps: BTreeMap<String, String>,
    ) -> io::Result<(CacheKey, Vec<usize>)> {
        let scan = self.key_scan(inst)?;
        let unmatched = scan.unmatched.clone();
        Ok((key::compute(scan, task, inst, deps), unmatched))
    }

    /// What `inst`'s key is made of, found in the tree as it is (its
    /// digest is [`key::KeyView`]'s); the positions of the input globs that
    /// match no file are its `unmatched`.
    pub fn key_scan(&self, inst: &Instance) -> io::Result<Scan> {
        let verbose = tracing::enabled!(tracing::Level::INFO);
        let scan = self.scan(inst, verbose)?;
        if verbose {
            let mut counts = vec![0usize; inst.resolved.input_globs.len()];
            for n in scan.matched_by.iter().flatten() {
                counts[*n] += 1;
            }
            let per_glob: Vec<String> = inst
                .resolved
                .input_globs
                .iter()
                .zip(&counts)
                .filter(|(g, _)| !g.starts_with('!'))
                .map(|(g, c)| format!("{g}: {c}"))
                .collect();
            tracing::info!(
                "{}: {} input files ({}); {} tools",
                inst.name,
                scan.files.len(),
                per_glob.join(", "),
                scan.tools.len()
            );
        }
        Ok(scan)
    }

    /// Puts a hit of `inst` in place under `root`: its outputs (only files
    /// it declares as outputs, outside the cache and `.git`, with safe
    /// modes), then its captured output.
    pub fn restore(
        &self,
        entry: &Entry,
        root: &Path,
        inst: &Instance,
    ) -> Result<Restored, RestoreError> {
        let store = self
            .store()
            .ok_or_else(|| RestoreError::Log(io::Error::other("the cache is disabled")))?;
        let output = match &entry.log {
            Some(h) => store
                .open_blob(h)
                .and_then(|mut r| Captured::read_from(&mut r))
                .map_err(RestoreError::Log)?,
            None => Captured::default(),
        };
        let allowed = outputs::Allowed::new(&inst.resolved.cwd, &inst.resolved.outputs, &self.skip);
        let written = outputs::restore(store, entry, root, &allowed, &self.memo)?;
        Ok(Restored {
            output,
            saved: Duration::from_millis(entry.duration_ms),
            written,
        })
    }

    /// The output files of a success of `inst`, hashed but not stored.
    pub fn outputs_of(&self, root: &Path, inst: &Instance) -> io::Result<Collected> {
        let r = &inst.resolved;
        outputs::collect(None, &self.memo, root, &r.cwd, &r.outputs, &self.skip)
    }

    /// Stores a success of `inst` under `digest`: its output files and its
    /// captured output as blobs, then the entry. Returns what it collected.
    pub fn save(&self, root: &Path, inst: &Instance, run: &Success) -> io::Result<Collected> {
        let r = &inst.resolved;
        let Some(store) = self.store() else {
            return outputs::collect(None, &self.memo, root, &r.cwd, &r.outputs, &self.skip);
        };
        let collected = outputs::collect(
            Some(store),
            &self.memo,
            root,
            &r.cwd,
            &r.outputs,
            &self.skip,
        )?;
        let output = run.output;
        let (log, log_size) = if output.is_empty() {
            (None, None)
        } else {
            let (hash, size) = store_log(store, output)?;
            (Some(hash), Some(size))
        };
        let entry = Entry {
            format: key::FORMAT_VERSION,
            key: run.digest.to_owned(),
            instance: inst.name.clone(),
            exit_code: 0,
            duration_ms: run.duration.as_millis() as u64,
            created_unix: local::now_unix(),
            log,
            log_size,
            outputs: collected.outputs.clone(),
            dep_keys: run.dep_keys.clone(),
            invocation: run.invocation.map(str::to_owned),
        };
        store.put_entry(&entry)?;
        self.seen(&entry);
        if let (Some(r), Some(local)) = (&self.remote, &self.local) {
            r.upload(local, &entry);
        }
        Ok(collected)
    }

    /// Takes the lock of `digest`, so that no other hotpass process runs the
    /// same instance meanwhile; waits (saying so once) while another holds
    /// it, until `cancelled` says to stop. The lock is `None` without a
    /// cache, when cancelled, or when locking is not possible here (then the
    /// instance simply runs, as before locks existed); the flag says whether
    /// it waited (so another process may have stored the result meanwhile).
    pub fn lock(
        &self,
        instance: &str,
        digest: &str,
        cancelled: &dyn Fn() -> bool,
    ) -> (Option<local::KeyLock>, bool) {
        let Some(local) = self.local.as_ref() else {
            return (None, false);
        };
        let mut said = false;
        loop {
            match local.try_lock(digest) {
                Ok(Some(lock)) => return (Some(lock), said),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!("{instance}: cannot lock its key ({e}); running it anyway");
                    return (None, said);
                }
            }
            if !said {
                Warning::WaitingForAnotherRun {
                    instance: instance.to_owned(),
                }
                .emit();
                said = true;
            }
            if cancelled() {
                return (None, said);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Reads the cache's packs again at the next lookup: another run may
    /// have stored in one meanwhile.
    pub fn forget_packs(&self) {
        if let Some(local) = &self.local {
            local.forget_packs();
        }
    }

    /// Records the key of an instance's latest run (for reasons and
    /// explain), and in the state file its digest and the entry stored
    /// under it. A hit whose run is already recorded writes nothing.
    pub fn record_run(&self, instance: &str, key: &CacheKey, digest: &str) {
        self.record_run_with(instance, digest, || key.clone());
    }

    /// [`Cache::record_run`] with the key made only if it must be written.
    pub fn record_run_with(&self, instance: &str, digest: &str, key: impl FnOnce() -> CacheKey) {
        let Some(local) = &self.local else { return };
        // The run record (for `explain`) is written only when the key is
        // not the one the instance last ran with.
        let known = match (&self.state, state::digest_bytes(digest)) {
            (Some(state), Some(d)) => state.ran(instance, d),
            _ => false,
        };
        if !known && let Err(e) = local.record_run(instance, &key().encode()) {
            tracing::debug!("could not record the run of {instance}: {e}");
        }
    }

    /// Notes in the state file an entry just read and checked, or stored,
    /// with its file's signature now.
    fn seen(&self, entry: &Entry) {
        let (Some(state), Some(local)) = (&self.state, &self.local) else {
            return;
        };
        if let Some(d) = state::digest_bytes(&entry.key)
            && let Some((sig, _, pack)) = local.entry_sig(&entry.key)
            && let Some(known) = state::KnownEntry::of(entry, sig)
        {
            state.seen(d, known.in_pack(pack));
        }
    }

    /// A hit the state file answers: `instance`'s last run had key
    /// `digest`, stored in an entry file that has not changed since (by its
    /// stat signature), so its content is what the state file kept. One
    /// stat, no read. Keeps the entry recently used for `cache gc`,
    /// touching it at most once an hour.
    fn known_hit(&self, instance: &str, digest: &str) -> Option<Entry> {
        let (state, local) = (self.state.as_ref()?, self.local.as_ref()?);
        let d = state::digest_bytes(digest)?;
        let (sig, pack, entry) = state.entry(instance, &d, digest)?;
        let (now, modified) = match pack {
            Some(pack) => local.pack_sig(pack)?,
            None => local.entry_stat(digest)?,
        };
        if now != sig {
            return None;
        }
        let idle = modified.elapsed().unwrap_or_default();
        if idle > TOUCH_EVERY {
            match pack {
                Some(pack) => local.touch_pack(pack),
                None => local.touch(digest),
            }
            self.seen(&entry);
            state.ran(instance, d);
        }
        Some(entry)
    }

    /// Whether the state file knew `instance`'s entry under `digest` in a
    /// pack that is still there (so a lookup that misses it found the pack
    /// damaged).
    fn lost_from_pack(&self, instance: &str, digest: &str) -> bool {
        let (Some(state), Some(local)) = (&self.state, &self.local) else {
            return false;
        };
        state::digest_bytes(digest)
            .and_then(|d| state.entry(instance, &d, digest))
            .and_then(|(_, pack, _)| pack)
            .is_some_and(|pack| local.pack_sig(pack).is_some())
    }

    /// The key of an instance's last recorded run.
    pub fn last_run(&self, instance: &str) -> Option<CacheKey> {
        self.local.as_ref()?.last_run(instance)
    }

    /// Saves the stat memo and the run's hit and miss counts.
    pub fn finish(&self, hits: usize, misses: usize) {
        if let Some(r) = &self.remote {
            r.flush();
        }
        let Some(local) = &self.local else { return };
        // The entries this run packed, known from now on by their pack's
        // signature (it is not written again).
        if let Some((pack, entries)) = local.seal_packs()
            && let Some(state) = &self.state
            && let Some((sig, _)) = local.pack_sig(pack)
        {
            for entry in &entries {
                if let Some(d) = state::digest_bytes(&entry.key)
                    && let Some(known) = state::KnownEntry::of(entry, sig)
                {
                    state.attach(&entry.instance, d, known.in_pack(Some(pack)));
                }
            }
        }
        if let Err(e) = local.save_runs() {
            tracing::debug!("could not save the run log: {e}");
        }
        if let Some(state) = &self.state
            && let Err(e) = state.save(self.memo.learned())
        {
            Warning::StateNotSaved(e).emit();
        }
        let r = self.remote_report().unwrap_or_default();
        let counts = local::RunCounts {
            hits,
            misses,
            remote_hits: r.hits,
            uploads: r.uploads,
            bytes_down: r.bytes_down,
            bytes_up: r.bytes_up,
        };
        if let Err(e) = local.record_history(&counts) {
            tracing::debug!("could not record the run's hit counts: {e}");
        }
    }
}
/// The salt `HOTPASS_CACHE_SALT` gives, when set: the same on every machine
/// that sets it, whatever its cache folder.
fn shared_salt() -> Option<[u8; 32]> {
    let v = std::env::var("HOTPASS_CACHE_SALT")
        .ok()
        .filter(|v| !v.is_empty())?;
    Some(blake3::derive_key("hotpass cache salt", v.as_bytes()))
}

/// Stores captured output as a blob and returns its hash: from memory when
/// it is small, else streamed through a temporary file, hashed on the way.
fn store_log(store: &dyn Store, output: &Captured) -> io::Result<(String, u64)> {
    if output.in_memory() {
        let bytes = output.encode()?;
        return Ok((store.put_bytes(&bytes)?, bytes.len() as u64));
    }
    struct Hashing<W> {
        inner: W,
        hasher: blake3::Hasher,
    }
    impl<W: io::Write> io::Write for Hashing<W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.hasher.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }
    let tmp = tempfile::NamedTempFile::new()?;
    let mut w = Hashing {
        inner: io::BufWriter::with_capacity(256 * 1024, tmp.as_file()),
        hasher: blake3::Hasher::new(),
    };
    output.write_to(&mut w)?;
    io::Write::flush(&mut w)?;
    let hash = w.hasher.finalize().to_hex().to_string();
    drop(w);
    let size = tmp.as_file().metadata()?.len();
    store.put_file(&hash, tmp.path())?;
    Ok((hash, size))
}
