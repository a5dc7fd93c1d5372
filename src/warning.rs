//! Warnings: what goes wrong without stopping the command. Each is said once
//! on stderr (through `tracing`), and the work goes on — a broken cache runs
//! uncached, a bad entry is a miss, a failed store keeps the result. Errors
//! that stop a command live in `error.rs`.

use std::fmt;
use std::path::PathBuf;

/// The cause of a warning, kept as an error value.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Something hotpass recovered from, and how.
#[derive(Debug, thiserror::Error)]
pub enum Warning {
    /// The cache folder cannot be opened: the run goes on without the cache.
    #[error("cannot open the cache at {} ({source}); running without the cache", dir.display())]
    CacheUnavailable {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An instance's inputs cannot be hashed: it runs, uncached.
    #[error("{instance}: could not hash its inputs ({source}); running it without the cache")]
    Unhashable {
        instance: String,
        #[source]
        source: std::io::Error,
    },
    /// A stored entry fails its integrity check: a miss.
    #[error("{instance}: cache entry {key} is corrupt ({why}); running it")]
    CorruptEntry {
        instance: String,
        key: String,
        why: String,
    },
    /// A hit's outputs cannot be put in place: the tree is untouched and it runs.
    #[error("{instance}: cache entry could not be restored ({source}); running it")]
    RestoreFailed {
        instance: String,
        #[source]
        source: Cause,
    },
    /// A success could not be stored: the result stands, uncached.
    #[error("{instance}: could not store its result in the cache: {source}")]
    StoreFailed {
        instance: String,
        #[source]
        source: Cause,
    },
    /// An input glob matches no file: the key does not cover what was meant.
    #[error("{instance}: input glob `{glob}` ({at}) matches no file")]
    EmptyInputGlob {
        instance: String,
        glob: String,
        at: String,
    },
    /// An output glob matched nothing after a success: the task wrote elsewhere.
    #[error("{instance}: output glob `{glob}` ({at}) matched nothing after a successful run")]
    EmptyOutputGlob {
        instance: String,
        glob: String,
        at: String,
    },
    /// An input changed while its task ran: the result may reflect either
    /// version, so it is not stored.
    #[error(
        "{instance}: input {file} changed while the task ran; its result is not stored, and the next run runs it again"
    )]
    InputChangedDuringRun { instance: String, file: String },
    /// Another hotpass process is running the same instance: this one waits,
    /// then takes its result.
    #[error("{instance}: another hotpass is running it with the same key; waiting for its result")]
    WaitingForAnotherRun { instance: String },
    /// A FIFO, socket or device under a glob: never hashed, stored or
    /// restored (reading one could block forever or never end).
    #[error("skipping {}: not a regular file", path.display())]
    NotAFile { path: PathBuf },
    /// The cache's state file could not be saved: the next run reads
    /// entries and hashes files again (slower, never wrong).
    #[error("could not save the cache's state file: {0}")]
    StateNotSaved(#[source] std::io::Error),
    /// The cache's state file is damaged (a crash mid-write, a full disk,
    /// an edit): what follows the damage is ignored and every instance it
    /// described is checked against its entry again.
    #[error("the cache's state file {} is damaged at byte {offset} ({why}); checking again from the entries", path.display())]
    StateDamaged {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    /// A pack of the cache is torn or damaged (a run killed while writing
    /// it, or an edit): the entries after the damage are lost, and their
    /// instances run again.
    #[error("the cache's pack {} is damaged at byte {offset} ({why}); the entries after it are lost", path.display())]
    PackDamaged {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    /// The remote cache failed (down, slow, refusing): the run goes on with
    /// the local cache alone, and the remote is not asked again this run.
    #[error("the remote cache {url} is unavailable ({why}); going on with the local cache only")]
    RemoteUnavailable { url: String, why: String },
    /// A remote entry was refused (damaged, unsigned, unsafe): a miss.
    #[error("{instance}: the remote cache entry was refused ({why}); running it")]
    RemoteEntryRefused { instance: String, why: String },
    /// Lineage events could not be delivered: the run is unchanged.
    #[error("lineage events could not be delivered to {target} ({why}); the run is unaffected")]
    LineageFailed { target: String, why: String },
    /// Traces could not be exported: the run is unchanged.
    #[error("traces could not be exported to {endpoint} ({why}); the run is unaffected")]
    TelemetryFailed { endpoint: String, why: String },
    /// A configured service this version does not use.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The file watcher reported an error; watching goes on where it can.
    #[error("the file watcher failed: {message}")]
    Watcher {
        message: String,
        /// What to do about it, when known.
        help: Option<String>,
    },
}

impl Warning {
    /// What the user can do about it, when there is something.
    pub fn help(&self) -> Option<&str> {
        match self {
            Warning::Watcher { help, .. } => help.as_deref(),
            Warning::EmptyInputGlob { .. } => Some(
                "a typo here makes the task look unchanged forever; fix the pattern \
                 (`hotpass inputs TASK` lists what the key covers), or run with --strict \
                 to make this an error",
            ),
            Warning::EmptyOutputGlob { .. } => {
                Some("nothing was stored for this glob; point it at the files the task writes")
            }
            Warning::CacheUnavailable { .. } => {
                Some("check that the cache folder is writable, or set HOTPASS_CACHE_DIR")
            }
            _ => None,
        }
    }

    /// Says the warning on stderr.
    pub fn emit(&self) {
        tracing::warn!("{}", Shown(self));
    }
}

struct Shown<'a>(&'a Warning);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        if let Some(help) = self.0.help() {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}
