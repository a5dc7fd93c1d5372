//! `hotpass explain TASK[@P]`: would it hit the cache, and if not, every
//! difference from its last recorded run, down to the root cause upstream.

use super::start;
use crate::Context;
use crate::cache::Cache;
use crate::cache::key::{Change, diff};
use crate::cache::policy::Reason;
use crate::error::Error;
use crate::exec::plan::Plan;
use crate::graph::{InstanceGraph, InstanceId};

/// Prints the explanation; exit 0 either way.
pub fn run(ctx: &Context, instance: &str) -> Result<u8, Error> {
    let start::Planned {
        project,
        graph,
        target,
        cache,
        plan,
    } = start::planned(ctx, instance)?;
    let item = plan.item(target).expect("the target is planned");
    let task = project.task(graph.get(target).task);
    println!("{}", item.name);
    println!("  key: {}", item.key.as_deref().unwrap_or("-"));
    if !task.cache {
        println!(
            "  not cached: it declares no inputs (set `cache = true` or add inputs to cache it)"
        );
        return Ok(0);
    }
    match &item.reason {
        None if item
            .key
            .as_deref()
            .is_some_and(|k| !cache.has_local_entry(k)) =>
        {
            println!(
                "  HIT: the remote cache has it (ran in {} ms); `hotpass run {}` downloads and restores it",
                item.stored_ms.unwrap_or(0),
                item.name
            );
            return Ok(0);
        }
        None => {
            println!(
                "  HIT: a stored result exists (ran in {} ms); `hotpass run {}` restores it",
                item.stored_ms.unwrap_or(0),
                item.name
            );
            for dep in &item.early_cutoff {
                println!(
                    "  dep:{dep} re-ran since then, outputs unchanged (early cutoff): still a hit"
                );
            }
            return Ok(0);
        }
        Some(Reason::CorruptEntry) => {
            println!("  MISS: the stored entry is corrupt and will be replaced")
        }
        Some(Reason::RestoreFailed) => {
            println!("  MISS: the stored entry's files are missing and will be replaced")
        }
        Some(_) if cache.has_remote() => {
            println!("  MISS: no stored result for this key, here or on the remote cache")
        }
        Some(_) => println!("  MISS: no stored result for this key"),
    }
    explain_changes(&cache, &graph, &plan, target, 1);
    Ok(0)
}

fn explain_changes(
    cache: &Cache,
    graph: &InstanceGraph,
    plan: &Plan,
    id: InstanceId,
    depth: usize,
) {
    let pad = "  ".repeat(depth);
    let inst = graph.get(id);
    let Some(last) = cache.last_run(&inst.name) else {
        println!("{pad}no earlier run of {} is recorded", inst.name);
        return;
    };
    let Some(key) = plan.item(id).and_then(|i| i.full_key.as_ref()) else {
        return;
    };
    let changes = diff(&last, key);
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
            explain_changes(cache, graph, plan, *dep, depth + 2);
        }
    }
}
