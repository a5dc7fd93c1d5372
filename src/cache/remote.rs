//! The remote cache: storage a team already runs (WebDAV, S3, Redis, GCS,
//! Azure Blob, the GitHub Actions cache), reached through OpenDAL.
//!
//! The local cache stays the one hotpass restores from: a remote hit is
//! downloaded into it first — the entry checked (size, signature, paths,
//! hashes), every blob verified against its blake3 — and then restored as
//! any local hit, under the local path rules. Successes are uploaded in the
//! background and flushed before exit. A remote that fails is said once
//! and then left alone for the rest of the run: it never fails a build.
//!
//! ```text
//! ROOT/v1/salt          the salt for `$NAME` digests, shared by every machine
//! ROOT/v1/entries/KEY   "hotpass-entry 1 MAC\n", then the entry as JSON
//! ROOT/v1/blobs/HASH    content-addressed outputs and logs
//! ```

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use opendal::{ErrorKind, Operator};

use super::local::LocalStore;
use super::store::{Entry, Store};
use crate::config::RemoteCache;
use crate::config::remote::{Backend, RemoteUrl};
use crate::warning::Warning;

/// The largest entry hotpass reads from a remote.
pub const MAX_ENTRY: u64 = 16 << 20;
/// The largest blob hotpass downloads.
pub const MAX_BLOB: u64 = 8 << 30;
/// Most output files one remote entry may name.
const MAX_OUTPUTS: usize = 200_000;
/// Lookups (and downloads) in flight at once.
const LOOKUPS: usize = 128;
/// Uploads in flight at once; a success waits for a slot beyond that.
const UPLOADS: usize = 128;
/// A blob up to this size is uploaded without asking first whether the
/// remote has it: one request instead of two.
const ASK_FIRST: u64 = 256 << 10;
/// Blobs move in pieces of this size, so memory stays flat.
const PIECE: u64 = 8 << 20;
/// Marks the entry format on the remote.
const ENTRY_MAGIC: &str = "hotpass-entry 1";

/// What the remote did during a run, for the summary and `cache stats`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RemoteReport {
    /// The URL, without options.
    pub url: String,
    /// `read-write` or `read-only`, and why.
    pub mode: String,
    pub hits: u64,
    pub uploads: u64,
    pub bytes_down: u64,
    pub bytes_up: u64,
    /// Whether it failed and was left alone for the rest of the run.
    pub unavailable: bool,
}

/// What the run's threads and the background uploads share.
#[derive(Default)]
struct Shared {
    hits: AtomicU64,
    uploads: AtomicU64,
    bytes_down: AtomicU64,
    bytes_up: AtomicU64,
    down: AtomicBool,
    /// Whether the failure was said.
    warned: AtomicBool,
    /// Why a background upload failed: said (once) when uploads are flushed,
    /// on the thread that reports.
    upload_failed: Mutex<Option<String>>,
}

/// Why a remote entry was not used.
enum Miss {
    /// Not there.
    Absent,
    /// There, but refused (damaged, unsigned, unsafe): a warning, a miss.
    Refused(String),
    /// The remote failed (down, timed out, 5xx): said once, then left alone.
    Down(String),
}

