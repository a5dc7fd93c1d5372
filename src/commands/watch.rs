//! `hotpass watch`: run the selection, then re-run exactly what each change
//! affects; cancel and restart affected instances that are still running;
//! reload the config when it changes and keep watching through bad configs.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify_debouncer_full::notify::{ErrorKind, EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use super::start::{self, Selection};
use crate::Context;
use crate::cache::{Cache, Mode};
use crate::cli::WatchArgs;
use crate::config::{self, Project};
use crate::error::{EXIT_INTERRUPTED, Error, exit_for_signal};
use crate::exec::scheduler::{self, Canceller, Options};
use crate::exec::work::CachedRunner;
use crate::graph::{InstanceGraph, InstanceId};
use crate::outcome::{Outcome, RunResult, Status};
use crate::report::out;
use crate::warning::Warning;
use crate::watch::WatchSet;

enum Event {
    Files(Vec<PathBuf>),
    Signal(i32),
}

/// A watcher error as a warning, with what to do about the usual ones.
fn watcher_warning(err: &notify_debouncer_full::notify::Error) -> Warning {
    let help = match &err.kind {
        ErrorKind::MaxFilesWatch => Some(
            "the system's limit on watched folders is reached: raise it with \
             `sudo sysctl fs.inotify.max_user_watches=524288` (and in /etc/sysctl.conf to keep it), \
             or narrow the watched tasks' input globs"
                .to_owned(),
        ),
        ErrorKind::Io(e) if e.raw_os_error() == Some(libc::ENOSPC) => Some(
            "the system's limit on watches is reached: raise fs.inotify.max_user_watches \
             (`sudo sysctl fs.inotify.max_user_watches=524288`)"
                .to_owned(),
        ),
        ErrorKind::Io(e) if e.raw_os_error() == Some(libc::EMFILE) => Some(
            "too many open files: raise fs.inotify.max_user_instances or `ulimit -n`".to_owned(),
        ),
        _ => None,
    };
    Warning::Watcher {
        message: err.to_string(),
        help,
    }
}

struct Loaded {
    project: Project,
    graph: InstanceGraph,
    set: WatchSet,
}

fn load(ctx: &Context, args: &WatchArgs) -> Result<Loaded, Error> {
    let start::Session { project, graph } = start::session(
        ctx,
        &Selection {
            selectors: &args.selectors,
            partitions: &args.partitions,
            shard: None,
            guardrail: true,
        },
    )?;
    start::warn_watch_reports(&project);
    start::jobs(&project, args.jobs)?;
    start::check_sandbox(&project, &graph, |_| false)?;
    let set = WatchSet::new(&project, &graph);
    Ok(Loaded {
        project,
        graph,
        set,
    })
}

/// The file watcher and the folders it watches.
struct Watches {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    /// What is watched: each folder, how, and its inode then (a folder
    /// deleted and created again is another inode, and needs a new watch).
    watched: Vec<(PathBuf, RecursiveMode, u64)>,
}

impl Watches {
    /// Starts the watcher: debounced changes (access aside) go to `tx`, and
    /// its errors are warnings.
    fn start(debounce: Duration, tx: mpsc::Sender<Event>) -> Result<Watches, Error> {
        let debouncer = new_debouncer(debounce, None, move |res: DebounceEventResult| match res {
            Ok(events) => {
                let paths: Vec<PathBuf> = events
                    .into_iter()
                    .filter(|e| !matches!(e.event.kind, EventKind::Access(_)))
                    .flat_map(|e| e.event.paths.clone())
                    .collect();
                if !paths.is_empty() {
                    let _ = tx.send(Event::Files(paths));
                }
            }
            Err(errors) => errors.iter().for_each(|e| watcher_warning(e).emit()),
        })
        .map_err(|e| Error::io("starting the file watcher", std::io::Error::other(e)))?;
        Ok(Watches {
            debouncer,
            watched: Vec::new(),
        })
    }

