//! `--strict` (or `settings.strict`): before anything runs, every input glob
//! that matches no file is an error pointing at where it is written. Globs
//! of partitioned tasks are checked per instance when they run, and only
//! warn (a day without raw files is news, not a broken config); so are globs
//! a dependency may fill, which can only be judged once it has run.

use std::path::{Component, Path};

use crate::config::{ConfigErrors, Problem, ProblemKind, Project};
use crate::fileset::{Ignored, Patterns, static_prefix};
use crate::graph::{Instance, InstanceGraph, InstanceId};

/// Whether one path is inside the other (or both are the same).
fn nested(a: &Path, b: &Path) -> bool {
    fn norm(p: &Path) -> Vec<Component<'_>> {
        p.components().filter(|c| *c != Component::CurDir).collect()
    }
    let (a, b) = (norm(a), norm(b));
    a.starts_with(&b) || b.starts_with(&a)
}

/// Whether an output glob of something `id` depends on could write files
/// that `pattern` (an input of `id`) matches.
fn fed_by_dependency(graph: &InstanceGraph, inst: &Instance, pattern: &str) -> bool {
    let want = static_prefix(&inst.resolved.cwd, pattern);
    let mut stack: Vec<InstanceId> = inst.deps.clone();
    let mut seen = std::collections::HashSet::new();
    while let Some(d) = stack.pop() {
        if !seen.insert(d) {
            continue;
        }
        let dep = graph.get(d);
        if dep
            .resolved
            .outputs
            .iter()
            .any(|o| nested(&static_prefix(&dep.resolved.cwd, o), &want))
        {
            return true;
        }
        stack.extend(dep.deps.iter().copied());
    }
    false
}

/// Every input glob (by instance and position) of a plain instance that
/// matches no file now and that no dependency could fill.
pub fn empty_inputs(project: &Project, graph: &InstanceGraph) -> Vec<(InstanceId, usize)> {
    let mut out = Vec::new();
    for (id, inst) in graph.iter() {
        let task = project.task(inst.task);
        let globs = &inst.resolved.input_globs;
        if task.partitions.is_some() || globs.is_empty() {
            continue;
        }
        let Ok(patterns) = Patterns::new(globs) else {
            continue;
        };
        let skip = [project.settings.cache_dir.clone()];
        let found = patterns
            .expand(&inst.resolved.cwd, Ignored::Skip, &skip)
            .unwrap_or_default();
        for n in patterns.unmatched(&found) {
            let glob = &globs[n];
            if !glob.starts_with('!') && !fed_by_dependency(graph, inst, glob) {
                out.push((id, n));
            }
        }
    }
    out
}

/// The output globs (by instance and position) of instances that ran
/// before (a run is recorded) that match no file now.
pub fn empty_outputs(
    project: &Project,
    graph: &InstanceGraph,
    ran_before: impl Fn(&str) -> bool,
) -> Vec<(InstanceId, usize)> {
    let mut out = Vec::new();
    for (id, inst) in graph.iter() {
        let globs = &inst.resolved.outputs;
        if globs.is_empty() || !ran_before(&inst.name) {
            continue;
        }
        let Ok(patterns) = Patterns::new(globs) else {
            continue;
        };
        let skip = [project.settings.cache_dir.clone()];
        let found = patterns
            .expand(&inst.resolved.cwd, Ignored::Include, &skip)
            .unwrap_or_default();
        out.extend(
            patterns
                .unmatched(&found)
                .into_iter()
                .filter(|n| !globs[*n].starts_with('!'))
                .map(|n| (id, n)),
        );
    }
    out
}

/// Every input glob [`empty_inputs`] finds, as located problems.
pub fn check(project: &Project, graph: &InstanceGraph) -> Result<(), ConfigErrors> {
    let mut problems = Vec::new();
    for (id, n) in empty_inputs(project, graph) {
        let inst = graph.get(id);
        let task = project.task(inst.task);
        let glob = &inst.resolved.input_globs[n];
        let file = &project.files[task.origin.file];
        let problem = match project.input_glob_span(task, n) {
            Some(span) => Problem::at(
                ProblemKind::EmptyGlob,
                file,
                span,
                format!("input glob `{glob}` of `{}` matches no file", task.name),
                "matches nothing",
            ),
            None => Problem::bare(
                ProblemKind::EmptyGlob,
                format!("input glob `{glob}` of `{}` matches no file", task.name),
            ),
        };
        problems.push(problem.with_help(
            "a glob that matches nothing leaves the task cached however its sources change; \
             fix the pattern (relative to the task's cwd), or remove it",
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors { problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_nest_by_component() {
        let root = Path::new("/p");
        assert!(nested(
            &static_prefix(root, "dist/**"),
            &static_prefix(root, "dist/app.js")
        ));
        assert!(nested(
            &static_prefix(root, "./out/{x}.txt"),
            &static_prefix(root, "out/a.txt")
        ));
        assert!(!nested(
            &static_prefix(root, "src/**/*.py"),
            &static_prefix(root, "build/x")
        ));
        assert!(!nested(
            &static_prefix(root, "distro/a"),
            &static_prefix(root, "dist/a")
        ));
    }
}
