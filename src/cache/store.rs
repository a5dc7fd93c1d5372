//! Entries on disk: one verified file per successful key, written atomically;
//! restoring their outputs safely; the last-run records; stats, gc and clean.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::Cache;
use super::key::CacheKey;
use crate::hash::{Memo, hex};

/// Writes `bytes` to `path` through a temporary file and a rename, so readers
/// see the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// One stored output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Relative to the project root, `/`-separated.
    pub path: String,
    pub hash: String,
    pub size: u64,
    pub mode: u32,
}

/// A stored success.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub format: u32,
    pub key: String,
    pub instance: String,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub created_unix: u64,
    /// Blob holding the captured output, if any.
    pub log: Option<String>,
    pub outputs: Vec<OutputFile>,
}

/// Why a lookup did not give a usable entry.
#[derive(Debug)]
pub enum Lookup {
    /// No entry for this key.
    Missing,
    /// An entry exists but fails its integrity check.
    Corrupt(String),
    /// A verified entry.
    Found(Entry),
}

impl Cache {
    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir.join("entries").join(format!("{key}.entry"))
    }

    /// Reads and verifies the entry for `key`.
    pub fn lookup(&self, key: &str) -> Lookup {
        let bytes = match std::fs::read(self.entry_path(key)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::Missing,
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

    /// Stores an entry atomically, checksum first.
    pub fn store(&self, entry: &Entry) -> io::Result<()> {
        let body = serde_json::to_vec(entry).map_err(io::Error::other)?;
        let mut bytes = blake3::hash(&body).to_hex().as_bytes().to_vec();
        bytes.push(b'\n');
        bytes.extend_from_slice(&body);
        write_atomic(&self.entry_path(&entry.key), &bytes)
    }

    /// Marks an entry as used now (for least-recently-used eviction).
    pub fn touch(&self, key: &str) {
        use std::os::unix::ffi::OsStrExt;
        let path = self.entry_path(key);
        let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return;
        };
        // SAFETY: a valid C path, and a NULL `times` sets both times to now.
        unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), std::ptr::null(), 0) };
    }

    fn run_path(&self, instance: &str) -> PathBuf {
        let h = blake3::hash(instance.as_bytes()).to_hex();
        self.dir.join("runs").join(format!("{}.json", &h[..32]))
    }

    /// Records the key of an instance's latest run, for `explain` and reasons.
    pub fn record_run(&self, instance: &str, encoded_key: &[u8]) -> io::Result<()> {
        let mut record = Vec::with_capacity(instance.len() + 1 + encoded_key.len());
        record.extend_from_slice(instance.as_bytes());
        record.push(b'\n');
        record.extend_from_slice(encoded_key);
        let path = self.run_path(instance);
        if std::fs::read(&path).is_ok_and(|old| old == record) {
            return Ok(()); // unchanged: spare the write
        }
        write_atomic(&path, &record)
    }

    /// The key of an instance's last recorded run.
    pub fn last_run(&self, instance: &str) -> Option<CacheKey> {
        let bytes = std::fs::read(self.run_path(instance)).ok()?;
        let nl = bytes.iter().position(|b| *b == b'\n')?;
        (&bytes[..nl] == instance.as_bytes()).then(|| CacheKey::decode(&bytes[nl + 1..]))?
    }

    /// Why `key` misses: the first component that differs from the
    /// instance's last recorded run, or `no-entry` without one.
    pub fn miss_reason(&self, instance: &str, key: &CacheKey) -> String {
        self.last_run(instance)
            .and_then(|last| super::key::diff(&last, key).first().map(|c| c.reason()))
            .unwrap_or_else(|| "no-entry".to_owned())
    }

    /// Appends one run's hit and miss counts to the history.
    pub fn record_history(&self, hits: usize, misses: usize) -> io::Result<()> {
        let line = format!("{} {hits} {misses}\n", now_unix());
        let mut f = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("history"))?;
        f.write_all(line.as_bytes())
    }
}

/// Seconds since the epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Checks a manifest path is relative and has no `..`, without touching the
/// disk, and joins it to `root`.
pub fn lexical_target(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if p.is_absolute() {
        return Err(format!("refusing absolute path {rel}"));
    }
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("refusing path {rel} that leaves the project"));
    }
    Ok(root.join(p))
}

/// Checks a manifest path is relative, has no `..`, and does not pass
/// through a symlink under `root`.
pub fn safe_target(root: &Path, rel: &str) -> Result<PathBuf, String> {
    lexical_target(root, rel)?;
    let p = Path::new(rel);
    let mut cur = root.to_path_buf();
    for c in p.components() {
        match c {
            Component::Normal(part) => {
                cur.push(part);
                if let Ok(m) = std::fs::symlink_metadata(&cur)
                    && m.file_type().is_symlink()
                {
                    return Err(format!(
                        "refusing to write through symlink {}",
                        cur.display()
                    ));
                }
            }
            Component::CurDir => {}
            _ => return Err(format!("refusing path {rel} that leaves the project")),
        }
    }
    Ok(cur)
}

