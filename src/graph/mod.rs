//! The instance graph: which task instances (`TASK` or `TASK@P`) one command
//! covers and which instances each waits for, built over petgraph.

pub mod select;

use std::collections::HashMap;

use crate::config::{PartitionMap, Project, TaskId};
use crate::error::UsageError;
use crate::partition::{PartitionKind, PartitionSpec};

pub use select::{Selector, parse_selectors};

/// Index of an instance in [`InstanceGraph::instances`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub u32);

impl InstanceId {
    /// The index into `InstanceGraph::instances`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One run of one task on (at most) one partition.
#[derive(Debug, Clone)]
pub struct Instance {
    pub task: TaskId,
    /// The partition key, for a partitioned task.
    pub partition: Option<String>,
    /// `TASK` or `TASK@P`.
    pub name: String,
    /// The instances that must succeed first.
    pub deps: Vec<InstanceId>,
}

/// How a run picks partitions for partitioned tasks.
#[derive(Debug, Clone, Default)]
pub struct PartitionArgs {
    /// `--partition P`.
    pub partition: Option<String>,
    /// `--backfill FROM..TO`, split.
    pub backfill: Option<(String, String)>,
    /// Today's date, from `HOTPASS_TODAY` or the clock.
    pub today: Option<jiff::civil::Date>,
}

/// Every instance of one command, dependencies included.
#[derive(Debug, Clone, Default)]
pub struct InstanceGraph {
    pub instances: Vec<Instance>,
    /// Instances named by the selection (as opposed to pulled in as deps).
    pub selected: Vec<InstanceId>,
}

impl InstanceGraph {
    /// Expands selectors into instances and their dependencies.
    ///
    /// `limit` is the backfill guardrail: more instances than this is an error
    /// before anything runs.
    pub fn build(
        project: &Project,
        selectors: &[Selector],
        args: &PartitionArgs,
        limit: Option<usize>,
    ) -> Result<InstanceGraph, UsageError> {
        let mut b = Builder {
            project,
            args,
            ids: HashMap::new(),
            graph: InstanceGraph::default(),
            stack: Vec::new(),
        };
        let explicit_partition = args.partition.is_some() || args.backfill.is_some();
        let mut any_partitioned = false;
        for sel in selectors {
            let (tasks, exact) = match sel {
                Selector::Task(t) => (vec![*t], true),
                Selector::Glob(ts) => (ts.clone(), false),
                Selector::Instance(t, p) => {
                    let spec = project.task(*t).partitions.as_ref().ok_or_else(|| {
                        UsageError::new(
                            format!(
                                "`{}` is not partitioned, so it has no instance `@{p}`",
                                project.task(*t).name
                            ),
                            Some(format!("select it as `{}`", project.task(*t).name)),
                        )
                    })?;
                    let p = spec.check(p).map_err(|e| bad_partition(project, *t, e))?;
                    any_partitioned = true;
                    let id = b.add(*t, Some(p))?;
                    b.graph.selected.push(id);
                    continue;
                }
            };
            for t in tasks {
                let task = project.task(t);
                if task.partitions.is_none() {
                    if exact && explicit_partition && !reaches_partitioned(project, t) {
                        return Err(UsageError::new(
                            format!(
                                "`{}` is not partitioned; --partition and --backfill apply only to partitioned tasks",
                                task.name
                            ),
                            Some(format!("run it without them: hotpass run {}", task.name)),
                        ));
                    }
                    any_partitioned |= reaches_partitioned(project, t);
                    let id = b.add(t, None)?;
                    b.graph.selected.push(id);
                } else {
                    any_partitioned = true;
                    for p in b.partitions_for(t)? {
                        let id = b.add(t, Some(p))?;
                        b.graph.selected.push(id);
                    }
                }
            }
        }
        if explicit_partition && !any_partitioned && !selectors.is_empty() {
            return Err(UsageError::new(
                "--partition and --backfill need a partitioned task in the selection",
                Some("select a task that declares `partitions`".into()),
            ));
        }
        b.drain()?;
        let n = b.graph.instances.len();
        if let Some(limit) = limit
            && n > limit
        {
            return Err(UsageError::new(
                format!(
                    "this run would expand to {n} instances, more than the backfill_limit of {limit}"
                ),
                Some(
                    "narrow the range, or raise `backfill_limit` in [settings] of hotpass.toml"
                        .into(),
                ),
            ));
        }
        Ok(b.graph)
    }

    /// The instance with this id.
    pub fn get(&self, id: InstanceId) -> &Instance {
        &self.instances[id.index()]
    }

    /// Instances in an order where every dependency comes first.
    pub fn topo_order(&self) -> Vec<InstanceId> {
        let mut g = petgraph::graph::DiGraph::<(), ()>::with_capacity(self.instances.len(), 0);
        let nodes: Vec<_> = self.instances.iter().map(|_| g.add_node(())).collect();
        for (i, inst) in self.instances.iter().enumerate() {
            for d in &inst.deps {
                g.add_edge(nodes[d.index()], nodes[i], ());
            }
        }
        // The task graph is acyclic (validated), and so is this one.
        petgraph::algo::toposort(&g, None)
            .map(|v| {
                v.into_iter()
                    .map(|n| InstanceId(n.index() as u32))
                    .collect()
            })
            .unwrap_or_else(|_| (0..self.instances.len() as u32).map(InstanceId).collect())
    }
}

/// Whether `t` or anything it depends on is partitioned.
fn reaches_partitioned(project: &Project, t: TaskId) -> bool {
    let mut stack = vec![t];
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let task = project.task(id);
        if task.partitions.is_some() {
            return true;
        }
        stack.extend(task.deps.iter().copied());
    }
    false
}

