//! Watch mode: re-run exactly what a change affects, never loop on outputs,
//! cancel and restart in-flight work, survive bad configs, clean up on Ctrl-C.
//! Every wait is bounded and synchronised on output lines or marker files.

use std::time::Duration;

use crate::support::{Project, alive};

const CYCLE_END: &str = "watching for changes";

const CONFIG: &str = r#"
[tasks.a]
run = "echo ran >> a.log; mkdir -p out; cat src/*.txt > out/a.txt"
inputs = ["src/*.txt"]
outputs = ["out/a.txt"]
[tasks.b]
deps = ["a"]
run = "echo ran >> b.log"
inputs = ["out/a.txt"]
[tasks.c]
run = "echo ran >> c.log"
inputs = ["other/*.txt"]
"#;

fn project() -> Project {
    let p = Project::new(CONFIG);
    p.write("src/x.txt", "1\n").write("other/y.txt", "1\n");
    p
}

fn lines(p: &Project, f: &str) -> usize {
    p.read(f).lines().count()
}

/// An edit re-runs the affected task and its dependent, not an unrelated task.
#[test]
fn edit_reruns_affected_and_dependents_only() {
    let p = project();
    let w = p.watch(&["watch", "--debounce", "50"]);
    w.wait_count(CYCLE_END, 1);
    p.write("src/x.txt", "2\n");
    w.wait_count(CYCLE_END, 2);
    assert_eq!(
        (lines(&p, "a.log"), lines(&p, "b.log"), lines(&p, "c.log")),
        (2, 2, 1),
        "{}",
        w.output()
    );
    assert!(w.output().contains("changed: src/x.txt"), "{}", w.output());
}

/// Writing a declared output triggers nothing (no loops).
#[test]
fn writing_an_output_does_not_trigger() {
    let p = project();
    let w = p.watch(&["watch", "--debounce", "50"]);
    w.wait_count(CYCLE_END, 1);
    p.write("out/a.txt", "by hand\n");
    p.write("other/y.txt", "2\n"); // a change that does trigger, as a sync point
    w.wait_count(CYCLE_END, 2);
    assert_eq!(lines(&p, "c.log"), 2);
    assert_eq!(lines(&p, "a.log"), 1, "{}", w.output());
}

/// An editor-style save (write a temp file, rename over) re-runs once.
#[test]
fn temp_then_rename_save_triggers_once() {
    let p = project();
    let w = p.watch(&["watch", "--debounce", "100"]);
    w.wait_count(CYCLE_END, 1);
    p.write("src/.x.txt.swp", "3\n");
    std::fs::rename(p.path("src/.x.txt.swp"), p.path("src/x.txt")).unwrap();
    w.wait_count(CYCLE_END, 2);
    p.write("other/y.txt", "2\n"); // sync point
    w.wait_count(CYCLE_END, 3);
    assert_eq!(lines(&p, "a.log"), 2, "{}", w.output());
}

/// A new file matching an input glob, and a deleted input, both trigger.
#[test]
fn new_and_deleted_inputs_trigger() {
    let p = project();
    let w = p.watch(&["watch", "--debounce", "50"]);
    w.wait_count(CYCLE_END, 1);
    p.write("src/new.txt", "n\n");
    w.wait_count(CYCLE_END, 2);
    assert_eq!(lines(&p, "a.log"), 2);
    std::fs::remove_file(p.path("src/x.txt")).unwrap();
    w.wait_count(CYCLE_END, 3);
    assert_eq!(lines(&p, "a.log"), 3, "{}", w.output());
}

/// A running task whose input changes is killed and started again.
#[test]
fn running_task_is_cancelled_and_restarted() {
    let p = Project::new(
        "[tasks.long]\nrun = \"echo $$ >> pids; sleep 60\"\ninputs = [\"slow/*.txt\"]\n[tasks.quick]\nrun = \"echo ran >> quick.log\"\ninputs = [\"q/*.txt\"]\n",
    );
    p.write("slow/s.txt", "1\n").write("q/q.txt", "1\n");
    let mut w = p.watch(&["watch", "--debounce", "50", "-j", "2"]);
    w.wait("the first run of long", || lines(&p, "pids") == 1);
    let first: i32 = p.read("pids").trim().parse().unwrap();
    p.write("slow/s.txt", "2\n");
    w.wait("the restart of long", || lines(&p, "pids") == 2);
    assert!(
        crate::support::wait_for(Duration::from_secs(10), || !alive(first)),
        "the first process of long survived"
    );
    let second: i32 = p
        .read("pids")
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    w.child.signal(libc::SIGINT);
    assert_eq!(w.child.wait_code(Duration::from_secs(10)), Some(130));
    assert!(
        crate::support::wait_for(Duration::from_secs(10), || !alive(second)),
        "Ctrl-C left long running"
    );
    assert_eq!(
        lines(&p, "quick.log"),
        1,
        "an unaffected task is not re-run"
    );
}

