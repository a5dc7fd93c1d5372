//! Selectors from the command line: exact names, globs (`gate:*`) and
//! instances (`TASK@P`), with "did you mean" suggestions for unknown names.

use globset::GlobBuilder;

use crate::config::diagnostic::{did_you_mean, suggest};
use crate::config::{Project, TaskId};
use crate::error::UsageError;

/// One resolved selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// An exact task or gate name.
    Task(TaskId),
    /// A glob and the tasks it matched (at least one).
    Glob(Vec<TaskId>),
    /// One instance of a partitioned task (the partition is unchecked here).
    Instance(TaskId, String),
}

fn unknown(project: &Project, name: &str) -> UsageError {
    let help = did_you_mean(&suggest(name, project.names()))
        .unwrap_or_else(|| "run `hotpass list` to see every task and gate".to_owned());
    UsageError::new(format!("no task or gate named `{name}`"), Some(help))
}

/// Resolves command-line selectors; none means every task and gate.
pub fn parse_selectors(project: &Project, args: &[String]) -> Result<Vec<Selector>, UsageError> {
    if args.is_empty() {
        return Ok(vec![Selector::Glob(
            project.tasks.iter().map(|t| t.id).collect(),
        )]);
    }
    let mut out = Vec::new();
    for arg in args {
        if let Some((name, partition)) = arg.split_once('@') {
            let id = project.find(name).ok_or_else(|| unknown(project, name))?;
            if partition.is_empty() {
                return Err(UsageError::new(
                    format!("`{arg}` names no partition after `@`"),
                    Some(format!(
                        "write `{name}@PARTITION`, e.g. `{name}@2025-01-01`"
                    )),
                ));
            }
            out.push(Selector::Instance(id, partition.to_owned()));
        } else if arg.contains(['*', '?', '[', '{']) {
            let glob = GlobBuilder::new(arg)
                .literal_separator(false)
                .build()
                .map_err(|e| UsageError::new(format!("`{arg}` is not a valid glob: {e}"), None))?
                .compile_matcher();
            let ids: Vec<TaskId> = project
                .tasks
                .iter()
                .filter(|t| glob.is_match(&t.name))
                .map(|t| t.id)
                .collect();
            if ids.is_empty() {
                return Err(UsageError::new(
                    format!("no task or gate matches `{arg}`"),
                    Some("run `hotpass list` to see every task and gate".into()),
                ));
            }
            out.push(Selector::Glob(ids));
        } else {
            out.push(Selector::Task(
                project.find(arg).ok_or_else(|| unknown(project, arg))?,
            ));
        }
    }
    Ok(out)
}
