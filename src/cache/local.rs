//! The local cache folder, and the only code that knows its layout:
//!
//! ```text
//! cache/
//!   .gitignore        `*`, so the folder never ends up in version control
//!   entries/KEY.entry a checksum line, then the entry as JSON
//!   blobs/xx/HASH     content-addressed outputs and captured logs
//!   entries/ID.pack, blobs/ID.pack
//!                     what a run stores after its first results: its
//!                     entries and small blobs, in two files (`pack.rs`)
//!   runs.log          each instance's last recorded key (for explain and
//!                     reasons; see `runs.rs`)
//!   state             what a no-op reads: the stat memo and each instance's
//!                     last key and entry (see `state.rs`)
//!   salt              the salt for `$NAME` digests
//!   history           hits and misses per run (for stats)
//!   tmp/              temporary files on their way to blobs/
//!   locks             one byte per key (at an offset drawn from it) locked
//!                     while an instance with that key runs
//!   remote/ID         what this cache learned of a remote (its salt)
//! ```

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::key::CacheKey;
use super::pack::{MAX_PACKED_BLOB, PackContents, PackId, Packs};
use super::store::{Entry, Lookup, Store};
use crate::atomic::write_atomic;

/// The local cache folder.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
    entries: PathBuf,
    blobs: PathBuf,
    runs: std::sync::Arc<super::runs::RunLog>,
    /// Whether the `runs/` folder of older versions is there (looked once).
    old_runs: std::sync::Arc<std::sync::OnceLock<bool>>,
    /// `entries/`, opened once: a hit stats its entry relative to it,
    /// sparing the kernel the walk of the whole path every time.
    entries_fd: std::sync::Arc<std::sync::OnceLock<Option<std::os::fd::OwnedFd>>>,
    /// Whether blobs may still be tried as reflinks (copy-on-write clones):
    /// cleared the first time the file system says it has none.
    reflinks: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The packs: entries and small blobs a run stores in bulk.
    packs: std::sync::Arc<Packs>,
}

/// Makes `to` a copy-on-write clone of `from` (btrfs, XFS, bcachefs: no data
/// is copied). `Ok(false)` when the file systems cannot, and `may` is then
/// cleared so that no later file asks again; a copy is made instead.
fn reflink(from: &std::fs::File, to: &std::fs::File, may: &std::sync::atomic::AtomicBool) -> bool {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering::Relaxed;
    if !may.load(Relaxed) {
        return false;
    }
    // SAFETY: two open descriptors; FICLONE reads the second as an int.
    if unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) } == 0 {
        return true;
    }
    let err = io::Error::last_os_error().raw_os_error();
    if matches!(
        err,
        Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EXDEV | libc::EINVAL | libc::ENOSYS)
    ) {
        may.store(false, Relaxed);
    }
    false
}

/// `dir/name` (with `ext` appended), built with one allocation: paths in
/// the cache are made for every instance of every run.
fn child(dir: &Path, parts: &[&str]) -> PathBuf {
    let len = dir.as_os_str().len() + parts.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut s = std::ffi::OsString::with_capacity(len);
    s.push(dir);
    for (i, p) in parts.iter().enumerate() {
        if i == 0 || p.is_empty() || !p.starts_with('.') {
            s.push("/");
        }
        s.push(p);
    }
    PathBuf::from(s)
}

/// Numbers for `hotpass cache stats`.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub entries: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub recent_runs: usize,
    pub recent_hits: usize,
    pub recent_misses: usize,
    /// Hits over lookups in the recent runs, 0..1.
    pub hit_rate: Option<f64>,
    /// Of the recent hits, how many came from a remote cache; and what the
    /// recent runs uploaded and moved.
    pub recent_remote_hits: u64,
    pub recent_uploads: u64,
    pub recent_bytes_down: u64,
    pub recent_bytes_up: u64,
}

/// One run's numbers, as the history keeps them.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunCounts {
    pub hits: usize,
    pub misses: usize,
    pub remote_hits: u64,
    pub uploads: u64,
    pub bytes_down: u64,
    pub bytes_up: u64,
}

/// What `hotpass doctor` reports about the stored entries.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub entries: usize,
    pub corrupt: usize,
    pub missing_blobs: usize,
}

/// What `hotpass cache gc` removed, and the size left.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub entries: usize,
    pub blobs: usize,
    pub bytes_after: u64,
}

/// An exclusive hold on one key: another hotpass process that wants to run
/// the same instance waits for it. Released when dropped (or when the
/// process dies: the kernel drops the lock with the descriptor).
#[derive(Debug)]
pub struct KeyLock {
    _file: std::fs::File,
}

