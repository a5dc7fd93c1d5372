//! The one answer to "is this instance cached, and if not, why?", asked by
//! `run`, the dry run, `explain` and watch mode alike.

use std::fmt;

use super::Cache;
use super::key::{CacheKey, Component, diff};
use super::outputs::RestoreError;
use super::store::{Entry, Lookup};
use crate::warning::Warning;

/// Why an instance runs instead of coming from the cache. Serialised as the
/// strings the summary and dry-run JSON document: `no-entry`, `forced`,
/// `cache-disabled`, `corrupt-entry`, `restore-failed`, or the first key
/// component that differs from the last recorded run (`file:PATH`,
/// `env:NAME`, `dep:NAME`, `command`, `cwd`, `outputs`, `cache-format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No stored result, and no earlier run to compare with (or no difference
    /// from it: the last run failed, was interrupted or was evicted).
    NoEntry,
    /// `--force`.
    Forced,
    /// `--no-cache`, a task that is not cached, a cache that cannot be
    /// opened, or inputs that cannot be hashed.
    CacheDisabled,
    /// The stored entry fails its integrity check.
    CorruptEntry,
    /// The stored entry's outputs or log are missing or damaged.
    RestoreFailed,
    /// This part of the key differs from the instance's last recorded run.
    Changed(Component),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoEntry => f.write_str("no-entry"),
            Reason::Forced => f.write_str("forced"),
            Reason::CacheDisabled => f.write_str("cache-disabled"),
            Reason::CorruptEntry => f.write_str("corrupt-entry"),
            Reason::RestoreFailed => f.write_str("restore-failed"),
            Reason::Changed(c) => c.fmt(f),
        }
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How much of a hit `decide` checks beyond its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blobs {
    /// That every blob is there: for callers that only report (the dry run,
    /// explain), since nothing is restored to find out.
    Check,
    /// Nothing more: the caller restores the hit at once, which reads or
    /// verifies every blob it needs and runs the instance
    /// (`restore-failed`) if one is missing.
    OnRestore,
}

/// What the cache says about one instance.
#[derive(Debug)]
pub enum Decision {
    /// A verified entry whose blobs are all there: restore it.
    Hit(Entry),
    /// Run it, for this reason.
    Run(Reason),
}

impl Cache {
    /// Decides one instance. `key` is its key and digest, or `None` when its
    /// inputs could not be hashed; `cacheable` is the task's `cache` setting.
    /// Damage found on the way is said once, as a warning.
    pub fn decide(
        &self,
        instance: &str,
        cacheable: bool,
        key: Option<(&CacheKey, &str)>,
        blobs: Blobs,
    ) -> Decision {
        match key {
            Some((key, digest)) => {
                self.decide_with(instance, cacheable, Some((&|| key.clone(), digest)), blobs)
            }
            None => self.decide_with(instance, cacheable, None, blobs),
        }
    }

    /// [`Cache::decide`] with the key made only when a miss needs its
    /// reason (a hit needs the digest alone).
    pub fn decide_with(
        &self,
        instance: &str,
        cacheable: bool,
        key: Option<(&dyn Fn() -> CacheKey, &str)>,
        blobs: Blobs,
    ) -> Decision {
        let (Some(store), Some((key, digest))) = (self.store(), key) else {
            return Decision::Run(Reason::CacheDisabled);
        };
        if !cacheable {
            return Decision::Run(Reason::CacheDisabled);
        }
        if self.mode() == super::Mode::Force {
            return Decision::Run(Reason::Forced);
        }
        // About to restore: the state file may answer with one stat.
        if blobs == Blobs::OnRestore
            && let Some(entry) = self.known_hit(instance, digest)
        {
            return Decision::Hit(entry);
        }
        let mut lookup = store.entry(digest);
        // The state file knew this entry in a pack that is still there but
        // no longer holds it whole: damaged, not merely absent.
        if matches!(lookup, Lookup::Missing) && self.lost_from_pack(instance, digest) {
            lookup = Lookup::Corrupt("its pack is damaged".into());
        }
        if matches!(lookup, Lookup::Missing)
            && let Some(remote) = &self.remote
        {
            match blobs {
                // About to restore: bring it in from the remote (if it was
                // not fetched already with its batch), then as usual.
                Blobs::OnRestore => {
                    self.prefetch(&[(instance, digest)]);
                    lookup = store.entry(digest);
                }
                // Only reporting: whether the remote has it all is enough.
                Blobs::Check => {
                    if let Some(entry) = remote.peek(digest) {
                        return Decision::Hit(entry);
                    }
                }
            }
        }
        match lookup {
            Lookup::Found(entry) => {
                let missing = match blobs {
                    Blobs::OnRestore => {
                        // Used now (for `cache gc`), and known from now on.
                        store.touch(digest);
                        self.seen(&entry);
                        None
                    }
                    Blobs::Check => entry
                        .blobs()
                        .find(|b| !store.has_blob(b))
                        .map(str::to_owned),
                };
                match missing {
                    None => Decision::Hit(entry),
                    Some(missing) => {
                        Warning::RestoreFailed {
                            instance: instance.to_owned(),
                            source: Box::new(RestoreError::Blob {
                                path: entry
                                    .outputs
                                    .iter()
                                    .find(|o| o.hash == missing)
                                    .map(|o| o.path.clone())
                                    .unwrap_or_else(|| "(captured output)".into()),
                                source: std::io::Error::new(
                                    std::io::ErrorKind::NotFound,
                                    format!("blob {missing} is missing"),
                                ),
                            }),
                        }
                        .emit();
                        Decision::Run(Reason::RestoreFailed)
                    }
                }
            }
            Lookup::Corrupt(why) => {
                Warning::CorruptEntry {
                    instance: instance.to_owned(),
                    key: digest.to_owned(),
                    why,
                }
                .emit();
                Decision::Run(Reason::CorruptEntry)
            }
            Lookup::Missing => Decision::Run(self.miss_reason(instance, key)),
        }
    }

