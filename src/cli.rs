//! The command line: global flags, subcommands and their help text.

use std::path::PathBuf;

use crate::report::OutputMode;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// hotpass: a declarative task runner that works like a build system.
///
/// Reads tasks and quality gates from hotpass.toml, runs them dependencies
/// first and in parallel, and answers from a content-hashed cache whatever
/// has not changed.
#[derive(Debug, Parser)]
#[command(
    name = "hotpass",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Args)]
pub struct Global {
    /// Run as if started in DIR (hotpass.toml is searched from there upwards).
    #[arg(short = 'C', long = "directory", value_name = "DIR", global = true)]
    pub dir: Option<PathBuf>,
    /// Use this configuration file; its folder is the project root.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// More engine logs on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only what failed (its output and verdict) and the summary's last line.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// How task output is shown on a terminal: grouped under each verdict
    /// (streaming while only one instance runs), streamed, or prefixed lines
    /// as off a terminal.
    #[arg(long, value_enum, default_value_t = OutputMode::Grouped, global = true, value_name = "MODE")]
    pub output: OutputMode,
    /// When to use colours.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true, value_name = "WHEN")]
    pub color: ColorChoice,
    /// Format of the engine's own logs on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, value_name = "FORMAT")]
    pub log_format: LogFormat,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run tasks and gates (all of them when no selector is given), dependencies first.
    ///
    /// Examples:
    ///   hotpass run                      # every task and gate
    ///   hotpass run gate:types           # one gate and what it depends on
    ///   hotpass run 'gate:*' --keep-going
    ///   hotpass run pipeline:report --backfill 2025-01-01..2025-01-31
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
    /// Run the selection, then re-run what each file change affects.
    ///
    /// Examples:
    ///   hotpass watch gate:types
    ///   hotpass watch 'gate:*' --debounce 200 --clear
    #[command(verbatim_doc_comment)]
    Watch(WatchArgs),
    /// List tasks and gates with their descriptions.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the dependency graph of the selection.
    ///
    /// Example: hotpass graph build --format mermaid
    Graph {
        /// Tasks, gates, globs or instances; none means all.
        selectors: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
        #[command(flatten)]
        partitions: PartitionFlags,
    },
    /// List exactly what an instance's cache key covers: each file (with its
    /// size and short hash) under the glob that matched it, the `$NAME`
    /// inputs (names only), the tools and the dependencies.
    ///
    /// Example: hotpass inputs gate:lint --json
    Inputs {
        /// TASK or TASK@PARTITION.
        instance: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every partition of a task and its state: cached, stale, failed or
    /// never run, from the cache's records (nothing runs).
    ///
    /// Without --partition or --backfill: the last 30 partitions of a time
    /// partitioning, every partition of values or files.
    ///
    /// Example: hotpass partitions pipeline:ingest --backfill 2025-01-01..2025-01-31
    Partitions {
        /// The partitioned task.
        task: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        partitions: PartitionFlags,
    },
    /// Run one instance with the input audit on, ignoring the cache, and
    /// report every file it read or wrote that its config does not declare,
    /// with the globs to add. Its dependencies run (or hit) as usual.
    ///
    /// Example: hotpass audit gate:lint
    Audit {
        /// TASK or TASK@PARTITION (a glob audits each instance it names).
        instance: String,
        /// Print JSON on stdout (the run's own output goes to stderr).
        #[arg(long)]
        json: bool,
        /// Most instances running at once [default: settings.jobs, or the number of CPUs].
        #[arg(short, long, value_name = "N")]
        jobs: Option<usize>,
    },
    /// Say whether an instance would hit the cache, and if not exactly what changed.
    ///
    /// Example: hotpass explain gate:types
    Explain {
        /// TASK or TASK@PARTITION.
        instance: String,
    },
    /// Inspect and manage the local cache.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Write a starter hotpass.toml for the project found here.
    ///
    /// Detects Cargo.toml, pyproject.toml, package.json, go.mod and Makefile.
    Init {
        /// Replace an existing hotpass.toml.
        #[arg(long)]
        force: bool,
    },
    /// Check the config, that every command is on PATH, and the cache's health.
    Doctor,
    /// Print a shell completion script.
    ///
    /// Example: hotpass completions bash > /etc/bash_completion.d/hotpass
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `hotpass cache ...`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Entries, blobs, bytes and the hit rate of recent runs.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete everything in the cache.
    Clean,
    /// Evict least-recently-used entries and unreferenced blobs.
    ///
    /// Example: hotpass cache gc --max-size 2GB --max-age 30d
    Gc {
        /// Shrink the cache below this size (e.g. 500MB, 2GB).
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// Evict entries not used for this long (e.g. 30d, 12h).
        #[arg(long, value_name = "AGE")]
        max_age: Option<String>,
    },
}

/// `--format` of `hotpass graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Json,
}

