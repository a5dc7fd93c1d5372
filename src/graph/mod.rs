//! The instance graph: which task instances (`TASK` or `TASK@P`) one command
//! covers and which instances each waits for, built over petgraph.

pub mod resolve;
pub mod select;

use std::collections::BTreeSet;
use std::rc::Rc;

use rustc_hash::FxHashMap;

use crate::config::{PartitionMap, Project, TaskId};
use crate::error::UsageError;
use crate::partition::{Clock, PartitionError, PartitionKind, PartitionSpec};

pub use resolve::Resolved;
pub use select::{Selector, Shard, parse_selectors};

/// An instance of one [`InstanceGraph`]. Only the graph makes them, so an id
/// always indexes the graph it came from; `index()` is for dense side tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(u32);

impl InstanceId {
    /// A dense index (0..graph.len()), for tables kept beside the graph.
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
    /// The task with the partition filled in, made once here.
    pub resolved: Resolved,
}

/// How a run picks partitions for partitioned tasks.
#[derive(Debug, Clone, Default)]
pub struct PartitionArgs {
    /// `--partition P`.
    pub partition: Option<String>,
    /// `--backfill FROM..TO`, split.
    pub backfill: Option<(String, String)>,
    /// What time it is: `HOTPASS_NOW`, `HOTPASS_TODAY` or the clock.
    pub clock: Clock,
    /// `--order newest-first`: the newest partitions start first.
    pub newest_first: bool,
}

/// Every instance of one command, dependencies included, with its
/// dependency order and dependents computed once.
#[derive(Debug, Clone, Default)]
pub struct InstanceGraph {
    instances: Vec<Instance>,
    /// Instances named by the selection (as opposed to pulled in as deps).
    selected: Vec<InstanceId>,
    /// Every instance, dependencies first.
    order: Vec<InstanceId>,
    /// For each instance, the instances that depend on it directly.
    dependents: Vec<Vec<InstanceId>>,
    /// `--order newest-first`.
    newest_first: bool,
}