    /// Adds the wanted watches first and drops stale ones after, never
    /// touching a path that stays wanted: a change made while re-watching is
    /// not lost. With `keep`, nothing is dropped (a broken config keeps every
    /// watch so that any save can fix it).
    /// Watches `set`'s folders as they are now: a watched folder that was
    /// deleted is forgotten (its nearest existing ancestor is watched
    /// instead), and watched again once it exists. Returns the files under
    /// folders that are watched anew: they may have appeared before the
    /// watch did, so they count as changed.
    fn refresh(&mut self, set: &WatchSet, changed: &[PathBuf]) -> Vec<PathBuf> {
        // A folder that changed itself (deleted, created: its parent's
        // watch says so) or is another folder now needs a new watch.
        let gone: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|(w, _, ino)| inode(w) != Some(*ino) || changed.contains(w))
            .map(|(w, _, _)| w.clone())
            .collect();
        for w in &gone {
            tracing::debug!("{} is another folder now: watching it again", w.display());
            let _ = self.debouncer.unwatch(w);
            self.watched.retain(|(p, _, _)| p != w);
        }
        self.set(wanted(set), false);
        let mut files = Vec::new();
        for w in gone.iter().filter(|w| w.is_dir()) {
            files_under(w, &mut files);
        }
        files
    }

    fn set(&mut self, wanted: Vec<(PathBuf, RecursiveMode)>, keep: bool) {
        for (p, mode) in &wanted {
            if self
                .watched
                .iter()
                .any(|(w, m, _)| w == p && (*m == *mode || *m == RecursiveMode::Recursive))
            {
                continue;
            }
            match self.debouncer.watch(p, *mode) {
                Ok(()) => self
                    .watched
                    .push((p.clone(), *mode, inode(p).unwrap_or_default())),
                // A folder that vanished in between is no news; a limit is.
                Err(e) if matches!(&e.kind, ErrorKind::PathNotFound) => {
                    tracing::debug!("cannot watch {}: {e}", p.display())
                }
                Err(e) => watcher_warning(&e).emit(),
            }
        }
        if keep {
            return;
        }
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|(w, _, _)| !wanted.iter().any(|(p, _)| p == w))
            .map(|(w, _, _)| w.clone())
            .collect();
        for w in stale {
            let _ = self.debouncer.unwatch(&w);
            self.watched.retain(|(p, _, _)| *p != w);
        }
    }
}

/// Sends [`Event::Signal`] on SIGINT, SIGTERM and SIGHUP until the handle is closed.
fn forward_signals(tx: mpsc::Sender<Event>) -> Result<signal_hook::iterator::Handle, Error> {
    let mut signals = signal_hook::iterator::Signals::new(crate::error::STOP_SIGNALS)
        .map_err(|e| Error::io("installing signal handlers", e))?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if tx.send(Event::Signal(signal)).is_err() {
                return;
            }
        }
    });
    Ok(handle)
}

/// Loads the project and watches what it needs; a broken config is
/// reported, and its folder watched (on top of everything watched so far)
/// so that a fix is noticed.
/// Adds the files under each folder among `paths`: a folder created (or
/// created again) may have files in it before its watch exists, and those
/// count as changed.
fn with_new_folders(paths: &mut Vec<PathBuf>) {
    let folders: Vec<PathBuf> = paths.iter().filter(|p| p.is_dir()).cloned().collect();
    for f in folders {
        files_under(&f, paths);
    }
}

/// Files under `dir` (at most 10,000 of them).
fn files_under(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if out.len() >= 10_000 {
            return;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&e.path(), out),
            Ok(_) => out.push(e.path()),
            Err(_) => {}
        }
    }
}

/// A folder's inode, if it exists.
/// A folder's identity, if it exists: its inode and birth time (an inode
/// is often reused by the next folder created; a birth time is not).
fn inode(p: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    let born = m
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    Some(m.ino() ^ born.rotate_left(17))
}

