//! `hotpass explain TASK[@P]`: would it hit the cache, and if not, every
//! difference from its last recorded run, down to the root cause upstream.

use std::collections::BTreeMap;

use super::run::resolve_graph;
use crate::Context;
use crate::cache::Cache;
use crate::cache::key::{Change, KeyContext, compute, diff};
use crate::cache::store::Lookup;
use crate::config;
use crate::error::{Error, UsageError};
use crate::graph::{InstanceGraph, InstanceId, PartitionArgs};
use crate::hash::Memo;

/// Prints the explanation; exit 0 either way.
pub fn run(ctx: &Context, instance: &str) -> Result<u8, Error> {
    let project = config::load(&ctx.load)?;
    let today =
        crate::partition::today(ctx.today.as_deref()).map_err(|e| UsageError::new(e, None))?;
    let args = PartitionArgs {
        today: Some(today),
        ..Default::default()
    };
    let graph = resolve_graph(&project, &[instance.to_owned()], &args, None)?;
    if graph.selected.len() != 1 {
        return Err(UsageError::new(
            format!(
                "`{instance}` covers {} instances; explain takes one",
                graph.selected.len()
            ),
            Some("name one instance, e.g. TASK@2025-01-01".into()),
        )
        .into());
    }
    // The same salt as a run, so `$NAME` inputs compare with recorded runs.
    let cache = Cache::open(&project.settings.cache_dir).map_err(|e| {
        Error::io(
            format!(
                "opening the cache at {}",
                project.settings.cache_dir.display()
            ),
            e,
        )
    })?;
    let salt = cache
        .salt()
        .map_err(|e| Error::io("reading the cache salt", e))?;
    let memo = Memo::load(Some(cache.memo_path()));
    let cx = KeyContext::new(&project, &memo, salt);
    let mut keys: BTreeMap<InstanceId, crate::cache::key::CacheKey> = BTreeMap::new();
    for id in graph.topo_order() {
        let inst = graph.get(id);
        let deps = inst
            .deps
            .iter()
            .map(|d| (graph.get(*d).name.clone(), keys[d].digest()))
            .collect();
        let k = compute(&cx, inst, deps)
            .map_err(|e| Error::io(format!("hashing the inputs of {}", inst.name), e))?;
        keys.insert(id, k);
    }
    let target = graph.selected[0];
    let name = &graph.get(target).name;
    let key = &keys[&target];
    let digest = key.digest();
    let task = project.task(graph.get(target).task);
    println!("{name}");
    println!("  key: {digest}");
    if !task.cache {
        println!(
            "  not cached: it declares no inputs (set `cache = true` or add inputs to cache it)"
        );
        return Ok(0);
    }
    match cache.lookup(&digest) {
        Lookup::Found(e) => {
            println!(
                "  HIT: a stored result exists (ran in {} ms); `hotpass run {name}` restores it",
                e.duration_ms
            );
            return Ok(0);
        }
        Lookup::Corrupt(why) => {
            println!("  MISS: the stored entry is corrupt ({why}) and will be replaced")
        }
        Lookup::Missing => println!("  MISS: no stored result for this key"),
    }
    explain_changes(&cache, &graph, &keys, target, 1);
    Ok(0)
}

fn explain_changes(
    cache: &Cache,
    graph: &InstanceGraph,
    keys: &BTreeMap<InstanceId, crate::cache::key::CacheKey>,
    id: InstanceId,
    depth: usize,
) {
    let pad = "  ".repeat(depth);
    let inst = graph.get(id);
    let Some(last) = cache.last_run(&inst.name) else {
        println!("{pad}no earlier run of {} is recorded", inst.name);
        return;
    };
    let changes = diff(&last, &keys[&id]);
    if changes.is_empty() {
        println!(
            "{pad}same inputs as the last recorded run of {}, which did not store a result (it failed, was interrupted or was evicted)",
            inst.name
        );
        return;
    }
    println!("{pad}changed since the last recorded run of {}:", inst.name);
    for c in &changes {
        println!("{pad}  - {}", c.describe());
        if let Change::Dep { name } = c
            && let Some(dep) = inst.deps.iter().find(|d| graph.get(**d).name == *name)
        {
            explain_changes(cache, graph, keys, *dep, depth + 2);
        }
    }
}
