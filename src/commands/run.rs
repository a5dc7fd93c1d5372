//! `hotpass run`: select, plan, run with the cache, report.

use super::start::{self, Selection};
use crate::Context;
use crate::cache::{Cache, Mode, Preread};
use crate::cli::{ReportFormat, RunArgs};
use crate::error::{EXIT_FAILED, EXIT_OK, Error, UsageError};
use crate::exec::scheduler::{self, Options};
use crate::exec::work::{AuditScope, CachedRunner};
use crate::report::out;
use crate::report::summary::Summary;

/// Runs the selection and returns the exit code.
pub fn run(ctx: &Context, args: &RunArgs) -> Result<u8, Error> {
    let audit = args.audit.map(|format| (AuditScope::All, format));
    run_with(ctx, args, audit)
}

/// `hotpass audit INSTANCE`: runs it (and, through the cache, what it
/// depends on) with the audit on for it alone.
pub fn audit(ctx: &Context, instance: &str, json: bool, jobs: Option<usize>) -> Result<u8, Error> {
    let args = RunArgs {
        selectors: vec![instance.to_owned()],
        jobs,
        ..RunArgs::default()
    };
    let format = if json {
        ReportFormat::Json
    } else {
        ReportFormat::Text
    };
    run_with(ctx, &args, Some((AuditScope::Selected, format)))
}

