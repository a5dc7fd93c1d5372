//! Content hashes with a stat memo: a file whose (size, mtime, inode) match
//! the memo is not read again. Entries modified within the racy window before
//! the memo is saved are not persisted, so an edit in the same timestamp tick
//! as a hash can never be mistaken for "unchanged".

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How recent a modification must be for its memo entry to be distrusted.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// What the memo knows about one file: its stat signature. Equal
/// signatures mean unchanged content (as git, make and ninja assume).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ino: u64,
}

impl Stat {
    /// The signature of a file as `meta` describes it.
    pub fn of(meta: &Metadata) -> Stat {
        Stat {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ino: meta.ino(),
        }
    }
}

/// A memo entry: the signature, the content hash, and whether it was
/// learned this run (so not yet saved).
type Known = (Stat, [u8; 32], bool);

/// Path (as bytes: hashed whole, not by component) → what is known.
type Table = HashMap<OsString, Known, rustc_hash::FxBuildHasher>;

/// Path → signature and content hash, as the state file keeps them.
pub type Kept = HashMap<OsString, (Stat, [u8; 32]), rustc_hash::FxBuildHasher>;

/// The stat memo: path → (stat, content hash), shared by every worker. It
/// is kept in the cache's state file (`cache/state`).
#[derive(Debug, Default)]
pub struct Memo {
    /// What the state file kept: read without a lock (a no-op finds every
    /// file here, on every worker at once).
    kept: Kept,
    /// What this process learned (and may learn again in watch mode).
    entries: Mutex<Table>,
}

/// A file the memo learned, as the state file saves it.
pub type Learned = (PathBuf, Stat, [u8; 32]);

impl Memo {
    /// An empty memo (nothing is known: every file is read).
    pub fn new() -> Memo {
        Memo::default()
    }

    /// A memo that knows what the state file kept.
    pub fn with(kept: Kept) -> Memo {
        Memo {
            kept,
            entries: Mutex::default(),
        }
    }

    /// What was learned since the last call, leaving out files modified
    /// within the racy window before now: those are hashed again next time.
    pub fn learned(&self) -> Vec<Learned> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let cutoff = now.saturating_sub(RACY_WINDOW).as_nanos() as i64;
        let mut guard = self.entries.lock().expect("memo lock");
        let mut out = Vec::new();
        for (path, (stat, hash, fresh)) in guard.iter_mut() {
            if *fresh && stat.mtime_ns < cutoff {
                *fresh = false;
                out.push((PathBuf::from(path), *stat, *hash));
            }
        }
        out
    }

    /// Content hashes of `files` (absolute path and metadata), in order.
    /// Files the memo knows unchanged are not read; the rest are hashed in parallel.
    pub fn hash_files(&self, files: &[(&Path, &Metadata)]) -> io::Result<Vec<[u8; 32]>> {
        // A file whose signature is the one kept has the content kept, even
        // if this process learned another signature of it since.
        let mut out: Vec<Option<[u8; 32]>> = files
            .iter()
            .map(|(path, meta)| self.kept_hash(path, meta))
            .collect();
        let mut todo = Vec::new();
        if out.iter().any(Option::is_none) {
            let guard = self.entries.lock().expect("memo lock");
            for (i, (path, meta)) in files.iter().enumerate() {
                if out[i].is_some() {
                    continue;
                }
                match guard.get(path.as_os_str()) {
                    Some((stat, hash, _)) if *stat == Stat::of(meta) => out[i] = Some(*hash),
                    _ => todo.push(i),
                }
            }
        }
        if !todo.is_empty() {
            let hashed: Vec<(usize, io::Result<[u8; 32]>)> = todo
                .par_iter()
                .map(|&i| {
                    (
                        i,
                        hash_file(files[i].0).map_err(|e| with_path(files[i].0, e)),
                    )
                })
                .collect();
            let mut guard = self.entries.lock().expect("memo lock");
            for (i, h) in hashed {
                let h = h?;
                let (path, meta) = files[i];
                guard.insert(path.as_os_str().to_owned(), (Stat::of(meta), h, true));
                out[i] = Some(h);
            }
        }
        Ok(out
            .into_iter()
            .map(|h| h.expect("every file hashed"))
            .collect())
    }

    /// The content hash of one file (absolute path and metadata), as
    /// [`Memo::hash_files`] gives it.
    pub fn hash_one(&self, path: &Path, meta: &Metadata) -> io::Result<[u8; 32]> {
        match self.kept_hash(path, meta) {
            Some(h) => Ok(h),
            None => Ok(self.hash_files(&[(path, meta)])?[0]),
        }
    }

    /// The hash kept for `path` by the state file, if its signature is `meta`'s.
    fn kept_hash(&self, path: &Path, meta: &Metadata) -> Option<[u8; 32]> {
        match self.kept.get(path.as_os_str()) {
            Some((stat, hash)) if *stat == Stat::of(meta) => Some(*hash),
            _ => None,
        }
    }

    /// Records a hash we already know (a file just restored from the cache).
    pub fn remember(&self, path: &Path, meta: &Metadata, hash: [u8; 32]) {
        let mut guard = self.entries.lock().expect("memo lock");
        guard.insert(path.as_os_str().to_owned(), (Stat::of(meta), hash, true));
    }
}

