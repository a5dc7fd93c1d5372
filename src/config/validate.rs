//! Raw TOML → [`Project`]: applies defaults, resolves names, and checks every
//! rule, collecting all problems rather than stopping at the first.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::diagnostic::{ConfigErrors, Problem, ProblemKind, SourceFile, did_you_mean, suggest};
use super::raw::{RawFile, RawPartitions, RawSandbox, RawTask, RawTools, Timeout};
use super::{
    EnvMode, Input, LoadOptions, Origin, PartitionMap, Project, RemoteCache, Sandbox, Settings,
    Task, TaskId, TaskKind, Tools,
};
use crate::fileset::Patterns;
use crate::partition::{PartitionError, PartitionSpec, Zone, parse_day, parse_hour, parse_month};

/// Whether `name` uses only letters, digits, `_`, `-`, `.` and `:`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

struct Def {
    name: String,
    kind: TaskKind,
    file: usize,
    name_span: std::ops::Range<usize>,
    raw: Spanned<RawTask>,
}

pub(super) fn validate(
    root: PathBuf,
    files: Vec<SourceFile>,
    raws: Vec<RawFile>,
    opts: &LoadOptions,
    mut problems: Vec<Problem>,
) -> Result<Project, ConfigErrors> {
    let mut raws = raws;
    let settings = settings(
        &root,
        &files[0],
        raws[0].settings.take(),
        opts,
        &mut problems,
    );

    // Gather every definition, checking names and duplicates.
    let mut defs: Vec<Def> = Vec::new();
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    for (file, raw) in raws.into_iter().enumerate() {
        let tables = raw
            .tasks
            .into_iter()
            .map(|(k, v)| (k, v, TaskKind::Task))
            .chain(raw.gates.into_iter().map(|(k, v)| (k, v, TaskKind::Gate)));
        for (key, task, kind) in tables {
            let span = key.span();
            let written = key.into_inner();
            if !valid_name(&written) || (kind == TaskKind::Gate && written.starts_with("gate:")) {
                problems.push(
                    Problem::at(
                        ProblemKind::InvalidName,
                        &files[file],
                        span.clone(),
                        format!("invalid task name `{written}`"),
                        "invalid name",
                    )
                    .with_help(
                        "names may use letters, digits, `_`, `-`, `.` and `:`; \
                         quote names with `:` or `.` in the header, e.g. [tasks.\"pipeline:ingest\"]",
                    ),
                );
                continue;
            }
            let name = match kind {
                TaskKind::Task => written,
                TaskKind::Gate => format!("gate:{written}"),
            };
            if let Some(&first) = first_seen.get(&name) {
                let f = &defs[first];
                let first_note = Problem::at(
                    ProblemKind::DuplicateTask,
                    &files[f.file],
                    f.name_span.clone(),
                    format!("`{name}` was first defined here"),
                    "first definition",
                );
                problems.push(
                    Problem::at(
                        ProblemKind::DuplicateTask,
                        &files[file],
                        span.clone(),
                        format!("task `{name}` is defined twice"),
                        "defined again here",
                    )
                    .with_help("rename one of the two, or merge them into one table")
                    .with_related(first_note),
                );
                continue;
            }
            first_seen.insert(name.clone(), defs.len());
            defs.push(Def {
                name,
                kind,
                file,
                name_span: span,
                raw: task,
            });
        }
    }

    defs.sort_by(|a, b| a.name.cmp(&b.name));
    let by_name: HashMap<String, TaskId> = defs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.clone(), TaskId(i as u32)))
        .collect();

    let mut tasks = Vec::with_capacity(defs.len());
    let mut dep_spans: Vec<Vec<(TaskId, std::ops::Range<usize>)>> = Vec::new();
    for (i, def) in defs.iter().enumerate() {
        let src = &files[def.file];
        let (mut task, spans) = task(TaskId(i as u32), def, src, &by_name, &mut problems);
        if task.sandbox_at.is_none() {
            task.sandbox = settings.sandbox;
            task.sandbox_at = settings.sandbox_at.clone();
        }
        let own = std::mem::take(&mut task.sandbox_allow);
        task.sandbox_allow = (settings.sandbox_allow.iter().cloned())
            .chain(own.into_iter().map(|p| root.join(p)))
            .collect();
        tasks.push(task);
        dep_spans.push(spans);
    }

    check_partition_deps(&tasks, &defs, &dep_spans, &files, &mut problems);
    if problems.is_empty() {
        check_cycles(&tasks, &defs, &dep_spans, &files, &mut problems);
    }

    if !problems.is_empty() {
        return Err(ConfigErrors { problems });
    }
    Ok(Project {
        root,
        files,
        settings,
        tasks,
        by_name,
    })
}

