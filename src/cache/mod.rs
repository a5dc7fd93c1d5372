//! The local cache: a folder of entries (one per successful instance key),
//! content-addressed blobs, the stat memo and the record of each instance's
//! last run (for `explain` and run reasons).

/// Content-addressed blobs: output files and captured logs.
pub mod blobs;
/// The cache key: everything that decides whether a result can be reused.
pub mod key;
/// Entries on disk: atomic writes, verification, stats and gc.
pub mod store;

use std::io;
use std::path::{Path, PathBuf};

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

/// The cache folder and its layout.
#[derive(Debug, Clone)]
pub struct Cache {
    pub dir: PathBuf,
}

impl Cache {
    /// Opens (creating if needed) the cache folder, with a `.gitignore` of `*`.
    pub fn open(dir: &Path) -> io::Result<Cache> {
        for sub in ["entries", "blobs", "runs", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let gi = dir.join(".gitignore");
        if !gi.exists() {
            store::write_atomic(&gi, b"*\n")?;
        }
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    /// A cache handle without creating anything (for read-only commands).
    pub fn at(dir: &Path) -> Cache {
        Cache {
            dir: dir.to_path_buf(),
        }
    }

    /// Where the stat memo lives.
    pub fn memo_path(&self) -> PathBuf {
        self.dir.join("memo.bin")
    }

    /// The per-cache salt for digests of `$NAME` inputs (created once).
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
        store::write_atomic(&path, &salt)?;
        let bytes = std::fs::read(&path)?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| io::Error::other("bad salt file"))
    }
}
