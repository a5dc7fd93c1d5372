//! The state file: one per cache, and all that a no-op reads of it.
//!
//! As ninja keeps `.ninja_log` and n2 its `db`, hotpass keeps `cache/state`:
//! a header, then records appended as runs learn things:
//!
//! - a file's stat signature and content hash (the stat memo), so that an
//!   unchanged input is never read again;
//! - an instance's last key digest and, when a result is stored under it,
//!   that entry (its outputs, log and timing) with the stat signature of
//!   its entry file.
//!
//! A run loads it with one read and appends what it learned with one write,
//! under an `flock` (two processes may append at once); when most records
//! are superseded it is compacted, atomically (a temporary file renamed
//! over it). Every record carries a checksum: a torn tail (a crash
//! mid-append) or any damage is found, said once, and what follows it is
//! ignored until the next save rewrites the file.
//!
//! The entries and blobs stay the source of truth. A record only ever
//! says "this entry file, unchanged since (by its stat signature), holds
//! this": an entry that was rewritten, damaged or evicted meanwhile is read
//! and checked again, as without the state file. So a lost or damaged state
//! file costs time, never a wrong hit.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::store::{Entry, OutputFile};
use crate::hash::{Kept, Learned, Stat};

/// The first bytes of the file; another version is rebuilt from scratch.
const MAGIC: &[u8; 16] = b"hotpass state 4\n";
/// Bytes of a frame besides its body: the length before, the check after.
const FRAME_OVERHEAD: usize = 4 + 8;
/// The most records one frame holds.
const FRAME_RECORDS: usize = 4096;
/// The largest frame the reader accepts (a damaged length is not an
/// allocation of gigabytes).
const MAX_FRAME: usize = 256 << 20;

/// One record of the state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Record {
    /// The stat memo: a file's signature and content hash.
    File {
        path: Vec<u8>,
        stat: Stat,
        #[serde(with = "digest")]
        hash: [u8; 32],
    },
    /// What is known of an instance's last run.
    Instance { name: String, known: Known },
}

/// What the state file knows of an instance: its last run's key digest,
/// and the entry stored under that digest when there is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Known {
    #[serde(with = "digest")]
    pub digest: [u8; 32],
    /// Boxed: the table of instances holds this inline, and is sized for
    /// more instances than it holds.
    pub entry: Option<Box<KnownEntry>>,
}

/// A stored entry as the state file keeps it: what a hit needs, and the
/// stat signature of the entry file it was read from (or written to).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownEntry {
    pub sig: Stat,
    /// The sealed pack the entry is in; `sig` is then the pack's.
    pub pack: Option<u64>,
    format: u32,
    duration_ms: u64,
    created_unix: u64,
    #[serde(with = "digest::optional")]
    log: Option<[u8; 32]>,
    log_size: Option<u64>,
    outputs: Vec<KnownOutput>,
    invocation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct KnownOutput {
    path: String,
    #[serde(with = "digest")]
    hash: [u8; 32],
    size: u64,
    mode: u32,
    link: Option<String>,
}

/// A digest as 32 bytes in one piece (serde's arrays are 32 elements, and
/// reading them one by one was most of what loading the file cost).
mod digest {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(d)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        d.deserialize_bytes(Bytes32)
    }

    struct Bytes32;

    impl Visitor<'_> for Bytes32 {
        type Value = [u8; 32];

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("32 bytes")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<[u8; 32], E> {
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }
    }

    /// The same for an optional digest.
    pub mod optional {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        #[derive(Serialize, Deserialize)]
        struct Wrapped(#[serde(with = "super")] [u8; 32]);

        pub fn serialize<S: Serializer>(d: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
            d.map(Wrapped).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
            Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
        }
    }
}

/// A hex digest as bytes; `None` when it is not one.
pub fn digest_bytes(hex: &str) -> Option<[u8; 32]> {
    crate::hash::unhex(hex)
}