fn settings(
    root: &Path,
    src: &SourceFile,
    raw: Option<Spanned<super::raw::RawSettings>>,
    opts: &LoadOptions,
    problems: &mut Vec<Problem>,
) -> Settings {
    let raw = raw.map(Spanned::into_inner).unwrap_or_default();
    let cache_dir = match (&opts.cache_dir_env, &raw.cache_dir) {
        (None, Some(dir)) => root.join(dir.get_ref()),
        _ => super::load::default_cache_dir(opts, root),
    };
    let include = raw
        .include
        .map(|v| v.into_iter().map(Spanned::into_inner).collect())
        .unwrap_or_else(|| vec!["tasks/*.toml".to_owned()]);
    let cpus = crate::cpus();
    let jobs = match raw.jobs.as_ref().map(|j| *j.get_ref()) {
        None | Some(0) => cpus,
        Some(n) => n as usize,
    };
    let backfill_limit = match &raw.backfill_limit {
        Some(l) if *l.get_ref() == 0 => {
            problems.push(
                Problem::at(
                    ProblemKind::InvalidValue,
                    src,
                    l.span(),
                    "backfill_limit must be at least 1",
                    "zero",
                )
                .with_help("set a positive number of instances, e.g. backfill_limit = 1000"),
            );
            1000
        }
        Some(l) => *l.get_ref() as usize,
        None => 1000,
    };
    let env_mode = match &raw.env_mode {
        None => EnvMode::Loose,
        Some(m) => match m.get_ref().as_str() {
            "loose" => EnvMode::Loose,
            "strict" => EnvMode::Strict,
            other => {
                problems.push(
                    Problem::at(
                        ProblemKind::InvalidValue,
                        src,
                        m.span(),
                        format!("unknown env_mode `{other}`"),
                        "not a mode",
                    )
                    .with_help(
                        "use \"loose\" (tasks see hotpass's whole environment) or \"strict\"",
                    ),
                );
                EnvMode::Loose
            }
        },
    };
    Settings {
        cache_dir,
        include,
        jobs,
        backfill_limit,
        strict: raw.strict.as_ref().is_some_and(|s| *s.get_ref()),
        env_mode,
        remote_cache: raw.remote_cache.map(|r| {
            let r = r.into_inner();
            if let Err(why) = super::remote::RemoteUrl::parse(r.url.get_ref()) {
                problems.push(
                    Problem::at(
                        ProblemKind::InvalidValue,
                        src,
                        r.url.span(),
                        "not a remote cache URL",
                        "this URL",
                    )
                    .with_help(why),
                );
            }
            RemoteCache {
                url: r.url.into_inner(),
                read_only: r.read_only,
            }
        }),
        lineage: raw.lineage.map(|l| {
            let l = l.into_inner();
            (
                l.url.map(Spanned::into_inner),
                l.file.map(Spanned::into_inner),
                l.namespace.map(Spanned::into_inner),
            )
        }),
        telemetry: raw.telemetry.map(|t| {
            let t = t.into_inner();
            (
                t.endpoint.map(Spanned::into_inner),
                t.service_name.map(Spanned::into_inner),
            )
        }),
        stop_signal: raw
            .stop_signal
            .as_ref()
            .and_then(|s| stop_signal(s, src, problems))
            .unwrap_or(libc::SIGTERM),
        stop_timeout: raw
            .stop_timeout
            .as_ref()
            .and_then(|t| duration(t, "stop_timeout", true, src, problems))
            .unwrap_or(std::time::Duration::from_secs(5)),
        provenance: raw.provenance.map(|p| root.join(p.into_inner())),
        sandbox: raw
            .sandbox
            .as_ref()
            .map_or(Sandbox::Off, |s| sandbox(s, src, problems)),
        sandbox_at: raw.sandbox.as_ref().map(|s| Origin {
            file: 0,
            span: s.span(),
        }),
        sandbox_allow: sandbox_allow(&raw.sandbox_allow, root),
    }
}

/// A `sandbox` value: `true`, `false` or `"best-effort"`.
fn sandbox(s: &Spanned<RawSandbox>, src: &SourceFile, problems: &mut Vec<Problem>) -> Sandbox {
    match s.get_ref() {
        RawSandbox::Enabled(true) => Sandbox::On,
        RawSandbox::Enabled(false) => Sandbox::Off,
        RawSandbox::Word(w) if w == "best-effort" => Sandbox::BestEffort,
        RawSandbox::Word(w) => {
            problems.push(
                Problem::at(
                    ProblemKind::InvalidValue,
                    src,
                    s.span(),
                    format!("unknown sandbox mode `{w}`"),
                    "not a mode",
                )
                .with_help(
                    "use true (always, or refuse to run), false, or \"best-effort\" \
                     (sandboxed where Landlock is available)",
                ),
            );
            Sandbox::Off
        }
    }
}

