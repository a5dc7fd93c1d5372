//! Finding `hotpass.toml`, reading it and the task files it includes, and
//! turning TOML parse errors into diagnostics.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diagnostic::{ConfigErrors, Problem, ProblemKind, SourceFile, did_you_mean, suggest};
use super::raw::{RawFile, SETTINGS_FIELDS, TASK_FIELDS};
use super::{Project, validate};
use crate::fileset::{Ignored, Patterns};

/// The name of the root configuration file.
pub const CONFIG_NAME: &str = "hotpass.toml";

/// Where to look for the configuration.
#[derive(Debug, Clone, Default)]
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

/// Loads and validates the whole project.
pub fn load(opts: &LoadOptions) -> Result<Project, ConfigErrors> {
    let path = find_config(opts)?;
    let path = path.canonicalize().unwrap_or(path);
    let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let root_file = read_source(&root, &path)?;
    let root_raw = parse(&root_file)?;

    let include: Vec<String> = root_raw
        .settings
        .as_ref()
        .and_then(|s| s.get_ref().include.as_ref())
        .map(|v| v.iter().map(|s| s.get_ref().clone()).collect())
        .unwrap_or_else(|| vec!["tasks/*.toml".to_owned()]);

    let mut files = vec![root_file];
    let mut raws = vec![root_raw];
    let mut problems = Vec::new();
    for file in included_files(&root, &path, &include, &files[0])? {
        let src = read_source(&root, &file)?;
        match parse(&src) {
            Ok(raw) => {
                if let Some(settings) = &raw.settings {
                    problems.push(
                        Problem::at(
                            ProblemKind::InvalidValue,
                            &src,
                            settings.span(),
                            "[settings] is only allowed in hotpass.toml",
                            "settings in an included file",
                        )
                        .with_help("move these settings into the root hotpass.toml"),
                    );
                }
                files.push(src);
                raws.push(raw);
            }
            Err(p) => problems.extend(p.problems),
        }
    }
    validate::validate(root, files, raws, opts, problems)
}

/// The included task files, sorted and without duplicates or the root file.
fn included_files(
    root: &Path,
    config: &Path,
    include: &[String],
    root_src: &SourceFile,
) -> Result<Vec<PathBuf>, ConfigErrors> {
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
    let mut out: Vec<PathBuf> = Vec::new();
    for f in found {
        let abs = f.abs.canonicalize().unwrap_or(f.abs);
        if abs != config && !out.contains(&abs) {
            out.push(abs);
        }
    }
    Ok(out)
}

fn read_source(root: &Path, path: &Path) -> Result<SourceFile, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problem::bare(
            ProblemKind::InvalidValue,
            format!("could not read {}: {e}", path.display()),
        )
    })?;
    let display = path
        .strip_prefix(root)
        .map(crate::fileset::rel_string)
        .unwrap_or_else(|_| path.display().to_string());
    Ok(SourceFile {
        path: path.to_path_buf(),
        display,
        text: Arc::new(text),
    })
}

/// Parses one file, turning a serde/TOML error into a located diagnostic.
pub fn parse(src: &SourceFile) -> Result<RawFile, ConfigErrors> {
    toml::from_str::<RawFile>(&src.text).map_err(|err| problem_from_toml(src, &err).into())
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
