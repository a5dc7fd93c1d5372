//! Serde structs that mirror `hotpass.toml` as written, every field spanned so
//! that validation can point back into the user's file.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;

/// One parsed configuration file: `hotpass.toml` or an included task file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    /// Only allowed in the root file.
    pub settings: Option<Spanned<RawSettings>>,
    /// `[tasks.NAME]` tables, keyed by the name as written.
    #[serde(default)]
    pub tasks: BTreeMap<Spanned<String>, Spanned<RawTask>>,
    /// `[gates.NAME]` tables; the task name becomes `gate:NAME`.
    #[serde(default)]
    pub gates: BTreeMap<Spanned<String>, Spanned<RawTask>>,
}

/// `[settings]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub cache_dir: Option<Spanned<String>>,
    pub include: Option<Vec<Spanned<String>>>,
    pub jobs: Option<Spanned<u64>>,
    pub backfill_limit: Option<Spanned<u64>>,
    pub strict: Option<Spanned<bool>>,
    pub env_mode: Option<Spanned<String>>,
    pub remote_cache: Option<Spanned<RawRemoteCache>>,
    pub lineage: Option<Spanned<RawLineage>>,
    pub telemetry: Option<Spanned<RawTelemetry>>,
    /// Where `hotpass run` writes its provenance (as `--provenance`).
    pub provenance: Option<Spanned<String>>,
    /// Every task's default stop signal and stop timeout.
    pub stop_signal: Option<Spanned<String>>,
    pub stop_timeout: Option<Spanned<Timeout>>,
    /// Every task's default sandbox (`true`, `false` or `"best-effort"`).
    pub sandbox: Option<Spanned<RawSandbox>>,
    /// Folders every sandboxed task may read (`~` is `$HOME`).
    pub sandbox_allow: Option<Vec<Spanned<String>>>,
}

/// `[settings.remote_cache]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteCache {
    pub url: Spanned<String>,
    #[serde(default)]
    pub read_only: Option<bool>,
}

/// `[settings.lineage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLineage {
    pub url: Option<Spanned<String>>,
    pub file: Option<Spanned<String>>,
    pub namespace: Option<Spanned<String>>,
}

/// `[settings.telemetry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub endpoint: Option<Spanned<String>>,
    pub service_name: Option<Spanned<String>>,
}

/// `[tasks.NAME]` or `[gates.NAME]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    pub description: Option<Spanned<String>>,
    pub run: Option<Spanned<RunSpec>>,
    pub deps: Option<Vec<Spanned<String>>>,
    pub inputs: Option<Vec<Spanned<String>>>,
    pub outputs: Option<Vec<Spanned<String>>>,
    pub env: Option<BTreeMap<String, Spanned<EnvValue>>>,
    pub cwd: Option<Spanned<String>>,
    pub timeout: Option<Spanned<Timeout>>,
    /// A long-running service (a dev server, a database): never cached,
    /// ready when `ready` says so.
    pub service: Option<Spanned<bool>>,
    /// When a service is ready: `{ log = "REGEX" }`, `{ tcp = PORT }` or
    /// `{ http = "URL" }`.
    pub ready: Option<Spanned<RawReady>>,
    /// How long a service may take to be ready (default 60 s).
    pub ready_timeout: Option<Spanned<Timeout>>,
    /// The signal that stops it (default SIGTERM), before SIGKILL.
    pub stop_signal: Option<Spanned<String>>,
    /// How long a stop waits for it before SIGKILL (default 5 s).
    pub stop_timeout: Option<Spanned<Timeout>>,
    pub cache: Option<Spanned<bool>>,
    pub max_parallel: Option<Spanned<i64>>,
    pub partitions: Option<Spanned<RawPartitions>>,
    /// How this task's partitions map onto a dependency's of another kind.
    pub partition_map: Option<Spanned<String>>,
    /// Programs whose identity is in the key: a list to add, or `false`.
    pub tools: Option<Spanned<RawTools>>,
    /// With `env_mode = "strict"`: more variables the task may see (globs).
    pub pass_env: Option<Vec<Spanned<String>>>,
    /// `false`: never ask the task's tools for colour.
    pub color: Option<Spanned<bool>>,
    /// Run under Landlock: `true`, `false` or `"best-effort"`.
    pub sandbox: Option<Spanned<RawSandbox>>,
    /// More folders (or files) the sandboxed task may read.
    pub sandbox_allow: Option<Vec<Spanned<String>>>,
}