/// `sandbox_allow` paths, absolute: `~` is `$HOME`, a relative path is
/// relative to the root.
fn sandbox_allow(v: &Option<Vec<Spanned<String>>>, root: &Path) -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    v.iter()
        .flatten()
        .filter_map(|s| {
            let s = s.get_ref();
            if s == "~" {
                return home.clone();
            }
            match s.strip_prefix("~/") {
                Some(rest) => Some(home.as_ref()?.join(rest)),
                None => Some(root.join(s)),
            }
        })
        .collect()
}

fn strings(v: &Option<Vec<Spanned<String>>>) -> Vec<String> {
    v.iter().flatten().map(|s| s.get_ref().clone()).collect()
}

fn spans(v: &Option<Vec<Spanned<String>>>) -> Vec<std::ops::Range<usize>> {
    v.iter().flatten().map(Spanned::span).collect()
}

/// The longest path Linux accepts: a longer glob can never match a file
/// (and compiling one costs minutes).
const MAX_PATTERN: usize = 4096;

fn check_globs(list: &Option<Vec<Spanned<String>>>, src: &SourceFile, problems: &mut Vec<Problem>) {
    for item in list.iter().flatten() {
        let pattern = item.get_ref();
        if pattern.len() > MAX_PATTERN {
            problems.push(
                Problem::at(
                    ProblemKind::InvalidValue,
                    src,
                    item.span(),
                    format!(
                        "a pattern of {} characters is longer than any path ({MAX_PATTERN})",
                        pattern.len()
                    ),
                    "too long",
                )
                .with_help("shorten the pattern: no file can match it"),
            );
            continue;
        }
        if let Some(name) = pattern.strip_prefix('$') {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                problems.push(
                    Problem::at(
                        ProblemKind::InvalidValue,
                        src,
                        item.span(),
                        format!("`{pattern}` is not an environment variable name"),
                        "bad variable",
                    )
                    .with_help("write `$NAME` with letters, digits and `_` only"),
                );
            }
            continue;
        }
        if let Err(err) = Patterns::check(pattern) {
            problems.push(
                Problem::at(
                    ProblemKind::InvalidValue,
                    src,
                    item.span(),
                    format!("`{pattern}` is not a valid glob"),
                    err.kind().to_string(),
                )
                .with_help("fix the pattern; `**` matches any depth, `!pattern` excludes"),
            );
        }
    }
}

/// A timeout longer than this is a mistake (and would overflow a deadline).
const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

fn task(
    id: TaskId,
    def: &Def,
    src: &SourceFile,
    by_name: &HashMap<String, TaskId>,
    problems: &mut Vec<Problem>,
) -> (Task, Vec<(TaskId, std::ops::Range<usize>)>) {
    let raw = def.raw.get_ref();
    let (deps, dep_spans) = deps(raw, def, src, by_name, problems);
    check_globs(&raw.inputs, src, problems);
    check_globs(&raw.outputs, src, problems);
    check_outputs_stay_inside(raw, src, problems);
    check_pass_env_and_tools(raw, src, problems);
    let inputs: Vec<Input> = raw
        .inputs
        .iter()
        .flatten()
        .map(|i| Input::parse(i.get_ref()))
        .collect();
    let service = service(raw, src, problems);
    let cache = raw
        .cache
        .as_ref()
        .map(|c| *c.get_ref())
        .unwrap_or(!inputs.is_empty())
        && service.is_none();
    let task = Task {
        id,
        name: def.name.clone(),
        kind: def.kind,
        description: raw.description.as_ref().map(|d| d.get_ref().clone()),
        run: raw
            .run
            .as_ref()
            .map(|r| r.get_ref().commands())
            .unwrap_or_default(),
        deps,
        inputs,
        input_spans: spans(&raw.inputs),
        outputs: strings(&raw.outputs),
        output_spans: spans(&raw.outputs),
        tools: match raw.tools.as_ref().map(Spanned::get_ref) {
            Some(RawTools::Enabled(false)) => Tools::Off,
            other => Tools::Auto {
                commands: command_tools(raw),
                extra: match other {
                    Some(RawTools::Add(list)) => list.iter().map(|t| t.get_ref().clone()).collect(),
                    _ => Vec::new(),
                },
            },
        },
        pass_env: strings(&raw.pass_env),
        color: raw.color.as_ref().is_none_or(|c| *c.get_ref()),
        env: raw
            .env
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.get_ref().0.clone()))
            .collect::<BTreeMap<_, _>>(),
        cwd: cwd(raw, src, problems),
        timeout: timeout(raw, src, problems),
        service,
        stop_signal: raw
            .stop_signal
            .as_ref()
            .and_then(|s| stop_signal(s, src, problems)),
        stop_timeout: raw
            .stop_timeout
            .as_ref()
            .and_then(|t| duration(t, "stop_timeout", true, src, problems)),
        cache,
        max_parallel: max_parallel(raw, src, problems),
        partitions: raw
            .partitions
            .as_ref()
            .and_then(|p| partitions(p, src, problems)),
        partition_map: partition_map(raw, src, problems),
        sandbox: raw
            .sandbox
            .as_ref()
            .map_or(Sandbox::Off, |s| sandbox(s, src, problems)),
        sandbox_at: raw.sandbox.as_ref().map(|s| Origin {
            file: def.file,
            span: s.span(),
        }),
        // Made absolute (under the root) once the task is built.
        sandbox_allow: sandbox_allow(&raw.sandbox_allow, Path::new("")),
        origin: Origin {
            file: def.file,
            span: def.name_span.clone(),
        },
    };
    (task, dep_spans)
}

