//! `hotpass doctor`: checks the config, that every command's program is on
//! PATH, and that the cache folder is writable and healthy; prints a verdict
//! per check and exits 1 when something is wrong.

use std::path::Path;

use super::{start, strict};
use std::collections::BTreeMap;

use crate::Context;
use crate::cache::local::LocalStore;
use crate::cache::{Cache, Mode};
use crate::cli::PartitionFlags;
use crate::config;
use crate::error::Error;
use crate::exec::plan::{Keys, plan};
use crate::graph::InstanceGraph;

use crate::config::program::{SHELL_WORDS, first_program};

fn on_path(program: &str, cwd: &Path) -> bool {
    if program.contains('/') {
        return cwd.join(program).exists();
    }
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let p = dir.join(program);
            p.metadata().is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}

/// Lists input globs that match no file, and output globs that matched
/// nothing since their task last ran: both leave a task wrongly cached.
fn globs(
    project: &config::Project,
    graph: &InstanceGraph,
    verdict: &mut impl FnMut(bool, &str, String),
) {
    let name = |id, n, outputs: bool| {
        let inst = graph.get(id);
        let task = project.task(inst.task);
        let (glob, at) = if outputs {
            (
                &inst.resolved.outputs[n],
                project.output_glob_location(task, n),
            )
        } else {
            (
                &inst.resolved.input_globs[n],
                project.input_glob_location(task, n),
            )
        };
        format!("`{glob}` of {} ({at})", inst.name)
    };
    let empty: Vec<String> = strict::empty_inputs(project, graph)
        .into_iter()
        .map(|(id, n)| name(id, n, false))
        .collect();
    if empty.is_empty() {
        verdict(
            true,
            "input globs",
            "every input glob matches a file".into(),
        );
    } else {
        verdict(
            false,
            "input globs",
            format!("matching no file: {}", empty.join(", ")),
        );
    }
    let store = LocalStore::at(&project.settings.cache_dir);
    let empty: Vec<String> = strict::empty_outputs(project, graph, |i| store.last_run(i).is_some())
        .into_iter()
        .map(|(id, n)| name(id, n, true))
        .collect();
    if empty.is_empty() {
        verdict(
            true,
            "output globs",
            "every output glob of a task that ran matches a file".into(),
        );
    } else {
        verdict(
            false,
            "output globs",
            format!(
                "matching nothing since the task ran (it writes elsewhere?): {}",
                empty.join(", ")
            ),
        );
    }
}

/// Where a program missing from PATH is in the project itself, and how to
/// reach it: a virtualenv's `bin`, or `node_modules/.bin`.
fn project_local(root: &Path, cwd: &Path, program: &str) -> Option<String> {
    if program.contains('/') {
        return None;
    }
    for base in [cwd, root] {
        for venv in [".venv", "venv"] {
            if base.join(venv).join("bin").join(program).is_file() {
                return Some(format!(
                    "found in {venv}/bin: activate the virtualenv before hotpass, \
                     write `{venv}/bin/{program}`, or run it through `uv run {program}`"
                ));
            }
        }
        if base.join("node_modules/.bin").join(program).exists() {
            return Some(format!(
                "found in node_modules/.bin: write `npx {program}` or call it from a package.json script"
            ));
        }
    }
    None
}

/// What a run would do now, by the same decision a run makes: how many
/// instances would come from the cache, and the commonest reasons the
/// others would run. Informational: running is not a fault.
fn would_hit(
    project: &config::Project,
    graph: &InstanceGraph,
    verdict: &mut impl FnMut(bool, &str, String),
) {
    let planned = Cache::open(&project.settings.cache_dir, Mode::Normal)
        .and_then(|cache| plan(project, graph, &cache, Keys::Digests));
    let planned = match planned {
        Ok(p) => p,
        Err(e) => {
            verdict(
                false,
                "cache plan",
                format!("the inputs cannot be hashed: {e}"),
            );
            return;
        }
    };
    let cached = planned.instances.iter().filter(|i| i.cached).count();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for r in planned.instances.iter().filter_map(|i| i.reason.as_ref()) {
        *reasons.entry(r.to_string()).or_default() += 1;
    }
    let mut common: Vec<(String, usize)> = reasons.into_iter().collect();
    common.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let why: Vec<String> = common
        .iter()
        .take(3)
        .map(|(r, n)| format!("{r} ×{n}"))
        .collect();
    let total = planned.instances.len();
    let detail = if cached == total {
        format!("all {total} instances would come from the cache")
    } else {
        format!(
            "{cached} of {total} instances would come from the cache; the others would run ({})",
            why.join(", ")
        )
    };
    verdict(true, "cache plan", detail);
}

