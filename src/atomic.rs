//! Atomic file writes: a temporary file in the same folder, then a rename,
//! so a reader sees the old file or the new one, never half of one.

use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file and a rename, creating
/// the folder if needed.
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

#[cfg(test)]
mod tests {
    use super::*;

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
