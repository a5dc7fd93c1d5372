//! Running: parallelism within -j, failures and skips, --keep-going,
//! timeouts, Ctrl-C, output, list and graph.

use std::time::Duration;

use crate::support::{Project, alive, assert_has, instance, statuses, wait_for};

/// Two tasks that each wait for the other's marker can only finish in parallel.
#[test]
fn two_jobs_run_at_the_same_time() {
    let p = Project::new(
        r#"
[tasks.a]
run = "touch a.ready; while [ ! -f b.ready ]; do sleep 0.01; done"
timeout = "20s"
[tasks.b]
run = "touch b.ready; while [ ! -f a.ready ]; do sleep 0.01; done"
timeout = "20s"
"#,
    );
    let (r, s) = p.run_summary(&["run", "-j", "2"], &[]);
    r.code(0);
    assert!(statuses(&s).values().all(|v| v == "ok"));
}

/// Under -j 1 at most one task runs at any moment.
#[test]
fn jobs_bound_is_respected() {
    let mut cfg = String::new();
    for i in 0..6 {
        cfg.push_str(&format!(
            "[tasks.t{i}]\nrun = \"mkdir -p running; touch running/t{i}; ls running | wc -l >> counts; rm running/t{i}\"\n"
        ));
    }
    let p = Project::new(&cfg);
    p.run(&["run", "-j", "1"]).code(0);
    let counts: Vec<u32> = p
        .read("counts")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 6);
    assert!(counts.iter().all(|c| *c == 1), "{counts:?}");
}

const FAILING: &str = r#"
[tasks.bad]
run = "echo broken; exit 3"
[tasks.after]
run = "touch after.ran"
deps = ["bad"]
[tasks.later]
run = "touch later.ran"
deps = ["zfirst"]
[tasks.zfirst]
run = "true"
"#;

/// A failure skips its dependents, stops new work, and exits 1.
#[test]
fn failure_skips_dependents_and_stops() {
    let p = Project::new(FAILING);
    let (r, s) = p.run_summary(&["run", "-j", "1"], &[]);
    r.code(1);
    let st = statuses(&s);
    assert_eq!(st["bad"], "failed");
    assert_eq!(st["after"], "skipped");
    assert!(!p.exists("after.ran"));
    assert!(!p.exists("later.ran"), "nothing new starts after a failure");
    let bad = instance(&s, "bad");
    assert_eq!(bad["exit_code"], 3);
    assert!(r.stdout.contains("bad") && r.stdout.contains("broken"));
}

/// With --keep-going everything not depending on the failure still runs.
#[test]
fn keep_going_runs_independent_work() {
    let p = Project::new(FAILING);
    let (r, s) = p.run_summary(&["run", "-j", "1", "--keep-going"], &[]);
    r.code(1);
    let st = statuses(&s);
    assert_eq!(st["after"], "skipped");
    assert_eq!(st["later"], "ok");
    assert!(p.exists("later.ran"));
}

/// An array `run` stops at the first failing command.
#[test]
fn array_run_stops_at_first_failure() {
    let p = Project::new("[tasks.a]\nrun = [\"touch one\", \"false\", \"touch three\"]\n");
    p.run(&["run"]).code(1);
    assert!(p.exists("one"));
    assert!(!p.exists("three"));
}

/// Each task runs in its cwd with its env.
#[test]
fn cwd_and_env_reach_the_command() {
    let p = Project::new(
        "[tasks.a]\ncwd = \"sub\"\nenv = { GREETING = \"hello\" }\nrun = \"echo $GREETING > where.txt; pwd >> where.txt\"\n",
    );
    p.write("sub/.keep", "");
    p.run(&["run"]).code(0);
    let got = p.read("sub/where.txt");
    assert!(got.starts_with("hello\n"), "{got}");
    assert!(got.trim_end().ends_with("/sub"), "{got}");
}

/// A timeout kills the whole process group and is reported as timed out.
#[test]
fn timeout_kills_the_group() {
    let p = Project::new(
        "[tasks.slow]\ntimeout = \"1s\"\nrun = \"sleep 60 & echo $! > child.pid; wait\"\n",
    );
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(1);
    assert_eq!(statuses(&s)["slow"], "timed-out");
    let pid: i32 = p.read("child.pid").trim().parse().unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || !alive(pid)),
        "the task's child survived its timeout"
    );
}

