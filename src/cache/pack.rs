//! Packs: the results a run stores in bulk, in two files instead of two
//! files each.
//!
//! A run stores its first `LOOSE_FIRST` (16) results as loose files
//! (`entries/KEY.entry`, `blobs/xx/HASH`), as git keeps the objects of a
//! small fetch loose. From then on it appends them to a pack of its own:
//!
//! ```text
//! blobs/ID.pack    blob contents of at most MAX_PACKED_BLOB bytes, one
//!                  after the other
//! entries/ID.pack  frames: length (u32), key (64 hex digits), the entry
//!                  and where its blobs are in the blob pack (JSON), the
//!                  first 8 bytes of blake3 of the key and JSON
//! ```
//!
//! They sit beside the loose files, so emptying `blobs/` or `entries/`
//! empties them too.
//!
//! A cold run of a thousand tasks makes two files instead of two thousand.
//! Creating files is what a cold run spends most of its system time on
//! (on an ext4 without a journal each new file passes over every inode of
//! its group deleted in the last seconds), and a `rm -rf cache` has two
//! files to delete.
//!
//! The guarantees are the loose files' own: a blob is checked against its
//! hash whenever it is read, so emptying `blobs/` (packs included) makes a
//! hit `restore-failed`; a frame is checked against its checksum when it
//! is read, and one that fails is lost alone (a miss with a warning). A
//! frame cut short, or a length that no longer fits, ends what is read of
//! its pack, with one warning: the entries after it are lost, never
//! wrong. A pack's blobs are
//! written before the frame that refers to them. The writing run holds a
//! shared `flock` on its entry pack: `cache gc` leaves a pack in use alone.
//! Packs are never appended to after their run: the state file keeps, for
//! an entry in a pack, the pack's stat signature instead of the entry
//! file's.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::store::Entry;
use crate::hash::Stat;
use crate::warning::Warning;

/// How many results a run stores as loose files before it packs the rest.
pub const LOOSE_FIRST: usize = 16;
/// The largest blob a pack takes; larger ones are always loose files.
pub const MAX_PACKED_BLOB: u64 = 64 * 1024;
/// The largest frame: its length is a `u32`. (A damaged length costs no
/// allocation: a frame is read only once found whole in its pack.)
const MAX_FRAME: usize = u32::MAX as usize;
/// A key: 64 hex digits.
const KEY_LEN: usize = 64;

/// A pack's name: 16 hex digits drawn at random when a run opens it.
pub type PackId = u64;

/// Where a blob of a pack is: its pack, offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobAt {
    pub pack: PackId,
    pub offset: u64,
    pub len: u64,
}

/// Where a frame of an entry pack is.
#[derive(Debug, Clone, Copy)]
struct FrameAt {
    pack: PackId,
    offset: u64,
    len: usize,
}

/// A frame's JSON: the entry, and its blobs that are in the pack's blob
/// file (hash, offset, length). Its other blobs are loose files.
#[derive(Debug, Serialize, Deserialize)]
struct Framed {
    entry: Entry,
    packed: Vec<(String, u64, u64)>,
}

/// An entry read from a pack.
pub struct Packed {
    pub entry: Entry,
    pub pack: PackId,
    /// Its blobs in the pack.
    pub blobs: Vec<(String, BlobAt)>,
}

/// The pack a run is writing.
struct Writer {
    id: PackId,
    entries: std::fs::File,
    entries_len: u64,
    blobs: std::fs::File,
    blobs_len: u64,
    blob_at: HashMap<String, BlobAt>,
    frames: HashMap<String, FrameAt>,
    /// The entries written, for the state file once the pack is sealed.
    written: Vec<Entry>,
}

/// What the packs of the folder hold, as read (the running pack aside).
#[derive(Default)]
struct Index {
    frames: HashMap<String, FrameAt>,
    /// The places of the blobs of the entries read so far.
    met: HashMap<String, BlobAt>,
    /// Every packed blob's place: filled only when a blob no entry read so
    /// far refers to is asked for by hash alone.
    blobs: Option<HashMap<String, BlobAt>>,
}