    /// Why `key` misses: the first component that differs from the
    /// instance's last recorded run, or `no-entry` without one.
    fn miss_reason(&self, instance: &str, key: &dyn Fn() -> CacheKey) -> Reason {
        self.last_run(instance)
            .and_then(|last| diff(&last, &key()).first().map(|c| c.component()))
            .map_or(Reason::NoEntry, Reason::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Mode;
    use crate::cache::key::tests::key;

    fn entry(digest: &str, log: Option<String>) -> Entry {
        Entry {
            format: 1,
            key: digest.into(),
            instance: "t".into(),
            exit_code: 0,
            duration_ms: 1,
            created_unix: 0,
            log,
            log_size: None,
            outputs: vec![],
            dep_keys: Default::default(),
            invocation: None,
        }
    }

    fn decide(cache: &Cache, cacheable: bool, k: &CacheKey) -> Decision {
        cache.decide("t", cacheable, Some((k, &k.digest())), Blobs::Check)
    }

    fn reason(d: Decision) -> String {
        match d {
            Decision::Run(r) => r.to_string(),
            Decision::Hit(_) => "hit".into(),
        }
    }

    /// Each reason, from the state of the cache that causes it.
    #[test]
    fn every_reason_comes_from_its_cause() {
        let t = tempfile::tempdir().unwrap();
        let k = key();
        let normal = Cache::open(t.path(), Mode::Normal).unwrap();
        assert_eq!(reason(decide(&normal, true, &k)), "no-entry");
        assert_eq!(reason(decide(&normal, false, &k)), "cache-disabled");
        assert_eq!(
            reason(normal.decide("t", true, None, Blobs::Check)),
            "cache-disabled"
        );
        let off = Cache::open(t.path(), Mode::Disabled).unwrap();
        assert_eq!(reason(decide(&off, true, &k)), "cache-disabled");

        // A recorded run with other inputs names the first difference.
        let mut before = k.clone();
        before.files.insert("a".into(), "old".into());
        normal.record_run("t", &before, &before.digest());
        assert_eq!(reason(decide(&normal, true, &k)), "file:a");
        before = k.clone();
        before.commands = vec!["false".into()];
        normal.record_run("t", &before, &before.digest());
        assert_eq!(reason(decide(&normal, true, &k)), "command");
        normal.record_run("t", &k, &k.digest());
        assert_eq!(reason(decide(&normal, true, &k)), "no-entry");

        // A stored entry is a hit, unless forced, damaged or missing a blob.
        let store = normal.store().unwrap();
        let log = store.put_bytes(b"output").unwrap();
        store.put_entry(&entry(&k.digest(), Some(log))).unwrap();
        assert_eq!(reason(decide(&normal, true, &k)), "hit");
        let forced = Cache::open(t.path(), Mode::Force).unwrap();
        assert_eq!(reason(decide(&forced, true, &k)), "forced");
        store
            .put_entry(&entry(&k.digest(), Some("a".repeat(64))))
            .unwrap();
        assert_eq!(reason(decide(&normal, true, &k)), "restore-failed");
        // A run leaves that to its restore, which finds the blob missing.
        let d = normal.decide("t", true, Some((&k, &k.digest())), Blobs::OnRestore);
        let Decision::Hit(entry) = d else {
            panic!("expected a hit to restore, got {d:?}")
        };
        let log = entry.log.as_deref().unwrap();
        assert!(
            store.read_blob(log).is_err(),
            "the restore fails reading it"
        );
        let path = t
            .path()
            .join("entries")
            .join(format!("{}.entry", k.digest()));
        std::fs::write(&path, b"garbage\n{}").unwrap();
        assert_eq!(reason(decide(&normal, true, &k)), "corrupt-entry");
    }

    #[test]
    fn reasons_serialise_to_the_documented_strings() {
        let json = serde_json::to_string(&[
            Reason::NoEntry,
            Reason::Changed(Component::Dep("up".into())),
            Reason::Changed(Component::Env("TOKEN".into())),
        ])
        .unwrap();
        assert_eq!(json, r#"["no-entry","dep:up","env:TOKEN"]"#);
    }
}
