//! `sandbox = true`: a task runs under Landlock, able to read only its
//! declared inputs, what its dependencies made, and the system's and
//! toolchains' folders, and to write only its output folders and a private
//! temporary folder.
//!
//! The ruleset is built here, in hotpass, before the task starts (opening
//! each allowed path); the task's shell only enforces it just before it
//! execs, and every process it starts inherits it. Landlock binds a rule to
//! the folder or file as it is when the rule is made: an output folder the
//! task deletes and makes again is a new folder, outside the rules.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
};

use crate::config::Project;
use crate::fileset::{Ignored, Patterns, static_prefix};
use crate::graph::{InstanceGraph, InstanceId};

/// The Landlock ABI this kernel offers; an error says why there is none.
pub fn available() -> Result<i32, String> {
    const VERSION: libc::c_uint = 1; // LANDLOCK_CREATE_RULESET_VERSION
    // SAFETY: asks for the ABI version; no ruleset is made.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            VERSION,
        )
    };
    if abi >= 1 {
        return Ok(abi as i32);
    }
    let err = io::Error::last_os_error();
    Err(match err.raw_os_error() {
        Some(libc::ENOSYS) => {
            "this kernel has no Landlock (Linux 5.13 or later, built with it, is needed)".into()
        }
        Some(libc::EOPNOTSUPP) => {
            "Landlock is built into this kernel but turned off (add `landlock` to the \
             `lsm=` boot parameter)"
                .into()
        }
        _ => format!("Landlock is unavailable: {err}"),
    })
}

/// Folders every sandboxed task may read and execute from, where they exist.
const SYSTEM: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
    "/proc",
    "/sys",
    "/run",
    "/nix/store",
    "/snap",
];

/// Devices every sandboxed task may read and write.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
];

/// A task's ruleset, ready to enforce, and its private temporary folder.
pub struct Prepared {
    ruleset: OwnedFd,
    tmp: tempfile::TempDir,
}

impl Prepared {
    /// The ruleset, for the task's shell to enforce.
    pub fn ruleset(&self) -> BorrowedFd<'_> {
        self.ruleset.as_fd()
    }

    /// The private temporary folder (the task's `TMPDIR`).
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }
}

struct Rules {
    created: landlock::RulesetCreated,
    abi: ABI,
}

impl Rules {
    /// Allows `access` on `path` (and, for a folder, everything under it),
    /// if `path` exists; a file gets only the rights a file can have.
    fn allow(&mut self, path: &Path, access: BitFlags<AccessFs>) -> io::Result<()> {
        let Ok(meta) = std::fs::metadata(path) else {
            return Ok(());
        };
        let access = if meta.is_dir() {
            access
        } else {
            access & AccessFs::from_file(self.abi)
        };
        if access.is_empty() {
            return Ok(());
        }
        let fd = match PathFd::new(path) {
            Ok(fd) => fd,
            Err(_) => return Ok(()), // gone meanwhile, or not ours to open
        };
        (&mut self.created)
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        Ok(())
    }
}