/// Seconds since the epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl LocalStore {
    /// Opens (creating if needed) the cache folder, with a `.gitignore` of `*`.
    pub fn open(dir: &Path) -> io::Result<LocalStore> {
        for sub in ["entries", "blobs", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let gi = dir.join(".gitignore");
        if !gi.exists() {
            write_atomic(&gi, b"*\n")?;
        }
        // Partial blobs of a run that was killed while storing.
        crate::atomic::remove_stale_temps(&dir.join("tmp"));
        Ok(LocalStore::at(dir))
    }

    /// A handle on the folder without creating anything (read-only commands).
    pub fn at(dir: &Path) -> LocalStore {
        LocalStore {
            dir: dir.to_path_buf(),
            entries: dir.join("entries"),
            blobs: dir.join("blobs"),
            runs: std::sync::Arc::new(super::runs::RunLog::at(&dir.join("runs.log"))),
            old_runs: Default::default(),
            entries_fd: Default::default(),
            reflinks: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            packs: std::sync::Arc::new(Packs::at(dir)),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        child(&self.entries, &[key, ".entry"])
    }

    fn blob_path(&self, hash: &str) -> PathBuf {
        let prefix = hash.get(..2).unwrap_or("00");
        child(&self.blobs, &[prefix, hash])
    }

    /// Where versions before the run log kept `instance`'s last key.
    fn old_run_path(&self, instance: &str) -> PathBuf {
        let h = blake3::hash(instance.as_bytes()).to_hex();
        child(&self.dir, &["runs", &h[..32], ".json"])
    }

    /// Where the state file lives.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The stat signature and modification time of `key`'s entry file (not
    /// following a symlink), when there is one.
    pub fn entry_stat(&self, key: &str) -> Option<(crate::hash::Stat, SystemTime)> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let fd = self.entries_fd.get_or_init(|| {
            std::fs::File::options()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(&self.entries)
                .ok()
                .map(std::os::fd::OwnedFd::from)
        });
        let Some(fd) = fd else {
            let meta = std::fs::symlink_metadata(self.entry_path(key)).ok()?;
            return Some((crate::hash::Stat::of(&meta), meta.modified().ok()?));
        };
        // `KEY.entry` and its NUL, on the stack (a key is 64 hex digits).
        let mut name = [0u8; 128];
        let len = key.len() + ".entry".len();
        if len >= name.len() || key.as_bytes().contains(&0) {
            return None;
        }
        name[..key.len()].copy_from_slice(key.as_bytes());
        name[key.len()..len].copy_from_slice(b".entry");
        // SAFETY: a zeroed stat is a valid out-parameter for fstatat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a directory descriptor we own and a valid C name.
        let rc = unsafe {
            libc::fstatat(
                fd.as_raw_fd(),
                name.as_ptr().cast(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return None;
        }
        let stat = crate::hash::Stat {
            size: st.st_size as u64,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
            ino: st.st_ino,
        };
        let modified =
            UNIX_EPOCH + Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec.max(0) as u32);
        Some((stat, modified))
    }

    /// The salt for digests of `$NAME` inputs (created once).
    pub fn salt(&self) -> io::Result<[u8; 32]> {
        let path = self.dir.join("salt");
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(salt) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            return Ok(salt);
        }
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt).map_err(io::Error::other)?;
        // If two processes race, both rename; read back whichever won.
        write_atomic(&path, &salt)?;
        let bytes = std::fs::read(&path)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the salt file is damaged"))
    }

    /// Opens blob `hash` for reading, only if it is a regular file: a blob
    /// replaced by a symlink (to `/dev/zero`), a FIFO or a device would
    /// never end or never start, and is an integrity error instead.
    fn blob_reader(&self, hash: &str) -> io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.blob_path(hash))
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => integrity_error(hash),
                _ => e,
            })?;
        if !f.metadata()?.is_file() {
            return Err(integrity_error(hash));
        }
        Ok(f)
    }

    /// Whether an entry for `key` is stored (not checked).
    pub fn has_entry(&self, key: &str) -> bool {
        self.entry_path(key).is_file() || self.packs.has_entry(key)
    }

    /// The stat signature and modification time of what holds `key`'s
    /// entry: its file, or the sealed pack it is in (then named). `None`
    /// when it is in the pack this run is writing: that pack's signature
    /// is known once it is sealed ([`LocalStore::seal_packs`]).
    pub fn entry_sig(&self, key: &str) -> Option<(crate::hash::Stat, SystemTime, Option<PackId>)> {
        if let Some((stat, modified)) = self.entry_stat(key) {
            return Some((stat, modified, None));
        }
        let pack = self.packs.sealed_pack_of(key)?;
        let (stat, modified) = self.packs.sig(pack)?;
        Some((stat, modified, Some(pack)))
    }

    /// The stat signature and modification time of pack `id` (looked up
    /// once per run).
    pub fn pack_sig(&self, id: PackId) -> Option<(crate::hash::Stat, SystemTime)> {
        self.packs.sig(id)
    }

    /// Ends this run's pack, if it wrote one: its id and its entries.
    pub fn seal_packs(&self) -> Option<(PackId, Vec<Entry>)> {
        self.packs.seal()
    }

    /// Reads the packs again at the next lookup: another run may have
    /// stored in one meanwhile (after waiting for it, say).
    pub fn forget_packs(&self) {
        self.packs.forget();
    }

    /// Marks pack `id` as used now (for `cache gc`).
    pub fn touch_pack(&self, id: PackId) {
        self.packs.touch(id);
    }

    /// Copies a packed entry, and its blobs in the pack, out to loose files
    /// (`cache gc`, before it removes a pack that holds more than it keeps).
    fn unpack_one(&self, p: &super::pack::Packed) -> io::Result<()> {
        for (hash, at) in &p.blobs {
            if self.blob_path(hash).is_file() {
                continue;
            }
            let bytes = self.packs.read_blob(*at)?;
            if blake3::hash(&bytes).to_hex().as_str() != hash {
                return Err(integrity_error(hash));
            }
            write_atomic(&self.blob_path(hash), &bytes)?;
        }
        self.write_loose_entry(&p.entry)
    }

    /// A packed blob's bytes, checked; `None` when no pack has it.
    fn packed_blob(&self, hash: &str) -> Option<io::Result<Vec<u8>>> {
        let at = self.packs.blob_at(hash)?;
        Some(self.packs.read_blob(at).and_then(|bytes| {
            if blake3::hash(&bytes).to_hex().as_str() != hash {
                return Err(integrity_error(hash));
            }
            Ok(bytes)
        }))
    }

    /// Blob `hash`'s bytes, checked, when it is known to be in a pack (no
    /// loose file is looked for first).
    fn known_packed(&self, hash: &str) -> Option<io::Result<Vec<u8>>> {
        self.packs
            .knows_blob(hash)
            .then(|| self.packed_blob(hash))
            .flatten()
    }

    /// Blob `hash` from a pack when it is not a loose file: `err` (the
    /// loose file's error) when no pack has it either.
    fn or_packed(&self, hash: &str, err: io::Error) -> io::Result<Vec<u8>> {
        if err.kind() != io::ErrorKind::NotFound {
            return Err(err);
        }
        self.packed_blob(hash).unwrap_or(Err(err))
    }

    fn write_loose_entry(&self, entry: &Entry) -> io::Result<()> {
        let body = serde_json::to_vec(entry).map_err(io::Error::other)?;
        let mut bytes = blake3::hash(&body).to_hex().as_bytes().to_vec();
        bytes.push(b'\n');
        bytes.extend_from_slice(&body);
        write_atomic(&self.entry_path(&entry.key), &bytes)
    }

    /// Where blob `hash` lives (for copying it elsewhere: a remote upload).
    pub fn blob_file(&self, hash: &str) -> PathBuf {
        self.blob_path(hash)
    }

    /// A new temporary file in the cache's own temp folder (a download on
    /// its way to `blobs/`).
    pub fn temp_file(&self) -> io::Result<tempfile::NamedTempFile> {
        crate::atomic::temp_in(&self.dir.join("tmp"))
    }

    /// A small file of what this cache remembers about a remote (its salt),
    /// under `remote/`; `None` when there is none.
    pub fn remote_note(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(child(&self.dir, &["remote", name])).ok()
    }

    /// Writes a [`LocalStore::remote_note`].
    pub fn set_remote_note(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        write_atomic(&child(&self.dir, &["remote", name]), bytes)
    }

    /// Records the key of an instance's latest run, for `explain` and
    /// reasons: in the run log, saved by [`LocalStore::save_runs`].
    pub fn record_run(&self, instance: &str, encoded_key: &[u8]) -> io::Result<()> {
        self.runs.record(instance, encoded_key)
    }

    /// Appends the runs recorded since the last save to the run log.
    pub fn save_runs(&self) -> io::Result<()> {
        self.runs.save()
    }

    /// The key of an instance's last recorded run: from the run log, else
    /// from the file an older version kept for it (until `cache gc`).
    pub fn last_run(&self, instance: &str) -> Option<CacheKey> {
        if let Some(bytes) = self.runs.last(instance) {
            return CacheKey::decode(&bytes);
        }
        if !*self.old_runs.get_or_init(|| self.dir.join("runs").is_dir()) {
            return None;
        }
        let bytes = std::fs::read(self.old_run_path(instance)).ok()?;
        let nl = bytes.iter().position(|b| *b == b'\n')?;
        (&bytes[..nl] == instance.as_bytes()).then(|| CacheKey::decode(&bytes[nl + 1..]))?
    }

    /// Appends one run's hit and miss counts to the history.
    pub fn record_history(&self, c: &RunCounts) -> io::Result<()> {
        let line = format!(
            "{} {} {} {} {} {} {}\n",
            now_unix(),
            c.hits,
            c.misses,
            c.remote_hits,
            c.uploads,
            c.bytes_down,
            c.bytes_up
        );
        let mut f = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("history"))?;
        f.write_all(line.as_bytes())
    }

    /// Tries to take the lock of `key` without waiting: `Ok(None)` when
    /// another process holds it. Every key locks one byte of the one file
    /// `locks`, at an offset drawn from the key (an open-file-description
    /// lock: per open, like `flock`, so two threads of one process exclude
    /// each other too): no file is made per key. Two keys sharing a byte
    /// (one chance in 2^40) would only wait for each other.
    pub fn try_lock(&self, key: &str) -> io::Result<Option<KeyLock>> {
        use std::os::fd::AsRawFd;
        let path = self.dir.join("locks");
        let open = || {
            std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        };
        let file = match open() {
            // The folder of lock files older versions made: gone for good.
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                std::fs::remove_dir_all(&path)?;
                open()?
            }
            other => other?,
        };
        let at = u64::from_le_bytes(
            blake3::hash(key.as_bytes()).as_bytes()[..8]
                .try_into()
                .expect("8 bytes"),
        ) >> 24;
        // SAFETY: a zeroed flock is a valid value, filled in below.
        let mut range: libc::flock = unsafe { std::mem::zeroed() };
        range.l_type = libc::F_WRLCK as libc::c_short;
        range.l_whence = libc::SEEK_SET as libc::c_short;
        range.l_start = at as libc::off_t;
        range.l_len = 1;
        // SAFETY: fcntl on a descriptor we own, with a valid flock; the
        // non-waiting form never blocks.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &range) };
        if rc == 0 {
            return Ok(Some(KeyLock { _file: file }));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(None),
            _ => Err(err),
        }
    }

    /// Writes, reads back and removes a probe file: whether the folder works.
    pub fn probe(&self) -> io::Result<()> {
        let probe = self.dir.join("tmp").join("doctor-probe");
        write_atomic(&probe, b"ok")?;
        let back = std::fs::read(&probe)?;
        std::fs::remove_file(&probe)?;
        if back != b"ok" {
            return Err(io::Error::other("read back something else"));
        }
        Ok(())
    }

    /// The keys of every loose entry file.
    fn keys(&self) -> Vec<(String, PathBuf, std::fs::Metadata)> {
        files_under(&self.entries, false)
            .into_iter()
            .filter_map(|(p, m)| {
                let name = p.file_name()?.to_str()?;
                let key = name.strip_suffix(".entry")?.to_owned();
                Some((key, p, m))
            })
            .collect()
    }

    /// Every packed entry that no loose file of the same key supersedes
    /// (a loose copy is the one read), with its pack's contents.
    fn packed(&self, loose: &HashSet<String>) -> (Vec<PackContents>, usize) {
        let packs = self.packs.contents();
        let live = packs
            .iter()
            .flat_map(|p| &p.entries)
            .filter(|(e, _)| !loose.contains(&e.entry.key))
            .count();
        (packs, live)
    }

    /// Checks every entry and that its blobs are there.
    pub fn health(&self) -> Health {
        let mut h = Health::default();
        let keys = self.keys();
        let loose: HashSet<String> = keys.iter().map(|(k, _, _)| k.clone()).collect();
        for (key, _, _) in keys {
            h.entries += 1;
            match self.entry(&key) {
                Lookup::Found(e) => {
                    h.missing_blobs += e.blobs().filter(|b| !self.has_blob(b)).count();
                }
                _ => h.corrupt += 1,
            }
        }
        let (packs, _) = self.packed(&loose);
        for p in &packs {
            if p.damaged {
                h.corrupt += 1;
            }
            for (e, _) in p
                .entries
                .iter()
                .filter(|(e, _)| !loose.contains(&e.entry.key))
            {
                h.entries += 1;
                h.missing_blobs += e.entry.blobs().filter(|b| !self.has_blob(b)).count();
            }
        }
        h
    }

    /// Counts entries, blobs and bytes, and the hit rate of the last 50 runs.
    pub fn stats(&self) -> Stats {
        let keys = self.keys();
        let loose: HashSet<String> = keys.iter().map(|(k, _, _)| k.clone()).collect();
        let (packs, packed_entries) = self.packed(&loose);
        let packed_blobs: HashSet<&str> = packs
            .iter()
            .flat_map(|p| &p.entries)
            .flat_map(|(e, _)| e.blobs.iter().map(|(h, _)| h.as_str()))
            .collect();
        let mut s = Stats {
            bytes: files_under(&self.dir, true)
                .iter()
                .map(|(_, m)| m.len())
                .sum(),
            entries: keys.len() + packed_entries,
            blobs: files_under(&self.blobs, false).len() + packed_blobs.len(),
            ..Stats::default()
        };
        if let Ok(text) = std::fs::read_to_string(self.dir.join("history")) {
            for l in text.lines().rev().take(50) {
                let parts: Vec<u64> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                // Older lines have no remote numbers.
                if let [_, h, m, rest @ ..] = parts.as_slice() {
                    s.recent_runs += 1;
                    s.recent_hits += *h as usize;
                    s.recent_misses += *m as usize;
                    if let [rh, up, down, upb] = rest {
                        s.recent_remote_hits += rh;
                        s.recent_uploads += up;
                        s.recent_bytes_down += down;
                        s.recent_bytes_up += upb;
                    }
                }
            }
        }
        let total = s.recent_hits + s.recent_misses;
        s.hit_rate = (total > 0).then(|| s.recent_hits as f64 / total as f64);
        s
    }

    /// Deletes everything in the cache but its `.gitignore`.
    pub fn clean(&self) -> io::Result<()> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for e in rd.flatten() {
            if e.file_name() == ".gitignore" {
                continue;
            }
            let p = e.path();
            if e.file_type()?.is_dir() {
                std::fs::remove_dir_all(&p)?;
            } else {
                std::fs::remove_file(&p)?;
            }
        }
        Ok(())
    }

    /// Evicts entries older than `max_age` (by last use), then the least
    /// recently used until the cache fits `max_size`, then blobs no entry
    /// references, then stale temporary files. A packed entry was last
    /// used when its pack was (a hit marks its pack at most once an hour).
    /// A pack with anything evicted, superseded or damaged in it has what
    /// it still holds copied out to loose files, and is removed, unless a
    /// run is still writing it.
    pub fn gc(&self, max_size: Option<u64>, max_age: Option<Duration>) -> io::Result<Collected> {
        /// An entry and where it is held.
        enum Held {
            Loose(PathBuf),
            Packed(PackId),
        }
        let keys = self.keys();
        let loose: HashSet<String> = keys.iter().map(|(k, _, _)| k.clone()).collect();
        let mut entries: Vec<(Held, SystemTime, Option<Entry>, u64)> = keys
            .into_iter()
            .map(|(key, p, m)| {
                let entry = match self.entry(&key) {
                    Lookup::Found(e) => Some(e),
                    _ => None,
                };
                (
                    Held::Loose(p),
                    m.modified().unwrap_or(UNIX_EPOCH),
                    entry,
                    m.len(),
                )
            })
            .collect();
        let (packs, _) = self.packed(&loose);
        let mut packed_size: HashMap<String, u64> = HashMap::new();
        // Packs to rewrite: anything in them is superseded or unreadable.
        let mut changed: HashSet<PackId> = HashSet::new();
        for p in &packs {
            if p.damaged {
                changed.insert(p.id);
            }
            for (e, len) in &p.entries {
                for (h, at) in &e.blobs {
                    packed_size.insert(h.clone(), at.len);
                }
                if loose.contains(&e.entry.key) {
                    changed.insert(p.id);
                    continue;
                }
                entries.push((Held::Packed(p.id), p.modified, Some(e.entry.clone()), *len));
            }
        }
        entries.sort_by_key(|e| e.1); // oldest first
        let now = SystemTime::now();
        let mut out = Collected::default();
        let mut evict = |held: &Held, changed: &mut HashSet<PackId>| -> io::Result<()> {
            match held {
                Held::Loose(p) => std::fs::remove_file(p)?,
                Held::Packed(id) => {
                    changed.insert(*id);
                }
            }
            out.entries += 1;
            Ok(())
        };
        let mut keep: Vec<(Held, Entry, u64)> = Vec::new();
        for (held, t, e, len) in entries {
            let too_old = max_age.is_some_and(|a| now.duration_since(t).unwrap_or_default() > a);
            match e {
                Some(e) if !too_old => keep.push((held, e, len)),
                _ => evict(&held, &mut changed)?,
            }
        }
        let blob_size = |h: &str| {
            std::fs::metadata(self.blob_path(h))
                .map(|m| m.len())
                .ok()
                .or_else(|| packed_size.get(h).copied())
                .unwrap_or(0)
        };
        let footprint = |keep: &[(Held, Entry, u64)]| -> u64 {
            let mut seen = HashSet::new();
            let mut total = 0;
            for (_, e, len) in keep {
                total += len;
                for h in e.blobs() {
                    if seen.insert(h.to_owned()) {
                        total += blob_size(h);
                    }
                }
            }
            total
        };
        if let Some(limit) = max_size {
            let mut size = footprint(&keep);
            while size > limit && !keep.is_empty() {
                let (held, _, _) = keep.remove(0);
                evict(&held, &mut changed)?;
                size = footprint(&keep);
            }
        }
        // What changed packs still hold goes out to loose files first.
        let kept: HashSet<&str> = keep.iter().map(|(_, e, _)| e.key.as_str()).collect();
        for p in packs.iter().filter(|p| changed.contains(&p.id)) {
            for (e, _) in &p.entries {
                if kept.contains(e.entry.key.as_str()) && !loose.contains(&e.entry.key) {
                    self.unpack_one(e)?;
                }
            }
            if self.packs.remove(p.id)? {
                out.blobs += p
                    .entries
                    .iter()
                    .filter(|(e, _)| !kept.contains(e.entry.key.as_str()))
                    .map(|(e, _)| e.blobs.len())
                    .sum::<usize>();
            }
        }
        for orphan in self.packs.orphan_blob_packs() {
            std::fs::remove_file(orphan)?;
        }
        let referenced: HashSet<&str> = keep.iter().flat_map(|(_, e, _)| e.blobs()).collect();
        for (p, _) in files_under(&self.blobs, false) {
            let name = p
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !referenced.contains(name.as_str()) {
                std::fs::remove_file(&p)?;
                out.blobs += 1;
            }
        }
        // The last keys older versions kept a file each for: the run log
        // has them since.
        let _ = std::fs::remove_dir_all(self.dir.join("runs"));
        for (p, m) in files_under(&self.dir.join("tmp"), false) {
            let age = now
                .duration_since(m.modified().unwrap_or(now))
                .unwrap_or_default();
            if age > Duration::from_secs(3600) {
                let _ = std::fs::remove_file(p);
            }
        }
        self.packs.forget();
        out.bytes_after = self.stats().bytes;
        Ok(out)
    }
}