/// `e`, saying which file it is about.
pub fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The blake3 hash of a file's contents.
pub fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut f = std::fs::File::open(path)?;
    io::copy(&mut f, &mut hasher)?;
    Ok(*hasher.finalize().as_bytes())
}

/// Lower-case hex of a hash.
pub fn hex(h: &[u8; 32]) -> String {
    String::from_utf8(hex_bytes(h).to_vec()).expect("hex digits are ASCII")
}

/// Whether `hex` is the lower-case hex of `h` (nothing allocated).
pub fn hex_is(h: &[u8; 32], hex: &str) -> bool {
    hex_bytes(h) == hex.as_bytes()
}

/// The 32 bytes whose lower-case hex `hex` is; `None` for anything else.
pub fn unhex(hex: &str) -> Option<[u8; 32]> {
    // Each byte's value as a hex digit, 16 for a byte that is not one.
    const VALUE: [u8; 256] = {
        let mut t = [16u8; 256];
        let mut i = 0;
        while i < 16 {
            t[b"0123456789abcdef"[i] as usize] = i as u8;
            i += 1;
        }
        t
    };
    let hex: &[u8; 64] = hex.as_bytes().try_into().ok()?;
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (hi, lo) = (VALUE[usize::from(pair[0])], VALUE[usize::from(pair[1])]);
        bad |= hi | lo;
        *o = hi << 4 | lo;
    }
    (bad < 16).then_some(out)
}

/// The lower-case hex digits of `h`.
fn hex_bytes(h: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(h) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_goes_both_ways_as_blake3_writes_it() {
        for h in [[0u8; 32], [0xff; 32], *blake3::hash(b"hotpass").as_bytes()] {
            let text = hex(&h);
            assert_eq!(text, blake3::Hash::from_bytes(h).to_hex().as_str());
            assert!(hex_is(&h, &text));
            assert_eq!(unhex(&text), Some(h));
        }
        let h = *blake3::hash(b"x").as_bytes();
        assert!(!hex_is(&h, &hex(&[0; 32])));
        assert_eq!(unhex(&hex(&h).to_uppercase()), None);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
    }

    #[test]
    fn memo_reuses_hash_for_unchanged_stat_and_rehashes_on_change() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("a");
        std::fs::write(&f, "one").unwrap();
        let memo = Memo::new();
        let m = std::fs::metadata(&f).unwrap();
        let h1 = memo.hash_files(&[(&f, &m)]).unwrap()[0];
        assert_eq!(h1, *blake3::hash(b"one").as_bytes());
        std::fs::write(&f, "two!").unwrap();
        let m = std::fs::metadata(&f).unwrap();
        let h2 = memo.hash_files(&[(&f, &m)]).unwrap()[0];
        assert_eq!(h2, *blake3::hash(b"two!").as_bytes());
    }

    #[test]
    fn racy_entries_are_not_persisted() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("a");
        std::fs::write(&f, "x").unwrap();
        let memo = Memo::new();
        let m = std::fs::metadata(&f).unwrap();
        memo.hash_files(&[(&f, &m)]).unwrap();
        assert!(
            memo.learned().is_empty(),
            "a file modified just now must not be trusted"
        );
        let old = std::time::SystemTime::now() - 2 * RACY_WINDOW;
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let m = std::fs::metadata(&f).unwrap();
        memo.hash_files(&[(&f, &m)]).unwrap();
        assert_eq!(memo.learned().len(), 1);
        assert!(memo.learned().is_empty(), "learned once");
    }
}
