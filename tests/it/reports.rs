//! What people and CI see: summary JSON, JUnit, profiles, GitHub Actions
//! groups, the live terminal view, init and doctor.

use crate::support::{Project, assert_has, statuses};

const MIXED: &str = r#"
[tasks.build]
run = "echo building"
[gates.good]
deps = ["build"]
run = "echo fine"
[gates.bad]
deps = ["build"]
run = "echo 'type error in <main> & co'; exit 2"
[tasks.deploy]
deps = ["gate:bad"]
run = "echo deploying"
"#;

/// The summary JSON matches what ran: counts, statuses, gates, critical path.
#[test]
fn summary_json_matches_the_run() {
    let p = Project::new(MIXED);
    let (r, s) = p.run_summary(&["run", "--keep-going"], &[]);
    r.code(1);
    assert_eq!(s["schema_version"], 1);
    assert_eq!(s["exit_code"], 1);
    assert_eq!(s["success"], false);
    assert_eq!(s["counts"]["total"], 4);
    assert_eq!(s["counts"]["failed"], 1);
    assert_eq!(s["counts"]["skipped"], 1);
    let st = statuses(&s);
    assert_eq!(
        (
            st["build"].as_str(),
            st["gate:bad"].as_str(),
            st["deploy"].as_str()
        ),
        ("ok", "failed", "skipped")
    );
    let gates: Vec<(String, String)> = s["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_owned(),
                g["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(gates.contains(&("gate:bad".into(), "failed".into())));
    assert!(gates.contains(&("gate:good".into(), "passed".into())));
    assert_eq!(s["critical_path"][0], "build");
    assert!(r.stdout.contains("Gates"));
}

/// JUnit XML parses, with a case per instance, gates in their own suite, and
/// the failing gate's output in its failure.
#[test]
fn junit_is_valid_and_counts_match() {
    let p = Project::new(MIXED);
    p.run(&["run", "--keep-going", "--junit", "junit.xml"])
        .code(1);
    let xml = p.read("junit.xml");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let suites: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    let by_name = |name: &str| {
        suites
            .iter()
            .find(|s| s.attribute("name") == Some(name))
            .unwrap()
    };
    let gates = by_name("gates");
    assert_eq!(gates.attribute("tests"), Some("2"));
    assert_eq!(gates.attribute("failures"), Some("1"));
    let tasks = by_name("tasks");
    assert_eq!(tasks.attribute("tests"), Some("2"));
    assert_eq!(tasks.attribute("skipped"), Some("1"));
    let failure = doc
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .unwrap();
    assert!(
        failure
            .text()
            .unwrap_or("")
            .contains("type error in <main> & co")
    );
    assert_eq!(failure.attribute("message"), Some("exit code 2"));
}

/// The profile is Chrome trace-event JSON with one complete event per instance.
#[test]
fn profile_has_one_event_per_instance() {
    let p = Project::new(
        "[tasks.a]\nrun = \"true\"\ninputs = [\"x\"]\n[tasks.b]\ndeps = [\"a\"]\nrun = \"true\"\n",
    );
    p.write("x", "1");
    p.run(&["run", "--profile", "trace.json"]).code(0);
    let v: serde_json::Value = serde_json::from_str(&p.read("trace.json")).unwrap();
    let events = v["traceEvents"].as_array().unwrap();
    let complete: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] == "instance")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(complete.len(), 2);
    assert!(complete.contains(&"a") && complete.contains(&"b"));
    for e in events.iter().filter(|e| e["ph"] == "X") {
        assert!(e["ts"].as_f64().unwrap() >= 0.0 && e["dur"].as_f64().unwrap() >= 0.0);
        assert!(e["tid"].as_u64().unwrap() >= 1);
    }
    assert!(
        events.iter().any(|e| e["name"] == "hash"),
        "hashing is a phase of its own"
    );
}