/// A remote cache, opened.
pub struct Remote {
    op: Operator,
    rt: tokio::runtime::Runtime,
    shown: String,
    /// Whether successes are uploaded, and why (for the summary).
    writes: bool,
    why: &'static str,
    /// The key entries are signed with (`HOTPASS_REMOTE_CACHE_KEY`).
    mac: Option<[u8; 32]>,
    shared: Arc<Shared>,
    /// Blobs found damaged on the remote: an upload replaces them.
    bad: Mutex<HashSet<String>>,
    slots: Arc<tokio::sync::Semaphore>,
    uploads: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Whether `v1/entries/` and `v1/blobs/` were made this run (storage
    /// with folders, WebDAV, needs them before a write).
    folders: Arc<tokio::sync::OnceCell<()>>,
}

/// The remote setting in force: `HOTPASS_REMOTE_CACHE` wins over the config.
pub fn setting(config: Option<&RemoteCache>) -> Option<RemoteCache> {
    match std::env::var("HOTPASS_REMOTE_CACHE") {
        Ok(url) if !url.is_empty() => Some(RemoteCache {
            url,
            read_only: config.and_then(|c| c.read_only),
        }),
        _ => config.cloned(),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn is_hex_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The storage client for `url`, credentials from the environment.
fn operator(url: &RemoteUrl) -> opendal::Result<Operator> {
    use opendal::services;
    let mut cfg: Vec<(String, String)> = vec![("root".into(), url.root.clone())];
    let mut set = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            cfg.push((k.to_owned(), v));
        }
    };
    let op = match &url.backend {
        Backend::S3 { bucket } => {
            set("bucket", Some(bucket.clone()));
            set(
                "endpoint",
                url.option("endpoint")
                    .map(str::to_owned)
                    .or_else(|| env("AWS_ENDPOINT_URL_S3"))
                    .or_else(|| env("AWS_ENDPOINT_URL")),
            );
            set(
                "region",
                url.option("region")
                    .map(str::to_owned)
                    .or_else(|| env("AWS_REGION"))
                    .or_else(|| env("AWS_DEFAULT_REGION"))
                    .or_else(|| Some("us-east-1".into())),
            );
            set("access_key_id", env("AWS_ACCESS_KEY_ID"));
            set("secret_access_key", env("AWS_SECRET_ACCESS_KEY"));
            set("session_token", env("AWS_SESSION_TOKEN"));
            Operator::from_iter::<services::S3>(cfg)?
        }
        Backend::Webdav { endpoint } => {
            set("endpoint", Some(endpoint.clone()));
            set("username", env("HOTPASS_REMOTE_CACHE_USERNAME"));
            set("password", env("HOTPASS_REMOTE_CACHE_PASSWORD"));
            set("token", env("HOTPASS_REMOTE_CACHE_TOKEN"));
            // The two folders are made once per run (`Remote::folders`),
            // not before every write.
            set("disable_create_dir", Some("true".into()));
            Operator::from_iter::<services::Webdav>(cfg)?
        }
        Backend::Redis { endpoint, db } => {
            set("endpoint", Some(endpoint.clone()));
            set("db", Some(db.to_string()));
            set("username", env("HOTPASS_REMOTE_CACHE_USERNAME"));
            set(
                "password",
                env("HOTPASS_REMOTE_CACHE_PASSWORD").or_else(|| env("REDIS_PASSWORD")),
            );
            Operator::from_iter::<services::Redis>(cfg)?
        }
        Backend::Gcs { bucket } => {
            set("bucket", Some(bucket.clone()));
            set("endpoint", url.option("endpoint").map(str::to_owned));
            set("credential_path", env("GOOGLE_APPLICATION_CREDENTIALS"));
            Operator::from_iter::<services::Gcs>(cfg)?
        }
        Backend::Azblob { container } => {
            set("container", Some(container.clone()));
            let account = env("AZURE_STORAGE_ACCOUNT");
            set(
                "endpoint",
                url.option("endpoint").map(str::to_owned).or_else(|| {
                    account
                        .as_ref()
                        .map(|a| format!("https://{a}.blob.core.windows.net"))
                }),
            );
            set("account_name", account);
            set("account_key", env("AZURE_STORAGE_KEY"));
            set("sas_token", env("AZURE_STORAGE_SAS_TOKEN"));
            Operator::from_iter::<services::Azblob>(cfg)?
        }
        Backend::Ghac => Operator::from_iter::<services::Ghac>(cfg)?,
    };
    Ok(op.layer(
        opendal::layers::TimeoutLayer::new()
            .with_timeout(Duration::from_secs(5))
            .with_io_timeout(Duration::from_secs(10)),
    ))
}

/// Makes the remote's folders, once per run.
async fn make_folders(op: &Operator, done: &tokio::sync::OnceCell<()>) -> opendal::Result<()> {
    done.get_or_try_init(|| async {
        for dir in ["v1/", "v1/entries/", "v1/blobs/"] {
            op.create_dir(dir).await?;
        }
        Ok(())
    })
    .await
    .map(|_| ())
}

/// Connects once to the server a URL names, when it names one (not a
/// cloud service's default endpoint), so that a server that is down is
/// found in milliseconds, not after a client's retries.
fn probe(url: &RemoteUrl) -> Result<(), String> {
    let endpoint = match &url.backend {
        Backend::Webdav { endpoint } | Backend::Redis { endpoint, .. } => Some(endpoint.clone()),
        Backend::S3 { .. } => url
            .option("endpoint")
            .map(str::to_owned)
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL")),
        _ => None,
    };
    let Some(endpoint) = endpoint else {
        return Ok(());
    };
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("http", &endpoint));
    let authority = rest.split('/').next().unwrap_or(rest);
    let default = match scheme {
        "https" | "rediss" => 443,
        "redis" => 6379,
        _ => 80,
    };
    let host_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:{default}")
    };
    use std::net::ToSocketAddrs;
    let addrs = host_port
        .to_socket_addrs()
        .map_err(|e| format!("{host_port}: {e}"))?;
    let mut last = format!("{host_port}: no address");
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, Duration::from_secs(3)) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{host_port}: {e}"),
        }
    }
    Err(last)
}

