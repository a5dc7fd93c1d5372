//! Finding `hotpass.toml`, reading it and the task files it includes, and
//! turning TOML parse errors into diagnostics.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diagnostic::{ConfigErrors, Problem, ProblemKind, SourceFile, did_you_mean, suggest};
use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::de::{DeTable, DeValue};

use super::raw::{RawFile, RawSettings, RawTask, SETTINGS_FIELDS, TASK_FIELDS};
use super::{Project, saved, validate};
use crate::fileset::{Ignored, Patterns};

/// The name of the root configuration file.
pub const CONFIG_NAME: &str = "hotpass.toml";

/// Where to look for the configuration.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadOptions {
    /// The process's working folder.
    pub cwd: PathBuf,
    /// `-C DIR`: search from here instead.
    pub dir: Option<PathBuf>,
    /// `--config FILE`: use exactly this file.
    pub config: Option<PathBuf>,
    /// `HOTPASS_CACHE_DIR`, if set.
    pub cache_dir_env: Option<PathBuf>,
}

/// Finds the root configuration file.
pub fn find_config(opts: &LoadOptions) -> Result<PathBuf, ConfigErrors> {
    let start = match &opts.dir {
        Some(d) => opts.cwd.join(d),
        None => opts.cwd.clone(),
    };
    if let Some(file) = &opts.config {
        let file = start.join(file);
        if file.is_file() {
            return Ok(file);
        }
        return Err(Problem::bare(
            ProblemKind::InvalidValue,
            format!("config file {} does not exist", file.display()),
        )
        .with_help("check the path given to --config")
        .into());
    }
    if !start.is_dir() {
        return Err(Problem::bare(
            ProblemKind::InvalidValue,
            format!("{} is not a folder", start.display()),
        )
        .with_help("check the folder given to -C")
        .into());
    }
    let mut dir = Some(start.as_path());
    while let Some(d) = dir {
        let candidate = d.join(CONFIG_NAME);
        if candidate.is_file() {
            return Ok(candidate);
        }
        if candidate.is_dir() {
            return Err(Problem::bare(
                ProblemKind::InvalidValue,
                format!("{} is a folder, not a file", candidate.display()),
            )
            .with_help(format!("{CONFIG_NAME} must be a file: move the folder away, or point at the config with --config FILE"))
            .into());
        }
        dir = d.parent();
    }
    Err(Problem::bare(
        ProblemKind::InvalidValue,
        format!(
            "no {CONFIG_NAME} in {} or any parent folder",
            start.display()
        ),
    )
    .with_help("run `hotpass init` to write one, or point at it with -C DIR or --config FILE")
    .into())
}

/// Loads and validates the whole project, from the parsed project kept in
/// the cache folder when nothing it was made from changed.
pub fn load(opts: &LoadOptions) -> Result<Project, ConfigErrors> {
    load_with(opts, true)
}

/// Loads and validates the whole project from its files, neither reading
/// nor writing the kept parsed project (`run --no-cache`).
pub fn load_fresh(opts: &LoadOptions) -> Result<Project, ConfigErrors> {
    load_with(opts, false)
}

/// Where the project's cache folder is unless its settings move it
/// (`HOTPASS_CACHE_DIR`, else `cache` beside the config file), found
/// without reading the config: a run starts reading the cache's state
/// there while the project loads. `None` when there is no config file.
pub fn usual_cache_dir(opts: &LoadOptions) -> Option<PathBuf> {
    if opts.cache_dir_env.is_some() {
        return Some(default_cache_dir(opts, Path::new("")));
    }
    let path = find_config(opts).ok()?;
    let path = path.canonicalize().unwrap_or(path);
    Some(default_cache_dir(opts, path.parent()?))
}

/// The cache folder of the project at `root` when `settings.cache_dir`
/// does not name one: `HOTPASS_CACHE_DIR` (from the working folder), else
/// `cache` in the root.
pub(super) fn default_cache_dir(opts: &LoadOptions, root: &Path) -> PathBuf {
    match &opts.cache_dir_env {
        Some(dir) => opts.cwd.join(dir),
        None => root.join("cache"),
    }
}