/// A miss starts as soon as the batch of checks that finds it is done, and
/// runs while the rest of a large graph is still checked: in the profile,
/// hits are checked after it started.
#[test]
fn a_miss_starts_while_the_rest_is_still_checked() {
    let mut toml = String::from(
        "[tasks.a]\nrun = \"cat in > out-a\"\ninputs = [\"in\"]\noutputs = [\"out-a\"]\n",
    );
    for i in 0..600 {
        toml += &format!("[tasks.t{i:03}]\nrun = \"true\"\ninputs = [\"shared\"]\n");
    }
    let p = Project::new(&toml);
    p.write("in", "1").write("shared", "s");
    p.run(&["run"]).code(0);
    p.write("in", "2");
    p.run(&["run", "--profile", "trace.json"]).code(0);
    assert_eq!(p.read("out-a"), "2");
    let v: serde_json::Value = serde_json::from_str(&p.read("trace.json")).unwrap();
    let spans: Vec<(&str, f64)> = v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] == "instance")
        .map(|e| (e["name"].as_str().unwrap(), e["ts"].as_f64().unwrap()))
        .collect();
    assert_eq!(spans.len(), 601);
    let started = spans.iter().find(|(n, _)| *n == "a").unwrap().1;
    let later = spans
        .iter()
        .filter(|(n, ts)| *n != "a" && *ts > started)
        .count();
    assert!(later > 0, "every hit was checked before the miss started");
}

/// Under GitHub Actions each instance is one balanced group, and a failing
/// gate gets an error annotation.
#[test]
fn github_actions_groups_and_annotations() {
    let p = Project::new(MIXED);
    let r = p.run_env(&["run", "--keep-going"], &[("GITHUB_ACTIONS", "true")]);
    r.code(1);
    let opens = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("::group::"))
        .count();
    let closes = r.stdout.lines().filter(|l| *l == "::endgroup::").count();
    assert_eq!(opens, 3, "{}", r.stdout);
    assert_eq!(opens, closes);
    let mut depth = 0i32;
    for l in r.stdout.lines() {
        if l.starts_with("::group::") {
            depth += 1;
            assert_eq!(depth, 1, "groups never nest");
        } else if l == "::endgroup::" {
            depth -= 1;
        }
    }
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("::error") && l.contains("gate:bad")),
        "{}",
        r.stdout
    );
}

/// On a real pseudo-terminal the live view draws, and the final screen holds the summary.
#[test]
fn terminal_view_draws_on_a_pty() {
    let p = Project::new(
        "[tasks.slow]\nrun = \"echo working; sleep 1\"\n[tasks.quick]\nrun = \"echo quick\"\n",
    );
    let out = p
        .on_pty("run -j 2")
        .output()
        .expect("script(1) from util-linux");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(
        screen.contains("left |"),
        "the progress view was drawn: {screen}"
    );
    assert!(screen.contains("✓"), "{screen}");
    let tail = &screen[screen.rfind("Summary").expect("a summary")..];
    assert!(
        tail.contains("slow") && tail.contains("quick") && tail.contains("2 ran"),
        "{tail}"
    );
}

/// init writes a config `hotpass list` accepts, for each kind of project.
#[test]
fn init_writes_a_valid_config_for_each_kind() {
    let kinds: &[(&str, &str, &str)] = &[
        ("Cargo.toml", "[package]\nname = \"x\"\n", "gate:clippy"),
        ("pyproject.toml", "[project]\nname = \"x\"\n", "gate:types"),
        (
            "package.json",
            "{\"scripts\": {\"build\": \"tsc\", \"test\": \"jest\", \"lint\": \"eslint .\"}}",
            "gate:lint",
        ),
        ("go.mod", "module x\n", "gate:vet"),
        (
            "Makefile",
            "all: build\nbuild:\n\tcc x.c\ntest:\n\t./t\n",
            "gate:make-test",
        ),
        ("README", "nothing known\n", "hello"),
    ];
    for (file, contents, expect) in kinds {
        let p = Project::new("");
        std::fs::remove_file(p.path("hotpass.toml")).unwrap();
        p.write(file, contents);
        p.run(&["init"]).code(0);
        let r = p.run(&["list"]);
        r.code(0);
        assert!(r.stdout.contains(expect), "{file}: {}", r.stdout);
        let again = p.run(&["init"]);
        again.code(2);
        assert_has(&again.stderr, "--force");
        p.run(&["init", "--force"]).code(0);
    }
}

