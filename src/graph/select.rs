//! Selectors from the command line: exact names, globs (`gate:*`) and
//! instances (`TASK@P`), with "did you mean" suggestions for unknown names;
//! and `--shard K/N`, a stable share of a selection for CI matrices.

use std::collections::{BTreeSet, HashMap};

use globset::GlobBuilder;

use super::{InstanceGraph, InstanceId};

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

/// `--shard K/N`: the K-th of N stable shares of a selection (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    k: u64,
    n: u64,
}

impl std::str::FromStr for Shard {
    type Err = UsageError;

    fn from_str(s: &str) -> Result<Shard, UsageError> {
        let bad = || {
            UsageError::new(
                format!("`{s}` is not a shard"),
                Some("write K/N with 1 <= K <= N, e.g. --shard 2/4".into()),
            )
        };
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let k: u64 = k.trim().parse().map_err(|_| bad())?;
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        if n == 0 || k == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

impl Shard {
    /// Whether the selected instance called `name` falls in this shard: a
    /// hash of the name, so every machine of a matrix agrees.
    fn holds(&self, name: &str) -> bool {
        let h = blake3::hash(name.as_bytes());
        let v = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        v % self.n == self.k - 1
    }

    /// The selected instances of `graph` in this shard, plus everything they
    /// depend on.
    pub fn apply(&self, graph: InstanceGraph) -> InstanceGraph {
        let mut keep: BTreeSet<usize> = BTreeSet::new();
        let mut stack: Vec<InstanceId> = graph
            .selected
            .iter()
            .copied()
            .filter(|id| self.holds(&graph.get(*id).name))
            .collect();
        while let Some(id) = stack.pop() {
            if keep.insert(id.index()) {
                stack.extend(graph.get(id).deps.iter().copied());
            }
        }
        let remap: HashMap<usize, u32> = keep
            .iter()
            .enumerate()
            .map(|(new, old)| (*old, new as u32))
            .collect();
        let selected = graph
            .selected
            .iter()
            .filter_map(|id| remap.get(&id.index()).map(|n| InstanceId(*n)))
            .collect();
        let newest_first = graph.newest_first;
        let mut instances: Vec<_> = graph.instances.into_iter().map(Some).collect();
        let kept = keep
            .iter()
            .map(|old| {
                let mut inst = instances[*old].take().expect("each instance kept once");
                for d in &mut inst.deps {
                    *d = InstanceId(remap[&d.index()]);
                }
                inst
            })
            .collect();
        InstanceGraph::new(kept, selected, newest_first)
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn shards_are_one_based_and_bounded() {
        assert_eq!("1/3".parse::<Shard>().unwrap(), Shard { k: 1, n: 3 });
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }

    #[test]
    fn every_name_falls_in_exactly_one_shard() {
        let shards: Vec<Shard> = (1..=4).map(|k| format!("{k}/4").parse().unwrap()).collect();
        for name in ["a", "gate:types", "p@2025-01-01", "x"] {
            assert_eq!(shards.iter().filter(|s| s.holds(name)).count(), 1);
        }
    }
}
