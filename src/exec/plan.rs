//! The plan of a run without running it (`--dry-run`): every instance with
//! its key and whether it would hit the cache, and if not, why.

use std::collections::BTreeMap;
use std::io;

use serde::Serialize;

use crate::cache::key::{KeyContext, compute};
use crate::cache::store::Lookup;
use crate::cache::{Cache, Mode};
use crate::config::{Project, TaskKind};
use crate::graph::InstanceGraph;
use crate::hash::Memo;

/// Version of the dry-run JSON.
pub const PLAN_SCHEMA_VERSION: u32 = 1;

/// `--dry-run=json`.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub schema_version: u32,
    pub instances: Vec<PlanItem>,
}

/// One instance in the plan.
#[derive(Debug, Serialize)]
pub struct PlanItem {
    pub name: String,
    pub task: String,
    pub partition: Option<String>,
    pub kind: &'static str,
    /// `run` or `cached`.
    pub action: &'static str,
    pub cached: bool,
    pub key: Option<String>,
    /// Why it would run (absent when cached).
    pub reason: Option<String>,
    pub deps: Vec<String>,
    pub commands: Vec<String>,
}

/// Plans `graph` against the cache as it is, in dependency order.
pub fn plan(project: &Project, graph: &InstanceGraph, mode: Mode) -> io::Result<Plan> {
    // The same salt as a run (creating the cache, as a run would), so the
    // keys shown are the keys the run will use.
    let (cache, salt) = match mode {
        Mode::Disabled => (Cache::at(&project.settings.cache_dir), [0; 32]),
        _ => {
            let cache = Cache::open(&project.settings.cache_dir)?;
            let salt = cache.salt()?;
            (cache, salt)
        }
    };
    let memo = Memo::load(Some(cache.memo_path()));
    let cx = KeyContext::new(project, &memo, salt);
    let mut keys: Vec<Option<String>> = vec![None; graph.instances.len()];
    let mut items: Vec<Option<PlanItem>> = (0..graph.instances.len()).map(|_| None).collect();
    let order = graph.topo_order();
    for &id in &order {
        let inst = graph.get(id);
        let task = project.task(inst.task);
        let deps: BTreeMap<String, String> = inst
            .deps
            .iter()
            .map(|d| {
                (
                    graph.get(*d).name.clone(),
                    keys[d.index()].clone().unwrap_or_else(|| "none".into()),
                )
            })
            .collect();
        let (key, cached, reason) = if mode == Mode::Disabled {
            (None, false, "cache-disabled".to_owned())
        } else {
            let k = compute(&cx, inst, deps)?;
            let digest = k.digest();
            let (cached, reason) = if !task.cache {
                (false, "cache-disabled".to_owned())
            } else if mode == Mode::Force {
                (false, "forced".to_owned())
            } else {
                match cache.lookup(&digest) {
                    Lookup::Found(e) => {
                        // Whether the stored files are there; damage inside
                        // one is found (and run instead) when restoring.
                        let blobs_ok = e
                            .outputs
                            .iter()
                            .map(|o| o.hash.as_str())
                            .chain(e.log.as_deref())
                            .all(|h| cache.blob_path(h).is_file());
                        if blobs_ok {
                            (true, String::new())
                        } else {
                            (false, "restore-failed".to_owned())
                        }
                    }
                    Lookup::Corrupt(_) => (false, "corrupt-entry".to_owned()),
                    Lookup::Missing => (false, cache.miss_reason(&inst.name, &k)),
                }
            };
            (Some(digest), cached, reason)
        };
        keys[id.index()] = key.clone();
        items[id.index()] = Some(PlanItem {
            name: inst.name.clone(),
            task: task.name.clone(),
            partition: inst.partition.clone(),
            kind: if task.kind == TaskKind::Gate {
                "gate"
            } else {
                "task"
            },
            action: if cached { "cached" } else { "run" },
            cached,
            key,
            reason: (!cached).then_some(reason),
            deps: inst
                .deps
                .iter()
                .map(|d| graph.get(*d).name.clone())
                .collect(),
            commands: crate::exec::work::instance_commands(task, inst),
        });
    }
    let mut instances = Vec::with_capacity(order.len());
    for id in order {
        if let Some(item) = items[id.index()].take() {
            instances.push(item);
        }
    }
    Ok(Plan {
        schema_version: PLAN_SCHEMA_VERSION,
        instances,
    })
}

impl Plan {
    /// The plan as people read it.
    pub fn render(&self) -> String {
        let width = self
            .instances
            .iter()
            .map(|i| i.name.len())
            .max()
            .unwrap_or(0);
        let mut s = String::new();
        for i in &self.instances {
            let key = i
                .key
                .as_deref()
                .map(|k| &k[..12.min(k.len())])
                .unwrap_or("-");
            let why = i
                .reason
                .as_deref()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default();
            s.push_str(&format!(
                "{:<6}  {:<width$}  {key}{why}\n",
                i.action, i.name
            ));
        }
        let cached = self.instances.iter().filter(|i| i.cached).count();
        s.push_str(&format!(
            "\n{} to run, {cached} cached\n",
            self.instances.len() - cached
        ));
        s
    }
}
