//! The start-up `run`, `watch`, `graph` and `explain` share: load the
//! project, read the partition flags, select the instances, and pick the
//! reporters for this terminal.

use crate::Context;
use crate::cache::{Cache, Mode};
use crate::cli::PartitionFlags;
use crate::config::{self, Project};
use crate::error::{Error, UsageError};
use crate::exec::plan::{Keys, Plan, plan};
use crate::graph::{InstanceGraph, InstanceId, PartitionArgs, Shard, parse_selectors};
use crate::partition;
use crate::report::lines::LineReporter;
use crate::report::terminal::TerminalReporter;
use crate::report::{Fanout, OutputMode, Reporter};
use crate::warning::Warning;

/// A loaded project and the instances one command covers.
pub struct Session {
    pub project: Project,
    pub graph: InstanceGraph,
}

/// What a command selects.
pub struct Selection<'a> {
    pub selectors: &'a [String],
    pub partitions: &'a PartitionFlags,
    /// `--shard K/N`, for `run`.
    pub shard: Option<&'a str>,
    /// Whether the backfill guardrail applies (it does to commands that run).
    pub guardrail: bool,
}

/// Reads `--partition`, `--backfill` and `HOTPASS_TODAY`.
pub fn partition_args(ctx: &Context, flags: &PartitionFlags) -> Result<PartitionArgs, Error> {
    let clock = partition::clock(ctx.now.as_deref(), ctx.today.as_deref()).map_err(|e| {
        UsageError::new(
            e.to_string(),
            Some(
                "set HOTPASS_NOW to a time like 2025-06-30T14:00:00Z or HOTPASS_TODAY to a date like 2025-06-30, or unset them"
                    .into(),
            ),
        )
    })?;
    let backfill = match &flags.backfill {
        Some(r) => {
            let (a, b) =
                partition::split_range(r).map_err(|e| UsageError::new(e.to_string(), None))?;
            Some((a.to_owned(), b.to_owned()))
        }
        None => None,
    };
    Ok(PartitionArgs {
        partition: flags.partition.clone(),
        backfill,
        clock,
        newest_first: flags.order == crate::cli::Order::NewestFirst,
    })
}

/// Loads the project and builds the graph of `selection`.
pub fn session(ctx: &Context, selection: &Selection) -> Result<Session, Error> {
    let project = load(ctx, true)?;
    let graph = select(ctx, &project, selection)?;
    Ok(Session { project, graph })
}

/// Loads the project; with `keep`, through the parsed project kept in the
/// cache folder (`run --no-cache` neither reads nor writes it).
pub fn load(ctx: &Context, keep: bool) -> Result<Project, Error> {
    let t = std::time::Instant::now();
    let project = if keep {
        config::load(&ctx.load)?
    } else {
        config::load_fresh(&ctx.load)?
    };
    tracing::debug!("loaded {} tasks in {:?}", project.tasks.len(), t.elapsed());
    Ok(project)
}

/// Builds the graph of `selection` in a loaded project.
pub fn select(
    ctx: &Context,
    project: &Project,
    selection: &Selection,
) -> Result<InstanceGraph, Error> {
    let args = partition_args(ctx, selection.partitions)?;
    let sel = parse_selectors(project, selection.selectors)?;
    let limit = selection
        .guardrail
        .then_some(project.settings.backfill_limit);
    let t = std::time::Instant::now();
    let mut graph = InstanceGraph::build(project, &sel, &args, limit)?;
    if let Some(s) = selection.shard {
        graph = s.parse::<Shard>()?.apply(graph);
    }
    tracing::debug!("planned {} instances in {:?}", graph.len(), t.elapsed());
    Ok(graph)
}

/// Loads the project and selects exactly one instance (`explain`, `inputs`).
pub fn one_instance(ctx: &Context, instance: &str) -> Result<(Session, InstanceId), Error> {
    let selectors = [instance.to_owned()];
    let session = session(
        ctx,
        &Selection {
            selectors: &selectors,
            partitions: &PartitionFlags::default(),
            shard: None,
            guardrail: false,
        },
    )?;
    match *session.graph.selected() {
        [target] => Ok((session, target)),
        ref many => Err(UsageError::new(
            format!("`{instance}` covers {} instances; name one", many.len()),
            Some("name one instance, e.g. TASK@2025-01-01".into()),
        )
        .into()),
    }
}

/// One instance planned against the cache with whole keys: what `explain`
/// and `inputs` look at.
pub struct Planned {
    pub project: Project,
    pub graph: InstanceGraph,
    pub target: InstanceId,
    pub cache: Cache,
    pub plan: Plan,
}

