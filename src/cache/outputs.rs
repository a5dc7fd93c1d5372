//! Moving outputs between the tree and a store: collecting a success's
//! output files as blobs, and putting a hit's outputs back in place — only
//! under the project root, never through a symlink, and only after every
//! blob checks out, so a failed restore leaves the tree untouched.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::store::{Entry, OutputFile, Store};
use crate::fileset::{Ignored, Patterns, rel_string};
use crate::hash::{Memo, hex, hex_is};

/// Why a hit's outputs could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The entry names an absolute path.
    #[error("refusing absolute path {0}")]
    Absolute(String),
    /// The entry names a path with `..` in it.
    #[error("refusing path {0} that leaves the project")]
    Escapes(String),
    /// The entry names a file the task does not declare as an output, or one
    /// inside the cache or `.git`: an entry that was tampered with.
    #[error("refusing {0}: not a declared output of this task")]
    NotAnOutput(String),
    /// A folder on the way to the output is a symlink.
    #[error("refusing to write through symlink {}", .0.display())]
    Symlink(PathBuf),
    /// A blob is missing or fails its check.
    #[error("output {path}: {source}")]
    Blob {
        path: String,
        #[source]
        source: io::Error,
    },
    /// Writing the file in place failed.
    #[error("restoring {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The captured output is missing or damaged.
    #[error("captured output: {0}")]
    Log(#[source] io::Error),
}

/// Checks a manifest path is relative and has no `..`, without touching the
/// disk, and joins it to `root`.
pub fn lexical_target(root: &Path, rel: &str) -> Result<PathBuf, RestoreError> {
    // The usual path, checked as text: relative, and no `..` in it.
    if !rel.starts_with(['/', '\0']) && !rel.split('/').any(|c| c == "..") {
        return Ok(crate::fileset::join(root, rel));
    }
    let p = &*crate::fileset::rel_path(rel);
    if p.is_absolute() {
        return Err(RestoreError::Absolute(rel.to_owned()));
    }
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(RestoreError::Escapes(rel.to_owned()));
    }
    Ok(root.join(p))
}

/// Checks a manifest path is relative, has no `..`, and that no folder on
/// the way to it under `root` is a symlink. The file itself may be one: a
/// restore renames over it, which replaces the link and never writes
/// through it.
pub fn safe_target(root: &Path, rel: &str) -> Result<PathBuf, RestoreError> {
    let target = lexical_target(root, rel)?;
    let mut cur = root.to_path_buf();
    let rel_path = crate::fileset::rel_path(rel);
    let folders = rel_path
        .parent()
        .map(Path::components)
        .into_iter()
        .flatten();
    for c in folders {
        if let Component::Normal(part) = c {
            cur.push(part);
            if std::fs::symlink_metadata(&cur).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(RestoreError::Symlink(cur));
            }
        }
    }
    Ok(target)
}

/// The permission bits a restored file may have: no setuid, setgid or
/// sticky bit, and not world-writable, whatever an entry says.
pub const RESTORE_MODE_MASK: u32 = 0o775;

/// Where a restore may write: the files one task declares as outputs.
pub struct Allowed<'a> {
    /// The task's cwd (absolute) and its output globs, relative to it.
    pub cwd: &'a Path,
    pub globs: &'a [String],
    /// Never written into, whatever the globs say (the cache folder).
    pub never: &'a [PathBuf],
    /// The globs compiled, the first time a file must be written (a hit
    /// whose files are all in place writes nothing and compiles nothing).
    compiled: std::cell::OnceCell<Option<Patterns>>,
}

impl<'a> Allowed<'a> {
    /// The files `globs` (relative to `cwd`) name, outside `never`.
    pub fn new(cwd: &'a Path, globs: &'a [String], never: &'a [PathBuf]) -> Self {
        Allowed {
            cwd,
            globs,
            never,
            compiled: std::cell::OnceCell::new(),
        }
    }

    fn admits(&self, root: &Path, rel: &str) -> bool {
        let Some(outputs) = self.compiled.get_or_init(|| Patterns::new(self.globs).ok()) else {
            return false;
        };
        let rel_path = crate::fileset::rel_path(rel);
        let abs = root.join(&rel_path);
        if rel_path.components().any(|c| c.as_os_str() == ".git")
            || self.never.iter().any(|n| abs.starts_with(n))
        {
            return false;
        }
        abs.strip_prefix(self.cwd)
            .is_ok_and(|r| outputs.matches(&rel_string(r)))
    }
}

