//! The run log: each instance's last recorded key, for reasons and
//! `explain`, in one file (`cache/runs.log`) instead of a file per instance.
//!
//! A cold run records a key for every instance; a file each was a file
//! created and renamed per task, which on a journalling file system cost
//! about a tenth of a cold task. The log is written like the state file: a
//! header, then frames (a length, records, a checksum) appended under an
//! exclusive `flock` once per run, compacted atomically when most records
//! are superseded. A torn or damaged tail is found by its checksum and what
//! follows is ignored until the next save rewrites the file; the log only
//! explains misses, so what it loses is a reason, never a result.
//!
//! The log is read once per process, and only when a key is asked for (a
//! miss, or `explain`) or recorded: a no-op reads nothing of it. A run's
//! own records are kept in memory until saved, and a later lookup in the
//! same process (watch mode) sees them.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustc_hash::FxHashMap;

use super::state::{check, open_exclusive, read_shared};

/// The first bytes of the file.
const MAGIC: &[u8; 16] = b"hotpass runs 1\n\n";
/// The largest frame the reader accepts.
const MAX_FRAME: usize = 256 << 20;
/// Records kept in memory past this many bytes are appended straight away
/// (a cold run of 100,000 instances does not hold them all).
const FLUSH_AT: usize = 1 << 20;

/// The run log of one cache.
#[derive(Debug)]
pub struct RunLog {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The file's records and this process's, once a lookup asked.
    loaded: Option<Parsed>,
    /// Records not yet appended: their bytes, and how many.
    pending: Vec<u8>,
    pending_count: usize,
}

/// What a read of the log found.
#[derive(Debug, Default)]
struct Parsed {
    keys: FxHashMap<Box<str>, Box<[u8]>>,
    /// Records in the file, superseded ones included.
    records: usize,
    /// The file is damaged or not a run log: rewrite it at the next save.
    rewrite: bool,
}

impl Parsed {
    /// Reads every record of `bytes` (a whole file), stopping at damage.
    fn of(bytes: &[u8]) -> Parsed {
        let mut p = Parsed::default();
        if bytes.is_empty() {
            return p;
        }
        let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
            p.rewrite = true;
            return p;
        };
        while !rest.is_empty() {
            let Some(body) = frame(rest) else {
                tracing::debug!("the run log is damaged; what follows is ignored");
                p.rewrite = true;
                break;
            };
            rest = &rest[4 + body.len() + 8..];
            p.records += p.apply(body);
        }
        p
    }

    /// Applies the records of one frame's body; returns how many.
    fn apply(&mut self, mut body: &[u8]) -> usize {
        let mut n = 0;
        while let Some((name, key, rest)) = record(body) {
            self.keys.insert(name.into(), key.into());
            body = rest;
            n += 1;
        }
        n
    }
}

/// The body of the frame at the start of `bytes`, when whole and checked.
fn frame(bytes: &[u8]) -> Option<&[u8]> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    if len > MAX_FRAME {
        return None;
    }
    let body = bytes.get(4..4 + len)?;
    (bytes.get(4 + len..4 + len + 8)? == check(body)).then_some(body)
}

/// The first record of a frame's body: an instance, its key, the rest.
fn record(body: &[u8]) -> Option<(&str, &[u8], &[u8])> {
    let field = |b: &[u8]| -> Option<(usize, usize)> {
        let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        (b.len() >= 4 + len).then_some((4, 4 + len))
    };
    let (s, e) = field(body)?;
    let name = std::str::from_utf8(&body[s..e]).ok()?;
    let body = &body[e..];
    let (s, e) = field(body)?;
    Some((name, &body[s..e], &body[e..]))
}

/// Appends one record's bytes to `out`.
fn put_record(out: &mut Vec<u8>, instance: &str, key: &[u8]) {
    out.extend_from_slice(&(instance.len() as u32).to_le_bytes());
    out.extend_from_slice(instance.as_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
}

/// Appends `body` to `out` as one frame.
fn put_frame(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&check(body));
}

impl RunLog {
    /// The log at `path` (nothing is read until a key is asked for).
    pub fn at(path: &Path) -> RunLog {
        RunLog {
            path: path.to_path_buf(),
            inner: Mutex::default(),
        }
    }