/// Ctrl-C kills every running group, leaves no child behind and exits 130.
#[test]
fn sigint_leaves_no_child_and_exits_130() {
    let p = Project::new(
        "[tasks.a]\nrun = \"sleep 60 & echo $! > a.pid; wait\"\n[tasks.b]\nrun = \"sleep 60 & echo $! > b.pid; wait\"\n",
    );
    let mut child = p.spawn(&["run", "-j", "2"]);
    assert!(
        wait_for(Duration::from_secs(10), || !p
            .read("a.pid")
            .trim()
            .is_empty()
            && !p.read("b.pid").trim().is_empty()),
        "tasks did not start"
    );
    child.signal(libc::SIGINT);
    assert_eq!(child.wait_code(Duration::from_secs(10)), Some(130));
    for f in ["a.pid", "b.pid"] {
        let pid: i32 = p.read(f).trim().parse().unwrap();
        assert!(
            wait_for(Duration::from_secs(5), || !alive(pid)),
            "{f}: child {pid} survived Ctrl-C"
        );
    }
}

/// Off a terminal, every output line is prefixed with its task; stderr is kept too.
#[test]
fn output_lines_are_prefixed() {
    let p = Project::new("[tasks.hello]\nrun = \"echo out-line; echo err-line >&2\"\n");
    let r = p.run(&["run"]);
    r.code(0);
    assert_has(&r.stdout, "hello | out-line");
    assert_has(&r.stdout, "hello | err-line");
}

/// The end summary lists every task with its status.
#[test]
fn summary_lists_every_task() {
    let p = Project::new(FAILING);
    let r = p.run(&["run", "--keep-going"]);
    assert!(r.stdout.contains("Summary"));
    for word in ["failed", "skipped", "ok"] {
        assert_has(&r.stdout, word);
    }
}

/// Engine logs go to stderr, never into the tasks' output on stdout.
#[test]
fn logs_stay_off_stdout() {
    let p = Project::new("[tasks.a]\nrun = \"echo task-output\"\n");
    let r = p.run(&["-vv", "run"]);
    r.code(0);
    assert!(
        !r.stdout.contains("DEBUG") && !r.stdout.contains("INFO"),
        "{}",
        r.stdout
    );
    let r = p.run(&["--log-format", "json", "-vv", "run"]);
    r.code(0);
    assert!(
        r.stderr
            .lines()
            .filter(|l| !l.is_empty())
            .all(|l| l.starts_with('{')),
        "{}",
        r.stderr
    );
}

/// `list` shows descriptions; `--json` is machine-readable.
#[test]
fn list_shows_tasks_and_gates() {
    let p = Project::new(
        "[tasks.build]\ndescription = \"Compile\"\n[gates.types]\ndescription = \"Static types\"\ndeps = [\"build\"]\n",
    );
    let r = p.run(&["list"]);
    r.code(0);
    assert!(r.stdout.contains("build") && r.stdout.contains("Compile"));
    assert!(r.stdout.contains("gate:types") && r.stdout.contains("Static types"));
    let r = p.run(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let gate = v
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "gate:types")
        .unwrap();
    assert_eq!(gate["kind"], "gate");
    assert_eq!(gate["deps"][0], "build");
}