/// Builds the ruleset for `id`: what it may read and write, as listed in
/// the module's documentation. `skip` lists the cache folder (never allowed).
pub fn prepare(
    project: &Project,
    graph: &InstanceGraph,
    id: InstanceId,
    skip: &[PathBuf],
) -> io::Result<Prepared> {
    let abi = ABI::V5;
    let inst = graph.get(id);
    let task = project.task(inst.task);
    let r = &inst.resolved;
    let created = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.create())
        .map_err(io::Error::other)?;
    let mut rules = Rules { created, abi };
    let read = AccessFs::from_read(abi);
    let everything = AccessFs::from_all(abi);

    for dir in SYSTEM {
        rules.allow(Path::new(dir), read)?;
    }
    for dev in DEVICES {
        rules.allow(Path::new(dev), everything)?;
    }
    let path_var = r
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| std::ffi::OsString::from(v))
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    for dir in std::env::split_paths(&path_var) {
        if dir.is_absolute() {
            rules.allow(&dir, read)?;
        }
    }
    for allowed in &task.sandbox_allow {
        if !allowed.exists() {
            // A typo here would show up as puzzling denials.
            tracing::warn!(
                "{}: sandbox_allow names {}, which does not exist",
                inst.name,
                allowed.display()
            );
        }
        rules.allow(allowed, read)?;
    }
    // Listing folders of the project is allowed; reading its files is not.
    rules.allow(&project.root, AccessFs::ReadDir.into())?;
    if !r.input_globs.is_empty() {
        let patterns = Patterns::new(&r.input_globs)
            .map_err(|(g, e)| io::Error::other(format!("bad glob `{g}`: {e}")))?;
        for f in patterns.expand(&r.cwd, Ignored::Skip, skip)? {
            rules.allow(&f.abs, AccessFs::ReadFile | AccessFs::Execute)?;
        }
    }
    // Its `tools` with a path (their identity is in the key).
    for tool in r.tools.iter().filter(|t| t.contains('/')) {
        rules.allow(&r.cwd.join(tool), AccessFs::ReadFile | AccessFs::Execute)?;
    }
    // What the dependencies made, as it is now.
    let mut stack = inst.deps.clone();
    let mut seen = std::collections::HashSet::new();
    while let Some(d) = stack.pop() {
        if !seen.insert(d) {
            continue;
        }
        let dep = graph.get(d);
        stack.extend(dep.deps.iter().copied());
        if dep.resolved.outputs.is_empty() {
            continue;
        }
        if let Ok(p) = Patterns::new(&dep.resolved.outputs) {
            for f in p.expand(&dep.resolved.cwd, Ignored::Include, skip)? {
                rules.allow(&f.abs, AccessFs::ReadFile | AccessFs::Execute)?;
            }
        }
    }
    // Its outputs: each glob's own folder (made first, so that a rule can
    // name it) may be read and written. A folder that also holds the task
    // itself (an output file beside its sources, `*.log` at the top) may
    // only be written: its existing outputs may be read back, nothing else.
    for glob in r.outputs.iter().filter(|g| !g.starts_with('!')) {
        let prefix = static_prefix(&r.cwd, glob);
        let exact = prefix == r.cwd.join(glob) && !prefix.is_dir();
        let folder = if exact {
            prefix.parent().unwrap_or(&r.cwd).to_path_buf()
        } else {
            prefix
        };
        if r.cwd.starts_with(&folder) || project.root.starts_with(&folder) {
            rules.allow(&folder, AccessFs::from_write(abi))?;
            if let Ok(p) = Patterns::new(std::slice::from_ref(glob)) {
                for f in p.expand(&r.cwd, Ignored::Include, skip)? {
                    rules.allow(&f.abs, everything)?;
                }
            }
        } else {
            std::fs::create_dir_all(&folder)?;
            rules.allow(&folder, everything)?;
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix("hotpass-sandbox-")
        .tempdir()?;
    rules.allow(tmp.path(), everything)?;
    let fd: Option<OwnedFd> = rules.created.into();
    let ruleset = fd.ok_or_else(|| io::Error::other("Landlock made no ruleset"))?;
    Ok(Prepared { ruleset, tmp })
}

/// Whether a failed task's output reads like a refused access.
pub fn looks_denied(output: &[u8]) -> bool {
    let text = String::from_utf8_lossy(output).to_lowercase();
    ["permission denied", "eacces", "permissionerror"]
        .iter()
        .any(|p| text.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_globs_folder_is_its_part_before_the_first_wildcard() {
        let base = Path::new("/p");
        assert_eq!(static_prefix(base, "dist/**"), PathBuf::from("/p/dist"));
        assert_eq!(static_prefix(base, "out/*.txt"), PathBuf::from("/p/out"));
        assert_eq!(static_prefix(base, "*.o"), PathBuf::from("/p"));
        assert_eq!(static_prefix(base, "a/b.txt"), PathBuf::from("/p/a/b.txt"));
    }

    #[test]
    fn denials_are_recognised_in_the_output() {
        assert!(looks_denied(b"cat: secret.txt: Permission denied\n"));
        assert!(looks_denied(b"PermissionError: [Errno 13]"));
        assert!(!looks_denied(b"error: 3 tests failed"));
    }
}
