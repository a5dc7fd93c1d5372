//! hotpass: a declarative task runner that works like a build system.
//!
//! Data flows one way: config → graph → exec → report. [`run`] is the whole
//! program; `main.rs` only calls it.

/// Atomic file writes (temporary file, then rename).
pub mod atomic;
/// The input audit: what a task really reads and writes.
pub mod audit;
/// The cache: keys, the hit-or-run decision, the storage trait and the local folder.
pub mod cache;
/// Captured task output and its codec.
pub mod capture;
/// The command line, as clap types with their help text.
pub mod cli;
/// One module per subcommand, wiring config → graph → exec → report.
pub mod commands;
/// Loading and validating hotpass.toml into a `Project`.
pub mod config;
/// Errors that stop a command, and their exit codes.
pub mod error;
/// Running instances: the scheduler, processes and the work of one instance.
pub mod exec;
/// Expanding input and output globs into files.
pub mod fileset;
/// Instances and the dependency graph between them; selectors.
pub mod graph;
/// Content hashes and the stat memo.
pub mod hash;
/// What running instances produced: statuses, outcomes, a run's result.
pub mod outcome;
/// Daily, monthly and value partitions.
pub mod partition;
/// Showing a run to people and to CI.
pub mod report;
/// `sandbox = true`: Landlock rules from a task's declared inputs and outputs.
pub mod sandbox;
/// Warnings: what goes wrong without stopping the command.
pub mod warning;
/// Watch mode: what to watch and what a change affects.
pub mod watch;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, ColorChoice, LogFormat};
use error::{EXIT_USAGE, Error};

/// What every command needs from its surroundings, read once at the edge.
#[derive(Debug, Clone)]
pub struct Context {
    /// The process's working folder.
    pub cwd: std::path::PathBuf,
    /// Whether to colour output.
    pub color: bool,
    /// Whether stdout is a terminal (live view) or not (prefixed lines).
    pub terminal: bool,
    /// `-q`.
    pub quiet: bool,
    /// `--output`.
    pub output: report::OutputMode,
    /// Running under GitHub Actions.
    pub github: bool,
    /// Options for finding the configuration.
    pub load: config::LoadOptions,
    /// `HOTPASS_NOW`: the instant partitions count from (RFC 3339).
    pub now: Option<String>,
    /// `HOTPASS_TODAY`.
    pub today: Option<String>,
}

/// How many CPUs this process may use, found once (finding it reads the
/// cgroup's quota files, and a run asks more than once).
pub(crate) fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runs hotpass with these arguments (the first is the program name) and
/// returns the exit code. Holds no global state: it can be called repeatedly.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let stderr_tty = std::io::stderr().is_terminal();
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let color = match cli.global.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stdout().is_terminal() && !no_color,
    };
    let level = if cli.global.quiet {
        "error"
    } else {
        ["warn", "info", "debug", "trace"][cli.global.verbose.min(3) as usize]
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOTPASS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("hotpass={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr piped into `head`, now
        // closed) is dropped: the layer's own complaint about it would go
        // to the same closed stderr, and `eprintln!` panics there.
        .log_internal_errors(false)
        .with_target(false);
    let dispatch: tracing::Dispatch = match cli.global.log_format {
        LogFormat::Json => builder.json().into(),
        LogFormat::Text => builder
            .with_ansi(stderr_tty && cli.global.color != ColorChoice::Never && !no_color)
            .without_time()
            .into(),
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    fileset::set_working_folder(&cwd);
    let ctx = Context {
        cwd: cwd.clone(),
        color,
        terminal: std::io::stdout().is_terminal() && cli.global.color != ColorChoice::Never,
        quiet: cli.global.quiet,
        output: cli.global.output,
        github: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
        load: config::LoadOptions {
            cwd,
            dir: cli.global.dir.clone(),
            config: cli.global.config.clone(),
            cache_dir_env: std::env::var_os("HOTPASS_CACHE_DIR")
                .filter(|v| !v.is_empty())
                .map(Into::into),
        },
        now: std::env::var("HOTPASS_NOW").ok().filter(|v| !v.is_empty()),
        today: std::env::var("HOTPASS_TODAY")
            .ok()
            .filter(|v| !v.is_empty()),
    };
    if !matches!(
        cli.command,
        cli::Command::Run(_) | cli::Command::Watch(_) | cli::Command::Audit { .. }
    ) {
        // Commands that only print end quietly when their reader goes away
        // (`hotpass list | head`), as `cat` does. `run` and `watch` ignore a
        // closed stdout instead, so they never die with children in flight.
        // SAFETY: restoring the default disposition of SIGPIPE.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result =
        tracing::dispatcher::with_default(&dispatch, || commands::dispatch(&ctx, cli.command));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            report_error(
                &err,
                stderr_tty && cli.global.color != ColorChoice::Never && !no_color,
            );
            ExitCode::from(err.exit_code())
        }
    }
}

/// Prints an error as a miette diagnostic on stderr.
pub(crate) fn report_error(err: &Error, color: bool) {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    if handler.render_report(&mut out, err).is_err() {
        out = format!("error: {err}\n");
    }
    // Not `eprint!`: it panics when stderr is closed, and the exit code
    // must stay the error's.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), out.as_bytes());
}
