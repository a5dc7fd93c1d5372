//! `hotpass run`: select, plan, run with the cache, report.

use std::collections::BTreeSet;

use crate::cli::{DryRunFormat, PartitionFlags, RunArgs};
use crate::config::{self, Project};
use crate::error::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Error, UsageError};
use crate::exec::Status;
use crate::exec::scheduler::{self, Options};
use crate::exec::work::CachedRunner;
use crate::graph::{InstanceGraph, InstanceId, PartitionArgs, parse_selectors};
use crate::report::lines::LineReporter;
use crate::report::summary::Summary;
use crate::report::terminal::TerminalReporter;
use crate::report::{Reporter, out};
use crate::{Context, partition};

/// Reads `--partition`, `--backfill` and `HOTPASS_TODAY`.
pub fn partition_args(ctx: &Context, flags: &PartitionFlags) -> Result<PartitionArgs, Error> {
    let today = partition::today(ctx.today.as_deref()).map_err(|e| {
        UsageError::new(
            e,
            Some("set HOTPASS_TODAY to a date like 2025-06-30, or unset it".into()),
        )
    })?;
    let backfill = match &flags.backfill {
        Some(r) => {
            let (a, b) = partition::split_range(r).map_err(|e| UsageError::new(e, None))?;
            Some((a.to_owned(), b.to_owned()))
        }
        None => None,
    };
    Ok(PartitionArgs {
        partition: flags.partition.clone(),
        backfill,
        today: Some(today),
    })
}

/// Selectors → instance graph.
pub fn resolve_graph(
    project: &Project,
    selectors: &[String],
    args: &PartitionArgs,
    limit: Option<usize>,
) -> Result<InstanceGraph, Error> {
    let sel = parse_selectors(project, selectors)?;
    Ok(InstanceGraph::build(project, &sel, args, limit)?)
}

/// The cached runner, or, when the cache folder cannot be opened, an uncached
/// one with a warning: a broken cache never fails a run.
pub fn open_runner<'a>(
    project: &'a Project,
    graph: &'a InstanceGraph,
    mode: crate::cache::Mode,
) -> CachedRunner<'a> {
    CachedRunner::new(project, graph, mode).unwrap_or_else(|e| {
        tracing::warn!(
            "cannot open the cache at {} ({e}); running without the cache",
            project.settings.cache_dir.display()
        );
        CachedRunner::new(project, graph, crate::cache::Mode::Disabled)
            .expect("an uncached runner opens nothing")
    })
}

/// Says once that configured remote services are not used by this version,
/// so nobody believes a remote cache or lineage is working when it is not.
pub fn warn_unsupported(project: &Project) {
    let env = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    if project.settings.remote_cache.is_some() || env("HOTPASS_REMOTE_CACHE") {
        tracing::warn!(
            "a remote cache is configured, but this version of hotpass only uses the local cache"
        );
    }
    if project.settings.lineage.is_some() || env("OPENLINEAGE_URL") {
        tracing::warn!(
            "lineage is configured, but this version of hotpass does not emit OpenLineage events yet"
        );
    }
    if project.settings.telemetry.is_some() {
        tracing::warn!(
            "telemetry is configured, but this version of hotpass does not export traces yet"
        );
    }
}

/// Parses `K/N` (1-based).
fn parse_shard(s: &str) -> Result<(u64, u64), UsageError> {
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
    Ok((k, n))
}

/// Keeps the selected instances whose stable hash falls in shard K of N,
/// plus everything they depend on.
fn shard(graph: InstanceGraph, k: u64, n: u64) -> InstanceGraph {
    let keep_root = |name: &str| {
        let h = blake3::hash(name.as_bytes());
        let v = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        v % n == k - 1
    };
    let mut keep: BTreeSet<usize> = BTreeSet::new();
    let mut stack: Vec<InstanceId> = graph
        .selected
        .iter()
        .copied()
        .filter(|id| keep_root(&graph.get(*id).name))
        .collect();
    while let Some(id) = stack.pop() {
        if keep.insert(id.index()) {
            stack.extend(graph.get(id).deps.iter().copied());
        }
    }
    let remap: std::collections::HashMap<usize, u32> = keep
        .iter()
        .enumerate()
        .map(|(new, old)| (*old, new as u32))
        .collect();
    let instances = keep
        .iter()
        .map(|old| {
            let mut inst = graph.instances[*old].clone();
            inst.deps = inst
                .deps
                .iter()
                .map(|d| InstanceId(remap[&d.index()]))
                .collect();
            inst
        })
        .collect();
    let selected = graph
        .selected
        .iter()
        .filter_map(|id| remap.get(&id.index()).map(|n| InstanceId(*n)))
        .collect();
    InstanceGraph {
        instances,
        selected,
    }
}