/// `--dry-run[=FORMAT]`, `--audit[=FORMAT]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

/// Flags that choose partitions.
#[derive(Debug, Args, Clone, Default)]
pub struct PartitionFlags {
    /// Run one partition of the partitioned tasks (YYYY-MM-DDTHH, YYYY-MM-DD, YYYY-MM, a value or a file stem).
    #[arg(
        long,
        value_name = "P",
        conflicts_with = "backfill",
        help_heading = "Partitions"
    )]
    pub partition: Option<String>,
    /// Run every partition in the inclusive range FROM..TO.
    #[arg(long, value_name = "FROM..TO", help_heading = "Partitions")]
    pub backfill: Option<String>,
    /// Which end of the partitions starts first.
    #[arg(long, value_enum, default_value_t = Order::OldestFirst, value_name = "ORDER", help_heading = "Partitions")]
    pub order: Order,
}

/// `--order`: which partitions start first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Order {
    #[default]
    OldestFirst,
    NewestFirst,
}

/// `hotpass watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Tasks, gates, globs (`gate:*`) or instances (`TASK@P`); none means all.
    pub selectors: Vec<String>,
    /// Most instances running at once [default: settings.jobs, or the number of CPUs].
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Keep running everything that does not depend on a failure.
    #[arg(short, long)]
    pub keep_going: bool,
    /// Quiet time after a change before re-running, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub debounce: u64,
    /// Clear the screen before each cycle.
    #[arg(long)]
    pub clear: bool,
    #[command(flatten)]
    pub partitions: PartitionFlags,
}

/// `hotpass run`.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Tasks, gates, globs (`gate:*`) or instances (`TASK@P`); none means all.
    pub selectors: Vec<String>,
    /// Most instances running at once [default: settings.jobs, or the number of CPUs].
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Keep running everything that does not depend on a failure.
    #[arg(short, long)]
    pub keep_going: bool,
    /// Run even on a cache hit, and store the result.
    #[arg(long, help_heading = "Cache")]
    pub force: bool,
    /// Neither read nor write the cache.
    #[arg(long, help_heading = "Cache", conflicts_with = "force")]
    pub no_cache: bool,
    /// Input globs that match no file are errors (exit 2, nothing runs), not
    /// warnings [also: settings.strict = true].
    #[arg(long)]
    pub strict: bool,
    /// Print the plan (what would run, what is cached, with keys); run nothing.
    #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "text", help_heading = "Cache")]
    pub dry_run: Option<ReportFormat>,
    /// Run every instance (whatever the cache holds) with each file its
    /// processes touch recorded; report undeclared inputs and outputs and
    /// the globs to add (`=json`: as JSON on stdout, the run's own output
    /// going to stderr). A result that read undeclared files is not stored.
    #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "text", conflicts_with_all = ["dry_run", "no_cache"])]
    pub audit: Option<ReportFormat>,
    #[command(flatten)]
    pub partitions: PartitionFlags,
    /// Run a stable share K of N of the selection (1-based), for CI matrices.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Write the run summary as JSON to FILE.
    #[arg(long, value_name = "FILE", help_heading = "Reports")]
    pub summary: Option<PathBuf>,
    /// Write JUnit XML to FILE: a test case per instance, gates in their own suite.
    #[arg(long, value_name = "FILE", help_heading = "Reports")]
    pub junit: Option<PathBuf>,
    /// Write a Chrome trace of the run to FILE (open it in Perfetto).
    #[arg(long, value_name = "FILE", help_heading = "Reports")]
    pub profile: Option<PathBuf>,
    /// Write an in-toto Statement with a SLSA v1 provenance predicate for
    /// the outputs (a DSSE envelope, signed, when HOTPASS_PROVENANCE_KEY
    /// names an ed25519 key).
    #[arg(long, value_name = "FILE", help_heading = "Reports")]
    pub provenance: Option<PathBuf>,
    /// Attest the outputs of these instances (a task, glob or instance)
    /// instead of the selected ones.
    #[arg(long, value_name = "SELECTOR", help_heading = "Reports")]
    pub provenance_subjects: Vec<String>,
}