impl Cache {
    /// Puts an entry's outputs in place under `root`. Every blob is checked
    /// first, so on any failure nothing in the tree has been touched.
    pub fn restore(&self, entry: &Entry, root: &Path, memo: &Memo) -> Result<usize, String> {
        let mut plan = Vec::new();
        for o in &entry.outputs {
            // Skip files that are already exactly right: nothing is written,
            // so only the lexical checks are needed for them.
            let in_place = lexical_target(root, &o.path)?;
            if let Ok(meta) = std::fs::metadata(&in_place)
                && meta.is_file()
                && meta.len() == o.size
                && meta.permissions().mode() & 0o7777 == o.mode
                && let Ok(h) = memo.hash_files(&[(&in_place, &meta)])
                && hex(&h[0]) == o.hash
            {
                continue;
            }
            let target = safe_target(root, &o.path)?;
            self.verify_blob(&o.hash)
                .map_err(|e| format!("output {}: {e}", o.path))?;
            plan.push((o, target));
        }
        let restored = plan.len();
        for (o, target) in plan {
            let dir = target.parent().expect("target has a parent");
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .map_err(|e| format!("restoring {}: {e}", o.path))?;
            std::fs::copy(self.blob_path(&o.hash), tmp.path())
                .map_err(|e| format!("restoring {}: {e}", o.path))?;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(o.mode))
                .map_err(|e| format!("restoring {}: {e}", o.path))?;
            tmp.persist(&target)
                .map_err(|e| format!("restoring {}: {}", o.path, e.error))?;
            if let (Ok(meta), Ok(h)) = (std::fs::metadata(&target), blake3::Hash::from_hex(&o.hash))
            {
                memo.remember(&target, &meta, *h.as_bytes());
            }
        }
        Ok(restored)
    }
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
}

fn dir_files(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    for e in walkdir(dir) {
        out.push(e);
    }
    out
}

fn walkdir(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            out.extend(walkdir(&e.path()));
        } else {
            out.push((e.path(), m));
        }
    }
    out
}

impl Cache {
    /// Counts entries, blobs and bytes, and the hit rate of the last 50 runs.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for (_, m) in dir_files(&self.dir) {
            s.bytes += m.len();
        }
        s.entries = dir_files(&self.dir.join("entries")).len();
        s.blobs = dir_files(&self.dir.join("blobs")).len();
        if let Ok(text) = std::fs::read_to_string(self.dir.join("history")) {
            let lines: Vec<&str> = text.lines().collect();
            for l in lines.iter().rev().take(50) {
                let parts: Vec<u64> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                if let [_, h, m] = parts.as_slice() {
                    s.recent_runs += 1;
                    s.recent_hits += *h as usize;
                    s.recent_misses += *m as usize;
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
    /// references. Returns (entries removed, blobs removed, bytes after).
    pub fn gc(
        &self,
        max_size: Option<u64>,
        max_age: Option<Duration>,
    ) -> io::Result<(usize, usize, u64)> {
        let mut entries: Vec<(PathBuf, SystemTime, Option<Entry>, u64)> = Vec::new();
        for (p, m) in dir_files(&self.dir.join("entries")) {
            let key = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let entry = match self.lookup(&key) {
                Lookup::Found(e) => Some(e),
                _ => None,
            };
            entries.push((p, m.modified().unwrap_or(UNIX_EPOCH), entry, m.len()));
        }
        entries.sort_by_key(|e| e.1); // oldest first
        let now = SystemTime::now();
        let mut removed = 0;
        let mut keep: Vec<(PathBuf, SystemTime, Entry, u64)> = Vec::new();
        for (p, t, e, len) in entries {
            let too_old = max_age.is_some_and(|a| now.duration_since(t).unwrap_or_default() > a);
            match e {
                Some(e) if !too_old => keep.push((p, t, e, len)),
                _ => {
                    std::fs::remove_file(&p)?;
                    removed += 1;
                }
            }
        }
        let blob_size = |h: &str| {
            std::fs::metadata(self.blob_path(h))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        let footprint = |keep: &[(PathBuf, SystemTime, Entry, u64)]| -> u64 {
            let mut seen = std::collections::HashSet::new();
            let mut total = 0;
            for (_, _, e, len) in keep {
                total += len;
                for h in e
                    .outputs
                    .iter()
                    .map(|o| o.hash.as_str())
                    .chain(e.log.as_deref())
                {
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
                let (p, _, _, _) = keep.remove(0);
                std::fs::remove_file(&p)?;
                removed += 1;
                size = footprint(&keep);
            }
        }
        let referenced: std::collections::HashSet<String> = keep
            .iter()
            .flat_map(|(_, _, e, _)| {
                e.outputs
                    .iter()
                    .map(|o| o.hash.clone())
                    .chain(e.log.clone())
            })
            .collect();
        let mut blobs_removed = 0;
        for (p, _) in dir_files(&self.dir.join("blobs")) {
            let name = p
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !referenced.contains(&name) {
                std::fs::remove_file(&p)?;
                blobs_removed += 1;
            }
        }
        for (p, m) in dir_files(&self.dir.join("tmp")) {
            if now
                .duration_since(m.modified().unwrap_or(now))
                .unwrap_or_default()
                > Duration::from_secs(3600)
            {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok((removed, blobs_removed, self.stats().bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> Entry {
        Entry {
            format: 1,
            key: key.into(),
            instance: "t".into(),
            exit_code: 0,
            duration_ms: 5,
            created_unix: 0,
            log: None,
            outputs: vec![],
        }
    }

    #[test]
    fn store_then_lookup_round_trips_and_detects_edits() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(t.path()).unwrap();
        assert!(matches!(c.lookup("k1"), Lookup::Missing));
        c.store(&entry("k1")).unwrap();
        assert!(matches!(c.lookup("k1"), Lookup::Found(_)));
        let p = c.entry_path("k1");
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(c.lookup("k1"), Lookup::Corrupt(_)));
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(c.lookup("k1"), Lookup::Corrupt(_)));
    }

    #[test]
    fn unsafe_manifest_paths_are_refused() {
        let t = tempfile::tempdir().unwrap();
        assert!(safe_target(t.path(), "/etc/passwd").is_err());
        assert!(safe_target(t.path(), "a/../../x").is_err());
        std::os::unix::fs::symlink("/tmp", t.path().join("link")).unwrap();
        assert!(safe_target(t.path(), "link/x").is_err());
        assert!(safe_target(t.path(), "ok/x").is_ok());
    }
}