/// The packs of one cache folder.
#[derive(Debug)]
pub struct Packs {
    entries: PathBuf,
    blobs: PathBuf,
    stored: AtomicUsize,
    state: Mutex<Inner>,
    /// Each pack's stat signature and modification time, looked up once.
    sigs: Mutex<HashMap<PackId, Option<(Stat, SystemTime)>>>,
    /// Packs opened for reading (entries, blobs), kept open for the run.
    open: Mutex<HashMap<(bool, PackId), Arc<std::fs::File>>>,
}

#[derive(Default)]
struct Inner {
    writer: Option<Writer>,
    index: Option<Index>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("writing", &self.writer.as_ref().map(|w| w.id))
            .field("indexed", &self.index.is_some())
            .finish()
    }
}

/// A pack's file name.
fn file_name(id: PackId) -> String {
    format!("{id:016x}.pack")
}

/// The id in a pack's file name.
fn parse_name(name: &str) -> Option<PackId> {
    let hex = name.strip_suffix(".pack")?;
    (hex.len() == 16)
        .then(|| PackId::from_str_radix(hex, 16).ok())
        .flatten()
}

fn check(body: &[u8]) -> [u8; 8] {
    let h = blake3::hash(body);
    h.as_bytes()[..8].try_into().expect("8 bytes")
}

/// A frame found in an entry pack: its key, offset and whole length.
type Found = (String, u64, usize);
/// Where a pack stops making sense, and why.
type Damage = Option<(u64, String)>;

/// Frames of an entry pack up to the first damage, and the damage if any.
/// Only with `verify` are their checksums checked: finding the frames of a
/// pack (to know its keys) walks their lengths, and a frame is checked
/// when it is read.
fn frames(bytes: &[u8], verify: bool) -> (Vec<Found>, Damage) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let damage = |why: &str| Some((at as u64, why.to_owned()));
        let Some(len) = bytes.get(at..at + 4) else {
            return (out, damage("torn length"));
        };
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        if !(KEY_LEN..=MAX_FRAME).contains(&len) {
            return (out, damage("impossible length"));
        }
        let Some(body) = bytes.get(at + 4..at + 4 + len) else {
            return (out, damage("torn frame"));
        };
        let Some(sum) = bytes.get(at + 4 + len..at + 4 + len + 8) else {
            return (out, damage("torn checksum"));
        };
        if verify && check(body) != sum {
            return (out, damage("checksum mismatch"));
        }
        let key = &body[..KEY_LEN];
        if !key.iter().all(u8::is_ascii_hexdigit) {
            return (out, damage("key is not a digest"));
        }
        let key = std::str::from_utf8(key).expect("hex digits are text");
        out.push((key.to_owned(), at as u64, 4 + len + 8));
        at += 4 + len + 8;
    }
    (out, None)
}

/// Decodes a frame read whole; the key must be `key`.
fn decode(frame: &[u8], key: &str) -> Result<Framed, String> {
    let (f, _) = frames(frame, true);
    if f.len() != 1 || f[0].2 != frame.len() {
        return Err("damaged in its pack".into());
    }
    let body = &frame[4..frame.len() - 8];
    if &body[..KEY_LEN] != key.as_bytes() {
        return Err("entry is for another key".into());
    }
    let framed: Framed =
        serde_json::from_slice(&body[KEY_LEN..]).map_err(|e| format!("unparseable: {e}"))?;
    if framed.entry.key != key {
        return Err("entry is for another key".into());
    }
    Ok(framed)
}

fn read_at(f: &std::fs::File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

fn flock(file: &std::fs::File, op: libc::c_int) -> bool {
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), op) == 0 }
}

/// One pack as `cache gc` sees it.
pub struct PackContents {
    pub id: PackId,
    pub modified: SystemTime,
    /// Bytes of its two files.
    pub bytes: u64,
    /// Its entries, each with the size of its frame and its packed blobs.
    pub entries: Vec<(Packed, u64)>,
    /// Whether something in it could not be read (what follows is lost).
    pub damaged: bool,
}

