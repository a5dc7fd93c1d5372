//! `hotpass partitions TASK`: each partition's state, from the cache's
//! records, like a partition health bar. Nothing runs.

use serde::Serialize;

use super::start::{self, Selection};
use crate::Context;
use crate::cache::{Cache, Mode};
use crate::cli::PartitionFlags;
use crate::error::{Error, UsageError};
use crate::exec::plan::{Keys, plan};

/// How many partitions of a time partitioning are shown by default.
const RECENT: usize = 30;

/// Where one partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// A stored success for its inputs as they are now: a run restores it.
    Cached,
    /// It succeeded once, but its inputs (or a dependency's result) have
    /// changed since: a run re-runs it.
    Stale,
    /// Its last run did not store a result (failed or was interrupted).
    Failed,
    /// No run of it is recorded.
    NeverRun,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Cached => "cached",
            State::Stale => "stale",
            State::Failed => "failed",
            State::NeverRun => "never run",
        }
    }
}

#[derive(Debug, Serialize)]
struct Row {
    partition: String,
    instance: String,
    state: State,
    key: Option<String>,
}

/// Prints the partitions of `task`; exit 0.
pub fn run(ctx: &Context, task: &str, json: bool, flags: &PartitionFlags) -> Result<u8, Error> {
    let project = crate::config::load(&ctx.load)?;
    let selectors = [task.to_owned()];
    let selection = |flags| Selection {
        selectors: &selectors,
        partitions: flags,
        shard: None,
        guardrail: false,
    };
    let Some(t) = project.find(task) else {
        // The selector's own error: the closest names.
        start::select(ctx, &project, &selection(&PartitionFlags::default()))?;
        return Err(UsageError::new(format!("`{task}` is not a task"), None).into());
    };
    let Some(spec) = &project.task(t).partitions else {
        return Err(UsageError::new(
            format!("`{task}` is not partitioned"),
            Some("`hotpass list` shows which tasks are".into()),
        )
        .into());
    };
    // By default the recent end of a time partitioning, every value or file.
    let mut flags = flags.clone();
    if flags.partition.is_none() && flags.backfill.is_none() && spec.kind().is_time() {
        let args = start::partition_args(ctx, &flags)?;
        let recent = spec
            .recent(args.clock, RECENT)
            .map_err(|e| UsageError::new(format!("`{task}`: {e}"), None))?;
        if let (Some(first), Some(last)) = (recent.first(), recent.last()) {
            flags.backfill = Some(format!("{first}..{last}"));
        }
    } else if flags.partition.is_none() && flags.backfill.is_none() {
        let stems = spec
            .with_files(&project.root)
            .and_then(|s| s.latest(crate::partition::Clock::default()))
            .map_err(|e| UsageError::new(format!("`{task}`: {e}"), None))?;
        if stems.is_empty() {
            println!("{task} has no partitions now");
            return Ok(0);
        }
    }
    let graph = start::select(ctx, &project, &selection(&flags))?;
    let dir = &project.settings.cache_dir;
    let cache = Cache::open(dir, Mode::Normal)
        .map_err(|e| Error::io(format!("opening the cache at {}", dir.display()), e))?;
    let planned = plan(&project, &graph, &cache, Keys::Digests)
        .map_err(|e| Error::io(format!("hashing the inputs of {task}"), e))?;
    let mut rows: Vec<Row> = planned
        .instances
        .into_iter()
        .filter(|i| i.task == project.task(t).name && i.partition.is_some())
        .map(|i| {
            let state = if i.cached {
                State::Cached
            } else {
                match cache.last_run(&i.name) {
                    None => State::NeverRun,
                    Some(last) if cache.has_local_entry(&last.digest()) => State::Stale,
                    Some(_) => State::Failed,
                }
            };
            Row {
                partition: i.partition.clone().unwrap_or_default(),
                instance: i.name,
                state,
                key: i.key,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.partition.cmp(&b.partition));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serialisable")
        );
        return Ok(0);
    }
    let count = |s: State| rows.iter().filter(|r| r.state == s).count();
    let counts = format!(
        "{} partitions: {} cached, {} stale, {} failed, {} never run",
        rows.len(),
        count(State::Cached),
        count(State::Stale),
        count(State::Failed),
        count(State::NeverRun)
    );
    if ctx.terminal {
        let paint = |s: State| {
            let (code, mark) = match s {
                State::Cached => ("32", "█"),
                State::Stale => ("33", "█"),
                State::Failed => ("31", "█"),
                State::NeverRun => ("2", "·"),
            };
            if ctx.color {
                format!("\x1b[{code}m{mark}\x1b[0m")
            } else {
                mark.to_owned()
            }
        };
        let bar: String = rows.iter().map(|r| paint(r.state)).collect();
        let (first, last) = (
            rows.first().map_or("", |r| r.partition.as_str()),
            rows.last().map_or("", |r| r.partition.as_str()),
        );
        println!("{task}  {first} {bar} {last}");
        println!("{counts}");
        for r in rows
            .iter()
            .filter(|r| matches!(r.state, State::Failed | State::Stale))
        {
            println!("  {:<10} {}", r.state.word(), r.partition);
        }
    } else {
        let w = rows
            .iter()
            .map(|r| r.partition.len())
            .max()
            .unwrap_or(9)
            .max(9);
        println!("{:<w$}  STATE", "PARTITION");
        for r in &rows {
            println!("{:<w$}  {}", r.partition, r.state.word());
        }
        println!("{counts}");
    }
    Ok(0)
}