/// A broken config is reported and watching goes on; the fix resumes.
#[test]
fn broken_config_is_reported_and_fix_resumes() {
    let p = project();
    let w = p.watch(&["watch", "--debounce", "50"]);
    w.wait_count(CYCLE_END, 1);
    p.write("hotpass.toml", "[tasks.a\nrun = \n");
    w.wait_count("watching the configuration for a fix", 1);
    assert!(
        w.output().contains("hotpass::config::syntax"),
        "{}",
        w.output()
    );
    p.write(
        "hotpass.toml",
        &CONFIG.replace("echo ran >> c.log", "echo fixed >> fixed.log"),
    );
    w.wait("the fixed config to run", || p.exists("fixed.log"));
}

/// Ctrl-C stops the watcher and every child, and exits 130.
#[test]
fn sigint_stops_watch_and_children() {
    stops_watch_and_children(libc::SIGINT, 130);
}

/// Starts watch on a task with a background child, sends `signal`, and
/// checks the exit code and that the child is gone.
fn stops_watch_and_children(signal: i32, code: i32) {
    let p = Project::new(
        "[tasks.bg]\nrun = \"sleep 60 & echo $! > child.pid; wait\"\ninputs = [\"x.txt\"]\n",
    );
    p.write("x.txt", "1");
    let mut w = p.watch(&["watch"]);
    w.wait("the task to start", || {
        !p.read("child.pid").trim().is_empty()
    });
    let pid: i32 = p.read("child.pid").trim().parse().unwrap();
    w.child.signal(signal);
    assert_eq!(w.child.wait_code(Duration::from_secs(10)), Some(code));
    assert!(
        crate::support::wait_for(Duration::from_secs(10), || !alive(pid)),
        "child {pid} survived"
    );
}

/// A git-ignored file that matches an input glob never triggers a run, and
/// neither does anything under the cache folder.
#[test]
fn ignored_files_and_the_cache_do_not_trigger() {
    let p = project();
    p.write(".gitignore", "src/scratch.txt\n");
    let w = p.watch(&["watch", "--debounce", "50"]);
    w.wait_count(CYCLE_END, 1);
    p.write("src/scratch.txt", "ignored\n");
    p.write("cache/extra.txt", "inside the cache\n");
    p.write("other/y.txt", "2\n"); // sync point
    w.wait_count(CYCLE_END, 2);
    assert_eq!(lines(&p, "a.log"), 1, "{}", w.output());
    assert_eq!(lines(&p, "c.log"), 2);
}

/// A closed terminal (SIGHUP) stops watch as Ctrl-C does, leaving no task
/// behind, and exits 129 (issue 17).
#[test]
fn sighup_stops_watch_and_children() {
    stops_watch_and_children(libc::SIGHUP, 129);
}

/// A new file under a `files` partitioning is a new partition: watch plans
/// again and runs its chain; the partitions already done stay cached.
#[test]
fn a_new_file_starts_its_partition_chain() {
    let p = Project::new(
        "[tasks.ingest]\nrun = \"echo {partition} >> ingest.log; mkdir -p out; cp data/{partition}.csv out/{partition}.txt\"\n\
         inputs = [\"data/{partition}.csv\"]\noutputs = [\"out/{partition}.txt\"]\npartitions = { files = \"data/*.csv\" }\n\
         [tasks.count]\ndeps = [\"ingest\"]\nrun = \"echo {partition} >> count.log\"\n\
         inputs = [\"out/{partition}.txt\"]\npartitions = { files = \"data/*.csv\" }\n",
    );
    p.write("data/a.csv", "1\n");
    let w = p.watch(&["watch", "--debounce", "50"]);
    w.wait_count(CYCLE_END, 1);
    p.write("data/b.csv", "2\n");
    w.wait_count(CYCLE_END, 2);
    assert_eq!(p.read("ingest.log"), "a\nb\n", "{}", w.output());
    assert_eq!(p.read("count.log"), "a\nb\n", "{}", w.output());
}