impl Packs {
    /// The packs under the cache folder `dir` (nothing is created).
    pub fn at(dir: &Path) -> Packs {
        Packs {
            entries: dir.join("entries"),
            blobs: dir.join("blobs"),
            stored: AtomicUsize::new(0),
            state: Mutex::default(),
            sigs: Mutex::default(),
            open: Mutex::default(),
        }
    }

    fn entry_pack(&self, id: PackId) -> PathBuf {
        self.entries.join(file_name(id))
    }

    fn blob_pack(&self, id: PackId) -> PathBuf {
        self.blobs.join(file_name(id))
    }

    /// Pack `id`'s entry file (`blobs`: its blob file), opened once.
    fn reader(&self, blobs: bool, id: PackId) -> io::Result<Arc<std::fs::File>> {
        let mut open = self.open.lock().expect("open packs");
        if let Some(f) = open.get(&(blobs, id)) {
            return Ok(f.clone());
        }
        let path = if blobs {
            self.blob_pack(id)
        } else {
            self.entry_pack(id)
        };
        let f = Arc::new(std::fs::File::open(path)?);
        open.insert((blobs, id), f.clone());
        Ok(f)
    }

    /// The frame at `at`, read whole.
    fn frame(&self, at: FrameAt) -> io::Result<Vec<u8>> {
        read_at(&*self.reader(false, at.pack)?, at.offset, at.len)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().expect("packs lock")
    }

    /// Counts a result about to be stored: whether it goes to the pack
    /// (the run's first [`LOOSE_FIRST`] do not, however many store at once).
    pub fn claim(&self) -> bool {
        self.stored.fetch_add(1, Relaxed) >= LOOSE_FIRST
    }

    /// Whether a blob stored now goes to a pack: the run has claimed
    /// [`LOOSE_FIRST`] results already, so its entry will be packed too.
    /// Once true, true for the run.
    pub fn packing(&self) -> bool {
        self.stored.load(Relaxed) >= LOOSE_FIRST
    }