impl InstanceGraph {
    /// Expands selectors into instances and their dependencies.
    ///
    /// `limit` is the backfill guardrail: more partition instances than this
    /// is an error before anything runs.
    pub fn build(
        project: &Project,
        selectors: &[Selector],
        args: &PartitionArgs,
        limit: Option<usize>,
    ) -> Result<InstanceGraph, UsageError> {
        let mut b = Builder {
            project,
            args,
            ids: FxHashMap::default(),
            graph: InstanceGraph::default(),
            stack: Vec::new(),
            specs: FxHashMap::default(),
        };
        let explicit_partition = args.partition.is_some() || args.backfill.is_some();
        let mut any_partitioned = false;
        let mut reaches: Option<Vec<bool>> = None;
        for sel in selectors {
            let (tasks, exact) = match sel {
                Selector::Task(t) => (vec![*t], true),
                Selector::Glob(ts) => (ts.clone(), false),
                Selector::Instance(t, p) => {
                    let spec = b.spec(*t)?.ok_or_else(|| {
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
                    let reaches = reaches.get_or_insert_with(|| reaches_partitioned(project));
                    if exact && explicit_partition && !reaches[t.index()] {
                        return Err(UsageError::new(
                            format!(
                                "`{}` is not partitioned; --partition and --backfill apply only to partitioned tasks",
                                task.name
                            ),
                            Some(format!("run it without them: hotpass run {}", task.name)),
                        ));
                    }
                    any_partitioned |= reaches[t.index()];
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
        // The guardrail is for partitions: plain tasks never count, so a
        // monorepo of any size runs with the defaults.
        let n = b
            .graph
            .instances
            .iter()
            .filter(|i| i.partition.is_some())
            .count();
        if let Some(limit) = limit
            && n > limit
        {
            return Err(UsageError::new(
                format!(
                    "this run would expand to {n} partition instances, more than the backfill_limit of {limit}"
                ),
                Some(
                    "narrow the range, or raise `backfill_limit` in [settings] of hotpass.toml"
                        .into(),
                ),
            ));
        }
        let mut instances = b.graph.instances;
        resolve_all(project, &mut instances);
        Ok(InstanceGraph::new(
            instances,
            b.graph.selected,
            args.newest_first,
        ))
    }

    /// A graph over `instances` (whose deps index this same list), computing
    /// the dependency order and the dependents once. Among instances ready
    /// together, partitions come oldest first (by key), or newest first:
    /// the scheduler starts them in this order.
    fn new(
        instances: Vec<Instance>,
        selected: Vec<InstanceId>,
        newest_first: bool,
    ) -> InstanceGraph {
        use std::cmp::Reverse;
        let n = instances.len();
        let mut dependents = vec![Vec::new(); n];
        let mut missing = vec![0usize; n];
        for (i, inst) in instances.iter().enumerate() {
            missing[i] = inst.deps.len();
            for d in &inst.deps {
                dependents[d.index()].push(InstanceId(i as u32));
            }
        }
        // Each instance's place among others ready at the same time.
        let mut by_key: Vec<u32> = (0..n as u32).collect();
        by_key.sort_by(|&a, &b| {
            let (pa, pb) = (
                &instances[a as usize].partition,
                &instances[b as usize].partition,
            );
            let keys = if newest_first { pb.cmp(pa) } else { pa.cmp(pb) };
            pa.is_some().cmp(&pb.is_some()).then(keys).then(a.cmp(&b))
        });
        let mut rank = vec![0u32; n];
        for (r, i) in by_key.into_iter().enumerate() {
            rank[i as usize] = r as u32;
        }
        // Kahn's algorithm, taking the lowest rank among the ready.
        let mut ready: std::collections::BinaryHeap<Reverse<(u32, u32)>> = (0..n)
            .filter(|&i| missing[i] == 0)
            .map(|i| Reverse((rank[i], i as u32)))
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse((_, i))) = ready.pop() {
            order.push(InstanceId(i));
            for d in &dependents[i as usize] {
                let m = &mut missing[d.index()];
                *m -= 1;
                if *m == 0 {
                    ready.push(Reverse((rank[d.index()], d.0)));
                }
            }
        }
        // The task graph is acyclic (validated), and so is this one.
        debug_assert_eq!(order.len(), n);
        InstanceGraph {
            instances,
            selected,
            order,
            dependents,
            newest_first,
        }
    }

    /// The instance with this id.
    pub fn get(&self, id: InstanceId) -> &Instance {
        &self.instances[id.index()]
    }

    /// How many instances the graph holds.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether the graph holds no instance.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Every instance with its id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (InstanceId, &Instance)> {
        self.instances
            .iter()
            .enumerate()
            .map(|(i, inst)| (InstanceId(i as u32), inst))
    }

    /// Instances in an order where every dependency comes first.
    pub fn order(&self) -> &[InstanceId] {
        &self.order
    }

    /// The instances that depend on `id` directly.
    pub fn dependents(&self, id: InstanceId) -> &[InstanceId] {
        &self.dependents[id.index()]
    }

    /// The instances the selectors named (the rest are their dependencies).
    pub fn selected(&self) -> &[InstanceId] {
        &self.selected
    }

    /// `ids` and everything that depends on them, transitively.
    pub fn with_dependents(
        &self,
        ids: impl IntoIterator<Item = InstanceId>,
    ) -> BTreeSet<InstanceId> {
        let mut out = BTreeSet::new();
        let mut stack: Vec<InstanceId> = ids.into_iter().collect();
        while let Some(id) = stack.pop() {
            if out.insert(id) {
                stack.extend(self.dependents(id).iter().copied());
            }
        }
        out
    }
}

/// Resolves every instance of a graph just built. Each is independent of
/// the others, and a large graph's are many (the copies of its tasks'
/// strings, with partitions filled in): on rayon's threads then, which
/// a run has started already.
fn resolve_all(project: &Project, instances: &mut [Instance]) {
    let (root, mode) = (&project.root, project.settings.env_mode);
    let resolve = |i: &mut Instance| {
        i.resolved = Resolved::new(root, project.task(i.task), i.partition.as_deref(), mode);
    };
    if instances.len() < 256 {
        instances.iter_mut().for_each(resolve);
    } else {
        use rayon::prelude::*;
        instances.par_iter_mut().with_min_len(64).for_each(resolve);
    }
}

/// For every task, whether it or anything it depends on is partitioned: one
/// walk of the task graph (asking each task on its own would walk what it
/// depends on each time, quadratic on a deep graph).
fn reaches_partitioned(project: &Project) -> Vec<bool> {
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; project.tasks.len()];
    let mut reaches = vec![false; project.tasks.len()];
    for start in 0..project.tasks.len() {
        let mut stack = vec![(TaskId(start as u32), false)];
        while let Some((id, deps_done)) = stack.pop() {
            let task = project.task(id);
            if deps_done {
                reaches[id.index()] =
                    task.partitions.is_some() || task.deps.iter().any(|d| reaches[d.index()]);
                state[id.index()] = DONE;
            } else if state[id.index()] == NEW {
                state[id.index()] = OPEN;
                stack.push((id, true));
                stack.extend(
                    task.deps
                        .iter()
                        .filter(|d| state[d.index()] == NEW)
                        .map(|d| (*d, false)),
                );
            }
        }
    }
    reaches
}

fn bad_partition(project: &Project, t: TaskId, e: PartitionError) -> UsageError {
    UsageError::new(
        format!("bad partition for `{}`: {e}", project.task(t).name),
        Some(partition_help(project.task(t).partitions.as_ref())),
    )
}

fn partition_help(spec: Option<&PartitionSpec>) -> String {
    match spec {
        Some(PartitionSpec::Hourly { start, end, zone }) => format!(
            "hourly partitions are YYYY-MM-DDTHH in {} from {}{} (a repeated hour adds its offset: 2025-10-26T02+01:00)",
            zone.name,
            crate::partition::hour_key(*start, zone),
            end.map(|e| format!(" to {}", crate::partition::hour_key(e, zone)))
                .unwrap_or_default()
        ),
        Some(PartitionSpec::Files(glob)) => {
            format!("its partitions are the stems of the files {glob} matches")
        }
        Some(PartitionSpec::Daily { start, end, .. }) => format!(
            "daily partitions are YYYY-MM-DD from {start}{}",
            end.map(|e| format!(" to {e}")).unwrap_or_default()
        ),
        Some(PartitionSpec::Monthly { start, end, .. }) => format!(
            "monthly partitions are YYYY-MM from {:04}-{:02}{}",
            start.year(),
            start.month(),
            end.map(|e| format!(" to {:04}-{:02}", e.year(), e.month()))
                .unwrap_or_default()
        ),
        Some(PartitionSpec::Values(v)) if v.is_empty() => "it has no partitions now".into(),
        Some(PartitionSpec::Values(v)) if v.len() > 10 => format!(
            "its partitions are: {}, … ({} in all)",
            v[..10].join(", "),
            v.len()
        ),
        Some(PartitionSpec::Values(v)) => format!("its partitions are: {}", v.join(", ")),
        None => "this task is not partitioned".into(),
    }
}

struct Builder<'a> {
    project: &'a Project,
    args: &'a PartitionArgs,
    ids: FxHashMap<(TaskId, Option<String>), InstanceId>,
    graph: InstanceGraph,
    stack: Vec<InstanceId>,
    /// Each partitioned task's partitioning, a `files` one listed once.
    specs: FxHashMap<TaskId, Rc<PartitionSpec>>,
}

impl Builder<'_> {
    /// The partitioning of `t` for this run (`None`: not partitioned);
    /// a `files` partitioning's files are listed the first time it is asked.
    fn spec(&mut self, t: TaskId) -> Result<Option<Rc<PartitionSpec>>, UsageError> {
        let Some(declared) = &self.project.task(t).partitions else {
            return Ok(None);
        };
        if let Some(s) = self.specs.get(&t) {
            return Ok(Some(s.clone()));
        }
        let spec = Rc::new(
            declared
                .with_files(&self.project.root)
                .map_err(|e| bad_partition(self.project, t, e))?,
        );
        self.specs.insert(t, spec.clone());
        Ok(Some(spec))
    }

