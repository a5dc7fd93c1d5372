//! Errors that stop a command, and the one place where an outcome becomes an
//! exit code: 0 success, 1 a task failed, 2 bad config or usage, 130 interrupted.

use std::fmt;

use miette::Diagnostic;

use crate::config::ConfigErrors;

/// Exit code: everything succeeded (cache hits included).
pub const EXIT_OK: u8 = 0;
/// Exit code: a task or gate failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad configuration or usage; nothing ran.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: interrupted by SIGINT or SIGTERM.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit code: the terminal closed (SIGHUP); the tasks were stopped as on Ctrl-C.
pub const EXIT_HANGUP: u8 = 129;

/// The signals that stop a run, as a Ctrl-C does.
pub const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The exit code after a run was stopped by `signal`.
pub fn exit_for_signal(signal: Option<i32>) -> u8 {
    if signal == Some(libc::SIGHUP) {
        EXIT_HANGUP
    } else {
        EXIT_INTERRUPTED
    }
}

/// A mistake on the command line (unknown selector, bad range, ...).
#[derive(Debug)]
pub struct UsageError {
    /// The headline.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl UsageError {
    /// A usage error with a message and a hint.
    pub fn new(message: impl Into<String>, help: Option<String>) -> UsageError {
        UsageError {
            message: message.into(),
            help,
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

impl Diagnostic for UsageError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("hotpass::usage"))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.as_str()) as Box<dyn fmt::Display>)
    }
}

/// Everything that can stop a command before or instead of a normal outcome.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum Error {
    /// The configuration is invalid: reported with spans, exit 2.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(#[from] ConfigErrors),
    /// The command line asks for something that cannot be done: exit 2.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Usage(#[from] UsageError),
    /// The machine refused something hotpass needs (I/O): exit 1.
    #[error("{context}: {source}")]
    #[diagnostic(code(hotpass::io))]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with what hotpass was doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) => EXIT_USAGE,
            Error::Io { .. } => EXIT_FAILED,
        }
    }
}
