//! Tools in the key: the programs a task runs, found on PATH (or relative to
//! its cwd) and identified by their content hash — not their path, which
//! differs between machines that share results. Each program is looked up
//! once per run and hashed through the stat memo.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::hash::{Memo, hex};

/// A program as the key sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// Where it was found (shown by `inputs` and `explain`, not in the key).
    pub path: PathBuf,
    /// The content hash of the file the path leads to.
    pub hash: String,
}

/// The key's value for a tool that is not found.
pub const NOT_FOUND: &str = "not-found";

/// Looks programs up, once each per run.
pub struct ToolIndex {
    path_var: Option<OsString>,
    /// By plain name, or by absolute path for names with a `/`. Read by
    /// every instance's check, on every thread: a read lock.
    found: RwLock<rustc_hash::FxHashMap<String, Option<Arc<Tool>>>>,
}

impl ToolIndex {
    /// An index over this process's PATH.
    pub fn from_env() -> ToolIndex {
        ToolIndex::new(std::env::var_os("PATH"))
    }

    /// An index over the folders of `path_var`.
    pub fn new(path_var: Option<OsString>) -> ToolIndex {
        ToolIndex {
            path_var,
            found: RwLock::default(),
        }
    }

    /// Finds `name`: on PATH when it is a plain word, under `cwd` when it
    /// holds a `/`. `None` when there is no executable file of that name.
    pub fn resolve(&self, name: &str, cwd: &Path, memo: &Memo) -> Option<Arc<Tool>> {
        let joined;
        let lookup_key = if name.contains('/') {
            joined = cwd.join(name).to_string_lossy().into_owned();
            joined.as_str()
        } else {
            name
        };
        if let Some(t) = self.found.read().expect("tool index").get(lookup_key) {
            return t.clone();
        }
        let tool = self.locate(name, cwd).and_then(|path| {
            let meta = std::fs::metadata(&path).ok()?;
            let h = memo.hash_files(&[(&path, &meta)]).ok()?;
            Some(Arc::new(Tool {
                path,
                hash: hex(&h[0]),
            }))
        });
        self.found
            .write()
            .expect("tool index")
            .insert(lookup_key.to_owned(), tool.clone());
        tool
    }

    fn locate(&self, name: &str, cwd: &Path) -> Option<PathBuf> {
        if name.contains('/') {
            let p = cwd.join(name);
            return executable(&p).then_some(p);
        }
        std::env::split_paths(self.path_var.as_deref()?)
            .map(|dir| dir.join(name))
            .find(|p| executable(p))
    }
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_found_on_path_and_identified_by_content() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        for (dir, text) in [(&a, "one"), (&b, "two")] {
            let p = dir.join("tool");
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let memo = Memo::new();
        let path = std::env::join_paths([&a, &b]).unwrap();
        let first = ToolIndex::new(Some(path))
            .resolve("tool", t.path(), &memo)
            .unwrap();
        assert_eq!(first.path, a.join("tool"));
        assert_eq!(first.hash, blake3::hash(b"one").to_hex().as_str());
        let path = std::env::join_paths([&b, &a]).unwrap();
        let second = ToolIndex::new(Some(path))
            .resolve("tool", t.path(), &memo)
            .unwrap();
        assert_ne!(first.hash, second.hash, "another binary is another tool");
        let none = ToolIndex::new(None);
        assert!(none.resolve("tool", t.path(), &memo).is_none());
        assert!(
            none.resolve("a/tool", t.path(), &memo).is_some(),
            "paths resolve under the cwd"
        );
    }
}