/// `graph` prints dot, mermaid and JSON of the selection with its deps.
#[test]
fn graph_formats() {
    let p = Project::new("[tasks.build]\n[tasks.test]\ndeps = [\"build\"]\n[tasks.other]\n");
    let dot = p.run(&["graph", "test"]);
    dot.code(0);
    assert_has(&dot.stdout, "\"build\" -> \"test\"");
    assert!(!dot.stdout.contains("other"));
    let mm = p.run(&["graph", "--format", "mermaid"]);
    assert!(mm.stdout.starts_with("graph LR"));
    assert!(mm.stdout.contains("-->"));
    let js = p.run(&["graph", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&js.stdout).unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(v["edges"][0]["from"], "build");
    assert_eq!(v["edges"][0]["to"], "test");
}

/// hotpass::run can be called twice in one process (no hidden globals).
#[test]
fn run_can_be_called_twice() {
    let p = Project::new("[tasks.a]\nrun = \"echo x >> count\"\n");
    let cfg = p.path("hotpass.toml");
    let args = [
        "hotpass",
        "--config",
        cfg.to_str().unwrap(),
        "run",
        "--no-cache",
    ];
    // hotpass writes to the stdout descriptor itself: capture it in a file
    // for the two calls, so the suite's own output stays clean.
    let captured = p.path("stdout.txt");
    let file = std::fs::File::create(&captured).unwrap();
    let codes = with_stdout_in(&file, || (hotpass::run(args), hotpass::run(args)));
    assert_eq!(codes.0, std::process::ExitCode::from(0));
    assert_eq!(codes.1, std::process::ExitCode::from(0));
    assert_eq!(p.read("count"), "x\nx\n");
    assert_eq!(
        p.read("stdout.txt").matches("1 instances: 1 ran").count(),
        2
    );
}

/// Runs `f` with file descriptor 1 pointing at `file`, then puts it back.
fn with_stdout_in<T>(file: &std::fs::File, f: impl FnOnce() -> T) -> T {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    std::io::stdout().flush().unwrap();
    // SAFETY: dup and dup2 on valid descriptors; the saved one is restored
    // and closed below.
    let saved = unsafe { libc::dup(1) };
    assert!(saved >= 0);
    unsafe { libc::dup2(file.as_raw_fd(), 1) };
    let out = f();
    std::io::stdout().flush().unwrap();
    unsafe {
        libc::dup2(saved, 1);
        libc::close(saved);
    }
    out
}

/// Completion scripts are generated for the common shells.
#[test]
fn completions_are_generated() {
    let p = Project::new("");
    for shell in ["bash", "zsh", "fish"] {
        let r = p.run(&["completions", shell]);
        r.code(0);
        assert!(r.stdout.contains("hotpass"));
    }
}

/// A reader that goes away (`| head`) never makes hotpass panic: printing
/// commands end quietly, and a run still finishes its work.
#[test]
fn closed_stdout_never_panics() {
    let mut cfg = String::new();
    for i in 0..3000 {
        cfg.push_str(&format!("[tasks.task-number-{i}]\ndescription = \"a task with a description long enough\"\nrun = \"true\"\n"));
    }
    let p = Project::new(&cfg);
    let bin = crate::support::bin();
    for args in ["list", "graph", "run --dry-run", "run -j 2 --no-cache"] {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{} {args} | head -c 10 > /dev/null", bin.display()))
            .current_dir(p.root())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args}: {stderr}");
    }
}

/// If hotpass is killed outright (SIGKILL), its tasks' shells die with it.
#[test]
fn sigkill_of_hotpass_takes_its_tasks_along() {
    let p = Project::new("[tasks.a]\nrun = \"echo $$ > a.pid; exec sleep 60\"\n");
    let mut child = p.spawn(&["run"]);
    assert!(
        crate::support::wait_for(Duration::from_secs(10), || !p
            .read("a.pid")
            .trim()
            .is_empty()),
        "the task did not start"
    );
    let pid: i32 = p.read("a.pid").trim().parse().unwrap();
    child.signal(libc::SIGKILL);
    child.wait_code(Duration::from_secs(10));
    assert!(
        crate::support::wait_for(Duration::from_secs(5), || !alive(pid)),
        "task {pid} outlived hotpass"
    );
}

/// Numbers and booleans in `env`, and a timeout in plain seconds, are accepted.
#[test]
fn env_numbers_and_timeout_seconds_are_accepted() {
    let p = Project::new(
        "[tasks.a]\nenv = { PORT = 8080, DEBUG = true, RATIO = 0.5 }\ntimeout = 30\nrun = \"echo $PORT-$DEBUG-$RATIO > env.txt\"\n",
    );
    p.run(&["run"]).code(0);
    assert_eq!(p.read("env.txt"), "8080-true-0.5\n");
    let q = Project::new("[tasks.a]\ntimeout = 0\nrun = \"true\"\n");
    let r = q.run(&["run"]);
    r.code(2);
    assert_has(&r.stderr, "longer than zero");
}

/// A closed terminal (SIGHUP) stops a run as Ctrl-C does: every task's
/// processes are stopped, and hotpass exits 129 (issue 17).
#[test]
fn sighup_stops_the_run_and_its_children_with_129() {
    let p = Project::new("[tasks.a]\nrun = \"sleep 60 & echo $! > a.pid; wait\"\n");
    let mut child = p.spawn(&["run"]);
    assert!(
        wait_for(Duration::from_secs(10), || !p
            .read("a.pid")
            .trim()
            .is_empty()),
        "the task did not start"
    );
    child.signal(libc::SIGHUP);
    assert_eq!(child.wait_code(Duration::from_secs(10)), Some(129));
    let pid: i32 = p.read("a.pid").trim().parse().unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || !alive(pid)),
        "child {pid} survived SIGHUP"
    );
}