/// The programs the task's commands start, sorted, without repeats. The
/// same for every partition: a first word with `{partition}` is not plain.
fn command_tools(raw: &RawTask) -> Vec<String> {
    let run = raw
        .run
        .as_ref()
        .map(|r| r.get_ref().commands())
        .unwrap_or_default();
    let mut t: Vec<String> = run
        .iter()
        .filter_map(|c| super::program::command_tool(c).map(str::to_owned))
        .collect();
    t.sort();
    t.dedup();
    t
}

/// The task's dependencies (each once) with where each is written; unknown
/// names are problems with the closest names suggested.
fn deps(
    raw: &RawTask,
    def: &Def,
    src: &SourceFile,
    by_name: &HashMap<String, TaskId>,
    problems: &mut Vec<Problem>,
) -> (Vec<TaskId>, Vec<(TaskId, std::ops::Range<usize>)>) {
    let mut deps = Vec::new();
    let mut dep_spans = Vec::new();
    for dep in raw.deps.iter().flatten() {
        let name = dep.get_ref();
        match by_name.get(name) {
            Some(&d) => {
                if !deps.contains(&d) {
                    deps.push(d);
                    dep_spans.push((d, dep.span()));
                }
            }
            None => {
                let suggestions = suggest(name, by_name.keys().map(String::as_str));
                let help = did_you_mean(&suggestions)
                    .unwrap_or_else(|| "run `hotpass list` to see every task and gate".to_owned());
                problems.push(
                    Problem::at(
                        ProblemKind::UnknownDep,
                        src,
                        dep.span(),
                        format!("unknown dependency `{name}` of `{}`", def.name),
                        "no task or gate has this name",
                    )
                    .with_help(help),
                );
            }
        }
    }
    (deps, dep_spans)
}

/// Output globs may not be absolute or climb out of the project: what a
/// task writes there could never be restored.
fn check_outputs_stay_inside(raw: &RawTask, src: &SourceFile, problems: &mut Vec<Problem>) {
    let cwd_depth = raw.cwd.as_ref().map_or(0, |c| {
        Path::new(c.get_ref())
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .count() as i64
    });
    for out in raw.outputs.iter().flatten() {
        let pattern = out.get_ref().trim_start_matches('!');
        let mut depth = cwd_depth;
        let mut escapes = Path::new(pattern).is_absolute();
        for c in Path::new(pattern).components() {
            match c {
                std::path::Component::ParentDir => depth -= 1,
                std::path::Component::Normal(_) => depth += 1,
                _ => {}
            }
            escapes |= depth < 0;
        }
        if escapes {
            problems.push(
                Problem::at(
                    ProblemKind::InvalidValue,
                    src,
                    out.span(),
                    format!("output `{pattern}` is outside the project"),
                    "outside the project",
                )
                .with_help("outputs are stored and restored under the project root: write them inside it (relative to the task's cwd)"),
            );
        }
    }
}

