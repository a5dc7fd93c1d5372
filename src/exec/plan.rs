//! The plan of a run without running it (`--dry-run`, and `explain`): every
//! instance with its key and whether it would hit the cache, and if not, why
//! — the same `Cache::decide` a run asks.

use std::io;

use serde::Serialize;

use crate::cache::Cache;
use crate::cache::key::{CacheKey, dep_digests, dep_key_tag, result_of};
use crate::cache::policy::{Blobs, Decision, Reason};
use crate::config::Project;
use crate::graph::{InstanceGraph, InstanceId};

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
    #[serde(skip)]
    pub id: InstanceId,
    pub name: String,
    pub task: String,
    pub partition: Option<String>,
    pub kind: &'static str,
    /// `run` or `cached`.
    pub action: &'static str,
    pub cached: bool,
    pub key: Option<String>,
    /// Why it would run (absent when cached).
    pub reason: Option<Reason>,
    /// For a hit: dependencies that re-ran since it was stored and wrote
    /// the same outputs, so it stays cached (early cutoff).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub early_cutoff: Vec<String>,
    pub deps: Vec<String>,
    pub commands: Vec<String>,
    /// The whole key, for `explain` to compare with the last run (kept only
    /// when asked: a large dry run would hold every key in memory).
    #[serde(skip)]
    pub full_key: Option<CacheKey>,
    /// For a hit: how long the stored run took.
    #[serde(skip)]
    pub stored_ms: Option<u64>,
}

/// Whether a plan keeps each instance's whole key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Digests only (the dry run).
    Digests,
    /// The whole keys too (`explain`).
    Whole,
}

/// Plans `graph` against `cache` as it is now, in dependency order.
pub fn plan(
    project: &Project,
    graph: &InstanceGraph,
    cache: &Cache,
    keys: Keys,
) -> io::Result<Plan> {
    // A dependency that would run has no result yet: its key stands in, so
    // its dependents show as running (they may still hit, by early cutoff,
    // once it has run and written the same outputs).
    let mut results: Vec<Option<String>> = vec![None; graph.len()];
    let mut digests: Vec<Option<String>> = vec![None; graph.len()];
    let mut instances = Vec::with_capacity(graph.len());
    for &id in graph.order() {
        let inst = graph.get(id);
        let task = project.task(inst.task);
        let deps = dep_digests(graph, inst, |d| results[d.index()].as_deref());
        let full_key = match (cache.store(), deps) {
            (Some(_), Some(deps)) => Some(cache.key(&task.name, inst, deps)?.0),
            _ => None,
        };
        let digest = full_key.as_ref().map(CacheKey::digest);
        let decision = cache.decide(
            &inst.name,
            task.cache,
            full_key.as_ref().zip(digest.as_deref()),
            Blobs::Check,
        );
        let (reason, stored_ms, early_cutoff) = match &decision {
            Decision::Hit(entry) => {
                let cutoff = entry
                    .dep_keys
                    .iter()
                    .filter(|(name, stored)| {
                        inst.deps.iter().any(|d| {
                            graph.get(*d).name == **name
                                && digests[d.index()].as_deref().map(dep_key_tag)
                                    != Some(stored.as_str())
                        })
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                (None, Some(entry.duration_ms), cutoff)
            }
            Decision::Run(r) => (Some(r.clone()), None, Vec::new()),
        };
        if !graph.dependents(id).is_empty() {
            results[id.index()] = match (&decision, &digest) {
                (Decision::Hit(entry), Some(d)) => Some(result_of(inst, d, &entry.outputs)),
                _ => digest.clone(),
            };
        }
        digests[id.index()] = digest.clone();
        let cached = reason.is_none();
        instances.push(PlanItem {
            id,
            name: inst.name.clone(),
            task: task.name.clone(),
            partition: inst.partition.clone(),
            kind: task.kind_word(),
            action: if cached { "cached" } else { "run" },
            cached,
            key: digest,
            reason,
            early_cutoff,
            deps: inst
                .deps
                .iter()
                .map(|d| graph.get(*d).name.clone())
                .collect(),
            commands: inst.resolved.commands.clone(),
            full_key: full_key.filter(|_| keys == Keys::Whole),
            stored_ms,
        });
    }
    Ok(Plan {
        schema_version: PLAN_SCHEMA_VERSION,
        instances,
    })
}

impl Plan {
    /// The item of instance `id`.
    pub fn item(&self, id: InstanceId) -> Option<&PlanItem> {
        self.instances.iter().find(|i| i.id == id)
    }

    /// The plan as people read it.
    pub fn render(&self) -> String {
        let width = self
            .instances
            .iter()
            .map(|i| i.name.len())
            .max()
            .unwrap_or(0)
            .min(60);
        let mut s = String::new();
        for i in &self.instances {
            let key = i
                .key
                .as_deref()
                .map(|k| &k[..12.min(k.len())])
                .unwrap_or("-");
            let why = i
                .reason
                .as_ref()
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