/// Runs the selection, auditing what `audit` names, and returns the exit code.
fn run_with(
    ctx: &Context,
    args: &RunArgs,
    audit: Option<(AuditScope, ReportFormat)>,
) -> Result<u8, Error> {
    let mode = Mode::from_flags(args.force, args.no_cache);
    // Rayon's threads load the project, whose checks recurse deeply: they
    // get the stack the main thread has. Rayon would find the CPU count
    // again; it is known.
    let mut pool = rayon::ThreadPoolBuilder::new().stack_size(8 << 20);
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        pool = pool.num_threads(crate::cpus());
    }
    let _ = pool.build_global();
    let selection = Selection {
        selectors: &args.selectors,
        partitions: &args.partitions,
        shard: args.shard.as_deref(),
        guardrail: true,
    };
    // Reading the cache's state file takes about as long as loading the
    // project and building the graph: it is read alongside them, from where
    // the cache usually is, without creating or changing anything there;
    // it is used if the project's settings leave the cache there. Both go
    // on rayon's threads (one more busy thread would compete with them for
    // the CPUs).
    let usual = crate::config::load::usual_cache_dir(&ctx.load)
        .filter(|dir| args.dry_run.is_none() && mode != Mode::Disabled && dir.is_dir());
    let early: std::sync::OnceLock<Preread> = std::sync::OnceLock::new();
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let loaded = rayon::scope(|s| {
        if let Some(dir) = usual {
            let (early, dispatch) = (&early, &dispatch);
            s.spawn(move |_| {
                tracing::dispatcher::with_default(dispatch, || {
                    let t = std::time::Instant::now();
                    let _ = early.set(Preread::read(&dir));
                    tracing::debug!("read the cache's state in {:?}", t.elapsed());
                })
            });
        }
        // Rayon's threads say their warnings through this one's subscriber.
        tracing::dispatcher::with_default(&dispatch, || {
            let project = start::load(ctx, !args.no_cache)?;
            let graph = start::select(ctx, &project, &selection)?;
            Ok::<_, Error>((project, graph))
        })
    });
    let (project, graph) = loaded?;
    let dir = &project.settings.cache_dir;
    // A usage error must not make the cache folder: it is opened after.
    let opened = (args.dry_run.is_none() && dir.is_dir())
        .then(|| Cache::open_or_uncached_with(dir, mode, early.into_inner()));
    let jobs = start::jobs(&project, args.jobs)?;
    if args.strict || project.settings.strict {
        super::strict::check(&project, &graph)?;
    }
    if audit.is_some()
        && let Err(why) = crate::audit::notify::available()
    {
        return Err(UsageError::new(
            format!("the input audit cannot run here: {why}"),
            Some(
                "the audit needs Linux with seccomp filters: user notification (5.5 and later), \
                 or ptrace"
                    .into(),
            ),
        )
        .into());
    }
    let audited = AuditScope::instances(audit.map(|(scope, _)| scope), &graph);
    start::check_sandbox(&project, &graph, |id| audited[id.index()])?;

    if let Some(format) = args.dry_run {
        // The same cache (and salt) as a run, so the keys shown are the
        // run's; a cache that cannot be opened plans uncached, as a run runs.
        let cache = Cache::open_or_uncached(&project.settings.cache_dir, mode)
            .with_remote(project.settings.remote_cache.as_ref());
        let plan =
            crate::exec::plan::plan(&project, &graph, &cache, crate::exec::plan::Keys::Digests)
                .map_err(|e| Error::io("planning the run", e))?;
        match format {
            ReportFormat::Json => out(format!(
                "{}\n",
                serde_json::to_string_pretty(&plan).expect("serialisable")
            )
            .as_bytes()),
            ReportFormat::Text => out(plan.render().as_bytes()),
        }
        return Ok(EXIT_OK);
    }

    let cache = opened
        .unwrap_or_else(|| Cache::open_or_uncached(dir, mode))
        .with_remote(project.settings.remote_cache.as_ref());
    let what = args.selectors.join(" ");
    let telemetry = crate::report::telemetry::endpoint(&project).and_then(|(url, service)| {
        crate::report::telemetry::Telemetry::start(url, service, graph.len(), &what)
    });
    let runner = CachedRunner::new(&project, &graph, cache, ctx.color)
        .with_telemetry(telemetry.clone())
        .with_audit(audited);
    // `--audit=json`: stdout is the JSON's alone; the run talks on stderr.
    let json_out = match audit {
        Some((_, ReportFormat::Json)) => Some(
            crate::report::stdout_to_stderr()
                .map_err(|e| Error::io("keeping stdout for the audit's JSON", e))?,
        ),
        _ => None,
    };
    let mut reporters = start::reporters(ctx, &graph);
    if let Some(t) = &telemetry {
        reporters.push(Box::new(crate::report::telemetry::TelemetryReporter::new(
            t.clone(),
            &project,
            &graph,
        )));
    }
    let lineage = crate::report::lineage::target(&project).map(|(target, namespace)| {
        crate::report::lineage::Lineage::start(target, namespace, &what)
    });
    if let Some(l) = &lineage {
        reporters.push(Box::new(crate::report::lineage::LineageReporter::new(
            l.clone(),
            &project,
            &graph,
        )));
    }
    let opts = Options {
        jobs,
        keep_going: args.keep_going,
        done: Default::default(),
        keep_services: false,
    };
    let started = jiff::Timestamp::now();
    let t = std::time::Instant::now();
    let result = scheduler::run(&project, &graph, &runner, &mut reporters, &opts);
    let finished = jiff::Timestamp::now();
    tracing::debug!("ran the graph in {:?}", t.elapsed());
    drop(reporters);
    let t = std::time::Instant::now();
    runner.finish();
    tracing::debug!("saved the cache's state in {:?}", t.elapsed());
    if let Some(l) = &lineage {
        l.finish(result.any_failed(), result.interrupted);
    }
    if let Some(t) = &telemetry {
        t.finish(result.any_failed(), result.interrupted);
    }

    let code = if result.interrupted {
        crate::error::exit_for_signal(result.signal)
    } else if result.any_failed() {
        EXIT_FAILED
    } else {
        EXIT_OK
    };
    // `-q` prints the counts alone: the per-instance lists are built only
    // when something shows or writes them.
    let mut summary = if ctx.quiet && args.summary.is_none() {
        Summary::counts_only(&graph, &result, code)
    } else {
        Summary::new(&project, &graph, &result, code)
    };
    summary.remote_cache = runner.remote_report();
    if ctx.quiet {
        out(summary.counts_line().as_bytes());
    } else {
        out(summary.render(ctx.color).as_bytes());
    }
    if audit.is_some() {
        let mut reports = runner.take_audits();
        reports.sort_by(|a, b| a.instance.cmp(&b.instance));
        match json_out {
            Some(mut stdout) => {
                use std::io::Write;
                let json = crate::audit::to_json(&reports);
                let _ = writeln!(stdout, "{json}");
            }
            None => {
                let mut text = String::from("\n");
                for r in &reports {
                    if !r.clean {
                        text.push('\n');
                    }
                    text.push_str(&r.render(&project));
                }
                let unclean = reports.iter().filter(|r| !r.clean).count();
                text.push_str(&match (reports.len(), unclean) {
                    (0, _) => "audit: nothing ran, so nothing was audited\n".to_owned(),
                    (n, 0) => format!("\naudit: {n} audited, all clean\n"),
                    (n, u) => format!(
                        "\naudit: {u} of {n} audited touched files they do not declare; \
                         paste the suggested edits, or run `hotpass audit INSTANCE --json`\n"
                    ),
                });
                out(text.as_bytes());
            }
        }
    }
    let write = |path: &std::path::PathBuf, text: String| {
        crate::atomic::write_atomic(&ctx.cwd.join(path), text.as_bytes())
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
    let provenance = args
        .provenance
        .clone()
        .or_else(|| project.settings.provenance.clone());
    if let Some(path) = provenance {
        use crate::report::provenance as prov;
        let statement = prov::statement(
            &project,
            &graph,
            &result,
            runner.cache(),
            &prov::Run {
                invocation: runner.invocation(),
                selectors: &args.selectors,
                partition: args.partitions.partition.as_deref(),
                backfill: args.partitions.backfill.as_deref(),
                subjects: &args.provenance_subjects,
                started,
                finished,
            },
        )
        .map_err(|e| Error::io("recording the provenance", e))?;
        let document = match std::env::var_os("HOTPASS_PROVENANCE_KEY").filter(|v| !v.is_empty()) {
            Some(key) => {
                let key = prov::signing_key(std::path::Path::new(&key)).map_err(|why| {
                    Error::io(
                        "signing the provenance (HOTPASS_PROVENANCE_KEY)",
                        std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
                    )
                })?;
                prov::envelope(&statement, &key)
            }
            None => statement,
        };
        write(
            &path,
            serde_json::to_string_pretty(&document).expect("serialisable"),
        )?;
    }
    // The process ends next: freeing the graph, the results and the cache's
    // tables one allocation at a time would cost a large no-op more than
    // its checks (the OS takes the memory back at once).
    std::mem::forget(summary);
    std::mem::forget(result);
    std::mem::forget(runner);
    std::mem::forget(graph);
    std::mem::forget(project);
    Ok(code)
}
