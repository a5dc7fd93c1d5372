//! Watch mode's view of a project: which folders to watch, and which
//! instances a set of changed paths affects (with their dependents). Changes
//! under the cache folder, to declared outputs and to git-ignored files never
//! affect anything; a change to a config file asks for a reload.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::config::Project;
use crate::fileset::{Patterns, rel_string};
use crate::graph::{InstanceGraph, InstanceId};

struct Watched {
    cwd: PathBuf,
    inputs: Option<Patterns>,
    outputs: Option<Patterns>,
}

/// What a batch of changed paths means.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// A configuration file changed: reload and re-plan.
    pub config: bool,
    /// Instances whose inputs changed, plus everything depending on them.
    pub affected: BTreeSet<InstanceId>,
    /// The relevant changed paths, relative to the root, for display.
    pub paths: Vec<String>,
}

/// Everything needed to classify changes for one loaded project and graph.
pub struct WatchSet {
    root: PathBuf,
    cache_dir: PathBuf,
    config_files: Vec<PathBuf>,
    include: Option<Patterns>,
    /// The globs of `files` partitionings (relative to the root): a file
    /// they match may be a new partition, so the graph is planned again.
    partition_files: Option<Patterns>,
    gitignore: Gitignore,
    instances: Vec<Watched>,
}

fn compile(globs: &[String]) -> Option<Patterns> {
    if globs.is_empty() {
        return None;
    }
    Patterns::new(globs).ok()
}

/// The nearest existing folder at or above `p`.
fn existing_dir(p: &Path) -> PathBuf {
    let mut cur = p.to_path_buf();
    while !cur.is_dir() {
        match cur.parent() {
            Some(parent) => cur = parent.to_path_buf(),
            None => break,
        }
    }
    cur
}

impl WatchSet {
    /// Builds the watch set of `graph`.
    pub fn new(project: &Project, graph: &InstanceGraph) -> WatchSet {
        let mut gi = GitignoreBuilder::new(&project.root);
        gi.add(project.root.join(".gitignore"));
        gi.add(project.root.join(".git/info/exclude"));
        let gitignore = gi.build().unwrap_or_else(|_| Gitignore::empty());
        let instances = graph
            .iter()
            .map(|(_, inst)| Watched {
                cwd: inst.resolved.cwd.clone(),
                inputs: compile(&inst.resolved.input_globs),
                outputs: compile(&inst.resolved.outputs),
            })
            .collect();
        WatchSet {
            root: project.root.clone(),
            cache_dir: project.settings.cache_dir.clone(),
            config_files: project.files.iter().map(|f| f.path.clone()).collect(),
            include: compile(&project.settings.include),
            partition_files: compile(
                &project
                    .tasks
                    .iter()
                    .filter_map(|t| match &t.partitions {
                        Some(crate::partition::PartitionSpec::Files(g)) => Some(g.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            gitignore,
            instances,
        }
    }

    /// Folders to watch recursively, and folders to watch on their own
    /// (the root, for hotpass.toml).
    pub fn roots(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let mut recursive: Vec<PathBuf> = Vec::new();
        for w in &self.instances {
            if let Some(p) = &w.inputs {
                for r in p.roots() {
                    recursive.push(existing_dir(&if r.is_empty() {
                        w.cwd.clone()
                    } else {
                        w.cwd.join(r)
                    }));
                }
            }
        }
        for set in [&self.include, &self.partition_files].into_iter().flatten() {
            for r in set.roots() {
                recursive.push(existing_dir(&self.root.join(r)));
            }
        }
        for f in &self.config_files {
            if let Some(parent) = f.parent()
                && parent != self.root
            {
                recursive.push(parent.to_path_buf());
            }
        }
        recursive.sort();
        recursive.dedup();
        let mut kept: Vec<PathBuf> = Vec::new();
        for r in recursive {
            if !kept.iter().any(|k| r.starts_with(k)) {
                kept.push(r);
            }
        }
        let mut flat = if kept.iter().any(|k| self.root.starts_with(k)) {
            Vec::new()
        } else {
            vec![self.root.clone()]
        };
        // Each folder's parent too (on its own): a watched folder that is
        // deleted and created again is noticed, and watched again.
        for k in &kept {
            if let Some(parent) = k.parent()
                && !kept.iter().any(|o| parent.starts_with(o))
                && !flat.iter().any(|f| f == parent)
            {
                flat.push(parent.to_path_buf());
            }
        }
        (kept, flat)
    }

    fn ignored(&self, path: &Path) -> bool {
        if path.starts_with(&self.cache_dir) || path.components().any(|c| c.as_os_str() == ".git") {
            return true;
        }
        self.instances.iter().any(|w| {
            w.outputs.as_ref().is_some_and(|o| {
                path.strip_prefix(&w.cwd)
                    .is_ok_and(|rel| o.matches(&rel_string(rel)))
            })
        })
    }

    /// Classifies changed absolute paths (of the graph this set was built from).
    pub fn classify(&self, graph: &InstanceGraph, paths: &[PathBuf]) -> Changes {
        let mut out = Changes::default();
        let mut direct = BTreeSet::new();
        for path in paths {
            if self.ignored(path) {
                continue;
            }
            let rel_root = path
                .strip_prefix(&self.root)
                .map(rel_string)
                .unwrap_or_else(|_| path.display().to_string());
            if self.config_files.iter().any(|f| f == path)
                || [&self.include, &self.partition_files]
                    .into_iter()
                    .flatten()
                    .any(|i| path.starts_with(&self.root) && i.matches(&rel_root))
                || path == &self.root.join(crate::config::load::CONFIG_NAME)
            {
                out.config = true;
                out.paths.push(rel_root);
                continue;
            }
            let git_ignored = path.starts_with(&self.root)
                && self
                    .gitignore
                    .matched_path_or_any_parents(path, false)
                    .is_ignore();
            let mut hit = false;
            let absolute = rel_string(path);
            for ((id, _), w) in graph.iter().zip(&self.instances) {
                let Some(inputs) = &w.inputs else {
                    continue;
                };
                // As the patterns may name it: under the cwd or beside it,
                // or by its absolute path.
                let rel = crate::fileset::relative_to(&w.cwd, path);
                let named =
                    |r: &str| inputs.matches(r) && (!git_ignored || inputs.names_exactly(r));
                if named(&rel) || (rel != absolute && named(&absolute)) {
                    direct.insert(id);
                    hit = true;
                }
            }
            if hit {
                out.paths.push(rel_root);
            }
        }
        out.affected = graph.with_dependents(direct);
        out.paths.sort();
        out.paths.dedup();
        out
    }
}