fn load_with(opts: &LoadOptions, keep: bool) -> Result<Project, ConfigErrors> {
    let path = find_config(opts)?;
    let path = path.canonicalize().unwrap_or(path);
    let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let included_now = |p: &Project| {
        let found = included_files(&root, &path, &p.settings.include, &p.files[0]).ok()?;
        Some(found.into_iter().map(|(f, _)| f).collect())
    };
    if keep && let Some(project) = saved::load(opts, &path, &root, included_now) {
        return Ok(project);
    }
    let root_file = read_source(&root, &path)?;
    let (root_raw, mut problems) = parse(&root_file);
    let Some(root_raw) = root_raw else {
        return Err(ConfigErrors { problems });
    };

    let mut include: Vec<String> = vec!["tasks/*.toml".to_owned()];
    if let Some(list) = root_raw
        .settings
        .as_ref()
        .and_then(|s| s.get_ref().include.as_ref())
    {
        include.clear();
        for pattern in list {
            // No path is longer than 4096 bytes; compiling such a glob
            // would take minutes.
            if pattern.get_ref().len() > 4096 {
                problems.push(
                    Problem::at(
                        ProblemKind::InvalidValue,
                        &root_file,
                        pattern.span(),
                        "an include pattern longer than any path (4096)",
                        "too long",
                    )
                    .with_help("shorten the pattern: no file can match it"),
                );
            } else {
                include.push(pattern.get_ref().clone());
            }
        }
    }

    let mut files = vec![root_file];
    let mut raws = vec![root_raw];
    for (file, pattern) in included_files(&root, &path, &include, &files[0])? {
        let src = read_source(&root, &file)?;
        let (raw, found) = parse(&src);
        let note = format!(
            "{} is read because the include pattern `{pattern}` in {CONFIG_NAME} matches it",
            src.display
        );
        problems.extend(found.into_iter().map(|p| p.with_note(&note)));
        if let Some(raw) = raw {
            if let Some(settings) = &raw.settings {
                problems.push(
                    Problem::at(
                        ProblemKind::InvalidValue,
                        &src,
                        settings.span(),
                        "[settings] is only allowed in hotpass.toml",
                        "settings in an included file",
                    )
                    .with_help("move these settings into the root hotpass.toml")
                    .with_note(&note),
                );
            }
            files.push(src);
            raws.push(raw);
        }
    }
    let project = validate::validate(root, files, raws, opts, problems)?;
    if keep {
        saved::save(opts, &project);
    }
    // Parsing a large config leaves much freed memory behind: give it back,
    // so that every task spawned (a fork of this process) copies less.
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
    Ok(project)
}

/// The included task files, sorted and without duplicates or the root file,
/// each with the include pattern that matched it.
fn included_files(
    root: &Path,
    config: &Path,
    include: &[String],
    root_src: &SourceFile,
) -> Result<Vec<(PathBuf, String)>, ConfigErrors> {
    let patterns = Patterns::new(include).map_err(|(pattern, err)| {
        let at = root_src.text.find(&pattern).unwrap_or(0);
        Problem::at(
            ProblemKind::InvalidValue,
            root_src,
            at..at + pattern.len(),
            format!("`{pattern}` is not a valid glob: {err}"),
            "bad include pattern",
        )
    })?;
    let found = patterns.expand(root, Ignored::Include, &[]).map_err(|e| {
        Problem::bare(
            ProblemKind::InvalidValue,
            format!("could not list included files: {e}"),
        )
    })?;
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    for f in found {
        let pattern = patterns
            .first_match(&f.rel)
            .and_then(|n| include.get(n))
            .cloned()
            .unwrap_or_default();
        let abs = f.abs.canonicalize().unwrap_or(f.abs);
        if abs != config && !out.iter().any(|(p, _)| *p == abs) {
            out.push((abs, pattern));
        }
    }
    Ok(out)
}

fn read_source(root: &Path, path: &Path) -> Result<SourceFile, ConfigErrors> {
    let bytes = std::fs::read(path).map_err(|e| {
        Problem::bare(
            ProblemKind::InvalidValue,
            format!("could not read {}: {e}", path.display()),
        )
    })?;
    let display = path
        .strip_prefix(root)
        .map(crate::fileset::rel_string)
        .unwrap_or_else(|_| path.display().to_string());
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            // Shown with the bad bytes replaced, pointing at the first one.
            let at = e.utf8_error().valid_up_to();
            let file = SourceFile {
                path: path.to_path_buf(),
                display,
                text: Arc::new(String::from_utf8_lossy(e.as_bytes()).into_owned()),
            };
            return Err(Problem::at(
                ProblemKind::Syntax,
                &file,
                at..at + 1,
                "the file is not valid UTF-8",
                "invalid bytes",
            )
            .with_help("TOML files are UTF-8: save the file as UTF-8")
            .into());
        }
    };
    Ok(SourceFile {
        path: path.to_path_buf(),
        display,
        text: Arc::new(text),
    })
}

/// The top-level tables of a configuration file.
const FILE_FIELDS: &[&str] = &["settings", "tasks", "gates"];