fn check_pass_env_and_tools(raw: &RawTask, src: &SourceFile, problems: &mut Vec<Problem>) {
    for pass in raw.pass_env.iter().flatten() {
        if let Err(e) = globset::Glob::new(pass.get_ref()) {
            problems.push(
                Problem::at(
                    ProblemKind::InvalidValue,
                    src,
                    pass.span(),
                    format!(
                        "`{}` is not a valid pattern of variable names",
                        pass.get_ref()
                    ),
                    e.kind().to_string(),
                )
                .with_help("write names or globs of names, e.g. pass_env = [\"CARGO_*\", \"CI\"]"),
            );
        }
    }
    if let Some(RawTools::Add(list)) = raw.tools.as_ref().map(Spanned::get_ref) {
        for t in list.iter().filter(|t| t.get_ref().trim().is_empty()) {
            problems.push(
                Problem::at(ProblemKind::InvalidValue, src, t.span(), "an empty tool name", "empty")
                    .with_help("name a program on PATH (\"ruff\") or a path from the task's cwd (\".venv/bin/mypy\")"),
            );
        }
    }
}

fn cwd(raw: &RawTask, src: &SourceFile, problems: &mut Vec<Problem>) -> String {
    let Some(c) = &raw.cwd else {
        return ".".to_owned();
    };
    let v = c.get_ref().trim_end_matches('/');
    if Path::new(v).is_absolute() {
        problems.push(
            Problem::at(
                ProblemKind::InvalidValue,
                src,
                c.span(),
                "cwd must be relative to the project root",
                "absolute path",
            )
            .with_help("write the folder relative to the folder holding hotpass.toml"),
        );
    }
    if v.is_empty() {
        ".".to_owned()
    } else {
        v.to_owned()
    }
}

fn timeout(
    raw: &RawTask,
    src: &SourceFile,
    problems: &mut Vec<Problem>,
) -> Option<std::time::Duration> {
    duration(raw.timeout.as_ref()?, "timeout", false, src, problems)
}

/// A duration field: `"30s"`, `"10m"` or a number of seconds, at most
/// [`MAX_TIMEOUT`]; zero only where `zero_ok`.
fn duration(
    t: &Spanned<Timeout>,
    what: &str,
    zero_ok: bool,
    src: &SourceFile,
    problems: &mut Vec<Problem>,
) -> Option<std::time::Duration> {
    let zero = || format!("{what} must be longer than zero");
    let parsed = match t.get_ref() {
        Timeout::Seconds(n) if *n > 0 || (zero_ok && *n == 0) => {
            Ok(std::time::Duration::from_secs(*n as u64))
        }
        Timeout::Seconds(_) => Err(zero()),
        Timeout::Text(text) => match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() || zero_ok => Ok(d),
            Ok(_) => Err(zero()),
            Err(err) => Err(format!("invalid {what} `{text}`: {err}")),
        },
    };
    match parsed {
        Ok(d) if d > MAX_TIMEOUT => {
            problems.push(
                Problem::at(
                    ProblemKind::BadTimeout,
                    src,
                    t.span(),
                    format!("{what} is longer than the most hotpass accepts, 7 days"),
                    "too long",
                )
                .with_help(format!("leave {what} out for the default")),
            );
            None
        }
        Ok(d) => Some(d),
        Err(message) => {
            problems.push(
                Problem::at(ProblemKind::BadTimeout, src, t.span(), message, "not a duration")
                    .with_help("write a duration such as \"30s\", \"10m\" or \"1h 30m\", or a number of seconds"),
            );
            None
        }
    }
}