    /// The key `instance` last ran with, as recorded (encoded).
    pub fn last(&self, instance: &str) -> Option<Vec<u8>> {
        let mut inner = self.inner.lock().expect("run log lock");
        self.loaded(&mut inner)
            .keys
            .get(instance)
            .map(|k| k.to_vec())
    }

    /// The file's records (read the first time), with this process's.
    fn loaded<'i>(&self, inner: &'i mut Inner) -> &'i mut Parsed {
        inner.loaded.get_or_insert_with(|| {
            let bytes = match read_shared(&self.path, MAGIC) {
                Ok(b) => b,
                Err(e) => {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::debug!("cannot read the run log: {e}");
                    }
                    Vec::new()
                }
            };
            let mut p = Parsed::of(&bytes);
            // This process's own records, not yet saved, are the latest.
            let file_records = p.records;
            p.apply(&inner.pending);
            p.records = file_records;
            p
        })
    }

    /// Records that `instance` ran with `key` (encoded); appended at the
    /// next [`RunLog::save`], or now when many records are waiting. The
    /// file is read first (once), so that a key already recorded is not
    /// appended again and a save knows how much of the file is superseded:
    /// a process that only records still compacts what it grows.
    pub fn record(&self, instance: &str, key: &[u8]) -> io::Result<()> {
        let mut inner = self.inner.lock().expect("run log lock");
        let loaded = self.loaded(&mut inner);
        if loaded.keys.get(instance).is_some_and(|k| **k == *key) {
            return Ok(());
        }
        loaded.keys.insert(instance.into(), key.into());
        put_record(&mut inner.pending, instance, key);
        inner.pending_count += 1;
        if inner.pending.len() >= FLUSH_AT {
            self.save_locked(&mut inner)?;
        }
        Ok(())
    }

    /// Appends the records waiting; compacts the file instead when most of
    /// it is superseded, or when it was found damaged.
    pub fn save(&self) -> io::Result<()> {
        self.save_locked(&mut self.inner.lock().expect("run log lock"))
    }

    fn save_locked(&self, inner: &mut Inner) -> io::Result<()> {
        if inner.pending_count == 0 {
            return Ok(());
        }
        let file = open_exclusive(&self.path)?;
        let compact = inner.loaded.as_ref().is_some_and(|l| {
            l.rewrite || l.records + inner.pending_count > 2 * l.keys.len() + 4096
        });
        if compact {
            let records = self.compact(&file, &inner.pending)?;
            if let Some(l) = &mut inner.loaded {
                l.records = records;
                l.rewrite = false;
            }
        } else {
            let mut buf = Vec::with_capacity(inner.pending.len() + MAGIC.len() + 12);
            if file.metadata()?.len() == 0 {
                buf.extend_from_slice(MAGIC);
            }
            put_frame(&mut buf, &inner.pending);
            (&file).write_all(&buf)?;
            if let Some(l) = &mut inner.loaded {
                l.records += inner.pending_count;
            }
        }
        inner.pending.clear();
        inner.pending_count = 0;
        Ok(())
        // `file` closes here, and its lock goes with it.
    }

    /// Rewrites the file (held locked as `file`) with its live records and
    /// `pending`, through a temporary file renamed over it: what other
    /// processes appended meanwhile is kept. Returns how many records it
    /// holds now.
    fn compact(&self, file: &std::fs::File, pending: &[u8]) -> io::Result<usize> {
        let mut bytes = Vec::new();
        (&*file).read_to_end(&mut bytes)?;
        let mut parsed = Parsed::of(&bytes);
        parsed.apply(pending);
        let mut live: Vec<_> = parsed.keys.into_iter().collect();
        live.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut out = MAGIC.to_vec();
        let mut body = Vec::new();
        for (name, key) in &live {
            put_record(&mut body, name, key);
            if body.len() >= FLUSH_AT {
                put_frame(&mut out, &body);
                body.clear();
            }
        }
        if !body.is_empty() {
            put_frame(&mut out, &body);
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = crate::atomic::temp_in(dir)?;
        tmp.as_file().write_all(&out)?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(live.len())
    }
}