/// A daemon the task detaches (its own session, so outside its process
/// group) neither keeps the run waiting nor survives it: it comes back to
/// hotpass, the subreaper, and is stopped with its task (issues 14, 17).
#[test]
fn a_detached_daemon_is_stopped_with_its_task() {
    let p = Project::new(
        "[tasks.t]\nrun = \"setsid sh -c 'echo $$ > daemon.pid; exec sleep 300' & sleep 0.2; echo started\"\ntimeout = \"20s\"\n",
    );
    let mut child = p.spawn(&["run"]);
    let ended = child.wait_output(Duration::from_secs(15));
    let pid = p.read("daemon.pid").trim().parse::<i32>();
    let gone = pid
        .as_ref()
        .is_ok_and(|pid| wait_for(Duration::from_secs(5), || !alive(*pid)));
    if let (false, Ok(pid)) = (gone, &pid) {
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let (code, out) = ended.expect("the run waited for the daemon");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("t | started"), "{out}");
    assert!(gone, "the daemon {pid:?} outlived its task");
}

/// Runs hotpass to the end, its stdout discarded, and returns its exit code
/// and peak memory (KiB) as the kernel counted it. The child is reaped by
/// `wait4` itself, which std does not see.
fn peak_memory_kib(p: &Project, args: &[&str]) -> (i32, i64) {
    peak_memory_kib_reading(p, args, None)
}

/// [`peak_memory_kib`], with hotpass's stdout read by `reader` (on a thread
/// of its own) when given; it returns the bytes it read.
#[allow(clippy::zombie_processes)]
fn peak_memory_kib_reading(
    p: &Project,
    args: &[&str],
    reader: Option<fn(std::process::ChildStdout) -> u64>,
) -> (i32, i64) {
    let mut child = p
        .command(args)
        .stdout(match reader {
            Some(_) => std::process::Stdio::piped(),
            None => std::process::Stdio::null(),
        })
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let reading = reader.map(|r| {
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || r(out))
    });
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which std has not reaped.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    if let Some(r) = reading {
        assert!(r.join().unwrap() > 0, "the reader read hotpass's output");
    }
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}

/// A reader of hotpass's output slower than the task writes (a pager, a
/// slow CI log) slows the task down: hotpass does not hold what is waiting
/// to be shown. 100 MB printed, read at most 32 KiB a millisecond, within
/// 64 MiB (it held all of it before).
#[test]
fn a_slow_reader_of_the_output_does_not_fill_memory() {
    let p = Project::new(
        "[tasks.big]\nrun = \"yes $(printf '%04000d' 7) | head -c 100000000\"\ninputs = [\"in\"]\n",
    );
    p.write("in", "1\n");
    let slow: fn(std::process::ChildStdout) -> u64 = |mut out| {
        use std::io::Read;
        let mut buf = vec![0u8; 32 * 1024];
        let mut total = 0;
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
            // Slowness, not synchronisation: this reader is what is tested.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    };
    let (code, kib) = peak_memory_kib_reading(&p, &["run", "--no-cache"], Some(slow));
    assert_eq!(code, 0);
    assert!(kib < 64 * 1024, "peak {kib} KiB");
}

/// Memory stays flat whatever a task prints: 200 MB of output, run and then
/// replayed from the cache, each within 64 MiB (issue 17: it was 1.2 GB),
/// and the replay gives back every byte.
#[test]
fn memory_stays_flat_whatever_a_task_prints() {
    let p = Project::new(
        "[tasks.big]\nrun = \"yes $(printf '%04000d' 7) | head -c 200000000\"\ninputs = [\"in\"]\n",
    );
    p.write("in", "1\n");
    for round in ["run", "replay"] {
        let (code, kib) = peak_memory_kib(&p, &["run"]);
        assert_eq!(code, 0, "{round}");
        assert!(kib < 64 * 1024, "{round}: peak {kib} KiB");
    }
    let out = p
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap();
    let lines = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| l.ends_with(b"0007"))
        .count();
    assert_eq!(lines, 200_000_000 / 4001, "every whole line is replayed");
}