/// The folders `set` needs watched, as they are now.
fn wanted(set: &WatchSet) -> Vec<(PathBuf, RecursiveMode)> {
    let (rec, flat) = set.roots();
    let mut wanted: Vec<(PathBuf, RecursiveMode)> = rec
        .into_iter()
        .map(|p| (p, RecursiveMode::Recursive))
        .collect();
    wanted.extend(flat.into_iter().map(|p| (p, RecursiveMode::NonRecursive)));
    wanted
}

fn reload(ctx: &Context, args: &WatchArgs, watches: &mut Watches) -> Option<Loaded> {
    match load(ctx, args) {
        Ok(l) => {
            watches.set(wanted(&l.set), false);
            Some(l)
        }
        Err(e) => {
            let dir = config::load::find_config(&ctx.load)
                .ok()
                .and_then(|p| p.parent().map(PathBuf::from))
                .unwrap_or_else(|| ctx.cwd.clone());
            watches.set(
                vec![
                    (dir.clone(), RecursiveMode::NonRecursive),
                    (dir.join("tasks"), RecursiveMode::Recursive),
                ],
                true,
            );
            crate::report_error(&e, ctx.color);
            let _ = std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!("hotpass: watching the configuration for a fix\n"),
            );
            None
        }
    }
}

/// Keeps each instance's latest outcome: what a cycle ran, and a first
/// outcome for anything not seen before.
fn remember(
    last: &mut HashMap<String, Outcome>,
    l: &Loaded,
    names: &BTreeSet<String>,
    r: &RunResult,
) {
    for (id, inst) in l.graph.iter() {
        let (name, o) = (&inst.name, &r.outcomes[id.index()]);
        if names.contains(name) && !matches!(o.status, Status::Skipped { .. })
            || !last.contains_key(name)
        {
            last.insert(name.clone(), o.clone());
        }
    }
}

/// What an idle watcher does about changed files.
enum Next {
    /// Nothing it watches was affected.
    Nothing,
    /// A configuration file changed: reload.
    Reload(String),
    /// Run these instances.
    Run(BTreeSet<String>, String),
}

fn on_change(loaded: Option<&Loaded>, paths: &[PathBuf]) -> Next {
    let Some(l) = loaded else {
        return Next::Reload("configuration changed".into());
    };
    let ch = l.set.classify(&l.graph, paths);
    if ch.config {
        return Next::Reload(format!("configuration changed ({})", summarize(&ch.paths)));
    }
    if ch.affected.is_empty() {
        return Next::Nothing;
    }
    let names = ch
        .affected
        .iter()
        .map(|id| l.graph.get(*id).name.clone())
        .collect();
    Next::Run(names, format!("changed: {}", summarize(&ch.paths)))
}