/// The reporter for this context: live view on a terminal, lines otherwise.
pub fn make_reporter<'a>(ctx: &Context, graph: &'a InstanceGraph) -> Box<dyn Reporter + Send + 'a> {
    if ctx.terminal && !ctx.github {
        Box::new(TerminalReporter::new(graph, ctx.color))
    } else {
        Box::new(LineReporter::new(graph, ctx.github))
    }
}

/// Runs the selection and returns the exit code.
pub fn run(ctx: &Context, args: &RunArgs) -> Result<u8, Error> {
    let project = config::load(&ctx.load)?;
    warn_unsupported(&project);
    let pargs = partition_args(ctx, &args.partitions)?;
    let mut graph = resolve_graph(
        &project,
        &args.selectors,
        &pargs,
        Some(project.settings.backfill_limit),
    )?;
    if let Some(s) = &args.shard {
        let (k, n) = parse_shard(s)?;
        graph = shard(graph, k, n);
    }
    if args.jobs == Some(0) {
        return Err(UsageError::new(
            "-j 0 would run nothing",
            Some("give at least 1, or leave -j out to use every CPU".into()),
        )
        .into());
    }
    let jobs = args.jobs.unwrap_or(project.settings.jobs);
    let cache_mode = crate::cache::Mode::from_flags(args.force, args.no_cache);

    if let Some(format) = args.dry_run {
        let plan = crate::exec::plan::plan(&project, &graph, cache_mode)
            .map_err(|e| Error::io("planning the run", e))?;
        match format {
            DryRunFormat::Json => out(format!(
                "{}\n",
                serde_json::to_string_pretty(&plan).expect("serialisable")
            )
            .as_bytes()),
            DryRunFormat::Text => out(plan.render().as_bytes()),
        }
        return Ok(EXIT_OK);
    }

    let runner = open_runner(&project, &graph, cache_mode);
    let mut reporter = make_reporter(ctx, &graph);
    let opts = Options {
        jobs,
        keep_going: args.keep_going,
        grace: std::time::Duration::from_secs(2),
        done: Default::default(),
    };
    let result = scheduler::run(&project, &graph, &runner, reporter.as_mut(), &opts);
    drop(reporter);
    runner.finish();

    let failed = result.outcomes.iter().any(|o| {
        matches!(
            o.status,
            Status::Failed { .. } | Status::TimedOut | Status::Interrupted
        )
    });
    let code = if result.interrupted {
        EXIT_INTERRUPTED
    } else if failed {
        EXIT_FAILED
    } else {
        EXIT_OK
    };
    let summary = Summary::new(&project, &graph, &result, code);
    if !(ctx.quiet && code == EXIT_OK) {
        out(summary.render(ctx.color).as_bytes());
    }
    let write = |path: &std::path::PathBuf, text: String| {
        crate::cache::store::write_atomic(&ctx.cwd.join(path), text.as_bytes())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    };
    if let Some(path) = &args.summary {
        write(
            path,
            serde_json::to_string_pretty(&summary).expect("serialisable"),
        )?;
    }
    if let Some(path) = &args.junit {
        write(
            path,
            crate::report::junit::render(&project, &graph, &result),
        )?;
    }
    if let Some(path) = &args.profile {
        write(path, crate::report::trace::render(&graph, &result))?;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::parse_shard;

    #[test]
    fn shards_are_one_based_and_bounded() {
        assert_eq!(parse_shard("1/3").unwrap(), (1, 3));
        assert!(parse_shard("0/3").is_err());
        assert!(parse_shard("4/3").is_err());
        assert!(parse_shard("x").is_err());
    }
}
