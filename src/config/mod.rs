//! The validated project model: settings and tasks, resolved from the raw
//! TOML of `hotpass.toml` and its included task files.

pub mod diagnostic;
pub mod load;
pub mod program;
pub mod raw;
/// `[settings.remote_cache]`: the URL of a shared cache, parsed.
pub mod remote;
mod saved;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

pub use diagnostic::{ConfigErrors, Problem, ProblemKind, SourceFile};
pub use load::{LoadOptions, load, load_fresh};

use crate::partition::PartitionSpec;

/// Index of a task in [`Project::tasks`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TaskId(pub u32);

impl TaskId {
    /// The index into `Project::tasks`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One entry of a task's `inputs`, told apart once, in validation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Input {
    /// A gitignore-style glob of files, relative to the task's cwd (`!` excludes).
    Glob(String),
    /// `$NAME`: the value of an environment variable (only its digest is kept).
    Env(String),
}

impl Input {
    /// Reads one written entry: `$NAME` is a variable, anything else a glob.
    pub fn parse(written: &str) -> Input {
        match written.strip_prefix('$') {
            Some(name) => Input::Env(name.to_owned()),
            None => Input::Glob(written.to_owned()),
        }
    }

    /// The entry as written in the config.
    pub fn written(&self) -> String {
        match self {
            Input::Glob(g) => g.clone(),
            Input::Env(name) => format!("${name}"),
        }
    }
}

/// Whether a task was declared under `[tasks]` or `[gates]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TaskKind {
    Task,
    Gate,
}

/// How a task's partitions map onto a dependency with another partitioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PartitionMap {
    /// Daily on monthly: the month holding the day. Monthly on daily: every
    /// day of the month that is in the run.
    Calendar,
    /// Every instance of the dependency that is in the run.
    All,
}

/// What the environment of a task holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EnvMode {
    /// Everything hotpass was started with, plus the task's `env`.
    Loose,
    /// Only a base set (PATH, HOME, USER, LANG, LC_*, TERM, TMPDIR, SHELL),
    /// the task's `env`, its `$NAME` inputs and its `pass_env` globs.
    Strict,
}

/// Which programs' identity is part of a task's key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tools {
    /// The programs the commands start (found once, in validation: the
    /// same for every partition), plus the `tools` listed (which may hold
    /// `{partition}`).
    Auto {
        commands: Vec<String>,
        extra: Vec<String>,
    },
    /// `tools = false`: none.
    Off,
}

pub use remote::RemoteCache;

/// When a service is ready for its dependents.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Ready {
    /// A line of its output matches.
    Log(#[serde(with = "regex_text")] regex::Regex),
    /// A TCP connection to 127.0.0.1:PORT succeeds.
    Tcp(u16),
    /// A GET of this `http://` URL answers 2xx.
    Http(String),
    /// As soon as it has started.
    Started,
}

/// A `service = true` task.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Service {
    pub ready: Ready,
    /// How long it may take to be ready (default 60 s).
    pub ready_timeout: Duration,
}

/// `[settings]`, with defaults applied.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// Absolute path of the cache folder.
    pub cache_dir: PathBuf,
    /// Include globs, relative to the root.
    pub include: Vec<String>,
    /// Parallel jobs; already resolved from 0 to the number of CPUs.
    pub jobs: usize,
    /// Most partition instances one run may expand to.
    pub backfill_limit: usize,
    /// Input globs that match nothing are errors, not warnings.
    pub strict: bool,
    /// What tasks see of hotpass's environment.
    pub env_mode: EnvMode,
    pub remote_cache: Option<RemoteCache>,
    /// `[settings.lineage]`: (url, file, namespace).
    pub lineage: Option<(Option<String>, Option<String>, Option<String>)>,
    /// `[settings.telemetry]`: (endpoint, service name).
    pub telemetry: Option<(Option<String>, Option<String>)>,
    /// `provenance`: where `hotpass run` writes its attestation, relative
    /// to the root.
    pub provenance: Option<PathBuf>,
    /// The signal every stop sends first (default SIGTERM), and how long it
    /// waits before SIGKILL (default 5 s), unless a task says otherwise.
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    /// Every task's default sandbox, and where it is set.
    pub sandbox: Sandbox,
    pub sandbox_at: Option<Origin>,
    /// Paths every sandboxed task may read, absolute (`~` expanded).
    pub sandbox_allow: Vec<PathBuf>,
}

/// `sandbox`: whether a task runs under Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Sandbox {
    #[default]
    Off,
    /// Always; where Landlock is unavailable the run is refused.
    On,
    /// Where Landlock is available; elsewhere unconfined, with a warning.
    BestEffort,
}