/// Watches until Ctrl-C; returns 130 then.
pub fn run(ctx: &Context, args: &WatchArgs) -> Result<u8, Error> {
    if args.jobs == Some(0) {
        // Refused before watching starts: -j never comes from the config.
        return Err(start::jobs_flag_error());
    }
    let (tx, rx) = mpsc::channel::<Event>();
    let signal_handle = forward_signals(tx.clone())?;
    let mut watches = Watches::start(Duration::from_millis(args.debounce), tx.clone())?;
    let mut loaded: Option<Loaded> = None;
    let mut last: HashMap<String, Outcome> = HashMap::new();
    let mut pending: Option<BTreeSet<String>> = None; // instance names to run next
    let mut reloading = true;
    let mut why = String::from("starting");
    let result = loop {
        if std::mem::take(&mut reloading) {
            loaded = reload(ctx, args, &mut watches);
            pending = loaded
                .as_ref()
                .map(|l| l.graph.iter().map(|(_, i)| i.name.clone()).collect());
        }
        if let (Some(l), Some(names)) = (&loaded, pending.take()) {
            if args.clear {
                out(b"\x1b[2J\x1b[3J\x1b[H");
            }
            out(format!("── {why}: running {}\n", describe(&names)).as_bytes());
            let (outcome, stop) = cycle(ctx, args, l, &names, &last, &rx, &mut reloading);
            remember(&mut last, l, &names, &outcome);
            print_cycle_summary(l, &names, &outcome);
            match stop {
                Stop::Interrupted(signal) => break exit_for_signal(signal),
                Stop::Again(more, paths) => {
                    why = format!("changed: {}", summarize(&paths));
                    // A reload re-plans everything; otherwise re-run what changed.
                    pending = Some(more);
                    continue;
                }
                Stop::Done if outcome.interrupted => break exit_for_signal(outcome.signal),
                Stop::Done => {}
            }
        }
        // Idle: wait for a change.
        // A second without news: check that every watched folder is still
        // the one watched (one deleted and created again within a debounce
        // can go unreported).
        let event = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(e) => Ok(e),
            Err(mpsc::RecvTimeoutError::Timeout) => match &loaded {
                Some(l) => {
                    let files = watches.refresh(&l.set, &[]);
                    if files.is_empty() {
                        continue;
                    }
                    Ok(Event::Files(files))
                }
                None => continue,
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(mpsc::RecvError),
        };
        match event {
            Ok(Event::Files(mut paths)) => {
                if let Some(l) = &loaded {
                    let again = watches.refresh(&l.set, &paths);
                    paths.extend(again);
                }
                with_new_folders(&mut paths);
                match on_change(loaded.as_ref(), &paths) {
                    Next::Nothing => {}
                    Next::Reload(w) => (reloading, why) = (true, w),
                    Next::Run(names, w) => (pending, why) = (Some(names), w),
                }
            }
            Ok(Event::Signal(signal)) => break exit_for_signal(Some(signal)),
            Err(_) => break EXIT_INTERRUPTED,
        }
    };
    signal_handle.close();
    drop(tx);
    Ok(result)
}

enum Stop {
    /// The cycle finished and nothing else is pending.
    Done,
    /// Ctrl-C, SIGTERM or SIGHUP (which, when known).
    Interrupted(Option<i32>),
    /// Changes arrived during the cycle: run these next.
    Again(BTreeSet<String>, Vec<String>),
}