/// Every file under `dir`, recursively (nothing when it cannot be read);
/// packs (`ID.pack`) only `with_packs`.
fn files_under(dir: &Path, with_packs: bool) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if !with_packs && e.file_name().to_str().is_some_and(|n| n.ends_with(".pack")) {
            continue;
        }
        if m.is_dir() {
            out.extend(files_under(&e.path(), with_packs));
        } else {
            out.push((e.path(), m));
        }
    }
    out
}

fn changed_while_stored(src: &Path) -> io::Error {
    io::Error::other(format!(
        "{} changed while it was being stored",
        src.display()
    ))
}

fn integrity_error(hash: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("blob {hash} fails its integrity check"),
    )
}

impl Store for LocalStore {
    fn entry(&self, key: &str) -> Lookup {
        // Known to be packed: no loose file to look for first.
        if self.packs.knows(key) {
            match self.packs.entry(key) {
                Some(Ok(p)) => return Lookup::Found(p.entry),
                Some(Err(why)) => return Lookup::Corrupt(why),
                None => {}
            }
        }
        let bytes = match std::fs::read(self.entry_path(key)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return match self.packs.entry(key) {
                    None => Lookup::Missing,
                    Some(Ok(p)) => Lookup::Found(p.entry),
                    Some(Err(why)) => Lookup::Corrupt(why),
                };
            }
            Err(e) => return Lookup::Corrupt(format!("unreadable: {e}")),
        };
        let Some(nl) = bytes.iter().position(|b| *b == b'\n') else {
            return Lookup::Corrupt("truncated".into());
        };
        let (sum, body) = (&bytes[..nl], &bytes[nl + 1..]);
        if blake3::hash(body).to_hex().as_bytes() != sum {
            return Lookup::Corrupt("checksum mismatch".into());
        }
        match serde_json::from_slice::<Entry>(body) {
            Ok(e) if e.key == key => Lookup::Found(e),
            Ok(_) => Lookup::Corrupt("entry is for another key".into()),
            Err(e) => Lookup::Corrupt(format!("unparseable: {e}")),
        }
    }

    fn put_entry(&self, entry: &Entry) -> io::Result<()> {
        if self.packs.claim() && entry.key.len() == 64 && self.packs.put_entry(entry)? {
            return Ok(());
        }
        self.write_loose_entry(entry)
    }

    fn touch(&self, key: &str) {
        use std::os::unix::ffi::OsStrExt;
        let path = self.entry_path(key);
        let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return;
        };
        // SAFETY: a valid C path, and a NULL `times` sets both times to now.
        let rc = unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), std::ptr::null(), 0) };
        // A packed entry is used with its pack: marked with it, at most
        // once an hour (it changes the pack's signature).
        if rc != 0
            && let Some(pack) = self.packs.sealed_pack_of(key)
            && let Some((_, modified)) = self.packs.sig(pack)
            && modified.elapsed().unwrap_or_default() > super::TOUCH_EVERY
        {
            self.packs.touch(pack);
        }
    }

    fn has_blob(&self, hash: &str) -> bool {
        self.packs.knows_blob(hash)
            || self.blob_path(hash).is_file()
            || self.packs.blob_at(hash).is_some()
    }

    fn verify_blob(&self, hash: &str) -> io::Result<()> {
        if let Some(bytes) = self.known_packed(hash) {
            return bytes.map(|_| ());
        }
        let mut hasher = blake3::Hasher::new();
        match self.blob_reader(hash) {
            Ok(mut f) => io::copy(&mut f, &mut hasher)?,
            Err(e) => return self.or_packed(hash, e).map(|_| ()),
        };
        if hasher.finalize().to_hex().as_str() != hash {
            return Err(integrity_error(hash));
        }
        Ok(())
    }

    fn read_blob(&self, hash: &str) -> io::Result<Vec<u8>> {
        if let Some(bytes) = self.known_packed(hash) {
            return bytes;
        }
        let mut bytes = Vec::new();
        match self.blob_reader(hash) {
            Ok(mut f) => f.read_to_end(&mut bytes)?,
            Err(e) => return self.or_packed(hash, e),
        };
        if blake3::hash(&bytes).to_hex().as_str() != hash {
            return Err(integrity_error(hash));
        }
        Ok(bytes)
    }

    fn open_blob(&self, hash: &str) -> io::Result<Box<dyn io::Read + Send + '_>> {
        if let Some(bytes) = self.known_packed(hash) {
            return Ok(Box::new(io::Cursor::new(bytes?)));
        }
        match self.blob_reader(hash) {
            Ok(f) => Ok(Box::new(super::store::Verified::new(f, hash))),
            Err(e) => Ok(Box::new(io::Cursor::new(self.or_packed(hash, e)?))),
        }
    }

    fn copy_blob(&self, hash: &str, dest: &Path) -> io::Result<()> {
        if let Some(bytes) = self.known_packed(hash) {
            return std::fs::write(dest, bytes?);
        }
        let mut from = match self.blob_reader(hash) {
            Ok(f) => f,
            Err(e) => return std::fs::write(dest, self.or_packed(hash, e)?),
        };
        let mut to = std::fs::File::create(dest)?;
        if reflink(&from, &to, &self.reflinks) {
            return Ok(());
        }
        io::copy(&mut from, &mut to).map(|_| ())
    }

    fn put_file(&self, hash: &str, src: &Path) -> io::Result<()> {
        let dest = self.blob_path(hash);
        if dest.exists() || self.packs.packed_here(hash) {
            return Ok(());
        }
        let mut file = std::fs::File::open(src)?;
        if self.packs.packing() && file.metadata()?.len() <= MAX_PACKED_BLOB {
            let mut bytes = Vec::new();
            (&mut file)
                .take(MAX_PACKED_BLOB + 1)
                .read_to_end(&mut bytes)?;
            if blake3::hash(&bytes).to_hex().as_str() != hash {
                return Err(changed_while_stored(src));
            }
            return self.packs.put_blob(hash, &bytes);
        }
        let mut tmp = crate::atomic::temp_in(&self.dir.join("tmp"))?;
        let mut hasher = blake3::Hasher::new();
        // A clone shares the file's data, and what is checked is the clone:
        // what will be kept. Else the file is copied as it is read.
        let cloned = reflink(&file, tmp.as_file(), &self.reflinks);
        if cloned {
            file = std::fs::File::open(tmp.path())?;
        }
        // One buffer per thread, not one per file: most outputs are small.
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 256 * 1024]);
        }
        BUF.with_borrow_mut(|buf| -> io::Result<()> {
            loop {
                let n = file.read(buf)?;
                if n == 0 {
                    return Ok(());
                }
                hasher.update(&buf[..n]);
                if !cloned {
                    tmp.write_all(&buf[..n])?;
                }
            }
        })?;
        if hasher.finalize().to_hex().as_str() != hash {
            return Err(changed_while_stored(src));
        }
        // The blob's folder (one of 256) is made when the rename finds it
        // missing, not asked after for every blob.
        match tmp.persist(&dest) {
            Err(e) if e.error.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dest.parent().expect("blob parent"))?;
                e.file.persist(&dest).map_err(|e| e.error)?;
            }
            other => {
                other.map_err(|e| e.error)?;
            }
        }
        Ok(())
    }

    fn put_bytes(&self, bytes: &[u8]) -> io::Result<String> {
        let hash = blake3::hash(bytes).to_hex().to_string();
        let dest = self.blob_path(&hash);
        if dest.exists() || self.packs.packed_here(&hash) {
            return Ok(hash);
        }
        if self.packs.packing() && bytes.len() as u64 <= MAX_PACKED_BLOB {
            self.packs.put_blob(&hash, bytes)?;
        } else {
            write_atomic(&dest, bytes)?;
        }
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_lock_is_exclusive_until_dropped() {
        let t = tempfile::tempdir().unwrap();
        let a = LocalStore::open(t.path()).unwrap();
        let b = LocalStore::open(t.path()).unwrap();
        let key = "0123456789abcdef0123456789abcdef0123";
        let held = a.try_lock(key).unwrap().expect("free at first");
        // The locks belong to the open file: a second open conflicts.
        assert!(b.try_lock(key).unwrap().is_none());
        assert!(
            b.try_lock("another key").unwrap().is_some(),
            "another key is free"
        );
        drop(held);
        assert!(b.try_lock(key).unwrap().is_some());
        // A folder of lock files from an older cache is replaced.
        let old = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(old.path().join("locks/x")).unwrap();
        let c = LocalStore::open(old.path()).unwrap();
        assert!(c.try_lock(key).unwrap().is_some());
        assert!(old.path().join("locks").is_file());
    }

    #[test]
    fn paths_keep_the_layout() {
        let s = LocalStore::at(Path::new("/c"));
        assert_eq!(s.entry_path("k"), Path::new("/c/entries/k.entry"));
        assert_eq!(s.blob_path("abcd"), Path::new("/c/blobs/ab/abcd"));
        assert!(s.old_run_path("t").starts_with("/c/runs"));
        assert_eq!(s.old_run_path("t").extension().unwrap(), "json");
    }

    fn entry(key: &str, log: Option<String>) -> Entry {
        Entry {
            format: 1,
            key: key.into(),
            instance: "t".into(),
            exit_code: 0,
            duration_ms: 5,
            created_unix: 0,
            log,
            log_size: None,
            outputs: vec![],
            dep_keys: Default::default(),
            invocation: None,
        }
    }

    /// The trait, driven against a temporary folder: a miss, a stored entry
    /// that reads back, and damage found rather than returned.
    #[test]
    fn entries_round_trip_and_damage_is_detected() {
        let t = tempfile::tempdir().unwrap();
        let store: &dyn Store = &LocalStore::open(t.path()).unwrap();
        assert!(matches!(store.entry("k1"), Lookup::Missing));
        store.put_entry(&entry("k1", None)).unwrap();
        match store.entry("k1") {
            Lookup::Found(e) => assert_eq!(e, entry("k1", None)),
            other => panic!("expected the entry, got {other:?}"),
        }
        let p = t.path().join("entries/k1.entry");
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(store.entry("k1"), Lookup::Corrupt(_)));
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(store.entry("k1"), Lookup::Corrupt(_)));
        // An entry renamed to another key is refused.
        store.put_entry(&entry("k2", None)).unwrap();
        std::fs::copy(t.path().join("entries/k2.entry"), &p).unwrap();
        assert!(matches!(store.entry("k1"), Lookup::Corrupt(_)));
    }

    #[test]
    fn blobs_are_verified_on_read_and_stored_once() {
        let t = tempfile::tempdir().unwrap();
        let local = LocalStore::open(t.path()).unwrap();
        let store: &dyn Store = &local;
        let h = store.put_bytes(b"hello").unwrap();
        assert_eq!(h, blake3::hash(b"hello").to_hex().as_str());
        assert!(store.has_blob(&h));
        assert_eq!(store.read_blob(&h).unwrap(), b"hello");
        store.verify_blob(&h).unwrap();
        let copy = t.path().join("copy");
        store.copy_blob(&h, &copy).unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), b"hello");
        std::fs::write(local.blob_path(&h), b"jello").unwrap();
        assert!(store.read_blob(&h).is_err());
        assert!(store.verify_blob(&h).is_err());
        assert!(!store.has_blob(&"0".repeat(64)));
    }

    /// Where the file system clones, a blob is a clone with the same bytes;
    /// where it cannot, the first refusal stops the asking and blobs are
    /// copied. Either way what is stored and restored is the file's content.
    #[test]
    fn blobs_are_clones_where_the_file_system_can_and_copies_elsewhere() {
        use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::write(&a, "content").unwrap();
        let may = AtomicBool::new(true);
        let from = std::fs::File::open(&a).unwrap();
        let to = std::fs::File::create(&b).unwrap();
        if reflink(&from, &to, &may) {
            assert_eq!(std::fs::read(&b).unwrap(), b"content");
            assert!(may.load(Relaxed));
        } else {
            eprintln!(
                "{}: no reflinks here; copies are checked",
                t.path().display()
            );
            assert!(!may.load(Relaxed), "a refusal is remembered");
            assert!(!reflink(&from, &to, &may));
        }
        let store = LocalStore::open(&t.path().join("cache")).unwrap();
        for (name, text) in [("x", "one"), ("y", "two")] {
            let src = t.path().join(name);
            std::fs::write(&src, text).unwrap();
            let h = blake3::hash(text.as_bytes()).to_hex().to_string();
            store.put_file(&h, &src).unwrap();
            std::fs::write(&src, "changed after").unwrap();
            assert_eq!(store.read_blob(&h).unwrap(), text.as_bytes());
            let back = t.path().join(format!("{name}.back"));
            store.copy_blob(&h, &back).unwrap();
            assert_eq!(std::fs::read(&back).unwrap(), text.as_bytes());
        }
    }

    #[test]
    fn a_file_that_changes_while_stored_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&t.path().join("cache")).unwrap();
        let src = t.path().join("out.txt");
        std::fs::write(&src, "now").unwrap();
        let wrong = blake3::hash(b"before").to_hex().to_string();
        assert!(store.put_file(&wrong, &src).is_err());
        assert!(!store.has_blob(&wrong));
        let right = blake3::hash(b"now").to_hex().to_string();
        store.put_file(&right, &src).unwrap();
        assert!(store.has_blob(&right));
    }

    #[test]
    fn health_and_gc_see_missing_blobs_and_unreferenced_ones() {
        let t = tempfile::tempdir().unwrap();
        let store = LocalStore::open(t.path()).unwrap();
        let log = store.put_bytes(b"log").unwrap();
        store.put_bytes(b"orphan").unwrap();
        store.put_entry(&entry("k1", Some(log.clone()))).unwrap();
        store.put_entry(&entry("k2", Some("f".repeat(64)))).unwrap();
        assert_eq!(
            store.health(),
            Health {
                entries: 2,
                corrupt: 0,
                missing_blobs: 1
            }
        );
        let removed = store.gc(None, None).unwrap();
        assert_eq!(
            (removed.entries, removed.blobs),
            (0, 1),
            "only the orphan goes"
        );
        assert!(store.has_blob(&log));
    }

    #[test]
    fn run_records_read_back_only_for_their_instance() {
        let t = tempfile::tempdir().unwrap();
        let store = LocalStore::open(t.path()).unwrap();
        assert!(store.last_run("a").is_none());
        let key = crate::cache::key::tests::key();
        store.record_run("a", &key.encode()).unwrap();
        assert_eq!(store.last_run("a"), Some(key.clone()));
        assert!(store.last_run("b").is_none());
        store.save_runs().unwrap();
        assert_eq!(LocalStore::at(t.path()).last_run("a"), Some(key.clone()));
    }

    #[test]
    fn a_last_key_an_older_version_kept_is_read_until_gc() {
        let t = tempfile::tempdir().unwrap();
        let key = crate::cache::key::tests::key();
        let store = LocalStore::open(t.path()).unwrap();
        let mut old = b"a\n".to_vec();
        old.extend_from_slice(&key.encode());
        write_atomic(&store.old_run_path("a"), &old).unwrap();
        write_atomic(&store.old_run_path("b"), &old).unwrap();
        assert_eq!(store.last_run("a"), Some(key));
        assert!(
            store.last_run("b").is_none(),
            "a record of another instance"
        );
        store.gc(None, None).unwrap();
        assert!(!t.path().join("runs").exists());
        assert!(LocalStore::at(t.path()).last_run("a").is_none());
    }
}