/// An edit is acted on at once, whatever else runs: A re-runs while an
/// unrelated, long task B is still running, and B is not restarted
/// (issue 14). Synchronised on files and B's pid, not on time.
#[test]
fn an_edit_does_not_wait_for_unrelated_work() {
    let p = Project::new(
        "[tasks.a]\nrun = \"echo ran >> a.log\"\ninputs = [\"a.txt\"]\n\
         [tasks.b]\nrun = \"echo $$ > b.pid; echo ran >> b.log; sleep 30\"\ninputs = [\"b.txt\"]\n",
    );
    p.write("a.txt", "1\n").write("b.txt", "1\n");
    let mut w = p.watch(&["watch", "--debounce", "50", "-j", "2"]);
    assert!(
        crate::support::wait_for(Duration::from_secs(15), || lines(&p, "a.log") == 1
            && !p.read("b.pid").trim().is_empty()),
        "{}",
        w.output()
    );
    let b: i32 = p.read("b.pid").trim().parse().unwrap();
    p.write("a.txt", "2\n");
    assert!(
        crate::support::wait_for(Duration::from_secs(15), || lines(&p, "a.log") == 2),
        "a did not re-run while b ran: {}",
        w.output()
    );
    assert!(alive(b), "b was stopped");
    assert_eq!(lines(&p, "b.log"), 1, "b was restarted");
    assert!(w.output().contains("restarting a"), "{}", w.output());
    // Ctrl-C takes b (and its sleep) down with it.
    w.child.signal(libc::SIGINT);
    assert_eq!(w.child.wait_code(Duration::from_secs(10)), Some(130));
    assert!(crate::support::wait_for(
        Duration::from_secs(10),
        || !alive(b)
    ));
}

/// In watch a service stays up after its dependents are done; a change to
/// its own inputs restarts it, and its dependent runs again once it is
/// ready again (issue 14).
#[test]
fn a_service_stays_up_in_watch_and_restarts_on_its_inputs() {
    let p = Project::new(
        "[tasks.api]\nservice = true\nrun = \"echo $$ >> api.pids; cat api.conf; echo ready; exec sleep 300\"\n\
         ready = { log = \"^ready\" }\ninputs = [\"api.conf\"]\n\
         [tasks.check]\ndeps = [\"api\"]\nrun = \"echo ran >> check.log\"\n",
    );
    p.write("api.conf", "v1\n");
    let mut w = p.watch(&["watch", "--debounce", "50"]);
    w.wait("the first check", || lines(&p, "check.log") == 1);
    let first: i32 = p.read("api.pids").lines().next().unwrap().parse().unwrap();
    assert!(alive(first), "the service stays up: {}", w.output());
    p.write("api.conf", "v2\n");
    w.wait("the check after the restart", || {
        lines(&p, "check.log") == 2
    });
    assert_eq!(lines(&p, "api.pids"), 2, "{}", w.output());
    assert!(crate::support::wait_for(
        Duration::from_secs(10),
        || !alive(first)
    ));
    let second: i32 = p.read("api.pids").lines().nth(1).unwrap().parse().unwrap();
    assert!(alive(second));
    w.child.signal(libc::SIGINT);
    assert_eq!(w.child.wait_code(Duration::from_secs(10)), Some(130));
    assert!(crate::support::wait_for(
        Duration::from_secs(10),
        || !alive(second)
    ));
}

/// Whether any live (not zombie) process is in process group `pgid`.
fn group_alive(pgid: i32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // After the command's closing parenthesis: state, ppid, pgrp.
        let rest: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        rest.first().is_some_and(|s| *s != "Z") && rest.get(2) == Some(&pgid.to_string().as_str())
    })
}

/// A restart, then Ctrl-C, SIGTERM or SIGHUP: nothing of the task's process
/// group is left alive (checked by group id), and the exit is 130 (129 for
/// SIGHUP).
#[test]
fn restart_then_a_signal_leaves_no_process_of_the_group() {
    for (signal, code) in [
        (libc::SIGINT, 130),
        (libc::SIGTERM, 130),
        (libc::SIGHUP, 129),
    ] {
        let p = Project::new(
            "[tasks.long]\nrun = \"echo $$ >> pids; sleep 60 & sleep 60 & wait\"\ninputs = [\"s.txt\"]\n",
        );
        p.write("s.txt", "1\n");
        let mut w = p.watch(&["watch", "--debounce", "50"]);
        w.wait("the first run", || lines(&p, "pids") == 1);
        p.write("s.txt", "2\n");
        w.wait("the restart", || lines(&p, "pids") == 2);
        let groups: Vec<i32> = p.read("pids").lines().map(|l| l.parse().unwrap()).collect();
        w.child.signal(signal);
        assert_eq!(w.child.wait_code(Duration::from_secs(10)), Some(code));
        for g in groups {
            assert!(
                crate::support::wait_for(Duration::from_secs(10), || !group_alive(g)),
                "signal {signal}: group {g} survived"
            );
        }
    }
}

/// A watched folder deleted and created again is still watched: a file
/// written in the new folder right away triggers its task.
#[test]
fn a_folder_deleted_and_recreated_is_still_watched() {
    let p = project();
    let w = p.watch(&["watch", "--debounce", "50"]);
    w.wait_count(CYCLE_END, 1);
    std::fs::remove_dir_all(p.path("src")).unwrap();
    p.write("src/x.txt", "again\n");
    w.wait("a run for the new file", || {
        p.read("out/a.txt") == "again\n"
    });
}