    fn add(&mut self, task: TaskId, partition: Option<String>) -> Result<InstanceId, UsageError> {
        if let Some(&id) = self.ids.get(&(task, partition.clone())) {
            return Ok(id);
        }
        let id = InstanceId(self.graph.instances.len() as u32);
        let t = self.project.task(task);
        let name = match &partition {
            Some(p) => format!("{}@{p}", t.name),
            None => t.name.clone(),
        };
        self.ids.insert((task, partition.clone()), id);
        self.graph.instances.push(Instance {
            task,
            partition,
            name,
            deps: Vec::new(),
            // Resolved once the graph is known (`resolve_all`).
            resolved: Resolved::default(),
        });
        self.stack.push(id);
        Ok(id)
    }

    /// The partitions of `t` this run covers when nothing narrower applies,
    /// in the order they should start (`--order`).
    fn partitions_for(&mut self, t: TaskId) -> Result<Vec<String>, UsageError> {
        let task = self.project.task(t);
        let spec = self.spec(t)?.expect("partitioned task");
        if let Some(p) = &self.args.partition {
            return Ok(vec![
                spec.check(p)
                    .map_err(|e| bad_partition(self.project, t, e))?,
            ]);
        }
        let mut parts = if let Some((from, to)) = &self.args.backfill {
            spec.range(from, to).map_err(|e| {
                UsageError::new(
                    format!("bad backfill range for `{}`: {e}", task.name),
                    Some(partition_help(Some(&spec))),
                )
            })?
        } else {
            spec.latest(self.args.clock).map_err(|e| {
                UsageError::new(
                    format!("`{}` has no partition to run: {e}", task.name),
                    Some(partition_help(Some(&spec))),
                )
            })?
        };
        if self.args.newest_first {
            parts.reverse();
        }
        Ok(parts)
    }