/// Where in the configuration something was written.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// Index into [`Project::files`].
    pub file: usize,
    pub span: std::ops::Range<usize>,
}

/// One task or gate, validated.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Task {
    pub id: TaskId,
    /// Full name: `build`, `pipeline:ingest`, `gate:types`.
    pub name: String,
    pub kind: TaskKind,
    pub description: Option<String>,
    /// Shell commands, run in turn through `sh -c`; empty for a pure group.
    pub run: Vec<String>,
    pub deps: Vec<TaskId>,
    pub inputs: Vec<Input>,
    /// Where each input is written, by index.
    pub input_spans: Vec<std::ops::Range<usize>>,
    pub outputs: Vec<String>,
    /// Where each output is written, by index.
    pub output_spans: Vec<std::ops::Range<usize>>,
    /// Programs whose identity is in the key.
    pub tools: Tools,
    /// With `env_mode = "strict"`: globs of more variables the task sees.
    pub pass_env: Vec<String>,
    /// Whether the task is asked for colour when hotpass's output is coloured.
    pub color: bool,
    pub env: BTreeMap<String, String>,
    /// Relative to the root, `/`-separated; "." for the root.
    pub cwd: String,
    pub timeout: Option<Duration>,
    /// A long-running service, and when it is ready (`None`: not a service).
    pub service: Option<Service>,
    /// The signal a stop sends first (`None`: the settings' default).
    pub stop_signal: Option<i32>,
    /// How long a stop waits before SIGKILL (`None`: the settings' default).
    pub stop_timeout: Option<Duration>,
    /// Whether results are cached (defaults to "has inputs").
    pub cache: bool,
    pub max_parallel: Option<usize>,
    pub partitions: Option<PartitionSpec>,
    pub partition_map: Option<PartitionMap>,
    /// Whether it runs under Landlock (its own `sandbox`, else the
    /// settings'), and where that is written.
    pub sandbox: Sandbox,
    pub sandbox_at: Option<Origin>,
    /// What it may read besides its inputs (the settings' list, then its own).
    pub sandbox_allow: Vec<PathBuf>,
    /// Where the task's table is.
    pub origin: Origin,
}

/// A loaded, validated project.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Project {
    /// The folder holding the root config: every relative path starts here.
    pub root: PathBuf,
    /// Every configuration file read, the root file first.
    pub files: Vec<SourceFile>,
    pub settings: Settings,
    /// Tasks sorted by name; `TaskId` indexes this.
    pub tasks: Vec<Task>,
    by_name: HashMap<String, TaskId>,
}

impl Task {
    /// What it is, as lists and plans show it: `gate`, `service` or `task`.
    pub fn kind_word(&self) -> &'static str {
        match (self.kind, self.service.is_some()) {
            (TaskKind::Gate, _) => "gate",
            (_, true) => "service",
            _ => "task",
        }
    }
}

impl Project {
    /// The task called `name`, if any.
    pub fn find(&self, name: &str) -> Option<TaskId> {
        self.by_name.get(name).copied()
    }

    /// The task with this id.
    pub fn task(&self, id: TaskId) -> &Task {
        &self.tasks[id.index()]
    }

    /// Where the `n`-th input glob of `task` (counting globs only, not
    /// `$NAME` inputs) is written: its span in `files[task.origin.file]`.
    pub fn input_glob_span(&self, task: &Task, n: usize) -> Option<std::ops::Range<usize>> {
        task.inputs
            .iter()
            .zip(&task.input_spans)
            .filter(|(i, _)| matches!(i, Input::Glob(_)))
            .nth(n)
            .map(|(_, s)| s.clone())
    }

    /// `file:line:column` of the `n`-th input glob of `task`.
    pub fn input_glob_location(&self, task: &Task, n: usize) -> String {
        let file = &self.files[task.origin.file];
        match self.input_glob_span(task, n) {
            Some(span) => file.location(span.start),
            None => file.display.clone(),
        }
    }

    /// `file:line:column` of the `n`-th output glob of `task`.
    pub fn output_glob_location(&self, task: &Task, n: usize) -> String {
        let file = &self.files[task.origin.file];
        match task.output_spans.get(n) {
            Some(span) => file.location(span.start),
            None => file.display.clone(),
        }
    }

    /// Every task name, for suggestions.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tasks.iter().map(|t| t.name.as_str())
    }
}

/// A regex kept as its text (the saved project, [`saved`]).
mod regex_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(re: &regex::Regex, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(re.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<regex::Regex, D::Error> {
        let text = String::deserialize(d)?;
        regex::Regex::new(&text).map_err(serde::de::Error::custom)
    }
}