/// Runs the checks.
pub fn run(ctx: &Context) -> Result<u8, Error> {
    let mut bad = 0;
    let mut verdict = |ok: bool, what: &str, detail: String| {
        println!("{} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            bad += 1;
        }
    };
    let project = match config::load(&ctx.load) {
        Ok(p) => {
            verdict(
                true,
                "config",
                format!(
                    "{} tasks and gates in {} file(s)",
                    p.tasks.len(),
                    p.files.len()
                ),
            );
            p
        }
        Err(e) => {
            verdict(false, "config", "invalid (details below)".into());
            crate::report_error(&Error::Config(e), ctx.color);
            return Ok(1);
        }
    };

    let mut missing = Vec::new();
    for t in &project.tasks {
        let cwd = project.root.join(&t.cwd);
        for c in &t.run {
            let Some(program) = first_program(c) else {
                continue;
            };
            if program.contains("{partition}") || SHELL_WORDS.contains(&program) {
                continue;
            }
            if !on_path(program, &cwd) {
                let hint = project_local(&project.root, &cwd, program)
                    .map(|h| format!(" — {h}"))
                    .unwrap_or_default();
                missing.push(format!("`{program}` (used by {}){hint}", t.name));
            }
        }
    }
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        verdict(true, "commands", "every task's program is on PATH".into());
    } else {
        verdict(
            false,
            "commands",
            format!("not found: {}", missing.join(", ")),
        );
    }

    let dir = &project.settings.cache_dir;
    let selection = start::Selection {
        selectors: &[],
        partitions: &PartitionFlags::default(),
        shard: None,
        guardrail: false,
    };
    let graph = start::select(ctx, &project, &selection);
    match &graph {
        Ok(g) => globs(&project, g, &mut verdict),
        Err(e) => verdict(false, "globs", format!("the tasks cannot be planned: {e}")),
    }
    match LocalStore::open(dir).and_then(|store| store.probe().map(|()| store)) {
        Ok(store) => {
            verdict(true, "cache writable", dir.display().to_string());
            let h = store.health();
            verdict(
                h.corrupt == 0 && h.missing_blobs == 0,
                "cache health",
                format!(
                    "{} entries, {} corrupt, {} missing blobs{}",
                    h.entries,
                    h.corrupt,
                    h.missing_blobs,
                    if h.corrupt + h.missing_blobs > 0 {
                        " (harmless misses; `hotpass cache gc --max-age 3650d` removes them)"
                    } else {
                        ""
                    }
                ),
            );
        }
        Err(e) => verdict(false, "cache writable", format!("{}: {e}", dir.display())),
    }
    if let Some(setting) = crate::cache::remote::setting(project.settings.remote_cache.as_ref()) {
        // Reaching it (and reading its salt) is what every run does first.
        let reached =
            crate::cache::remote::Remote::open(&setting).and_then(|r| r.salt().map(|_| r.report()));
        match reached {
            Some(r) => verdict(
                true,
                "remote cache",
                format!("{}: reachable, {}", r.url, r.mode),
            ),
            None => verdict(
                false,
                "remote cache",
                format!(
                    "{}: unreachable (the warning above says why); runs go on with the local cache only",
                    setting.url
                ),
            ),
        }
    }
    if let Ok(g) = &graph {
        would_hit(&project, g, &mut verdict);
    }
    let required = project
        .tasks
        .iter()
        .filter(|t| t.sandbox == crate::config::Sandbox::On)
        .count();
    match crate::sandbox::available() {
        Ok(abi) => verdict(true, "sandbox", format!("Landlock ABI {abi}")),
        Err(why) if required > 0 => verdict(
            false,
            "sandbox",
            format!("{why}; {required} task(s) with sandbox = true cannot run"),
        ),
        Err(why) => println!("note sandbox: {why} (no task requires it)"),
    }
    match crate::audit::notify::available() {
        Ok(crate::audit::notify::Method::Notify) => verdict(
            true,
            "input audit",
            "seccomp user notification (`hotpass audit` works)".into(),
        ),
        Ok(crate::audit::notify::Method::Ptrace) => verdict(
            true,
            "input audit",
            "ptrace, stopping at the watched calls (`hotpass audit` works, more slowly)".into(),
        ),
        Err(why) => println!("note input audit: {why} (`hotpass audit` cannot run here)"),
    }
    println!(
        "{}",
        if bad == 0 {
            "everything looks right"
        } else {
            "some checks failed"
        }
    );
    Ok(if bad == 0 { 0 } else { 1 })
}