/// `service = true` with its readiness check and timeout.
fn service(
    raw: &RawTask,
    src: &SourceFile,
    problems: &mut Vec<Problem>,
) -> Option<crate::config::Service> {
    use crate::config::Ready;
    let is_service = raw.service.as_ref().is_some_and(|s| *s.get_ref());
    if !is_service {
        for (span, field) in [
            (raw.ready.as_ref().map(|r| r.span()), "ready"),
            (
                raw.ready_timeout.as_ref().map(|r| r.span()),
                "ready_timeout",
            ),
        ] {
            if let Some(span) = span {
                problems.push(
                    Problem::at(
                        ProblemKind::InvalidValue,
                        src,
                        span,
                        format!("`{field}` applies only to a service"),
                        "not a service",
                    )
                    .with_help("add service = true, or remove it"),
                );
            }
        }
        return None;
    }
    let ready = match raw.ready.as_ref() {
        None => Ready::Started,
        Some(r) => {
            let v = r.get_ref();
            let given = [v.log.is_some(), v.tcp.is_some(), v.http.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if given != 1 {
                problems.push(
                    Problem::at(
                        ProblemKind::InvalidValue,
                        src,
                        r.span(),
                        "ready must say one of log, tcp or http",
                        "here",
                    )
                    .with_help("e.g. ready = { http = \"http://127.0.0.1:8000/health\" } or ready = { log = \"listening on\" }"),
                );
                return None;
            }
            if let Some(l) = &v.log {
                match regex::Regex::new(l.get_ref()) {
                    Ok(re) => Ready::Log(re),
                    Err(e) => {
                        problems.push(
                            Problem::at(ProblemKind::InvalidValue, src, l.span(), format!("not a regular expression: {e}"), "here")
                                .with_help("ready.log is a regular expression a line of the service's output matches"),
                        );
                        return None;
                    }
                }
            } else if let Some(t) = &v.tcp {
                Ready::Tcp(*t.get_ref())
            } else {
                let url = v.http.as_ref().expect("one of three");
                if !url.get_ref().starts_with("http://") {
                    problems.push(
                        Problem::at(
                            ProblemKind::InvalidValue,
                            src,
                            url.span(),
                            "ready.http must be an http:// URL",
                            "here",
                        )
                        .with_help("e.g. http://127.0.0.1:8000/health (a GET must answer 2xx)"),
                    );
                    return None;
                }
                Ready::Http(url.get_ref().clone())
            }
        }
    };
    let ready_timeout = raw
        .ready_timeout
        .as_ref()
        .and_then(|t| duration(t, "ready_timeout", false, src, problems))
        .unwrap_or(std::time::Duration::from_secs(60));
    Some(crate::config::Service {
        ready,
        ready_timeout,
    })
}

/// The signals a stop may send first, by name.
const STOP_SIGNALS: &[(&str, i32)] = &[
    ("TERM", libc::SIGTERM),
    ("INT", libc::SIGINT),
    ("HUP", libc::SIGHUP),
    ("QUIT", libc::SIGQUIT),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("WINCH", libc::SIGWINCH),
    ("KILL", libc::SIGKILL),
];

/// A `stop_signal`: `"SIGTERM"`, `"TERM"` (any case).
fn stop_signal(s: &Spanned<String>, src: &SourceFile, problems: &mut Vec<Problem>) -> Option<i32> {
    let name = s.get_ref().trim().to_ascii_uppercase();
    let bare = name.strip_prefix("SIG").unwrap_or(&name);
    match STOP_SIGNALS.iter().find(|(n, _)| *n == bare) {
        Some((_, sig)) => Some(*sig),
        None => {
            problems.push(
                Problem::at(
                    ProblemKind::InvalidValue,
                    src,
                    s.span(),
                    format!("`{}` is not a signal a stop can send", s.get_ref()),
                    "not a signal",
                )
                .with_help("use SIGTERM (the default), SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH or SIGKILL"),
            );
            None
        }
    }
}

fn max_parallel(raw: &RawTask, src: &SourceFile, problems: &mut Vec<Problem>) -> Option<usize> {
    let m = raw.max_parallel.as_ref()?;
    if *m.get_ref() >= 1 {
        return Some(*m.get_ref() as usize);
    }
    problems.push(
        Problem::at(
            ProblemKind::InvalidValue,
            src,
            m.span(),
            "max_parallel must be at least 1",
            "too small",
        )
        .with_help("set a positive number, or leave it out for no limit"),
    );
    None
}

fn partition_map(
    raw: &RawTask,
    src: &SourceFile,
    problems: &mut Vec<Problem>,
) -> Option<PartitionMap> {
    let m = raw.partition_map.as_ref()?;
    match m.get_ref().as_str() {
        "calendar" => Some(PartitionMap::Calendar),
        "all" => Some(PartitionMap::All),
        other => {
            problems.push(
                Problem::at(ProblemKind::Partitions, src, m.span(), format!("unknown partition_map `{other}`"), "not a mapping")
                    .with_help("use \"calendar\" (hours ↔ days ↔ months, in each partitioning's zone) or \"all\" (every instance of the dependency in the run)"),
            );
            None
        }
    }
}

fn partitions(
    p: &Spanned<RawPartitions>,
    src: &SourceFile,
    problems: &mut Vec<Problem>,
) -> Option<PartitionSpec> {
    let raw = p.get_ref();
    let given = [
        raw.hourly.is_some(),
        raw.daily.is_some(),
        raw.monthly.is_some(),
        raw.values.is_some(),
        raw.files.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        problems.push(
            Problem::at(
                ProblemKind::Partitions,
                src,
                p.span(),
                "partitions must declare exactly one of hourly, daily, monthly, values or files",
                "here",
            )
            .with_help("e.g. partitions = { daily = { start = \"2025-01-01\" } }"),
        );
        return None;
    }
    let mut bad = |span, msg: String| {
        problems.push(Problem::at(ProblemKind::Partitions, src, span, msg, "here").with_help(
            "hours are YYYY-MM-DDTHH, dates YYYY-MM-DD, months YYYY-MM, timezone an IANA name (Europe/Berlin), and end may not come before start",
        ));
    };
    /// Parses a range's start and end in its zone.
    fn range<T: PartialOrd>(
        r: &Spanned<super::raw::RawRange>,
        parse: &dyn Fn(&str, &Zone) -> Result<T, PartitionError>,
        bad: &mut dyn FnMut(std::ops::Range<usize>, String),
    ) -> Option<(T, Option<T>, Zone)> {
        let r = r.get_ref();
        let zone = match &r.timezone {
            Some(z) => Zone::named(z.get_ref())
                .map_err(|e| bad(z.span(), e.to_string()))
                .ok()?,
            None => Zone::utc(),
        };
        let start = parse(r.start.get_ref(), &zone)
            .map_err(|e| bad(r.start.span(), e.to_string()))
            .ok()?;
        let end = match &r.end {
            Some(e) => Some(
                parse(e.get_ref(), &zone)
                    .map_err(|m| bad(e.span(), m.to_string()))
                    .ok()?,
            ),
            None => None,
        };
        if let (Some(end), Some(e)) = (&end, &r.end)
            && *end < start
        {
            bad(
                e.span(),
                format!("end {} is before start {}", e.get_ref(), r.start.get_ref()),
            );
            return None;
        }
        Some((start, end, zone))
    }
    if let Some(h) = &raw.hourly {
        let (start, end, zone) = range(h, &parse_hour, &mut bad)?;
        return Some(PartitionSpec::Hourly { start, end, zone });
    }
    if let Some(d) = &raw.daily {
        let (start, end, zone) = range(d, &|s, _| parse_day(s), &mut bad)?;
        return Some(PartitionSpec::Daily { start, end, zone });
    }
    if let Some(m) = &raw.monthly {
        let (start, end, zone) = range(m, &|s, _| parse_month(s), &mut bad)?;
        return Some(PartitionSpec::Monthly { start, end, zone });
    }
    if let Some(f) = &raw.files {
        let glob = f.get_ref();
        if glob.contains("{partition}") || crate::fileset::Patterns::new(&[glob]).is_err() {
            bad(
                f.span(),
                format!(
                    "`{glob}` is not a glob of files (relative to the project root, without {{partition}})"
                ),
            );
            return None;
        }
        return Some(PartitionSpec::Files(glob.clone()));
    }
    let values = raw.values.as_ref()?;
    let mut out: Vec<String> = Vec::new();
    for v in values {
        let s = v.get_ref();
        if !valid_name(s) {
            bad(
                v.span(),
                format!(
                    "partition value `{s}` may use only letters, digits, `_`, `-`, `.` and `:`"
                ),
            );
        } else if out.contains(s) {
            bad(v.span(), format!("partition value `{s}` is listed twice"));
        } else {
            out.push(s.clone());
        }
    }
    if out.is_empty() {
        bad(p.span(), "values must list at least one partition".into());
        return None;
    }
    Some(PartitionSpec::Values(out))
}

fn check_partition_deps(
    tasks: &[Task],
    defs: &[Def],
    dep_spans: &[Vec<(TaskId, std::ops::Range<usize>)>],
    files: &[SourceFile],
    problems: &mut Vec<Problem>,
) {
    for (i, t) in tasks.iter().enumerate() {
        let Some(mine) = &t.partitions else { continue };
        for (dep, span) in &dep_spans[i] {
            let Some(theirs) = &tasks[dep.index()].partitions else {
                continue;
            };
            let (a, b) = (mine.kind(), theirs.kind());
            if a == b {
                continue;
            }
            let fits = match t.partition_map {
                Some(PartitionMap::All) => true,
                Some(PartitionMap::Calendar) => a.is_time() && b.is_time(),
                None => false,
            };
            if !fits {
                let help = if a.is_time() && b.is_time() {
                    "add partition_map = \"calendar\" to map hours onto their day and days onto their month (and back), or \"all\" to wait for every instance in the run"
                } else {
                    "add partition_map = \"all\" to wait for every instance of the dependency in the run"
                };
                problems.push(
                    Problem::at(
                        ProblemKind::Partitions,
                        &files[defs[i].file],
                        span.clone(),
                        format!(
                            "`{}` is {a}-partitioned but depends on `{}`, which is {b}-partitioned",
                            t.name,
                            tasks[dep.index()].name
                        ),
                        "partitionings do not match",
                    )
                    .with_help(help),
                );
            }
        }
    }
}

/// How many steps of a long cycle are shown at each end.
const CYCLE_ENDS: usize = 4;

/// The shortest cycle from `first` back to it, inside its strongly connected
/// component (breadth first, without recursion: a cycle may be 100,000 tasks
/// long). Starts with `first`.
fn shortest_cycle(
    tasks: &[Task],
    first: usize,
    members: std::collections::HashSet<usize>,
) -> Vec<usize> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([first]);
    while let Some(cur) = queue.pop_front() {
        for d in &tasks[cur].deps {
            let d = d.index();
            if d == first {
                let mut path = vec![cur];
                while let Some(&p) = parent.get(path.last().expect("not empty")) {
                    path.push(p);
                }
                path.reverse();
                if path[0] != first {
                    path.insert(0, first);
                }
                return path;
            }
            if members.contains(&d) && d != first && !parent.contains_key(&d) {
                parent.insert(d, cur);
                queue.push_back(d);
            }
        }
    }
    vec![first]
}