/// doctor passes a healthy project and flags a missing command and an unwritable cache.
#[test]
fn doctor_flags_problems() {
    let p = Project::new("[tasks.a]\nrun = \"echo fine\"\n");
    let r = p.run(&["doctor"]);
    r.code(0);
    assert!(r.stdout.contains("everything looks right"));
    let p = Project::new("[tasks.a]\nrun = \"no-such-tool-xyz --flag\"\n");
    let r = p.run(&["doctor"]);
    r.code(1);
    assert_has(&r.stdout, "no-such-tool-xyz");
    let p = Project::new("[settings]\ncache_dir = \"blocker/cache\"\n[tasks.a]\nrun = \"true\"\n");
    p.write("blocker", "a file where the cache folder should be");
    let r = p.run(&["doctor"]);
    r.code(1);
    assert_has(&r.stdout, "FAIL cache writable");
}

/// An interrupted gate is counted as interrupted, never failed: in the
/// summary text, the summary JSON and the gates table, and in JUnit as an
/// error of type `interrupted` (not a failure).
#[test]
fn interrupted_gates_are_counted_as_interrupted() {
    let p = Project::new("[gates.slow]\nrun = \"touch started; sleep 30\"\n");
    let mut child = p.spawn(&["run", "--summary", "s.json", "--junit", "j.xml"]);
    assert!(
        crate::support::wait_for(std::time::Duration::from_secs(10), || p.exists("started")),
        "the gate did not start"
    );
    child.signal(libc::SIGINT);
    let (code, text) = child
        .wait_output(std::time::Duration::from_secs(10))
        .expect("hotpass exits after Ctrl-C");
    assert_eq!(code, Some(130));
    assert_has(
        &text,
        "1 instances: 1 ran, 0 cached, 0 failed, 1 interrupted, 0 skipped",
    );
    assert_has(&text, "gate:slow  interrupted");
    assert!(!text.contains("FAILED"), "{text}");
    let s: serde_json::Value = serde_json::from_str(&p.read("s.json")).unwrap();
    assert_eq!(s["counts"]["interrupted"], 1);
    assert_eq!(s["counts"]["failed"], 0);
    assert_eq!(s["gates"][0]["verdict"], "interrupted");
    let junit = p.read("j.xml");
    let doc = roxmltree::Document::parse(&junit).unwrap();
    let error = doc
        .descendants()
        .find(|n| n.has_tag_name("error"))
        .expect("an <error> element");
    assert_eq!(error.attribute("type"), Some("interrupted"));
    assert!(!doc.descendants().any(|n| n.has_tag_name("failure")));
}

/// A run that comes entirely from the cache has no critical path: nothing
/// took time of its own.
#[test]
fn a_fully_cached_run_has_no_critical_path() {
    let p = Project::new(
        "[tasks.a]\nrun = \"echo a > a.txt\"\ninputs = [\"in\"]\noutputs = [\"a.txt\"]\n\
         [tasks.b]\ndeps = [\"a\"]\nrun = \"cat a.txt > b.txt\"\ninputs = [\"in\"]\noutputs = [\"b.txt\"]\n",
    );
    p.write("in", "1\n");
    let r = p.run(&["run"]);
    assert_has(&r.stdout, "critical path: a -> b");
    let (r, s) = p.run_summary(&["run"], &[]);
    assert!(!r.stdout.contains("critical path"), "{}", r.stdout);
    assert_eq!(s["critical_path"], serde_json::json!([]));
}