impl KnownEntry {
    /// `entry` as kept, read from a file of signature `sig`; `None` for an
    /// entry whose hashes are not digests (it is simply not kept).
    pub fn of(entry: &Entry, sig: Stat) -> Option<KnownEntry> {
        let log = match &entry.log {
            Some(h) => Some(digest_bytes(h)?),
            None => None,
        };
        let outputs = entry
            .outputs
            .iter()
            .map(|o| {
                Some(KnownOutput {
                    path: o.path.clone(),
                    hash: digest_bytes(&o.hash)?,
                    size: o.size,
                    mode: o.mode,
                    link: o.link.clone(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(KnownEntry {
            sig,
            pack: None,
            format: entry.format,
            duration_ms: entry.duration_ms,
            created_unix: entry.created_unix,
            log,
            log_size: entry.log_size,
            outputs,
            invocation: entry.invocation.clone(),
        })
    }

    /// The same, kept in sealed pack `pack` (`sig` is the pack's).
    pub fn in_pack(mut self, pack: Option<u64>) -> KnownEntry {
        self.pack = pack;
        self
    }

    /// The entry again, for instance `instance` under key `key`. Only what
    /// a hit reads is kept: its dependencies' keys are not.
    pub fn entry(&self, key: &str, instance: &str) -> Entry {
        let hex = |h: &[u8; 32]| crate::hash::hex(h);
        Entry {
            format: self.format,
            key: key.to_owned(),
            instance: instance.to_owned(),
            exit_code: 0,
            duration_ms: self.duration_ms,
            created_unix: self.created_unix,
            log: self.log.as_ref().map(hex),
            log_size: self.log_size,
            outputs: self
                .outputs
                .iter()
                .map(|o| OutputFile {
                    path: o.path.clone(),
                    hash: hex(&o.hash),
                    size: o.size,
                    mode: o.mode,
                    link: o.link.clone(),
                })
                .collect(),
            dep_keys: Default::default(),
            invocation: self.invocation.clone(),
        }
    }
}

/// What a load found in the file.
#[derive(Debug, Default)]
struct Parsed {
    files: FxHashMap<OsString, (Stat, [u8; 32])>,
    instances: FxHashMap<String, Known>,
    /// Records read (superseded ones included).
    records: usize,
    /// Where the file stops making sense, and why.
    damage: Option<(u64, String)>,
    /// The file is of another version (or empty of a header): rebuild it.
    foreign: bool,
}

impl Parsed {
    fn apply(&mut self, r: Record) {
        match r {
            Record::File { path, stat, hash } => {
                self.files.insert(OsString::from_vec(path), (stat, hash));
            }
            Record::Instance { name, known } => {
                self.instances.insert(name, known);
            }
        }
    }

    fn live(&self) -> usize {
        self.files.len() + self.instances.len()
    }
}

/// Reads every record of `bytes`, stopping at the first damage.
fn parse(bytes: &[u8]) -> Parsed {
    let mut p = Parsed::default();
    if bytes.is_empty() {
        return p;
    }
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        p.foreign = true;
        return p;
    }
    // Sized once, not rehashed on the way (each size a table passes
    // through is memory touched), and not beyond the power of two the
    // records need (a table twice too large is touched throughout as
    // well): a file's record takes 75 to 100 bytes, an instance's with
    // its entry about 130, and a project has about two files an instance.
    p.files.reserve(bytes.len() / 150);
    p.instances.reserve(bytes.len() / 200);
    let mut at = MAGIC.len();
    while at < bytes.len() {
        match frame(&bytes[at..], |r| p.apply(r)) {
            Ok((records, used)) => {
                p.records += records;
                at += used;
            }
            Err(why) => {
                p.damage = Some((at as u64, why));
                break;
            }
        }
    }
    p
}

/// Gives each record of the frame at the start of `bytes` to `apply`, one
/// at a time as it is read (a frame of thousands of records is never held
/// whole); returns how many there were and how many bytes the frame takes.
/// A frame whose check fails gives nothing.
fn frame(bytes: &[u8], mut apply: impl FnMut(Record)) -> Result<(usize, usize), String> {
    let Some(len) = bytes.get(..4) else {
        return Err("a torn record".into());
    };
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME {
        return Err("a record length out of bounds".into());
    }
    let Some(framed) = bytes.get(..len + FRAME_OVERHEAD) else {
        return Err("a torn record".into());
    };
    let body = &framed[4..4 + len];
    if check(body) != framed[4 + len..] {
        return Err("a checksum mismatch".into());
    }
    // The body is a sequence as `encode` writes it: a count, then records.
    let unreadable = |e: postcard::Error| format!("an unreadable record: {e}");
    let (count, mut rest) = postcard::take_from_bytes::<usize>(body).map_err(unreadable)?;
    // The check passed, so these are what was written; still, a count
    // beyond what the bytes can hold is refused before reading any.
    if count > body.len() {
        return Err("a record count out of bounds".into());
    }
    for _ in 0..count {
        let (record, after) = postcard::take_from_bytes::<Record>(rest).map_err(unreadable)?;
        apply(record);
        rest = after;
    }
    Ok((count, len + FRAME_OVERHEAD))
}

/// The check a frame ends with: the first 8 bytes of its body's blake3.
pub(super) fn check(body: &[u8]) -> [u8; 8] {
    blake3::hash(body).as_bytes()[..8]
        .try_into()
        .expect("8 bytes")
}

/// Appends `records` to `out` as frames of at most [`FRAME_RECORDS`]
/// records each: one length and one checksum per frame, so a run's
/// appends cost one checksum, and a torn append loses only itself.
fn encode(records: &[Record], out: &mut Vec<u8>) {
    for chunk in records.chunks(FRAME_RECORDS) {
        let body = postcard::to_allocvec(chunk).expect("records serialise");
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&check(&body));
    }
}

/// `flock(op)` on `file`, retried when a signal interrupts it. Another
/// error (a file system without locks) is given back.
fn lock(file: &std::fs::File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The state file of one cache, loaded.
#[derive(Debug)]
pub struct State {
    path: PathBuf,
    instances: Mutex<FxHashMap<String, Known>>,
    /// Entries met this run (read, or stored), by digest: what becomes
    /// known of an instance when its run is recorded.
    seen: Mutex<FxHashMap<[u8; 32], KnownEntry>>,
    /// Whether `seen` was ever given anything.
    met_any: std::sync::atomic::AtomicBool,
    /// Instances whose record is to be appended at the next save.
    pending: Mutex<Vec<String>>,
    /// What the file holds as far as this process knows, kept up to date
    /// by its saves (watch mode saves after every cycle).
    file: Mutex<FileCounts>,
}

/// Records in the file, live ones among them, and whether to rewrite it
/// rather than append (damage, or another version).
#[derive(Debug)]
struct FileCounts {
    records: usize,
    live: usize,
    rewrite: bool,
}

impl State {
    /// Loads the state file at `path` (a missing one is empty), and the
    /// stat memo it holds. Damage is said once, as a warning.
    pub fn load(path: &Path) -> (State, Kept) {
        let (state, files, damage) = State::read(path);
        if let Some(warning) = damage {
            warning.emit();
        }
        (state, files)
    }

    /// [`State::load`], giving back the warning about damage instead of
    /// saying it (the file is read before it is known to be used).
    pub fn read(path: &Path) -> (State, Kept, Option<crate::warning::Warning>) {
        let bytes = match read_shared(path, MAGIC) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::debug!("cannot read the state file: {e}");
                Vec::new()
            }
        };
        let parsed = parse(&bytes);
        let damage =
            parsed
                .damage
                .as_ref()
                .map(|(offset, why)| crate::warning::Warning::StateDamaged {
                    path: path.to_path_buf(),
                    offset: *offset,
                    why: why.clone(),
                });
        let state = State {
            path: path.to_path_buf(),
            file: Mutex::new(FileCounts {
                records: parsed.records,
                live: parsed.live(),
                rewrite: parsed.damage.is_some() || parsed.foreign,
            }),
            instances: Mutex::new(parsed.instances),
            seen: Mutex::default(),
            met_any: Default::default(),
            pending: Mutex::default(),
        };
        (state, parsed.files, damage)
    }

    /// What is known of `instance`'s last run.
    pub fn known(&self, instance: &str) -> Option<Known> {
        self.instances
            .lock()
            .expect("state lock")
            .get(instance)
            .cloned()
    }

    /// The entry of `instance`'s last run (under key `key`, of digest
    /// `digest`) with the signature its file had, when known.
    pub fn entry(
        &self,
        instance: &str,
        digest: &[u8; 32],
        key: &str,
    ) -> Option<(Stat, Option<u64>, Entry)> {
        let instances = self.instances.lock().expect("state lock");
        let known = instances.get(instance).filter(|k| k.digest == *digest)?;
        let entry = known.entry.as_ref()?;
        Some((entry.sig, entry.pack, entry.entry(key, instance)))
    }

    /// Notes an entry met this run (read and checked, or just stored).
    pub fn seen(&self, digest: [u8; 32], entry: KnownEntry) {
        self.seen.lock().expect("state lock").insert(digest, entry);
        self.met_any
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Records `instance`'s run with key `digest`, with the entry under
    /// that digest: the one met this run, else the one already known.
    /// Returns whether `digest` was already its last run's.
    pub fn ran(&self, instance: &str, digest: [u8; 32]) -> bool {
        // A digest is one instance's (its name is in the key): what was met
        // under it moves to the instance. (A no-op meets nothing: no lock.)
        let met = if self.met_any.load(std::sync::atomic::Ordering::Acquire) {
            self.seen.lock().expect("state lock").remove(&digest)
        } else {
            None
        };
        let mut instances = self.instances.lock().expect("state lock");
        let again = instances.get(instance).is_some_and(|k| k.digest == digest);
        // The same key with nothing new met (a hit already recorded): keep it.
        if instances.get(instance).is_some_and(|k| {
            k.digest == digest && (met.is_none() || k.entry.as_deref() == met.as_ref())
        }) {
            return again;
        }
        instances.insert(
            instance.to_owned(),
            Known {
                digest,
                entry: met.map(Box::new),
            },
        );
        drop(instances);
        self.pending
            .lock()
            .expect("state lock")
            .push(instance.to_owned());
        again
    }

    /// Gives `instance`'s last run, when its key is `digest`, the entry
    /// stored under it: one known only after the run recorded it (an entry
    /// in a pack, known by the pack's signature once the pack is sealed).
    pub fn attach(&self, instance: &str, digest: [u8; 32], entry: KnownEntry) {
        let mut instances = self.instances.lock().expect("state lock");
        let Some(known) = instances.get_mut(instance).filter(|k| k.digest == digest) else {
            return;
        };
        if known.entry.as_deref() == Some(&entry) {
            return;
        }
        known.entry = Some(Box::new(entry));
        drop(instances);
        self.pending
            .lock()
            .expect("state lock")
            .push(instance.to_owned());
    }

    /// Sets what is known of `instance` (to be appended at the next save).
    pub fn set(&self, instance: &str, known: Known) {
        let mut instances = self.instances.lock().expect("state lock");
        if instances.get(instance) == Some(&known) {
            return;
        }
        instances.insert(instance.to_owned(), known);
        self.pending
            .lock()
            .expect("state lock")
            .push(instance.to_owned());
    }

    /// Appends what this run learned (`files` from the stat memo, and the
    /// instances it recorded); compacts the file instead when most of it is
    /// superseded, or when it was damaged.
    pub fn save(&self, files: Vec<Learned>) -> io::Result<()> {
        let mut records: Vec<Record> = files
            .into_iter()
            .map(|(path, stat, hash)| Record::File {
                path: path.into_os_string().into_vec(),
                stat,
                hash,
            })
            .collect();
        {
            let pending = std::mem::take(&mut *self.pending.lock().expect("state lock"));
            let instances = self.instances.lock().expect("state lock");
            let mut named = rustc_hash::FxHashSet::default();
            for name in pending {
                if let Some(known) = instances.get(&name)
                    && named.insert(name.clone())
                {
                    records.push(Record::Instance {
                        name,
                        known: known.clone(),
                    });
                }
            }
        }
        let mut counts = self.file.lock().expect("state lock");
        if records.is_empty() && !counts.rewrite {
            return Ok(());
        }
        let file = open_exclusive(&self.path)?;
        if counts.rewrite || counts.records + records.len() > 2 * counts.live + 4096 {
            let live = self.compact(&file, records)?;
            *counts = FileCounts {
                records: live,
                live,
                rewrite: false,
            };
        } else {
            counts.records += records.len();
            let mut buf = Vec::with_capacity(records.len() * 96 + MAGIC.len());
            if file.metadata()?.len() == 0 {
                buf.extend_from_slice(MAGIC);
            }
            encode(&records, &mut buf);
            (&file).write_all(&buf)?;
        }
        Ok(())
        // `file` closes here, and its lock goes with it.
    }

    /// Rewrites the file (held locked as `file`) with only its live
    /// records and `records`, through a temporary file renamed over it:
    /// what other processes appended meanwhile is kept. Returns how many
    /// records it holds now.
    fn compact(&self, file: &std::fs::File, records: Vec<Record>) -> io::Result<usize> {
        let mut bytes = Vec::new();
        (&*file).read_to_end(&mut bytes)?;
        let mut parsed = parse(&bytes);
        for r in records {
            parsed.apply(r);
        }
        let mut out = Vec::with_capacity(parsed.live() * 96 + MAGIC.len());
        out.extend_from_slice(MAGIC);
        let mut files: Vec<_> = parsed.files.into_iter().collect();
        files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut instances: Vec<_> = parsed.instances.into_iter().collect();
        instances.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let live: Vec<Record> = files
            .into_iter()
            .map(|(path, (stat, hash))| Record::File {
                path: path.into_vec(),
                stat,
                hash,
            })
            .chain(
                instances
                    .into_iter()
                    .map(|(name, known)| Record::Instance { name, known }),
            )
            .collect();
        encode(&live, &mut out);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = crate::atomic::temp_in(dir)?;
        tmp.as_file().write_all(&out)?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(live.len())
    }
}

/// The whole file, read under a shared lock (so never half a record that
/// another process is appending); only its first bytes when they are not
/// `magic`.
pub(super) fn read_shared(path: &Path, magic: &[u8]) -> io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    if let Err(e) = lock(&f, libc::LOCK_SH) {
        tracing::debug!("cannot lock the state file to read it: {e}");
    }
    let mut bytes = Vec::with_capacity(f.metadata().map_or(0, |m| m.len() as usize));
    // A file that does not begin as a state file is not read further (it
    // may be big: a run reads `cache/state` before it knows that `cache`
    // is the cache).
    (&mut f).take(magic.len() as u64).read_to_end(&mut bytes)?;
    if bytes.as_slice() == magic {
        f.read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

/// The file opened to append, locked exclusively: the one at `path` now
/// (another process may have compacted it, renaming a new file over the
/// one this process opened first).
pub(super) fn open_exclusive(path: &Path) -> io::Result<std::fs::File> {
    loop {
        let f = std::fs::File::options()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        if let Err(e) = lock(&f, libc::LOCK_EX) {
            tracing::debug!("cannot lock the state file: {e}; appending anyway");
            return Ok(f);
        }
        let here = std::fs::metadata(path)?;
        let mine = f.metadata()?;
        if here.ino() == mine.ino() && here.dev() == mine.dev() {
            return Ok(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(n: u64) -> Stat {
        Stat {
            size: n,
            mtime_ns: n as i64,
            ino: n,
        }
    }

    fn learned(n: usize) -> Vec<Learned> {
        (0..n)
            .map(|i| {
                (
                    PathBuf::from(format!("/p/f{i}")),
                    stat(i as u64),
                    [i as u8; 32],
                )
            })
            .collect()
    }

    fn known(d: u8) -> Known {
        Known {
            digest: [d; 32],
            entry: None,
        }
    }

    #[test]
    fn what_is_saved_loads_again() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state");
        let (s, files) = State::load(&path);
        assert!(files.is_empty());
        s.set("a", known(1));
        s.save(learned(3)).unwrap();
        let (s, files) = State::load(&path);
        assert_eq!(files.len(), 3);
        assert_eq!(
            files.get(std::ffi::OsStr::new("/p/f2")),
            Some(&(stat(2), [2; 32]))
        );
        assert_eq!(s.known("a"), Some(known(1)));
        // A later record supersedes an earlier one.
        s.set("a", known(2));
        s.save(vec![]).unwrap();
        assert_eq!(State::load(&path).0.known("a"), Some(known(2)));
    }

    #[test]
    fn a_torn_or_damaged_tail_keeps_what_precedes_it() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state");
        let (s, _) = State::load(&path);
        s.set("a", known(1));
        s.save(vec![]).unwrap();
        let (s, _) = State::load(&path);
        s.set("b", known(2));
        s.save(vec![]).unwrap();
        let full = std::fs::read(&path).unwrap();
        for cut in [full.len() - 1, full.len() - 5, full.len() - 20] {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (s, _) = State::load(&path);
            assert_eq!(s.known("a"), Some(known(1)), "cut at {cut}");
            assert_eq!(s.known("b"), None, "cut at {cut}");
        }
        let mut flipped = full.clone();
        let last = flipped.len() - 10;
        flipped[last] ^= 0xff;
        std::fs::write(&path, &flipped).unwrap();
        let (s, _) = State::load(&path);
        assert_eq!(s.known("b"), None);
        // The next save rewrites it whole.
        s.set("c", known(3));
        s.save(vec![]).unwrap();
        let (s, _) = State::load(&path);
        assert_eq!(s.known("a"), Some(known(1)));
        assert_eq!(s.known("c"), Some(known(3)));
        assert_eq!(parse(&std::fs::read(&path).unwrap()).damage, None);
    }

    #[test]
    fn garbage_and_other_versions_are_empty() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state");
        for bytes in [&b"not a state file at all"[..], &[0xff; 4096][..], b""] {
            std::fs::write(&path, bytes).unwrap();
            let (s, files) = State::load(&path);
            assert!(files.is_empty());
            assert_eq!(s.known("a"), None);
        }
        let mut huge = MAGIC.to_vec();
        // A length past the bound is damage, not an allocation.
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &huge).unwrap();
        assert!(parse(&huge).damage.is_some());
    }

    /// A file that is not a state file is read no further than its first
    /// bytes, however big it is.
    #[test]
    fn a_foreign_file_is_not_read_whole() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state");
        std::fs::write(&path, vec![b'x'; 1 << 20]).unwrap();
        assert_eq!(read_shared(&path, MAGIC).unwrap().len(), MAGIC.len());
        let (s, files, damage) = State::read(&path);
        assert!(files.is_empty() && s.known("a").is_none() && damage.is_none());
    }

    #[test]
    fn superseded_records_are_compacted_away() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state");
        for round in 0..6u8 {
            let (s, _) = State::load(&path);
            for i in 0..1000 {
                s.set(&format!("t{i}"), known(round));
            }
            s.save(vec![]).unwrap();
        }
        let p = parse(&std::fs::read(&path).unwrap());
        assert_eq!(p.instances.len(), 1000);
        assert!(p.records <= 2 * 1000 + 4096, "{} records", p.records);
        assert_eq!(p.instances["t7"], known(5));
    }

    /// A process that saves again and again (watch mode) compacts too.
    #[test]
    fn one_state_saving_often_is_compacted() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state");
        let (s, _) = State::load(&path);
        for round in 0..10u8 {
            for i in 0..1000 {
                s.set(&format!("t{i}"), known(round));
            }
            s.save(vec![]).unwrap();
        }
        let p = parse(&std::fs::read(&path).unwrap());
        assert!(p.records <= 2 * 1000 + 4096, "{} records", p.records);
        assert_eq!(p.instances["t7"], known(9));
    }

    #[test]
    fn two_states_appending_keep_both() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("state");
        let (a, _) = State::load(&path);
        let (b, _) = State::load(&path);
        a.set("a", known(1));
        b.set("b", known(2));
        a.save(learned(1)).unwrap();
        b.save(vec![(PathBuf::from("/q"), stat(9), [9; 32])])
            .unwrap();
        let (s, files) = State::load(&path);
        assert_eq!(s.known("a"), Some(known(1)));
        assert_eq!(s.known("b"), Some(known(2)));
        let has = |p: &str| files.contains_key(std::ffi::OsStr::new(p));
        assert!(has("/q") && has("/p/f0"));
    }
}