/// A symlink's target as a string: as it reads when it is UTF-8, else
/// encoded as [`rel_string`] encodes names that are not.
fn link_string(target: &Path) -> String {
    match target.to_str() {
        Some(s) if !s.starts_with('\0') => s.to_owned(),
        _ => {
            use std::os::unix::ffi::OsStrExt;
            let mut out = String::from("\0");
            for b in target.as_os_str().as_bytes() {
                out.push_str(&format!("{b:02x}"));
            }
            out
        }
    }
}

/// Whether `path` is already the symlink `o` describes.
fn link_in_place(path: &Path, target: &str) -> bool {
    std::fs::read_link(path).is_ok_and(|t| t == *crate::fileset::rel_path(target))
}

/// Puts an entry's outputs in place under `root`. Files already exactly
/// right are left alone; every other blob is checked first, so on any
/// failure nothing in the tree has been touched. Only files `allowed`
/// admits are written, with their modes masked. Returns how many files
/// were written, and their bytes.
pub fn restore(
    store: &dyn Store,
    entry: &Entry,
    root: &Path,
    allowed: &Allowed,
    memo: &Memo,
) -> Result<(usize, u64), RestoreError> {
    let mut plan = Vec::new();
    for o in &entry.outputs {
        let mode = o.mode & RESTORE_MODE_MASK;
        // A file already in place needs only the lexical checks: nothing is written.
        let in_place = lexical_target(root, &o.path)?;
        if let Some(target) = &o.link {
            if link_in_place(&in_place, target) {
                continue;
            }
            if !allowed.admits(root, &o.path) {
                return Err(RestoreError::NotAnOutput(o.path.clone()));
            }
            plan.push((o, safe_target(root, &o.path)?, mode));
            continue;
        }
        if let Ok(meta) = crate::fileset::lstat(&in_place)
            && meta.is_file()
            && meta.len() == o.size
            && meta.permissions().mode() & 0o7777 == mode
            && let Ok(h) = memo.hash_one(&in_place, &meta)
            && hex_is(&h, &o.hash)
        {
            continue;
        }
        // Only a file about to be written needs to be one the task declares.
        if !allowed.admits(root, &o.path) {
            return Err(RestoreError::NotAnOutput(o.path.clone()));
        }
        let target = safe_target(root, &o.path)?;
        store
            .verify_blob(&o.hash)
            .map_err(|source| RestoreError::Blob {
                path: o.path.clone(),
                source,
            })?;
        plan.push((o, target, mode));
    }
    let restored = (plan.len(), plan.iter().map(|(o, _, _)| o.size).sum());
    // Stage every file first: a failure here drops (deletes) what was staged
    // and leaves the outputs as they were. Only then rename them into place.
    let mut staged = Vec::with_capacity(plan.len());
    for (o, target, mode) in plan {
        let write = |source| RestoreError::Write {
            path: o.path.clone(),
            source,
        };
        let dir = target.parent().expect("target has a parent");
        std::fs::create_dir_all(dir).map_err(write)?;
        crate::atomic::remove_stale_temps(dir);
        let tmp = match &o.link {
            Some(link) => crate::atomic::temp_symlink_in(dir, &crate::fileset::rel_path(link))
                .map_err(write)?,
            None => {
                let tmp = crate::atomic::temp_in(dir).map_err(write)?;
                store.copy_blob(&o.hash, tmp.path()).map_err(write)?;
                std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
                    .map_err(write)?;
                tmp.into_temp_path()
            }
        };
        staged.push((o, target, tmp));
    }
    for (o, target, tmp) in staged {
        let write = |source| RestoreError::Write {
            path: o.path.clone(),
            source,
        };
        tmp.persist(&target).map_err(|e| write(e.error))?;
        if o.link.is_some() {
            continue;
        }
        if let (Ok(meta), Ok(h)) = (std::fs::metadata(&target), blake3::Hash::from_hex(&o.hash)) {
            memo.remember(&target, &meta, *h.as_bytes());
        }
    }
    Ok(restored)
}

/// The output files of a success, and the output globs (by position) that
/// matched none.
#[derive(Debug, Default)]
pub struct Collected {
    pub outputs: Vec<OutputFile>,
    pub unmatched: Vec<usize>,
}