fn bad_partition(project: &Project, t: TaskId, e: String) -> UsageError {
    UsageError::new(
        format!("bad partition for `{}`: {e}", project.task(t).name),
        Some(partition_help(project.task(t).partitions.as_ref())),
    )
}

fn partition_help(spec: Option<&PartitionSpec>) -> String {
    match spec {
        Some(PartitionSpec::Daily { start, end }) => format!(
            "daily partitions are YYYY-MM-DD from {start}{}",
            end.map(|e| format!(" to {e}")).unwrap_or_default()
        ),
        Some(PartitionSpec::Monthly { start, end }) => format!(
            "monthly partitions are YYYY-MM from {:04}-{:02}{}",
            start.year(),
            start.month(),
            end.map(|e| format!(" to {:04}-{:02}", e.year(), e.month()))
                .unwrap_or_default()
        ),
        Some(PartitionSpec::Values(v)) => format!("its partitions are: {}", v.join(", ")),
        None => "this task is not partitioned".into(),
    }
}

struct Builder<'a> {
    project: &'a Project,
    args: &'a PartitionArgs,
    ids: HashMap<(TaskId, Option<String>), InstanceId>,
    graph: InstanceGraph,
    stack: Vec<InstanceId>,
}

impl Builder<'_> {
    fn add(&mut self, task: TaskId, partition: Option<String>) -> Result<InstanceId, UsageError> {
        if let Some(&id) = self.ids.get(&(task, partition.clone())) {
            return Ok(id);
        }
        let id = InstanceId(self.graph.instances.len() as u32);
        let base = &self.project.task(task).name;
        let name = match &partition {
            Some(p) => format!("{base}@{p}"),
            None => base.clone(),
        };
        self.ids.insert((task, partition.clone()), id);
        self.graph.instances.push(Instance {
            task,
            partition,
            name,
            deps: Vec::new(),
        });
        self.stack.push(id);
        Ok(id)
    }

    /// The partitions of `t` this run covers when nothing narrower applies.
    fn partitions_for(&self, t: TaskId) -> Result<Vec<String>, UsageError> {
        let task = self.project.task(t);
        let spec = task.partitions.as_ref().expect("partitioned task");
        if let Some(p) = &self.args.partition {
            return Ok(vec![
                spec.check(p)
                    .map_err(|e| bad_partition(self.project, t, e))?,
            ]);
        }
        if let Some((from, to)) = &self.args.backfill {
            return spec.range(from, to).map_err(|e| {
                UsageError::new(
                    format!("bad backfill range for `{}`: {e}", task.name),
                    Some(partition_help(Some(spec))),
                )
            });
        }
        let today = self
            .args
            .today
            .unwrap_or_else(|| jiff::ZonedDateTime::now().date());
        spec.latest(today).map_err(|e| {
            UsageError::new(
                format!("`{}` has no partition to run: {e}", task.name),
                Some(partition_help(Some(spec))),
            )
        })
    }

    /// Adds the dependencies of every queued instance until none are left.
    fn drain(&mut self) -> Result<(), UsageError> {
        while let Some(id) = self.stack.pop() {
            let inst = self.graph.instances[id.index()].clone();
            let task = self.project.task(inst.task);
            let mut deps = Vec::new();
            for &d in &task.deps {
                let dep = self.project.task(d);
                let parts: Vec<Option<String>> =
                    match (&task.partitions, &dep.partitions, &inst.partition) {
                        (_, None, _) => vec![None],
                        (None, Some(_), _) => {
                            self.partitions_for(d)?.into_iter().map(Some).collect()
                        }
                        (Some(mine), Some(theirs), Some(p)) => {
                            if mine.kind() == theirs.kind()
                                && task.partition_map != Some(PartitionMap::All)
                            {
                                let p = theirs.check(p).map_err(|e| {
                                    UsageError::new(
                                        format!(
                                            "`{}` needs `{}@{p}`, which does not exist: {e}",
                                            inst.name, dep.name
                                        ),
                                        Some(partition_help(Some(theirs))),
                                    )
                                })?;
                                vec![Some(p)]
                            } else if task.partition_map == Some(PartitionMap::Calendar) {
                                calendar(mine.kind(), theirs, p)
                                    .into_iter()
                                    .map(Some)
                                    .collect()
                            } else {
                                self.partitions_for(d)?.into_iter().map(Some).collect()
                            }
                        }
                        (Some(_), Some(_), None) => vec![None],
                    };
                for p in parts {
                    let did = self.add(d, p)?;
                    if !deps.contains(&did) {
                        deps.push(did);
                    }
                }
            }
            self.graph.instances[id.index()].deps = deps;
        }
        Ok(())
    }
}

/// Calendar mapping: a day waits for its month; a month for its days.
fn calendar(mine: PartitionKind, theirs: &PartitionSpec, p: &str) -> Vec<String> {
    match (mine, theirs) {
        (PartitionKind::Daily, PartitionSpec::Monthly { .. }) => PartitionSpec::month_of(p)
            .and_then(|m| theirs.check(&m).ok())
            .into_iter()
            .collect(),
        (PartitionKind::Monthly, PartitionSpec::Daily { .. }) => {
            let Ok(first) = crate::partition::parse_month(p) else {
                return Vec::new();
            };
            let last = first.last_of_month();
            let mut out = Vec::new();
            let mut d = first;
            while d <= last {
                if let Ok(k) = theirs.check(&d.to_string()) {
                    out.push(k);
                }
                match d.tomorrow() {
                    Ok(n) => d = n,
                    Err(_) => break,
                }
            }
            out
        }
        _ => Vec::new(),
    }
}