/// `sandbox`: `true`, `false`, or a word (only `"best-effort"` is valid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSandbox {
    Enabled(bool),
    Word(String),
}

impl<'de> Deserialize<'de> for RawSandbox {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawSandbox;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or \"best-effort\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawSandbox, E> {
                Ok(RawSandbox::Enabled(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSandbox, E> {
                Ok(RawSandbox::Word(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `tools`: `false` (off), `true` (the default), or programs to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawTools {
    Enabled(bool),
    Add(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for RawTools {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTools;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("false, or an array of program names")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawTools, E> {
                Ok(RawTools::Enabled(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawTools, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<String>>()? {
                    out.push(s);
                }
                Ok(RawTools::Add(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `partitions = { hourly = {...} }`, `{ daily = {...} }`, `{ monthly = {...} }`,
/// `{ values = [...] }` or `{ files = "GLOB" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartitions {
    pub hourly: Option<Spanned<RawRange>>,
    pub daily: Option<Spanned<RawRange>>,
    pub monthly: Option<Spanned<RawRange>>,
    pub values: Option<Vec<Spanned<String>>>,
    pub files: Option<Spanned<String>>,
}

/// The `start`, optional `end` and optional `timezone` of a time partitioning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRange {
    pub start: Spanned<String>,
    pub end: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
}

/// `run`: one shell string, or several run in turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunSpec {
    One(String),
    Many(Vec<String>),
}

impl RunSpec {
    /// The commands in the order they run.
    pub fn commands(&self) -> Vec<String> {
        match self {
            RunSpec::One(s) => vec![s.clone()],
            RunSpec::Many(v) => v.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for RunSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RunVisitor;
        impl<'de> Visitor<'de> for RunVisitor {
            type Value = RunSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string or an array of command strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RunSpec, E> {
                Ok(RunSpec::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RunSpec, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(RunSpec::Many(out))
            }
        }
        d.deserialize_any(RunVisitor)
    }
}

/// An `env` value: a string, or a number or boolean written as TOML (kept as
/// its text, since the environment only holds strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvValue(pub String);

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `ready = { log = "REGEX" }`, `{ tcp = PORT }` or `{ http = "URL" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReady {
    pub log: Option<Spanned<String>>,
    pub tcp: Option<Spanned<u16>>,
    pub http: Option<Spanned<String>>,
}

/// A `timeout`: a duration string (`"10m"`) or a whole number of seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timeout {
    Text(String),
    Seconds(i64),
}

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timeout;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"30s\" or \"10m\", or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timeout, E> {
                Ok(Timeout::Text(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timeout, E> {
                Ok(Timeout::Seconds(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timeout, E> {
                Ok(Timeout::Seconds(v.min(i64::MAX as u64) as i64))
            }
        }
        d.deserialize_any(V)
    }
}

/// Every field name a task table accepts, for "did you mean" suggestions.
pub const TASK_FIELDS: &[&str] = &[
    "description",
    "run",
    "deps",
    "inputs",
    "outputs",
    "env",
    "cwd",
    "timeout",
    "stop_signal",
    "stop_timeout",
    "service",
    "ready",
    "ready_timeout",
    "cache",
    "max_parallel",
    "partitions",
    "partition_map",
    "tools",
    "pass_env",
    "color",
    "sandbox",
    "sandbox_allow",
];

/// Every field name `[settings]` accepts.
pub const SETTINGS_FIELDS: &[&str] = &[
    "cache_dir",
    "include",
    "jobs",
    "backfill_limit",
    "strict",
    "env_mode",
    "remote_cache",
    "lineage",
    "telemetry",
    "provenance",
    "stop_signal",
    "stop_timeout",
    "sandbox",
    "sandbox_allow",
];
