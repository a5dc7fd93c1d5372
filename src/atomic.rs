//! Atomic file writes: a temporary file in the same folder, then a rename,
//! so a reader sees the old file or the new one, never half of one.
//! Temporary files are named `.hotpass-PID-…`: never taken for inputs or
//! outputs, and removed by the next hotpass once their process is gone.

use std::io::{self, Write};
use std::path::Path;

/// The start of every temporary file hotpass makes.
const TEMP_PREFIX: &str = ".hotpass-";

/// A new temporary file in `dir`, named after this process.
pub fn temp_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}-", std::process::id()))
        .tempfile_in(dir)
}

/// A new symlink holding `target`, under a temporary name in `dir`, to be
/// renamed into place (or removed when dropped).
pub fn temp_symlink_in(dir: &Path, target: &Path) -> io::Result<tempfile::TempPath> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(
            "{TEMP_PREFIX}{}-link{nanos:x}{n}",
            std::process::id()
        ));
        match std::os::unix::fs::symlink(target, &path) {
            Ok(()) => return tempfile::TempPath::try_from_path(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The process that made temporary file `name`, if it is one.
fn temp_owner(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(TEMP_PREFIX)?;
    rest.split_once('-')?.0.parse().ok()
}

/// Whether a file name is one of hotpass's temporary files.
pub fn is_temp(name: &str) -> bool {
    temp_owner(name).is_some()
}

/// Removes the temporary files in `dir` whose process is gone (a run that
/// was killed while writing). Returns how many.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Writes `bytes` to `path` through a temporary file and a rename, creating
/// the folder if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The folder is made only when the file cannot be: most writes go to a
    // folder that is there, and asking first is two system calls each.
    let mut tmp = match temp_in(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            temp_in(dir)?
        }
        other => other?,
    };
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temps_of_dead_processes_are_removed_and_live_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        std::fs::write(t.path().join(format!(".hotpass-{dead}-abc")), "partial").unwrap();
        let live = temp_in(t.path()).unwrap();
        std::fs::write(t.path().join("ordinary.txt"), "kept").unwrap();
        assert!(is_temp(live.path().file_name().unwrap().to_str().unwrap()));
        assert_eq!(remove_stale_temps(t.path()), 1);
        assert!(live.path().exists());
        assert!(t.path().join("ordinary.txt").exists());
    }

    #[test]
    fn replaces_whole_files_and_creates_folders() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a/b/file");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"2").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"2");
        let leftovers = std::fs::read_dir(t.path().join("a/b")).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }
}