impl Remote {
    /// Opens the remote `setting` names (no network yet). A URL that cannot
    /// be used is a warning and no remote: a run never fails for it.
    pub fn open(setting: &RemoteCache) -> Option<Remote> {
        let fail = |why: String| {
            Warning::RemoteUnavailable {
                url: setting.url.clone(),
                why,
            }
            .emit();
            None
        };
        // The HTTP client, installed on first use rather than before `main`
        // (a run without a remote pays nothing for it).
        opendal::install_default();
        let url = match RemoteUrl::parse(&setting.url) {
            Ok(u) => u,
            Err(why) => return fail(why),
        };
        let op = match operator(&url) {
            Ok(op) => op,
            Err(e) => return fail(e.to_string()),
        };
        if let Err(why) = probe(&url) {
            return fail(why);
        }
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hotpass-remote")
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return fail(e.to_string()),
        };
        let ci = env("CI").is_some_and(|v| v == "true");
        let (writes, why) = match setting.read_only {
            Some(true) => (false, "read_only = true"),
            Some(false) => (true, "read_only = false"),
            None if ci => (true, "CI=true"),
            None => (false, "not CI"),
        };
        let shown = setting.url.split('?').next().unwrap_or("").to_owned();
        Some(Remote {
            op,
            rt,
            shown,
            writes,
            why,
            mac: env("HOTPASS_REMOTE_CACHE_KEY")
                .map(|k| blake3::derive_key("hotpass remote cache entry signature", k.as_bytes())),
            shared: Arc::default(),
            bad: Mutex::new(HashSet::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(UPLOADS)),
            // Only WebDAV has folders to make; elsewhere they are done.
            folders: Arc::new(tokio::sync::OnceCell::new_with(
                (!matches!(url.backend, Backend::Webdav { .. })).then_some(()),
            )),
            uploads: Mutex::new(Vec::new()),
        })
    }

    /// A name for this remote among others (for what the local cache
    /// remembers of it).
    pub fn id(&self) -> String {
        blake3::hash(self.shown.as_bytes()).to_hex()[..16].to_owned()
    }

    /// Whether the remote has failed this run (and is left alone).
    fn is_down(&self) -> bool {
        self.shared.down.load(Relaxed)
    }

    /// Says once that the remote failed, and leaves it alone from now on.
    fn went_down(&self, why: &str) {
        self.shared.down.store(true, Relaxed);
        if !self.shared.warned.swap(true, Relaxed) {
            Warning::RemoteUnavailable {
                url: self.shown.clone(),
                why: why.to_owned(),
            }
            .emit();
        }
    }

    /// The shared salt: read from the remote, or created there once (by
    /// whichever machine comes first) and read back. `None` when the remote
    /// cannot be reached.
    pub fn salt(&self) -> Option<[u8; 32]> {
        let parse = |b: &[u8]| -> Option<[u8; 32]> {
            let h = blake3::Hash::from_hex(std::str::from_utf8(b).ok()?.trim()).ok()?;
            Some(*h.as_bytes())
        };
        let read = || -> Result<Option<[u8; 32]>, opendal::Error> {
            match self.rt.block_on(self.read_small("v1/salt", 128)) {
                Ok(Some(b)) => Ok(parse(&b)),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let result = (|| {
            if let Some(s) = read()? {
                return Ok(Some(s));
            }
            let mut fresh = [0u8; 32];
            getrandom::fill(&mut fresh)
                .map_err(|e| opendal::Error::new(ErrorKind::Unexpected, e.to_string()))?;
            let text = blake3::Hash::from_bytes(fresh).to_hex().to_string();
            self.rt.block_on(make_folders(&self.op, &self.folders))?;
            let exclusive = self.op.info().capability().write_with_if_not_exists;
            let written = self.rt.block_on(async {
                self.op
                    .write_with("v1/salt", text.into_bytes())
                    .if_not_exists(exclusive)
                    .await
            });
            match written {
                Ok(_) => {}
                // Another machine created it first: read theirs.
                Err(e) if e.kind() == ErrorKind::ConditionNotMatch => {}
                Err(e) => return Err(e),
            }
            read()
        })();
        match result {
            Ok(s) => s,
            Err(e) => {
                self.went_down(&e.to_string());
                None
            }
        }
    }

    /// The entry as stored on the remote: a signed header line, then JSON.
    fn wire(&self, entry: &Entry) -> io::Result<Vec<u8>> {
        let body = serde_json::to_vec(entry).map_err(io::Error::other)?;
        let mac = match &self.mac {
            Some(k) => blake3::keyed_hash(k, &body).to_hex().to_string(),
            None => "-".into(),
        };
        let mut out = format!("{ENTRY_MAGIC} {mac}\n").into_bytes();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reads an entry off the wire, refusing anything damaged, unsigned
    /// (when a key is set), for another key, or naming unsafe paths.
    fn unwire(&self, key: &str, bytes: &[u8]) -> Result<Entry, String> {
        let nl = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("not a hotpass entry")?;
        let head = std::str::from_utf8(&bytes[..nl]).map_err(|_| "not a hotpass entry")?;
        let mac = head
            .strip_prefix(ENTRY_MAGIC)
            .and_then(|m| m.strip_prefix(' '))
            .ok_or("not a hotpass entry")?;
        let body = &bytes[nl + 1..];
        if let Some(k) = &self.mac {
            let want = blake3::keyed_hash(k, body);
            let ok = blake3::Hash::from_hex(mac).is_ok_and(|got| got == want);
            if !ok {
                return Err("its signature does not match HOTPASS_REMOTE_CACHE_KEY".into());
            }
        }
        let entry: Entry =
            serde_json::from_slice(body).map_err(|e| format!("unparseable entry: {e}"))?;
        if entry.key != key {
            return Err("the entry is for another key".into());
        }
        if entry.outputs.len() > MAX_OUTPUTS {
            return Err(format!("it names {} files", entry.outputs.len()));
        }
        for o in &entry.outputs {
            super::outputs::lexical_target(std::path::Path::new("/"), &o.path)
                .map_err(|e| e.to_string())?;
            if !is_hex_hash(&o.hash) {
                return Err(format!("output {}: not a content hash", o.path));
            }
            if o.size > MAX_BLOB {
                return Err(format!("output {}: {} bytes", o.path, o.size));
            }
        }
        if entry.log.as_deref().is_some_and(|h| !is_hex_hash(h)) {
            return Err("its log is not a content hash".into());
        }
        Ok(entry)
    }

    /// Reads a small object whole: `None` when it is not there; an
    /// object over `limit` bytes is an `InvalidInput` error, never read.
    async fn read_small(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, opendal::Error> {
        let size = match self.op.stat(path).await {
            Ok(m) => m.content_length(),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if size > limit {
            return Err(opendal::Error::new(
                ErrorKind::ConfigInvalid,
                format!("{path} is {size} bytes, over the {limit} a cache object may have"),
            ));
        }
        match self.op.read(path).await {
            Ok(b) if b.len() as u64 <= limit => Ok(Some(b.to_vec())),
            Ok(b) => Err(opendal::Error::new(
                ErrorKind::ConfigInvalid,
                format!(
                    "{path} is {} bytes, over the {limit} a cache object may have",
                    b.len()
                ),
            )),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read_entry(&self, key: &str) -> Result<Entry, Miss> {
        let path = format!("v1/entries/{key}");
        let bytes = match self.read_small(&path, MAX_ENTRY).await {
            Ok(Some(b)) => b,
            Ok(None) => return Err(Miss::Absent),
            Err(e) if e.kind() == ErrorKind::ConfigInvalid => {
                return Err(Miss::Refused(e.to_string()));
            }
            Err(e) => return Err(Miss::Down(e.to_string())),
        };
        self.shared
            .bytes_down
            .fetch_add(bytes.len() as u64, Relaxed);
        self.unwire(key, &bytes).map_err(Miss::Refused)
    }

    /// Downloads blob `hash` into the local cache, verifying it on the way:
    /// `size` bytes when the entry says how many (no need to ask), else
    /// what the remote says, up to [`MAX_BLOB`].
    async fn download(
        &self,
        local: &LocalStore,
        hash: &str,
        size: Option<u64>,
    ) -> Result<(), Miss> {
        let path = format!("v1/blobs/{hash}");
        let missing = || Miss::Refused(format!("blob {hash} is missing on the remote"));
        let size = match size {
            Some(s) => s,
            None => match self.op.stat(&path).await {
                Ok(m) if m.content_length() > MAX_BLOB => {
                    return Err(Miss::Refused(format!(
                        "blob {hash} is {} bytes",
                        m.content_length()
                    )));
                }
                Ok(m) => m.content_length(),
                Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing()),
                Err(e) => return Err(Miss::Down(e.to_string())),
            },
        };
        let mut tmp = local
            .temp_file()
            .map_err(|e| Miss::Refused(format!("cannot write locally: {e}")))?;
        let mut hasher = blake3::Hasher::new();
        let mut at = 0;
        while at < size {
            let end = (at + PIECE).min(size);
            let piece = match self.op.read_with(&path).range(at..end).await {
                Ok(b) => b.to_vec(),
                Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing()),
                // Shorter than its entry says: damaged, not down.
                Err(e) if e.to_string().contains("too little data") => {
                    return Err(Miss::Refused(format!(
                        "blob {hash} is shorter than its entry says"
                    )));
                }
                Err(e) => return Err(Miss::Down(e.to_string())),
            };
            if piece.is_empty() {
                break;
            }
            hasher.update(&piece);
            tmp.write_all(&piece)
                .map_err(|e| Miss::Refused(format!("cannot write locally: {e}")))?;
            at += piece.len() as u64;
        }
        self.shared.bytes_down.fetch_add(at, Relaxed);
        if hasher.finalize().to_hex().as_str() != hash {
            self.bad.lock().expect("bad blobs").insert(hash.to_owned());
            return Err(Miss::Refused(format!(
                "blob {hash} fails its integrity check"
            )));
        }
        local
            .put_file(hash, tmp.path())
            .map_err(|e| Miss::Refused(format!("cannot store locally: {e}")))
    }

    /// Fetches `key`'s entry and every blob it needs into `local`.
    async fn fetch(&self, local: &LocalStore, key: &str) -> Result<Entry, Miss> {
        let entry = self.read_entry(key).await?;
        let mut wanted: Vec<(&str, Option<u64>)> = entry
            .outputs
            .iter()
            .filter(|o| o.link.is_none())
            .map(|o| (o.hash.as_str(), Some(o.size)))
            .collect();
        if let Some(log) = &entry.log {
            wanted.push((log, entry.log_size.filter(|s| *s <= MAX_BLOB)));
        }
        wanted.sort_unstable();
        wanted.dedup_by(|a, b| a.0 == b.0);
        for (hash, limit) in wanted {
            if !local.has_blob(hash) {
                self.download(local, hash, limit).await?;
            }
        }
        local
            .put_entry(&entry)
            .map_err(|e| Miss::Refused(format!("cannot store locally: {e}")))?;
        Ok(entry)
    }

    /// Fetches the entries of `wanted` (instance, key) into `local`, many at
    /// once; returns the keys that are now there. Refusals are warnings.
    pub fn fetch_many(&self, local: &LocalStore, wanted: &[(&str, &str)]) -> HashSet<String> {
        if self.is_down() || wanted.is_empty() {
            return HashSet::new();
        }
        let results: Vec<(String, String, Result<Entry, Miss>)> = self.rt.block_on(
            futures::stream::iter(wanted.iter().map(|(instance, key)| async move {
                if self.is_down() {
                    return ((*instance).to_owned(), (*key).to_owned(), Err(Miss::Absent));
                }
                let r = self.fetch(local, key).await;
                ((*instance).to_owned(), (*key).to_owned(), r)
            }))
            .buffer_unordered(LOOKUPS)
            .collect(),
        );
        let mut found = HashSet::new();
        for (instance, key, r) in results {
            match r {
                Ok(_) => {
                    self.shared.hits.fetch_add(1, Relaxed);
                    found.insert(key);
                }
                Err(Miss::Absent) => {}
                Err(Miss::Refused(why)) => Warning::RemoteEntryRefused { instance, why }.emit(),
                Err(Miss::Down(why)) => self.went_down(&why),
            }
        }
        found
    }

    /// Whether the remote has `key`'s entry and all its blobs, without
    /// downloading them (the dry run and `explain`).
    pub fn peek(&self, key: &str) -> Option<Entry> {
        if self.is_down() {
            return None;
        }
        let r: Result<Entry, Miss> = self.rt.block_on(async {
            let entry = self.read_entry(key).await?;
            for hash in entry.blobs() {
                match self.op.exists(&format!("v1/blobs/{hash}")).await {
                    Ok(true) => {}
                    Ok(false) => return Err(Miss::Absent),
                    Err(e) => return Err(Miss::Down(e.to_string())),
                }
            }
            Ok(entry)
        });
        match r {
            Ok(e) => Some(e),
            Err(Miss::Down(why)) => {
                self.went_down(&why);
                None
            }
            Err(_) => None,
        }
    }

    /// Uploads one success: its blobs the remote lacks (or holds damaged),
    /// then the entry, so a reader never finds an entry without its blobs.
    async fn push(
        op: Operator,
        folders: Arc<tokio::sync::OnceCell<()>>,
        local: LocalStore,
        wire: Vec<u8>,
        entry: Entry,
        bad: HashSet<String>,
    ) -> Result<u64, opendal::Error> {
        let local_error = |e: io::Error| opendal::Error::new(ErrorKind::Unexpected, e.to_string());
        make_folders(&op, &folders).await?;
        let mut bytes = 0;
        let mut blobs: Vec<&str> = entry.blobs().collect();
        blobs.sort_unstable();
        blobs.dedup();
        for hash in blobs {
            let path = format!("v1/blobs/{hash}");
            let file_path = local.blob_file(hash);
            // Only a regular file is sent (never a blob swapped for a link).
            let meta = match std::fs::symlink_metadata(&file_path) {
                // A small blob in a pack: read from it, and checked.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let content = local.read_blob(hash).map_err(local_error)?;
                    bytes += content.len() as u64;
                    op.write(&path, content).await?;
                    continue;
                }
                other => other.map_err(local_error)?,
            };
            if !meta.is_file() {
                return Err(local_error(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("blob {hash} is not a regular file"),
                )));
            }
            let size = meta.len();
            if size <= ASK_FIRST {
                // Content-addressed: writing it again changes nothing.
                let content = std::fs::read(&file_path).map_err(local_error)?;
                bytes += content.len() as u64;
                op.write(&path, content).await?;
                continue;
            }
            if !bad.contains(hash) && op.exists(&path).await? {
                continue;
            }
            let mut file = std::fs::File::open(&file_path).map_err(local_error)?;
            let mut w = op.writer(&path).await?;
            let mut buf = vec![0u8; PIECE as usize];
            loop {
                let n = file.read(&mut buf).map_err(local_error)?;
                if n == 0 {
                    break;
                }
                w.write(buf[..n].to_vec()).await?;
                bytes += n as u64;
            }
            w.close().await?;
        }
        bytes += wire.len() as u64;
        op.write(&format!("v1/entries/{}", entry.key), wire).await?;
        Ok(bytes)
    }

    /// Uploads a success already stored in `local`, in the background,
    /// unless this machine only reads or the remote is down. Waits only
    /// while `UPLOADS` are already in flight.
    pub fn upload(&self, local: &LocalStore, entry: &Entry) {
        if !self.writes || self.is_down() {
            return;
        }
        let wire = match self.wire(entry) {
            Ok(w) => w,
            Err(e) => return tracing::debug!("cannot encode an entry for the remote: {e}"),
        };
        let Ok(permit) = self.rt.block_on(self.slots.clone().acquire_owned()) else {
            return;
        };
        let bad = self.bad.lock().expect("bad blobs").clone();
        let task = Self::push(
            self.op.clone(),
            self.folders.clone(),
            local.clone(),
            wire,
            entry.clone(),
            bad,
        );
        let shared = self.shared.clone();
        let handle = self.rt.spawn(async move {
            match task.await {
                Ok(bytes) => {
                    shared.uploads.fetch_add(1, Relaxed);
                    shared.bytes_up.fetch_add(bytes, Relaxed);
                }
                Err(e) => {
                    shared.down.store(true, Relaxed);
                    let mut failed = shared.upload_failed.lock().expect("upload error");
                    failed.get_or_insert_with(|| e.to_string());
                }
            }
            drop(permit);
        });
        self.uploads.lock().expect("uploads").push(handle);
    }

    /// Waits for every upload in flight, then says (once) if one failed.
    pub fn flush(&self) {
        let handles = std::mem::take(&mut *self.uploads.lock().expect("uploads"));
        self.rt.block_on(async {
            for h in handles {
                let _ = h.await;
            }
        });
        let failed = self
            .shared
            .upload_failed
            .lock()
            .expect("upload error")
            .take();
        if let Some(why) = failed {
            self.went_down(&why);
        }
    }

    /// What the remote did so far.
    pub fn report(&self) -> RemoteReport {
        let s = &self.shared;
        RemoteReport {
            url: self.shown.clone(),
            mode: format!(
                "{} ({})",
                if self.writes {
                    "read-write"
                } else {
                    "read-only"
                },
                self.why
            ),
            hits: s.hits.load(Relaxed),
            uploads: s.uploads.load(Relaxed),
            bytes_down: s.bytes_down.load(Relaxed),
            bytes_up: s.bytes_up.load(Relaxed),
            unavailable: s.down.load(Relaxed),
        }
    }
}
