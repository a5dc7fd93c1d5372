//! The parsed and validated project, kept in the cache folder
//! (`config.bin`) so that a run whose config files did not change does not
//! parse them again: on a 1,000-task project, parsing and validating takes
//! most of a no-op's time.
//!
//! It is used only when everything it was made from is as it was: the
//! same hotpass binary (its stat signature and version), the same options
//! (folder, `--config`, `HOTPASS_CACHE_DIR`, CPU count), the same config
//! files by stat signature, and the same set of included task files (the
//! include patterns are expanded again: a new file under `tasks/` is
//! seen). Anything else, or a file that does not decode, is a full parse.
//! A project is not saved while one of its files is within the racy
//! window (modified in the last seconds), so an edit in the same
//! timestamp tick as the save cannot go unseen.
//!
//! It lives in the default cache folder (`cache/` beside `hotpass.toml`, or
//! `HOTPASS_CACHE_DIR`): the one place known before the config is read. A
//! project whose `cache_dir` points elsewhere is parsed every time.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{LoadOptions, Project};
use crate::hash::{RACY_WINDOW, Stat};

/// The file's name in the cache folder.
const FILE: &str = "config.bin";
/// Changes whenever the layout of what is saved changes.
const VERSION: u32 = 1;

/// What a saved project was made from.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Stamp {
    version: u32,
    hotpass: String,
    exe: Option<Stat>,
    opts: LoadOptions,
    cpus: usize,
    /// Every config file read (the root first) and its signature.
    files: Vec<(PathBuf, Stat)>,
}

#[derive(Deserialize)]
struct Saved {
    stamp: Stamp,
    project: Project,
}

/// [`Saved`], as written (without copying the project).
#[derive(Serialize)]
struct ToSave<'a> {
    stamp: Stamp,
    project: &'a Project,
}

/// The stamp of a project read now from `files`; `None` when one of them
/// cannot be stat'ed.
fn stamp(opts: &LoadOptions, files: &[PathBuf]) -> Option<Stamp> {
    let files = files
        .iter()
        .map(|f| Some((f.clone(), Stat::of(&std::fs::metadata(f).ok()?))))
        .collect::<Option<Vec<_>>>()?;
    Some(Stamp {
        version: VERSION,
        hotpass: env!("CARGO_PKG_VERSION").to_owned(),
        exe: std::fs::metadata("/proc/self/exe")
            .ok()
            .map(|m| Stat::of(&m)),
        opts: opts.clone(),
        cpus: crate::cpus(),
        files,
    })
}

/// Where the saved project of the config at `config` (root `root`) lives.
fn location(opts: &LoadOptions, root: &Path) -> PathBuf {
    super::load::default_cache_dir(opts, root).join(FILE)
}

/// The saved project for the config file `config`, if everything it was
/// made from is unchanged. `included` lists the task files the include
/// patterns match now, given the saved project's patterns.
pub(super) fn load(
    opts: &LoadOptions,
    config: &Path,
    root: &Path,
    included: impl FnOnce(&Project) -> Option<Vec<PathBuf>>,
) -> Option<Project> {
    let bytes = std::fs::read(location(opts, root)).ok()?;
    let saved: Saved = postcard::from_bytes(&bytes).ok()?;
    let mut files = vec![config.to_path_buf()];
    files.extend(included(&saved.project)?);
    if stamp(opts, &files)? != saved.stamp {
        return None;
    }
    Some(saved.project)
}

/// Saves `project` (read from its files, the root config first) where
/// [`load`] finds it, when that is the project's own cache folder and it
/// exists. Failing to save only costs the next run a parse.
pub(super) fn save(opts: &LoadOptions, project: &Project) {
    let path = location(opts, &project.root);
    let dir = path.parent().expect("a file in a folder");
    if dir != project.settings.cache_dir || !dir.is_dir() {
        return;
    }
    let files: Vec<PathBuf> = project.files.iter().map(|f| f.path.clone()).collect();
    let Some(stamp) = stamp(opts, &files) else {
        return;
    };
    let racy = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(RACY_WINDOW)
        .as_nanos() as i64;
    if stamp.files.iter().any(|(_, s)| s.mtime_ns >= racy) {
        return;
    }
    let Ok(bytes) = postcard::to_allocvec(&ToSave { stamp, project }) else {
        return;
    };
    let written = crate::atomic::temp_in(dir).and_then(|tmp| {
        tmp.as_file().write_all(&bytes)?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    });
    if let Err(e) = written {
        tracing::debug!("could not save the parsed project: {e}");
    }
}