    /// The running pack, opened (both files created) on first use.
    fn writer<'a>(&self, inner: &'a mut Inner) -> io::Result<&'a mut Writer> {
        if inner.writer.is_none() {
            std::fs::create_dir_all(&self.entries)?;
            std::fs::create_dir_all(&self.blobs)?;
            let mut raw = [0u8; 8];
            getrandom::fill(&mut raw).map_err(io::Error::other)?;
            let id = PackId::from_le_bytes(raw);
            let open = |p: PathBuf| {
                std::fs::File::options()
                    .write(true)
                    .create_new(true)
                    .open(p)
            };
            // The blob pack first: an entry pack never refers to a missing one.
            let blobs = open(self.blob_pack(id))?;
            let entries = open(self.entry_pack(id))?;
            flock(&entries, libc::LOCK_SH);
            inner.writer = Some(Writer {
                id,
                entries,
                entries_len: 0,
                blobs,
                blobs_len: 0,
                blob_at: HashMap::new(),
                frames: HashMap::new(),
                written: Vec::new(),
            });
        }
        Ok(inner.writer.as_mut().expect("opened"))
    }

    /// Whether this run packed blob `hash` already.
    pub fn packed_here(&self, hash: &str) -> bool {
        self.lock()
            .writer
            .as_ref()
            .is_some_and(|w| w.blob_at.contains_key(hash))
    }

    /// Appends blob `hash` (whose content `bytes` is, checked by the caller).
    pub fn put_blob(&self, hash: &str, bytes: &[u8]) -> io::Result<()> {
        let mut inner = self.lock();
        let w = self.writer(&mut inner)?;
        if w.blob_at.contains_key(hash) {
            return Ok(());
        }
        if let Err(e) = w.blobs.write_all(bytes) {
            // Part of it may be written: the places that follow would be
            // wrong. What was written stays readable; a new pack goes on.
            inner.writer = None;
            return Err(e);
        }
        let at = BlobAt {
            pack: w.id,
            offset: w.blobs_len,
            len: bytes.len() as u64,
        };
        w.blobs_len += bytes.len() as u64;
        w.blob_at.insert(hash.to_owned(), at);
        Ok(())
    }

    /// Appends `entry`; its blobs are loose files or in this run's pack.
    /// `Ok(false)` for an entry too large for a frame (it is kept loose).
    pub fn put_entry(&self, entry: &Entry) -> io::Result<bool> {
        if entry.key.len() != KEY_LEN {
            return Err(io::Error::other("a packed entry's key is a digest"));
        }
        let mut inner = self.lock();
        let w = self.writer(&mut inner)?;
        let packed = entry
            .blobs()
            .filter_map(|h| w.blob_at.get(h).map(|a| (h.to_owned(), a.offset, a.len)))
            .collect();
        let framed = Framed {
            entry: entry.clone(),
            packed,
        };
        let mut body = entry.key.as_bytes().to_vec();
        serde_json::to_writer(&mut body, &framed).map_err(io::Error::other)?;
        if body.len() > MAX_FRAME {
            return Ok(false);
        }
        let mut frame = Vec::with_capacity(body.len() + 12);
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&body);
        frame.extend_from_slice(&check(&body));
        if let Err(e) = w.entries.write_all(&frame) {
            inner.writer = None;
            return Err(e);
        }
        let at = FrameAt {
            pack: w.id,
            offset: w.entries_len,
            len: frame.len(),
        };
        w.entries_len += frame.len() as u64;
        w.frames.insert(entry.key.clone(), at);
        w.written.push(entry.clone());
        Ok(true)
    }

    /// Ends the running pack: nothing is appended to it again. Gives its id
    /// and the entries written to it, for the state file.
    pub fn seal(&self) -> Option<(PackId, Vec<Entry>)> {
        // The next run (of a watch) packs only after its own first results,
        // and looks at the packs afresh.
        self.stored.store(0, Relaxed);
        self.sigs.lock().expect("pack sigs").clear();
        let w = self.lock().writer.take()?;
        let mut inner = self.lock();
        if let Some(index) = &mut inner.index {
            index.frames.extend(w.frames);
            if let Some(blobs) = &mut index.blobs {
                blobs.extend(w.blob_at.iter().map(|(h, a)| (h.clone(), *a)));
            }
            // Still known without reading every entry (a watch's next run).
            index.met.extend(w.blob_at);
        }
        Some((w.id, w.written))
    }

    /// Forgets what was read of the packs: the next lookup reads them again
    /// (another run may have written one meanwhile).
    pub fn forget(&self) {
        self.lock().index = None;
        self.sigs.lock().expect("pack sigs").clear();
        self.open.lock().expect("open packs").clear();
    }

    /// The frames of every pack but the running one, read once.
    fn index<'a>(&self, inner: &'a mut Inner) -> &'a mut Index {
        if inner.index.is_none() {
            let running = inner.writer.as_ref().map(|w| w.id);
            let mut index = Index::default();
            for (id, path) in self.pack_files() {
                if Some(id) == running {
                    continue;
                }
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let (found, damage) = frames(&bytes, false);
                for (key, offset, len) in found {
                    index.frames.insert(
                        key,
                        FrameAt {
                            pack: id,
                            offset,
                            len,
                        },
                    );
                }
                if let Some((offset, why)) = damage {
                    Warning::PackDamaged { path, offset, why }.emit();
                }
            }
            inner.index = Some(index);
        }
        inner.index.as_mut().expect("read")
    }

    /// The entry packs of the folder (id, path).
    fn pack_files(&self) -> Vec<(PackId, PathBuf)> {
        let Ok(rd) = std::fs::read_dir(&self.entries) else {
            return Vec::new();
        };
        let mut out: Vec<(PackId, PathBuf)> = rd
            .flatten()
            .filter_map(|e| Some((parse_name(e.file_name().to_str()?)?, e.path())))
            .collect();
        out.sort();
        out
    }

    /// Where `key`'s frame is, in this run's pack or another.
    fn frame_at(&self, key: &str) -> Option<FrameAt> {
        let mut inner = self.lock();
        if let Some(at) = inner.writer.as_ref().and_then(|w| w.frames.get(key)) {
            return Some(*at);
        }
        self.index(&mut inner).frames.get(key).copied()
    }

    /// Whether `key` is known to be in a pack, without reading any: this
    /// run packed it, or the packs were read and one holds it.
    pub fn knows(&self, key: &str) -> bool {
        let inner = self.lock();
        inner
            .writer
            .as_ref()
            .is_some_and(|w| w.frames.contains_key(key))
            || inner
                .index
                .as_ref()
                .is_some_and(|i| i.frames.contains_key(key))
    }

    /// Whether blob `hash` is known to be in a pack, without reading any:
    /// this run packed it, or an entry read refers to it there.
    pub fn knows_blob(&self, hash: &str) -> bool {
        let inner = self.lock();
        inner
            .writer
            .as_ref()
            .is_some_and(|w| w.blob_at.contains_key(hash))
            || inner
                .index
                .as_ref()
                .is_some_and(|i| i.met.contains_key(hash))
    }

    /// Whether a pack holds an entry for `key` (not checked).
    pub fn has_entry(&self, key: &str) -> bool {
        self.frame_at(key).is_some()
    }

    /// The entry for `key` from a pack: `None` when no pack has it, else
    /// the entry or why it cannot be read.
    pub fn entry(&self, key: &str) -> Option<Result<Packed, String>> {
        let mut at = self.frame_at(key)?;
        let mut read = self.frame(at);
        if read
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
        {
            // Removed since the packs were read (by `cache gc`, which copies
            // out what it keeps): read them again, once.
            self.forget();
            at = self.frame_at(key)?;
            read = self.frame(at);
        }
        let frame = match read {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Err(format!("unreadable in its pack: {e}"))),
        };
        let packed = decode(&frame, key).map(|f| self.packed(at.pack, f));
        if let Ok(p) = &packed
            && let Some(index) = &mut self.lock().index
        {
            index.met.extend(p.blobs.iter().cloned());
        }
        Some(packed)
    }

    fn packed(&self, pack: PackId, f: Framed) -> Packed {
        let blobs = f
            .packed
            .into_iter()
            .map(|(h, offset, len)| (h, BlobAt { pack, offset, len }))
            .collect();
        Packed {
            entry: f.entry,
            pack,
            blobs,
        }
    }

    /// Where blob `hash` is in a pack, if one has it: this run's pack, or
    /// any other (every entry of every pack is read for that, once).
    pub fn blob_at(&self, hash: &str) -> Option<BlobAt> {
        let mut inner = self.lock();
        if let Some(at) = inner.writer.as_ref().and_then(|w| w.blob_at.get(hash)) {
            return Some(*at);
        }
        let index = self.index(&mut inner);
        if let Some(at) = index.met.get(hash) {
            return Some(*at);
        }
        if index.blobs.is_none() {
            let mut blobs = HashMap::new();
            for (key, at) in &index.frames {
                let Ok(frame) = self.frame(*at) else {
                    continue;
                };
                if let Ok(f) = decode(&frame, key) {
                    for (h, offset, len) in f.packed {
                        blobs.insert(
                            h,
                            BlobAt {
                                pack: at.pack,
                                offset,
                                len,
                            },
                        );
                    }
                }
            }
            index.blobs = Some(blobs);
        }
        index.blobs.as_ref().and_then(|b| b.get(hash)).copied()
    }

    /// A packed blob's bytes, unchecked (the caller checks them against
    /// the hash). Never more than [`MAX_PACKED_BLOB`].
    pub fn read_blob(&self, at: BlobAt) -> io::Result<Vec<u8>> {
        if at.len > MAX_PACKED_BLOB {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a packed blob longer than a pack holds",
            ));
        }
        read_at(&*self.reader(true, at.pack)?, at.offset, at.len as usize).map_err(|e| {
            match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    io::Error::new(e.kind(), "the blob's pack ends before it")
                }
                _ => e,
            }
        })
    }

    /// The stat signature and modification time of pack `id`'s entry file,
    /// looked up once per run (a pack is not written again once sealed).
    pub fn sig(&self, id: PackId) -> Option<(Stat, SystemTime)> {
        if let Some(s) = self.sigs.lock().expect("pack sigs").get(&id) {
            return *s;
        }
        let s = std::fs::symlink_metadata(self.entry_pack(id))
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| Some((Stat::of(&m), m.modified().ok()?)));
        self.sigs.lock().expect("pack sigs").insert(id, s);
        s
    }

    /// Marks pack `id` as used now, for `cache gc` (which evicts a packed
    /// entry with its pack, when the pack was last used long ago). Its
    /// signature changes with it: the state file learns it again.
    pub fn touch(&self, id: PackId) {
        use std::os::unix::ffi::OsStrExt;
        let path = self.entry_pack(id);
        if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) {
            // SAFETY: a valid C path, and a NULL `times` sets both to now.
            unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), std::ptr::null(), 0) };
        }
        self.sigs.lock().expect("pack sigs").remove(&id);
    }

    /// The pack `key`'s entry is in, when it is in a sealed one.
    pub fn sealed_pack_of(&self, key: &str) -> Option<PackId> {
        let mut inner = self.lock();
        if inner
            .writer
            .as_ref()
            .is_some_and(|w| w.frames.contains_key(key))
        {
            return None;
        }
        self.index(&mut inner).frames.get(key).map(|a| a.pack)
    }

    /// Every pack but one being written, read whole (for `cache gc`,
    /// `stats` and `doctor`).
    pub fn contents(&self) -> Vec<PackContents> {
        let running = self.lock().writer.as_ref().map(|w| w.id);
        let mut out = Vec::new();
        for (id, path) in self.pack_files() {
            if Some(id) == running {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let blob_bytes = std::fs::metadata(self.blob_pack(id)).map_or(0, |m| m.len());
            let (found, damage) = frames(&bytes, true);
            let mut damaged = damage.is_some();
            let mut entries = Vec::new();
            for (key, offset, len) in found {
                let frame = &bytes[offset as usize..offset as usize + len];
                match decode(frame, &key) {
                    Ok(f) => entries.push((self.packed(id, f), len as u64)),
                    Err(_) => damaged = true,
                }
            }
            out.push(PackContents {
                id,
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                bytes: meta.len() + blob_bytes,
                entries,
                damaged,
            });
        }
        out
    }

    /// Removes pack `id` (both files) unless a run is still writing it.
    pub fn remove(&self, id: PackId) -> io::Result<bool> {
        let path = self.entry_pack(id);
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if !flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
            return Ok(false);
        }
        std::fs::remove_file(&path)?;
        match std::fs::remove_file(self.blob_pack(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.forget();
        Ok(true)
    }

    /// Blob packs whose entry pack is gone (a run killed between the two,
    /// or a `gc` interrupted), for `cache gc` to remove.
    pub fn orphan_blob_packs(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(&self.blobs) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let id = parse_name(e.file_name().to_str()?)?;
                (!self.entry_pack(id).exists()).then(|| e.path())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, blobs: &[&str]) -> Entry {
        Entry {
            format: 3,
            key: format!("{n:02x}").repeat(32),
            instance: format!("t{n}"),
            exit_code: 0,
            duration_ms: 1,
            created_unix: 0,
            log: None,
            log_size: None,
            outputs: blobs
                .iter()
                .map(|h| super::super::store::OutputFile {
                    path: format!("out/{h}"),
                    hash: (*h).to_owned(),
                    size: 1,
                    mode: 0o644,
                    link: None,
                })
                .collect(),
            dep_keys: Default::default(),
            invocation: None,
        }
    }

    #[test]
    fn what_a_run_packs_is_found_by_it_and_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::at(dir.path());
        assert!(!packs.packing());
        for n in 0..LOOSE_FIRST {
            assert!(!packs.claim(), "result {n} is loose");
        }
        assert!(packs.packing());
        assert!(packs.claim());
        packs.put_blob("h1", b"one").unwrap();
        packs.put_entry(&entry(1, &["h1", "loose"])).unwrap();
        let e = packs.entry(&"01".repeat(32)).unwrap().unwrap();
        assert_eq!(e.entry.instance, "t1");
        assert_eq!(e.blobs.len(), 1, "only the packed blob has a place");
        assert_eq!(
            packs.read_blob(packs.blob_at("h1").unwrap()).unwrap(),
            b"one"
        );
        let (id, written) = packs.seal().unwrap();
        assert_eq!(written.len(), 1);

        let next = Packs::at(dir.path());
        assert!(
            !next.packing(),
            "each run packs only after its own first results"
        );
        let e = next.entry(&"01".repeat(32)).unwrap().unwrap();
        assert_eq!((e.entry.instance.as_str(), e.pack), ("t1", id));
        assert_eq!(next.read_blob(next.blob_at("h1").unwrap()).unwrap(), b"one");
        assert!(next.entry(&"02".repeat(32)).is_none());
        assert!(next.sig(id).is_some());
        assert_eq!(next.sealed_pack_of(&"01".repeat(32)), Some(id));
    }

    #[test]
    fn a_torn_or_damaged_pack_keeps_what_precedes_the_damage() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::at(dir.path());
        for n in 1..=3 {
            packs.put_entry(&entry(n, &[])).unwrap();
        }
        let (id, _) = packs.seal().unwrap();
        let path = packs.entry_pack(id);
        let bytes = std::fs::read(&path).unwrap();
        let (f, damage) = frames(&bytes, true);
        assert_eq!((f.len(), damage), (3, None));
        // Torn in the third frame.
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let next = Packs::at(dir.path());
        assert!(next.entry(&"02".repeat(32)).unwrap().is_ok());
        assert!(next.entry(&"03".repeat(32)).is_none());
        // A byte flipped in the second frame's entry: it alone is lost.
        let mut flipped = bytes.clone();
        let second = f[1].1 as usize + 4 + KEY_LEN + 10;
        flipped[second] ^= 0xff;
        std::fs::write(&path, &flipped).unwrap();
        let next = Packs::at(dir.path());
        assert!(next.entry(&"01".repeat(32)).unwrap().is_ok());
        assert!(next.entry(&"02".repeat(32)).unwrap().is_err());
        assert!(next.entry(&"03".repeat(32)).unwrap().is_ok());
        assert!(Packs::at(dir.path()).contents()[0].damaged);
        // A length broken: what follows it is not found.
        let mut broken = bytes.clone();
        broken[f[1].1 as usize + 3] = 0x7f;
        std::fs::write(&path, &broken).unwrap();
        let next = Packs::at(dir.path());
        assert!(next.entry(&"01".repeat(32)).unwrap().is_ok());
        assert!(next.entry(&"03".repeat(32)).is_none());
        // Garbage: nothing, and no crash.
        std::fs::write(&path, b"garbage garbage garbage").unwrap();
        assert!(Packs::at(dir.path()).entry(&"01".repeat(32)).is_none());
        let contents = Packs::at(dir.path()).contents();
        assert!(contents[0].damaged && contents[0].entries.is_empty());
    }

    #[test]
    fn touching_a_pack_changes_its_signature() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::at(dir.path());
        packs.put_entry(&entry(1, &[])).unwrap();
        let (id, _) = packs.seal().unwrap();
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(packs.entry_pack(id))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let (before, modified) = packs.sig(id).unwrap();
        assert_eq!(modified, old);
        packs.touch(id);
        let (after, modified) = packs.sig(id).unwrap();
        assert_ne!(before, after, "the state file learns the pack again");
        assert!(modified.elapsed().unwrap() < std::time::Duration::from_secs(3600));
    }

    #[test]
    fn a_pack_being_written_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let writing = Packs::at(dir.path());
        writing.put_entry(&entry(1, &[])).unwrap();
        let id = writing.lock().writer.as_ref().unwrap().id;
        let gc = Packs::at(dir.path());
        assert!(!gc.remove(id).unwrap(), "in use");
        writing.seal();
        assert!(gc.remove(id).unwrap());
        assert!(!writing.entry_pack(id).exists() && !writing.blob_pack(id).exists());
    }

    #[test]
    fn a_short_or_oversized_blob_place_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::at(dir.path());
        packs.put_blob("h", b"abc").unwrap();
        let at = packs.blob_at("h").unwrap();
        assert!(packs.read_blob(BlobAt { len: 10, ..at }).is_err());
        assert!(
            packs
                .read_blob(BlobAt {
                    len: MAX_PACKED_BLOB + 1,
                    ..at
                })
                .is_err()
        );
    }
}