/// Selects one instance and plans the graph up to it with the same cache
/// and salt as a run, so that keys and `$NAME` digests compare with
/// recorded runs.
pub fn planned(ctx: &Context, instance: &str) -> Result<Planned, Error> {
    let (Session { project, graph }, target) = one_instance(ctx, instance)?;
    let dir = &project.settings.cache_dir;
    let cache = Cache::open(dir, Mode::Normal)
        .map_err(|e| Error::io(format!("opening the cache at {}", dir.display()), e))?
        .with_remote(project.settings.remote_cache.as_ref());
    let plan = plan(&project, &graph, &cache, Keys::Whole)
        .map_err(|e| Error::io(format!("hashing the inputs of {instance}"), e))?;
    Ok(Planned {
        project,
        graph,
        target,
        cache,
        plan,
    })
}

/// `-j`: at least 1, or the configured default.
pub fn jobs(project: &Project, flag: Option<usize>) -> Result<usize, Error> {
    match flag {
        Some(0) => Err(jobs_flag_error()),
        Some(n) => Ok(n),
        None => Ok(project.settings.jobs),
    }
}

/// The error for `-j 0`.
pub fn jobs_flag_error() -> Error {
    UsageError::new(
        "-j 0 would run nothing",
        Some("give at least 1, or leave -j out to use every CPU".into()),
    )
    .into()
}

/// Says once, in watch mode, that lineage and traces come from `hotpass
/// run` only, so nobody waits for events a watch loop will not send.
pub fn warn_watch_reports(project: &Project) {
    let env = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    if project.settings.lineage.is_some()
        || project.settings.telemetry.is_some()
        || env("OPENLINEAGE_URL")
        || env("OTEL_EXPORTER_OTLP_ENDPOINT")
    {
        Warning::Unsupported(
            "lineage events and traces are sent by `hotpass run`, not by `hotpass watch`",
        )
        .emit();
    }
}

/// The reporters for this context: the live view on a terminal, prefixed
/// lines otherwise.
pub fn reporters<'a>(ctx: &Context, graph: &'a InstanceGraph) -> Fanout<'a> {
    let on_terminal = ctx.terminal && !ctx.github && ctx.output != OutputMode::Prefixed;
    let view: Box<dyn Reporter + Send + 'a> = if on_terminal {
        Box::new(TerminalReporter::new(
            graph, ctx.color, ctx.quiet, ctx.output,
        ))
    } else {
        Box::new(LineReporter::new(graph, ctx.github, ctx.quiet))
    };
    Fanout::new(vec![view])
}

/// Tasks that ask for the sandbox when Landlock is unavailable: with
/// `sandbox = true` the run is refused (exit 2, pointing at the setting);
/// with `"best-effort"` they run unconfined, said once.
pub fn check_sandbox(
    project: &Project,
    graph: &InstanceGraph,
    audited: impl Fn(InstanceId) -> bool,
) -> Result<(), Error> {
    let mut wanted: Vec<config::TaskId> = graph
        .iter()
        .filter(|(id, inst)| {
            !audited(*id) && project.task(inst.task).sandbox != config::Sandbox::Off
        })
        .map(|(_, inst)| inst.task)
        .collect();
    wanted.sort();
    wanted.dedup();
    if wanted.is_empty() {
        return Ok(());
    }
    let Err(why) = crate::sandbox::available() else {
        return Ok(());
    };
    let mut problems = Vec::new();
    let mut best_effort = 0;
    for id in wanted {
        let task = project.task(id);
        if task.sandbox == config::Sandbox::BestEffort {
            best_effort += 1;
            continue;
        }
        let message = format!("`{}` must run in the sandbox, but {why}", task.name);
        let problem = match &task.sandbox_at {
            Some(at) => config::Problem::at(
                config::ProblemKind::InvalidValue,
                &project.files[at.file],
                at.span.clone(),
                message,
                "sandbox required here",
            ),
            None => config::Problem::bare(config::ProblemKind::InvalidValue, message),
        };
        problems.push(problem.with_help(
            "set sandbox = \"best-effort\" to run it unconfined where Landlock is missing, \
             or run on Linux 5.13 or later with Landlock enabled",
        ));
    }
    if best_effort > 0 {
        tracing::warn!(
            "{why}: {best_effort} task(s) with sandbox = \"best-effort\" run outside the sandbox"
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(config::ConfigErrors { problems }.into())
    }
}