/// Runs one cycle over `names`, handling changes that arrive meanwhile.
fn cycle(
    ctx: &Context,
    args: &WatchArgs,
    l: &Loaded,
    names: &BTreeSet<String>,
    last: &HashMap<String, Outcome>,
    rx: &mpsc::Receiver<Event>,
    reload: &mut bool,
) -> (RunResult, Stop) {
    let mut done: HashMap<InstanceId, Outcome> = HashMap::new();
    for (id, inst) in l.graph.iter() {
        if !names.contains(&inst.name)
            && let Some(o) = last.get(&inst.name)
        {
            done.insert(id, o.clone());
        }
    }
    let opts = Options {
        jobs: args.jobs.unwrap_or(l.project.settings.jobs),
        keep_going: args.keep_going,
        done,
        keep_services: true,
    };
    let mut again: BTreeSet<String> = BTreeSet::new();
    let mut again_paths: Vec<String> = Vec::new();
    // Restarts asked of the running cycle, and when.
    let mut restarted: Vec<(InstanceId, Instant)> = Vec::new();
    let mut interrupted: Option<i32> = None;
    let started = Instant::now();
    let result = std::thread::scope(|s| {
        let (c_tx, c_rx) = mpsc::channel::<Canceller>();
        let opts = &opts;
        let handle = s.spawn(move || {
            let cache = Cache::open_or_uncached(&l.project.settings.cache_dir, Mode::Normal)
                .with_remote(l.project.settings.remote_cache.as_ref());
            let runner = CachedRunner::new(&l.project, &l.graph, cache, ctx.color);
            let mut reporters = start::reporters(ctx, &l.graph);
            let r = scheduler::run_with(&l.project, &l.graph, &runner, &mut reporters, opts, |c| {
                let _ = c_tx.send(c);
            });
            runner.finish();
            r
        });
        let canceller = c_rx.recv().ok();
        // Forward file changes while the cycle runs; the cycle ends on its own.
        while !handle.is_finished() {
            match rx.recv_timeout(Duration::from_millis(25)) {
                Ok(Event::Files(mut paths)) => {
                    with_new_folders(&mut paths);
                    let ch = l.set.classify(&l.graph, &paths);
                    if ch.config {
                        // The graph itself may change: stop this cycle, plan again.
                        *reload = true;
                        let ids: Vec<InstanceId> = l.graph.iter().map(|(id, _)| id).collect();
                        again_paths.extend(ch.paths);
                        again.extend(ids.iter().map(|id| l.graph.get(*id).name.clone()));
                        if let Some(c) = &canceller {
                            c.cancel(ids);
                        }
                        continue;
                    }
                    let ids: Vec<InstanceId> = ch.affected.iter().copied().collect();
                    if ids.is_empty() {
                        continue;
                    }
                    // Acted on now, whatever else runs: the affected (and
                    // their dependents) stop if running and start again.
                    let names: BTreeSet<String> =
                        ids.iter().map(|id| l.graph.get(*id).name.clone()).collect();
                    out(format!(
                        "── changed: {}: restarting {}\n",
                        summarize(&ch.paths),
                        describe(&names)
                    )
                    .as_bytes());
                    let sent = canceller.as_ref().is_some_and(|c| c.restart(ids.clone()));
                    let at = Instant::now();
                    for id in ids {
                        restarted.push((id, at));
                    }
                    if !sent {
                        again_paths.extend(ch.paths);
                        again.extend(names);
                    }
                }
                Ok(Event::Signal(signal)) => {
                    interrupted.get_or_insert(signal);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        handle.join().expect("the cycle thread does not panic")
    });
    // A restart the cycle ended before acting on runs in the next one.
    for (id, at) in restarted {
        let began = result.outcomes[id.index()].lane.map(|(_, b, _)| b);
        if began.is_none_or(|b| b < at) {
            again.insert(l.graph.get(id).name.clone());
            for d in l.graph.with_dependents([id]) {
                again.insert(l.graph.get(d).name.clone());
            }
        }
    }
    tracing::debug!("cycle took {:?}", started.elapsed());
    let stop = if interrupted.is_some() || result.interrupted {
        Stop::Interrupted(interrupted.or(result.signal))
    } else if !again.is_empty() {
        Stop::Again(again, again_paths)
    } else {
        Stop::Done
    };
    (result, stop)
}

fn describe(names: &BTreeSet<String>) -> String {
    let v: Vec<&str> = names.iter().map(String::as_str).take(6).collect();
    let more = names.len().saturating_sub(6);
    if more > 0 {
        format!("{} (+{more} more)", v.join(", "))
    } else {
        v.join(", ")
    }
}

fn summarize(paths: &[String]) -> String {
    match paths {
        [] => "files".into(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} (+{} more)", rest.len()),
    }
}

fn print_cycle_summary(l: &Loaded, names: &BTreeSet<String>, r: &RunResult) {
    let (mut ran, mut cached, mut failed, mut skipped) = (0, 0, 0, 0);
    for (id, inst) in l.graph.iter() {
        let o = &r.outcomes[id.index()];
        if !names.contains(&inst.name) {
            continue;
        }
        match o.status {
            Status::Ok => ran += 1,
            Status::Cached => cached += 1,
            Status::Skipped { .. } => skipped += 1,
            _ => failed += 1,
        }
    }
    out(format!(
        "── {ran} ran, {cached} cached, {failed} failed, {skipped} skipped in {}; watching for changes\n",
        crate::report::human(r.elapsed)
    )
    .as_bytes());
}