/// Describes the files matching `globs` under `cwd` (relative to `root`)
/// and, given a store, stores them as blobs. `skip` lists folders never
/// entered (the cache).
pub fn collect(
    store: Option<&dyn Store>,
    memo: &Memo,
    root: &Path,
    cwd: &Path,
    globs: &[String],
    skip: &[PathBuf],
) -> io::Result<Collected> {
    if globs.is_empty() {
        return Ok(Collected::default());
    }
    let patterns = Patterns::new(globs).map_err(|(g, e)| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("bad glob `{g}`: {e}"))
    })?;
    let found = patterns.expand(cwd, Ignored::Include, skip)?;
    let unmatched = patterns
        .unmatched(&found)
        .into_iter()
        .filter(|i| !globs[*i].starts_with('!'))
        .collect();
    let hashes = crate::fileset::hash_found(memo, &found)?;
    let mut outputs = Vec::with_capacity(found.len());
    for (f, h) in found.iter().zip(hashes) {
        let path = f
            .abs
            .strip_prefix(root)
            .map(rel_string)
            .unwrap_or_else(|_| f.rel.clone());
        // A symlink is kept as a link, whatever it points to.
        if let Some(target) = &f.link {
            outputs.push(OutputFile {
                path,
                hash: hex(&crate::fileset::link_hash(target)),
                size: 0,
                mode: 0o777,
                link: Some(link_string(target)),
            });
            continue;
        }
        let hash = hex(&h);
        if let Some(store) = store {
            store.put_file(&hash, &f.abs)?;
        }
        outputs.push(OutputFile {
            path,
            hash,
            size: f.meta.len(),
            mode: f.meta.permissions().mode() & 0o7777,
            link: None,
        });
    }
    Ok(Collected { outputs, unmatched })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::local::LocalStore;

    #[test]
    fn lexical_checks_as_text_agree_with_path_components() {
        let root = Path::new("/r");
        for rel in [
            "a",
            "a/b",
            "./a",
            "a//b",
            "a/./b",
            "a/..b",
            "..a/b",
            "a/b..",
            "..",
            "../a",
            "a/..",
            "a/../b",
            "/a",
            "//a",
            "a/b/../..",
        ] {
            let by_components = Path::new(rel).is_absolute()
                || Path::new(rel)
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
            assert_eq!(lexical_target(root, rel).is_err(), by_components, "{rel}");
            if let Ok(p) = lexical_target(root, rel) {
                assert_eq!(p, root.join(rel));
            }
        }
    }

    #[test]
    fn unsafe_manifest_paths_are_refused() {
        let t = tempfile::tempdir().unwrap();
        assert!(matches!(
            safe_target(t.path(), "/etc/passwd"),
            Err(RestoreError::Absolute(_))
        ));
        assert!(matches!(
            safe_target(t.path(), "a/../../x"),
            Err(RestoreError::Escapes(_))
        ));
        std::os::unix::fs::symlink("/tmp", t.path().join("link")).unwrap();
        assert!(matches!(
            safe_target(t.path(), "link/x"),
            Err(RestoreError::Symlink(_))
        ));
        assert!(safe_target(t.path(), "ok/x").is_ok());
    }

    #[test]
    fn collected_outputs_restore_byte_for_byte_and_a_bad_blob_touches_nothing() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("p");
        std::fs::create_dir_all(root.join("out")).unwrap();
        std::fs::write(root.join("out/a.txt"), "A").unwrap();
        std::fs::write(root.join("out/b.txt"), "B").unwrap();
        let store = LocalStore::open(&t.path().join("cache")).unwrap();
        let memo = Memo::new();
        let collected = collect(
            Some(&store),
            &memo,
            &root,
            &root,
            &["out/*.txt".into(), "missing/*".into()],
            &[],
        )
        .unwrap();
        assert_eq!(collected.unmatched, vec![1]);
        let outputs = collected.outputs;
        assert_eq!(outputs.len(), 2);
        let entry = Entry {
            format: 1,
            key: "k".into(),
            instance: "t".into(),
            exit_code: 0,
            duration_ms: 1,
            created_unix: 0,
            log: None,
            log_size: None,
            outputs,
            dep_keys: Default::default(),
            invocation: None,
        };
        std::fs::remove_dir_all(root.join("out")).unwrap();
        let globs = ["out/*.txt".to_owned()];
        let never = [t.path().join("cache")];
        let allowed = Allowed::new(&root, &globs, &never);
        assert_eq!(
            restore(&store, &entry, &root, &allowed, &memo).unwrap(),
            (2, 2)
        );
        assert_eq!(
            std::fs::read_to_string(root.join("out/b.txt")).unwrap(),
            "B"
        );
        // Damage one blob: the other output is not written either.
        std::fs::remove_dir_all(root.join("out")).unwrap();
        let b = &entry.outputs[1].hash;
        std::fs::write(t.path().join("cache/blobs").join(&b[..2]).join(b), "not B").unwrap();
        assert!(matches!(
            restore(&store, &entry, &root, &allowed, &memo),
            Err(RestoreError::Blob { .. })
        ));
        assert!(!root.join("out").exists(), "the tree is untouched");
    }
}