/// On a terminal, tasks are asked for colour (FORCE_COLOR and friends);
/// off a terminal they are not; neither changes the key, `color = false`
/// opts out, and prefixed output has no escapes.
#[test]
fn tasks_see_force_color_only_when_hotpass_is_coloured() {
    let p = Project::new(
        "[tasks.paint]\nrun = \"echo FORCE=${FORCE_COLOR:-unset} CARGO=${CARGO_TERM_COLOR:-unset} > seen.txt; printf '\\\\033[31mred\\\\033[0m\\\\n'\"\ninputs = [\"in\"]\n\
         [tasks.plain]\ncolor = false\nrun = \"echo FORCE=${FORCE_COLOR:-unset} > plain.txt\"\ncache = false\n",
    );
    p.write("in", "1\n");
    let out = p.on_pty("run").output().expect("script(1) from util-linux");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(p.read("seen.txt"), "FORCE=1 CARGO=always\n");
    assert_eq!(
        p.read("plain.txt"),
        "FORCE=unset\n",
        "color = false opts out"
    );
    // Off a terminal: the same key (a hit), and when forced to run, no colour.
    let (_, s) = p.run_summary(&["run", "paint"], &[]);
    assert_eq!(crate::support::instance(&s, "paint")["status"], "cached");
    let r = p.run(&["run", "paint", "--force"]);
    r.code(0);
    assert_eq!(p.read("seen.txt"), "FORCE=unset CARGO=unset\n");
    assert!(r.stdout.contains("paint | red\n"), "{}", r.stdout);
    assert!(
        !r.stdout.contains('\u{1b}'),
        "prefixed output keeps no escapes"
    );
}

/// On a terminal, the output of an instance that runs alone streams while it
/// runs: the task waits for a file that the test writes only after seeing
/// the task's first line on the screen.
#[test]
fn a_lone_instance_streams_its_output_on_a_terminal() {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    let p = Project::new(
        "[tasks.suite]\nrun = \"echo tick1; i=0; while [ ! -f go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo tick2\"\n",
    );
    let mut child = p
        .on_pty("run")
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("script(1) from util-linux");
    let screen = Arc::new(Mutex::new(Vec::new()));
    let mut pipe = child.stdout.take().unwrap();
    let sink = screen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let seen = |s: &str| String::from_utf8_lossy(&screen.lock().unwrap()).contains(s);
    let streamed = crate::support::wait_for(Duration::from_secs(10), || seen("tick1"));
    p.write("go", "");
    let done = crate::support::wait_for(Duration::from_secs(15), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !done {
        let _ = child.kill();
    }
    let _ = child.wait();
    reader.join().unwrap();
    assert!(streamed, "tick1 was not shown while the task ran");
    assert!(
        seen("tick2"),
        "{}",
        String::from_utf8_lossy(&screen.lock().unwrap())
    );
}

/// `--output prefixed` gives prefixed lines on a terminal too, as off one.
#[test]
fn output_prefixed_works_on_a_terminal() {
    let p = Project::new("[tasks.hello]\nrun = \"echo out-line\"\n");
    let out = p
        .on_pty("--output prefixed run")
        .output()
        .expect("script(1) from util-linux");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(screen.contains("hello | out-line"), "{screen}");
}

/// doctor says where a program missing from PATH is in the project, and
/// how to reach it.
#[test]
fn doctor_points_at_project_local_tools() {
    let p = Project::new(
        "[gates.types]\nrun = \"mypy-xyz src\"\n[gates.lint]\nrun = \"eslint-xyz .\"\n",
    );
    p.write(".venv/bin/mypy-xyz", "#!/bin/sh\n");
    p.write("node_modules/.bin/eslint-xyz", "#!/bin/sh\n");
    let r = p.run(&["doctor"]);
    r.code(1);
    assert_has(
        &r.stdout,
        "`mypy-xyz` (used by gate:types) — found in .venv/bin",
    );
    assert_has(&r.stdout, "uv run mypy-xyz");
    assert_has(
        &r.stdout,
        "`eslint-xyz` (used by gate:lint) — found in node_modules/.bin: write `npx eslint-xyz`",
    );
}