    /// Adds the dependencies of every queued instance until none are left.
    fn drain(&mut self) -> Result<(), UsageError> {
        while let Some(id) = self.stack.pop() {
            let inst = &self.graph.instances[id.index()];
            let (name, partition) = (inst.name.clone(), inst.partition.clone());
            let inst_task = inst.task;
            let task = self.project.task(inst_task);
            let mut deps = Vec::new();
            for &d in &task.deps {
                let dep = self.project.task(d);
                let (mine, theirs) = (self.spec(inst_task)?, self.spec(d)?);
                let parts: Vec<Option<String>> = match (&mine, &theirs, &partition) {
                    (_, None, _) => vec![None],
                    (None, Some(_), _) => self.partitions_for(d)?.into_iter().map(Some).collect(),
                    (Some(mine), Some(theirs), Some(p)) => {
                        if mine.kind() == theirs.kind()
                            && task.partition_map != Some(PartitionMap::All)
                        {
                            let p = theirs.check(p).map_err(|e| {
                                UsageError::new(
                                    format!(
                                        "`{}` needs `{}@{p}`, which does not exist: {e}",
                                        name, dep.name
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

/// Calendar mapping between time partitionings: an hour waits for its day
/// or month, a day for its month; a month for its days or hours, a day for
/// its hours (in the dependency's zone).
fn calendar(mine: PartitionKind, theirs: &PartitionSpec, p: &str) -> Vec<String> {
    let rank = |k| match k {
        PartitionKind::Hourly => 0,
        PartitionKind::Daily => 1,
        PartitionKind::Monthly => 2,
        _ => 3,
    };
    let (m, t) = (rank(mine), rank(theirs.kind()));
    if m > 2 || t > 2 || m == t {
        return Vec::new();
    }
    if t > m {
        // A coarser dependency: the period that holds this partition.
        let period = match theirs.kind() {
            PartitionKind::Daily => p.get(..10).map(str::to_owned),
            _ => PartitionSpec::month_of(p),
        };
        return period
            .and_then(|k| theirs.check(&k).ok())
            .into_iter()
            .collect();
    }
    theirs.within(p)
}
