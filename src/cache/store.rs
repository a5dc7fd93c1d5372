//! The storage trait: where entries and blobs live. The local folder is the
//! first implementation (`LocalStore`); a remote
//! store is another. Nothing above `cache/` knows how a store lays things out.
//!
//! Every method is blocking and the trait is `Send + Sync`, so a store can be
//! asked from any thread: the scheduler checks ready instances in parallel
//! batches, and a slow (network) store belongs on the worker pool rather
//! than on the scheduler's thread.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One stored output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Relative to the project root, `/`-separated.
    pub path: String,
    pub hash: String,
    pub size: u64,
    pub mode: u32,
    /// A symlink, stored as the path it holds (encoded as a relative path
    /// is, so any bytes survive); it has no blob, and `hash` is
    /// [`link_hash`](crate::fileset::link_hash) of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// A stored success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub format: u32,
    pub key: String,
    pub instance: String,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub created_unix: u64,
    /// Blob holding the captured output, if any.
    pub log: Option<String>,
    /// The log blob's size (entries from before it was recorded lack it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_size: Option<u64>,
    pub outputs: Vec<OutputFile>,
    /// Each dependency's key when this was stored: a dependency whose key
    /// differs now re-ran and wrote the same outputs (early cutoff).
    #[serde(default)]
    pub dep_keys: std::collections::BTreeMap<String, String>,
    /// The invocation id of the run that stored it (for provenance: a
    /// restored output is attested as that run's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation: Option<String>,
}

impl Entry {
    /// Every blob the entry refers to: its outputs, then its log.
    pub fn blobs(&self) -> impl Iterator<Item = &str> {
        self.outputs
            .iter()
            .filter(|o| o.link.is_none())
            .map(|o| o.hash.as_str())
            .chain(self.log.as_deref())
    }
}

/// A reader that checks what it reads against a blake3 hash, failing at
/// the end (`InvalidData`) if the content does not match.
pub struct Verified<R> {
    inner: R,
    hasher: blake3::Hasher,
    expected: String,
}

impl<R: io::Read> Verified<R> {
    /// Reads `inner`, which must hash to `expected` (hex).
    pub fn new(inner: R, expected: &str) -> Self {
        Verified {
            inner,
            hasher: blake3::Hasher::new(),
            expected: expected.to_owned(),
        }
    }
}

impl<R: io::Read> io::Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() && self.hasher.finalize().to_hex().as_str() != self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {} fails its integrity check", self.expected),
            ));
        }
        Ok(n)
    }
}

/// What looking up a key found.
#[derive(Debug)]
pub enum Lookup {
    /// No entry for this key.
    Missing,
    /// An entry exists but fails its integrity check (why).
    Corrupt(String),
    /// A verified entry.
    Found(Entry),
}

/// Entries (one per successful key) and content-addressed blobs.
pub trait Store: Send + Sync {
    /// Reads and verifies the entry for `key`.
    fn entry(&self, key: &str) -> Lookup;
    /// Stores an entry atomically; its blobs must be stored first.
    fn put_entry(&self, entry: &Entry) -> io::Result<()>;
    /// Marks an entry as used now (for least-recently-used eviction).
    fn touch(&self, key: &str);
    /// Whether a blob is there (its content is checked when it is read).
    fn has_blob(&self, hash: &str) -> bool;
    /// Checks a blob is there and matches its hash, without keeping it.
    fn verify_blob(&self, hash: &str) -> io::Result<()>;
    /// A blob's bytes, checked against its hash.
    fn read_blob(&self, hash: &str) -> io::Result<Vec<u8>>;
    /// A blob as a stream, checked against its hash as it is read: the read
    /// that reaches the end fails if the content does not match.
    fn open_blob(&self, hash: &str) -> io::Result<Box<dyn io::Read + Send + '_>>;
    /// Copies a blob's content into the file `dest`.
    fn copy_blob(&self, hash: &str, dest: &Path) -> io::Result<()>;
    /// Stores the file `src`, whose content hash is `hash`, unless present;
    /// fails if the file no longer has that hash.
    fn put_file(&self, hash: &str, src: &Path) -> io::Result<()>;
    /// Stores bytes as a blob and returns their hash.
    fn put_bytes(&self, bytes: &[u8]) -> io::Result<String>;
}