/// Every stop sends the task's stop signal first: a task that handles it
/// gets to clean up (here, on a timeout); one that ignores it is SIGKILLed
/// after `stop_timeout`, and hotpass says it had to (issue 14).
#[test]
fn stops_send_the_stop_signal_then_sigkill_after_the_stop_timeout() {
    let p = Project::new(
        "[tasks.tidy]\ntimeout = \"1s\"\nrun = \"trap 'echo cleaned > marker; exit 0' TERM; sleep 30 & wait\"\n\
         [tasks.stubborn]\ntimeout = \"1s\"\nstop_timeout = \"1s\"\nrun = \"trap '' TERM; sleep 30 & echo $! > s.pid; wait\"\n",
    );
    let mut child = p.spawn(&["run", "--keep-going", "-j", "2"]);
    let (code, out) = child
        .wait_output(Duration::from_secs(20))
        .expect("the stubborn task was not killed after its stop timeout");
    assert_eq!(code, Some(1));
    assert_eq!(p.read("marker"), "cleaned\n", "the handler ran");
    assert_has(&out, "tidy     | timed out");
    assert_has(&out, "stubborn: still running");
    assert_has(&out, "sending SIGKILL");
    let pid: i32 = p.read("s.pid").trim().parse().unwrap();
    assert!(wait_for(Duration::from_secs(5), || !alive(pid)));
}

/// `stop_signal` chooses what Ctrl-C sends first (here SIGUSR1, which the
/// task handles), and a name that is not a signal is a config error.
#[test]
fn stop_signal_is_what_ctrl_c_sends_first() {
    let p = Project::new(
        "[tasks.server]\nstop_signal = \"SIGUSR1\"\nrun = \"trap 'echo usr1 > marker; exit 0' USR1; echo up > up; sleep 30 & wait\"\n",
    );
    let mut child = p.spawn(&["run"]);
    assert!(wait_for(Duration::from_secs(10), || p.exists("up")));
    child.signal(libc::SIGINT);
    assert_eq!(child.wait_code(Duration::from_secs(10)), Some(130));
    assert_eq!(p.read("marker"), "usr1\n");
    p.write(
        "hotpass.toml",
        "[tasks.a]\nrun = \"true\"\nstop_signal = \"SIGBOGUS\"\n",
    );
    let r = p.run(&["run"]);
    r.code(2);
    assert_has(&r.stderr, "not a signal a stop can send");
}

/// A task's processes start as from a shell: no signal blocked, SIGPIPE
/// not ignored (hotpass ignores it, and blocks signals around starting a
/// task), stdin from /dev/null, in their own process group.
#[test]
fn tasks_start_with_default_signals_and_their_own_group() {
    let p = Project::new(
        "[tasks.t]\nrun = \"grep -E '^Sig(Blk|Ign)' /proc/self/status > sig.txt; ls -l /proc/self/fd/0 > stdin.txt; cut -d' ' -f5 /proc/$$/stat > pgid.txt; echo $$ > pid.txt\"\n",
    );
    p.run(&["run"]).code(0);
    let sig = p.read("sig.txt");
    for line in sig.lines() {
        let mask = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
        if line.starts_with("SigBlk") {
            assert_eq!(mask, 0, "no signal blocked: {sig}");
        } else {
            assert_eq!(
                mask & (1 << (libc::SIGPIPE - 1)),
                0,
                "SIGPIPE not ignored: {sig}"
            );
        }
    }
    assert_has(&p.read("stdin.txt"), "/dev/null");
    assert_eq!(
        p.read("pgid.txt").trim(),
        p.read("pid.txt").trim(),
        "the shell leads its own group"
    );
}

/// Output piped into a reader that has gone (`hotpass run -vv 2>&1 | head
/// -1`): the run still ends, with its own exit code, its work done; a
/// config error still exits 2. Before, a log line that could not be written
/// panicked, and the run then waited forever for its signal thread.
#[test]
fn closed_stdout_and_stderr_neither_crash_nor_hang() {
    let mut config = String::new();
    for i in 0..40 {
        config.push_str(&format!(
            "[tasks.t{i}]\nrun = \"echo {i} > out{i}.txt\"\noutputs = [\"out{i}.txt\"]\n"
        ));
    }
    let p = Project::new(&config);
    let closed = |args: &[&str]| {
        let mut child = p.spawn(args);
        let inner = child.0.as_mut().unwrap();
        drop(inner.stdout.take());
        drop(inner.stderr.take());
        child.wait_code(Duration::from_secs(60))
    };
    // Twice: the first run starts every task, the second checks 40 hits.
    for round in 0..2 {
        assert_eq!(closed(&["run", "-vv"]), Some(0), "round {round}");
    }
    assert_eq!(p.read("out39.txt").trim(), "39");
    p.write("hotpass.toml", "[tasks.a\nrun = 1\n");
    assert_eq!(closed(&["run", "-vv"]), Some(2));
}
