//! Content hashes with a stat memo: a file whose (size, mtime, inode) match
//! the memo is not read again. Entries modified within the racy window before
//! the memo is saved are not persisted, so an edit in the same timestamp tick
//! as a hash can never be mistaken for "unchanged".

use std::collections::HashMap;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How recent a modification must be for its memo entry to be distrusted.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);
/// 2: paths as bytes (file names need not be UTF-8).
const MEMO_VERSION: u32 = 2;

/// What the memo knows about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    size: u64,
    mtime_ns: i64,
    ino: u64,
}

impl Stat {
    fn of(meta: &Metadata) -> Stat {
        Stat {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ino: meta.ino(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct MemoFile {
    version: u32,
    /// Path bytes, stat, content hash.
    entries: Vec<(Vec<u8>, Stat, [u8; 32])>,
}

/// Path → (stat, content hash), and whether anything changed since loading.
type Table = (HashMap<PathBuf, (Stat, [u8; 32])>, bool);

/// The stat memo: path → (stat, content hash), shared by every worker.
#[derive(Debug)]
pub struct Memo {
    path: Option<PathBuf>,
    entries: Mutex<Table>,
}

impl Memo {
    /// Loads the memo from `path`; a missing or unreadable memo is empty.
    pub fn load(path: Option<PathBuf>) -> Memo {
        let mut map = HashMap::new();
        if let Some(p) = &path
            && let Ok(bytes) = std::fs::read(p)
        {
            match postcard::from_bytes::<MemoFile>(&bytes) {
                Ok(f) if f.version == MEMO_VERSION => {
                    map.reserve(f.entries.len());
                    for (k, stat, hash) in f.entries {
                        let path = std::ffi::OsString::from_vec(k);
                        map.insert(PathBuf::from(path), (stat, hash));
                    }
                }
                _ => tracing::debug!("ignoring an unreadable stat memo"),
            }
        }
        Memo {
            path,
            entries: Mutex::new((map, false)),
        }
    }

    /// Content hashes of `files` (absolute path and metadata), in order.
    /// Files the memo knows unchanged are not read; the rest are hashed in parallel.
    pub fn hash_files(&self, files: &[(&Path, &Metadata)]) -> io::Result<Vec<[u8; 32]>> {
        let mut out: Vec<Option<[u8; 32]>> = vec![None; files.len()];
        let mut todo = Vec::new();
        {
            let guard = self.entries.lock().expect("memo lock");
            for (i, (path, meta)) in files.iter().enumerate() {
                match guard.0.get(*path) {
                    Some((stat, hash)) if *stat == Stat::of(meta) => out[i] = Some(*hash),
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
                guard.0.insert(path.to_path_buf(), (Stat::of(meta), h));
                guard.1 = true;
                out[i] = Some(h);
            }
        }
        Ok(out
            .into_iter()
            .map(|h| h.expect("every file hashed"))
            .collect())
    }

    /// Records a hash we already know (a file just restored from the cache).
    pub fn remember(&self, path: &Path, meta: &Metadata, hash: [u8; 32]) {
        let mut guard = self.entries.lock().expect("memo lock");
        guard.0.insert(path.to_path_buf(), (Stat::of(meta), hash));
        guard.1 = true;
    }

    /// Writes the memo atomically, leaving out entries in the racy window.
    pub fn save(&self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let guard = self.entries.lock().expect("memo lock");
        if !guard.1 {
            return Ok(());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let cutoff = now.saturating_sub(RACY_WINDOW).as_nanos() as i64;
        let entries = guard
            .0
            .iter()
            .filter(|(_, (stat, _))| stat.mtime_ns < cutoff)
            .map(|(p, (s, h))| (p.as_os_str().as_bytes().to_vec(), *s, *h))
            .collect();
        let bytes = postcard::to_allocvec(&MemoFile {
            version: MEMO_VERSION,
            entries,
        })
        .map_err(io::Error::other)?;
        crate::atomic::write_atomic(path, &bytes)
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
    blake3::Hash::from_bytes(*h).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_reuses_hash_for_unchanged_stat_and_rehashes_on_change() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("a");
        std::fs::write(&f, "one").unwrap();
        let memo = Memo::load(None);
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
        let memo_path = t.path().join("memo");
        let memo = Memo::load(Some(memo_path.clone()));
        let m = std::fs::metadata(&f).unwrap();
        memo.hash_files(&[(&f, &m)]).unwrap();
        memo.save().unwrap();
        let again = Memo::load(Some(memo_path));
        assert!(
            again.entries.lock().unwrap().0.is_empty(),
            "a file modified just now must not be trusted"
        );
    }
}