impl Drop for RunLog {
    /// Records not yet saved are saved (a run that ends without `finish`).
    fn drop(&mut self) {
        if let Err(e) = self.save() {
            tracing::debug!("could not save the run log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_keys_are_read_back_latest_first() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("runs.log");
        let log = RunLog::at(&path);
        assert_eq!(log.last("a"), None);
        log.record("a", b"one").unwrap();
        log.record("b", b"two").unwrap();
        // Before saving, the process sees its own records.
        assert_eq!(log.last("a").as_deref(), Some(&b"one"[..]));
        log.record("a", b"three").unwrap();
        assert_eq!(log.last("a").as_deref(), Some(&b"three"[..]));
        log.save().unwrap();
        let again = RunLog::at(&path);
        assert_eq!(again.last("a").as_deref(), Some(&b"three"[..]));
        assert_eq!(again.last("b").as_deref(), Some(&b"two"[..]));
        assert_eq!(again.last("c"), None);
    }

    #[test]
    fn records_not_saved_are_saved_when_dropped() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("runs.log");
        RunLog::at(&path).record("a", b"k").unwrap();
        assert_eq!(RunLog::at(&path).last("a").as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn a_torn_tail_keeps_what_precedes_it_and_is_rewritten() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("runs.log");
        let log = RunLog::at(&path);
        log.record("a", b"1").unwrap();
        log.save().unwrap();
        log.record("b", b"2").unwrap();
        log.save().unwrap();
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        let torn = RunLog::at(&path);
        assert_eq!(torn.last("a").as_deref(), Some(&b"1"[..]));
        assert_eq!(torn.last("b"), None);
        // Appending after damage would be lost behind it: the next save
        // rewrites the file instead.
        torn.record("c", b"3").unwrap();
        torn.save().unwrap();
        let after = RunLog::at(&path);
        assert_eq!(after.last("a").as_deref(), Some(&b"1"[..]));
        assert_eq!(after.last("c").as_deref(), Some(&b"3"[..]));
        // Garbage is no run log at all, and never a crash.
        std::fs::write(&path, b"\xff\x00 not a log at all").unwrap();
        assert_eq!(RunLog::at(&path).last("a"), None);
    }

    #[test]
    fn superseded_records_are_compacted_away() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("runs.log");
        for round in 0..12u32 {
            let log = RunLog::at(&path);
            assert_eq!(
                log.last("t0").map(|k| k.len()),
                round.checked_sub(1).map(|r| r.to_string().len())
            );
            record_round(&log, round);
        }
        let p = Parsed::of(&std::fs::read(&path).unwrap());
        assert!(p.records <= 2 * 1000 + 4096, "{} records", p.records);
        assert_eq!(&*p.keys["t999"], b"11");
    }

    /// One run of 1,000 instances, each recorded with key `round`, saved.
    fn record_round(log: &RunLog, round: u32) {
        for i in 0..1000 {
            log.record(&format!("t{i}"), round.to_string().as_bytes())
                .unwrap();
        }
        log.save().unwrap();
    }

    /// A process that records without asking (hits whose keys the state
    /// file did not know) still keeps the file bounded, and does not append
    /// a key the log already holds.
    #[test]
    fn records_alone_are_compacted_too_and_not_repeated() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("runs.log");
        for round in 0..12u32 {
            record_round(&RunLog::at(&path), round);
        }
        let size = std::fs::metadata(&path).unwrap().len();
        let log = RunLog::at(&path);
        log.record("t5", b"11").unwrap();
        log.save().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size, "nothing new");
        let p = Parsed::of(&std::fs::read(&path).unwrap());
        assert!(p.records <= 2 * 1000 + 4096, "{} records", p.records);
        assert_eq!(&*p.keys["t5"], b"11");
    }

    #[test]
    fn two_logs_appending_keep_both() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("runs.log");
        let (a, b) = (RunLog::at(&path), RunLog::at(&path));
        a.record("a", b"1").unwrap();
        b.record("b", b"2").unwrap();
        a.save().unwrap();
        b.save().unwrap();
        let log = RunLog::at(&path);
        assert_eq!(log.last("a").as_deref(), Some(&b"1"[..]));
        assert_eq!(log.last("b").as_deref(), Some(&b"2"[..]));
    }
}