/// `a -> b -> c -> a`, with the middle of a long cycle left out.
fn cycle_chain(tasks: &[Task], path: &[usize], first: usize) -> String {
    let name = |i: usize| tasks[i].name.as_str();
    if path.len() <= 2 * CYCLE_ENDS + 1 {
        let mut names: Vec<&str> = path.iter().map(|&i| name(i)).collect();
        names.push(name(first));
        return names.join(" -> ");
    }
    let head: Vec<&str> = path[..CYCLE_ENDS].iter().map(|&i| name(i)).collect();
    let tail: Vec<&str> = path[path.len() - CYCLE_ENDS..]
        .iter()
        .map(|&i| name(i))
        .chain([name(first)])
        .collect();
    format!(
        "{} -> … {} more … -> {}",
        head.join(" -> "),
        path.len() - 2 * CYCLE_ENDS,
        tail.join(" -> ")
    )
}

fn check_cycles(
    tasks: &[Task],
    defs: &[Def],
    dep_spans: &[Vec<(TaskId, std::ops::Range<usize>)>],
    files: &[SourceFile],
    problems: &mut Vec<Problem>,
) {
    let mut g = petgraph::graph::DiGraph::<(), ()>::with_capacity(tasks.len(), 0);
    let nodes: Vec<_> = tasks.iter().map(|_| g.add_node(())).collect();
    for t in tasks {
        for d in &t.deps {
            g.add_edge(nodes[t.id.index()], nodes[d.index()], ());
        }
    }
    for scc in petgraph::algo::tarjan_scc(&g) {
        let first = scc.iter().map(|n| n.index()).min().unwrap_or(0);
        let self_loop = scc.len() == 1 && tasks[first].deps.contains(&TaskId(first as u32));
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let path = shortest_cycle(tasks, first, scc.iter().map(|n| n.index()).collect());
        let chain = cycle_chain(tasks, &path, first);
        let mut problem: Option<Problem> = None;
        let mut notes = Vec::new();
        for (k, &from) in path.iter().enumerate() {
            // A long cycle is labelled at its ends only.
            if path.len() > 2 * CYCLE_ENDS && (CYCLE_ENDS..path.len() - CYCLE_ENDS).contains(&k) {
                continue;
            }
            let to = path.get(k + 1).copied().unwrap_or(first);
            let Some((_, span)) = dep_spans[from].iter().find(|(d, _)| d.index() == to) else {
                continue;
            };
            let label = format!("`{}` depends on `{}`", tasks[from].name, tasks[to].name);
            let file = defs[from].file;
            match &mut problem {
                None => {
                    problem = Some(
                        Problem::at(
                            ProblemKind::Cycle,
                            &files[file],
                            span.clone(),
                            format!("dependency cycle: {chain}"),
                            label,
                        )
                        .with_help("remove one of these dependencies to break the cycle"),
                    );
                }
                Some(p) if defs[path[0]].file == file => {
                    *p = std::mem::replace(p, Problem::bare(ProblemKind::Cycle, ""))
                        .with_label(span.clone(), label);
                }
                Some(_) => notes.push(Problem::at(
                    ProblemKind::Cycle,
                    &files[file],
                    span.clone(),
                    "the cycle continues here",
                    label,
                )),
            }
        }
        if let Some(mut p) = problem {
            for n in notes {
                p = p.with_related(n);
            }
            problems.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names_allow_namespaces_and_reject_spaces() {
        assert!(valid_name("pipeline:ingest"));
        assert!(valid_name("a.b-c_d"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a@b"));
        assert!(!valid_name(""));
    }
}