/// Parses one file. A syntax error stops it; an unknown field or a value of
/// the wrong type is a located problem, and is left out so the rest of the
/// file is still read and validated: every mistake is reported in one run.
pub fn parse(src: &SourceFile) -> (Option<RawFile>, Vec<Problem>) {
    // A correct file (the usual case) is deserialized once.
    if let Ok(raw) = toml::from_str::<RawFile>(&src.text) {
        return (Some(raw), Vec::new());
    }
    let mut doc = match DeTable::parse(&src.text) {
        Ok(d) => d,
        Err(e) => return (None, vec![problem_from_toml(src, &e)]),
    };
    let mut problems = Vec::new();
    let root = doc.get_mut();
    prune_unknown(src, root, FILE_FIELDS, &mut problems);
    for (key, value) in root.iter_mut() {
        let span = value.span();
        let DeValue::Table(table) = value.get_mut() else {
            continue; // the wrong type of a whole section: reported below
        };
        match key.get_ref().as_ref() {
            "settings" => {
                prune_unknown(src, table, SETTINGS_FIELDS, &mut problems);
                prune_mistyped::<RawSettings>(src, table, span, &mut problems);
            }
            "tasks" | "gates" => {
                for (_, task) in table.iter_mut() {
                    let span = task.span();
                    if let DeValue::Table(fields) = task.get_mut() {
                        prune_unknown(src, fields, TASK_FIELDS, &mut problems);
                        prune_mistyped::<RawTask>(src, fields, span, &mut problems);
                    }
                }
            }
            _ => {}
        }
    }
    match RawFile::deserialize(doc.into_deserializer()) {
        Ok(raw) => (Some(raw), problems),
        Err(e) => {
            problems.push(problem_from_toml(src, &e));
            (None, problems)
        }
    }
}

/// Keeps the entries of `table` for which `keep` holds, in their order.
fn keep_only<'i>(
    table: &mut DeTable<'i>,
    mut keep: impl FnMut(&toml::Spanned<toml::de::DeString<'i>>, &toml::Spanned<DeValue<'i>>) -> bool,
) {
    let old = std::mem::take(table);
    for (k, v) in old {
        if keep(&k, &v) {
            table.insert(k, v);
        }
    }
}

/// Reports and removes the keys of `table` that are not `known`.
fn prune_unknown(
    src: &SourceFile,
    table: &mut DeTable,
    known: &[&str],
    problems: &mut Vec<Problem>,
) {
    keep_only(table, |key, _| {
        let name: &str = key.get_ref().as_ref();
        if known.contains(&name) {
            return true;
        }
        let help = did_you_mean(&suggest(name, known.iter().copied()))
            .unwrap_or_else(|| format!("known fields here: {}", known.join(", ")));
        problems.push(
            Problem::at(
                ProblemKind::UnknownField,
                src,
                key.span(),
                format!("unknown field `{name}`"),
                "not a field hotpass knows",
            )
            .with_help(help),
        );
        false
    });
}

/// Reports and removes, one at a time, the fields of `table` whose values
/// do not fit `T`, until the rest deserializes.
fn prune_mistyped<T: serde::de::DeserializeOwned>(
    src: &SourceFile,
    table: &mut DeTable,
    span: std::ops::Range<usize>,
    problems: &mut Vec<Problem>,
) {
    for _ in 0..=table.len() {
        let whole = toml::Spanned::new(span.clone(), table.clone());
        let Err(e) = T::deserialize(whole.into_deserializer()) else {
            return;
        };
        problems.push(problem_from_toml(src, &e));
        let at = e.span().unwrap_or(0..0);
        let before = table.len();
        keep_only(table, |k, v| {
            let (ks, vs) = (k.span(), v.span());
            let inside = |s: &std::ops::Range<usize>| s.start <= at.start && at.end <= s.end;
            !(inside(&ks) || inside(&vs))
        });
        if table.len() == before {
            return; // the mistake is not in one field: reported once
        }
    }
}

fn problem_from_toml(src: &SourceFile, err: &toml::de::Error) -> Problem {
    let message = err.message().trim().to_owned();
    let span = err.span().unwrap_or(0..0);
    let ticked: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if message.starts_with("unknown field") {
        let field = ticked.first().copied().unwrap_or("");
        let expected: Vec<&str> = ticked.iter().skip(1).copied().collect();
        let pool: Vec<&str> = if expected.is_empty() {
            TASK_FIELDS.iter().chain(SETTINGS_FIELDS).copied().collect()
        } else {
            expected.clone()
        };
        let suggestions = suggest(field, pool.iter().copied());
        let help = did_you_mean(&suggestions)
            .unwrap_or_else(|| format!("known fields here: {}", expected.join(", ")));
        return Problem::at(
            ProblemKind::UnknownField,
            src,
            span,
            format!("unknown field `{field}`"),
            "not a field hotpass knows",
        )
        .with_help(help);
    }
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        return Problem::at(
            ProblemKind::WrongType,
            src,
            span,
            message.clone(),
            "wrong type",
        )
        .with_help("see docs/configuration.md for the type of each field");
    }
    if message.starts_with("duplicate key") {
        return Problem::at(
            ProblemKind::DuplicateTask,
            src,
            span,
            message.clone(),
            "defined again here",
        )
        .with_help("each key, and each task, may be defined once: remove or rename one");
    }
    Problem::at(
        ProblemKind::Syntax,
        src,
        span,
        format!("invalid TOML: {message}"),
        "here",
    )
    .with_help("fix the TOML syntax at the marked place")
}
