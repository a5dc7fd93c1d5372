//! Keys you can trust: globs that match nothing, tools in the key, early
//! cutoff, strict env mode and `hotpass inputs`.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Project, assert_has, instance};

/// A typo'd input glob warns with the task, the glob and where it is
/// written; --strict (or settings.strict) makes it an error and runs nothing.
#[test]
fn input_glob_matching_nothing_warns_and_strict_refuses() {
    let config =
        "[gates.lint]\nrun = \"touch ran\"\ninputs = [\"scr/**/*.py\", \"pyproject.toml\"]\n";
    let p = Project::new(config);
    p.write("pyproject.toml", "[project]\n");
    p.write("src/a.py", "x = 1\n");
    let r = p.run(&["run"]);
    r.code(0);
    assert_has(&r.stderr, "gate:lint");
    assert_has(&r.stderr, "`scr/**/*.py`");
    assert_has(&r.stderr, "hotpass.toml:3:11");
    assert_has(&r.stderr, "matches no file");
    std::fs::remove_file(p.path("ran")).unwrap();
    let r = p.run(&["doctor"]);
    r.code(1);
    assert_has(
        &r.stdout,
        "FAIL input globs: matching no file: `scr/**/*.py` of gate:lint (hotpass.toml:3:11)",
    );
    // The same decision as a run: cached now, and a changed input would run.
    assert_has(
        &r.stdout,
        "ok   cache plan: all 1 instances would come from the cache",
    );
    p.write("pyproject.toml", "[project]\nname = \"x\"\n");
    let r = p.run(&["doctor"]);
    assert_has(
        &r.stdout,
        "0 of 1 instances would come from the cache; the others would run (file:pyproject.toml ×1)",
    );

    let r = p.run(&["run", "--strict"]);
    r.code(2);
    assert_has(&r.stderr, "hotpass::config::empty_glob");
    assert_has(&r.stderr, "scr/**/*.py");
    assert!(!p.exists("ran"), "nothing runs under --strict");

    p.write(
        "hotpass.toml",
        &format!("[settings]\nstrict = true\n{config}"),
    );
    p.run(&["run", "--dry-run"]).code(2);
    assert!(!p.exists("ran"));
}

/// A glob that a dependency's outputs will fill is not a strict error:
/// it can only be judged once the dependency has run.
#[test]
fn strict_allows_globs_a_dependency_fills() {
    let p = Project::new(
        "[tasks.gen]\nrun = \"mkdir -p dist && echo a > dist/a.txt\"\ninputs = [\"gen.txt\"]\noutputs = [\"dist/a.txt\"]\n\
         [tasks.use]\ndeps = [\"gen\"]\nrun = \"cat dist/*.txt > used.txt\"\ninputs = [\"dist/*.txt\"]\n",
    );
    p.write("gen.txt", "1\n");
    let r = p.run(&["run", "--strict"]);
    r.code(0);
    assert_eq!(p.read("used.txt"), "a\n");
    assert!(!r.stderr.contains("matches no file"), "{}", r.stderr);
}

/// An output glob that matched nothing after a success is a warning naming it.
#[test]
fn output_glob_matching_nothing_after_a_run_warns() {
    let p = Project::new(
        "[tasks.t]\nrun = \"echo hi > elsewhere.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"out.txt\"]\n",
    );
    p.write("in.txt", "1\n");
    let r = p.run(&["run"]);
    r.code(0);
    assert_has(&r.stderr, "output glob `out.txt`");
    assert_has(&r.stderr, "hotpass.toml:4:12");
    assert_has(&r.stderr, "matched nothing after a successful run");
    let r = p.run(&["doctor"]);
    assert_has(&r.stdout, "FAIL output globs");
    assert_has(&r.stdout, "`out.txt` of t (hotpass.toml:4:12)");
}

/// A project whose `bin/mytool` prints `text`, and a PATH that finds it first.
fn with_tool(config: &str, text: &str) -> (Project, String) {
    let p = Project::new(config);
    p.write("in.txt", "1\n");
    tool(&p, text);
    let path = format!(
        "{}:{}",
        p.path("bin").display(),
        std::env::var("PATH").unwrap()
    );
    (p, path)
}

fn tool(p: &Project, text: &str) {
    let path = p.path("bin/mytool");
    p.write("bin/mytool", &format!("#!/bin/sh\necho {text}\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Replacing a program on PATH by another is a miss with `tool:NAME`; the
/// next run hits again.
#[test]
fn replacing_a_tool_is_a_miss_naming_it() {
    let (p, path) = with_tool(
        "[tasks.t]\nrun = \"mytool > out.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"out.txt\"]\n",
        "one",
    );
    let env = [("PATH", path.as_str())];
    let (r, s) = p.run_summary(&["run"], &env);
    r.code(0);
    assert_eq!(instance(&s, "t")["status"], "ok");
    let (_, s) = p.run_summary(&["run"], &env);
    assert_eq!(instance(&s, "t")["status"], "cached");
    tool(&p, "two");
    let (_, s) = p.run_summary(&["run"], &env);
    assert_eq!(instance(&s, "t")["status"], "ok");
    assert_eq!(instance(&s, "t")["reason"], "tool:mytool");
    assert_eq!(p.read("out.txt"), "two\n");
    let (_, s) = p.run_summary(&["run"], &env);
    assert_eq!(instance(&s, "t")["status"], "cached");
    let r = p.run_env(&["explain", "t"], &env);
    assert_has(&r.stdout, "HIT");
}

/// `tools = false` leaves programs out of the key.
#[test]
fn tools_false_leaves_programs_out() {
    let (p, path) = with_tool(
        "[tasks.t]\nrun = \"mytool > out.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"out.txt\"]\ntools = false\n",
        "one",
    );
    let env = [("PATH", path.as_str())];
    p.run_env(&["run"], &env).code(0);
    tool(&p, "two");
    let (_, s) = p.run_summary(&["run"], &env);
    assert_eq!(instance(&s, "t")["status"], "cached");
}

const CUTOFF: &str = r#"
[tasks.codegen]
run = "tr -d ' ' < spec.txt > gen.txt"
inputs = ["spec.txt"]
outputs = ["gen.txt"]

[tasks.build]
deps = ["codegen"]
run = "cp gen.txt app.txt; echo ran >> build.count"
inputs = ["build.sh"]
outputs = ["app.txt"]
"#;

/// A dependency that re-runs and writes byte-identical outputs leaves its
/// dependent cached (early cutoff), and the dry run and explain say why; a
/// dependency whose outputs change re-runs its dependent.
#[test]
fn early_cutoff_keeps_dependents_cached_when_outputs_are_unchanged() {
    let p = Project::new(CUTOFF);
    p.write("spec.txt", "a b\n");
    p.write("build.sh", "\n");
    p.run(&["run"]).code(0);
    assert_eq!(p.read("build.count"), "ran\n");

    p.write("spec.txt", "a  b\n"); // codegen re-runs; gen.txt stays "ab"
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(instance(&s, "codegen")["status"], "ok");
    assert_eq!(instance(&s, "build")["status"], "cached");
    assert_eq!(p.read("build.count"), "ran\n");

    // The entry of build was stored when codegen had another key.
    let r = p.run(&["run", "--dry-run=json"]);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let build = plan["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "build")
        .unwrap();
    assert_eq!(build["cached"], true);
    assert_eq!(build["early_cutoff"], serde_json::json!(["codegen"]));
    let r = p.run(&["explain", "build"]);
    assert_has(&r.stdout, "HIT");
    assert_has(
        &r.stdout,
        "dep:codegen re-ran since then, outputs unchanged",
    );

    p.write("spec.txt", "a c\n"); // gen.txt changes
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(instance(&s, "build")["status"], "ok");
    assert_eq!(instance(&s, "build")["reason"], "dep:codegen");
    assert_eq!(p.read("build.count"), "ran\nran\n");
}

/// In strict env mode a task sees neither an undeclared variable nor one
/// not passed, but does see `pass_env` matches and its `$NAME` inputs.
#[test]
fn strict_env_hides_undeclared_variables() {
    let p = Project::new(
        "[settings]\nenv_mode = \"strict\"\n\
         [tasks.t]\nrun = \"echo \\\"U=${UNDECLARED:-none} P=${PASS_ME:-none} N=${NAMED:-none} H=${HOME:+home}\\\" > seen.txt\"\n\
         inputs = [\"$NAMED\"]\ncache = false\npass_env = [\"PASS_*\"]\n",
    );
    p.run_env(
        &["run"],
        &[
            ("UNDECLARED", "1"),
            ("PASS_ME", "2"),
            ("NAMED", "3"),
            ("HOME", "/h"),
        ],
    )
    .code(0);
    assert_eq!(p.read("seen.txt"), "U=none P=2 N=3 H=home\n");
    // Loose, the default: everything is inherited.
    p.write(
        "hotpass.toml",
        "[tasks.t]\nrun = \"echo \\\"U=${UNDECLARED:-none}\\\" > seen.txt\"\ncache = false\n",
    );
    p.run_env(&["run"], &[("UNDECLARED", "1")]).code(0);
    assert_eq!(p.read("seen.txt"), "U=1\n");
}

/// `hotpass inputs --json` lists exactly the files under each glob, the
/// `$NAME` inputs by name, the tools and the dependencies.
#[test]
fn inputs_lists_what_the_key_covers() {
    let p = Project::new(
        "[tasks.up]\nrun = \"echo up > up.txt\"\ninputs = [\"up.in\"]\noutputs = [\"up.txt\"]\n\
         [tasks.t]\ndeps = [\"up\"]\nrun = \"cat src/a.txt\"\ninputs = [\"src/*.txt\", \"!src/skip.txt\", \"$TOKEN\", \"none/*\"]\n",
    );
    p.write("up.in", "1\n");
    p.write("src/a.txt", "aaa\n");
    p.write("src/b.txt", "b\n");
    p.write("src/skip.txt", "s\n");
    p.run(&["run"]).code(0);
    let r = p.run_env(&["inputs", "t", "--json"], &[("TOKEN", "hunter2")]);
    r.code(0);
    assert!(!r.stdout.contains("hunter2"));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let files: Vec<(&str, u64)> = v["globs"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["size"].as_u64().unwrap()))
        .collect();
    assert_eq!(v["globs"][0]["glob"], "src/*.txt");
    assert_eq!(files, vec![("src/a.txt", 4), ("src/b.txt", 2)]);
    assert_eq!(v["globs"][1]["glob"], "none/*");
    assert_eq!(v["globs"][1]["files"], serde_json::json!([]));
    assert_eq!(
        v["env"],
        serde_json::json!([{ "name": "TOKEN", "set": true }])
    );
    assert_eq!(v["tools"][0]["name"], "cat");
    assert!(v["tools"][0]["hash"].is_string());
    assert_eq!(v["deps"][0]["name"], "up");
    assert!(v["deps"][0]["result"].is_string());
    let text = p.run(&["inputs", "t"]);
    assert_has(&text.stdout, "src/*.txt: 2 files");
    assert_has(&text.stdout, "none/*: matches no file");
}

/// `-q` prints the final line only when everything passes, and a failure's
/// output and verdict when something fails.
#[test]
fn quiet_prints_failures_and_the_last_line() {
    let p = Project::new(
        "[tasks.good]\nrun = \"echo good-output\"\n[tasks.bad]\nrun = \"echo bad-output; exit 3\"\n",
    );
    let r = p.run(&["-q", "run", "good"]);
    r.code(0);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert_has(&r.stdout, "1 instances: 1 ran");
    let r = p.run(&["-q", "run", "--keep-going"]);
    r.code(1);
    assert!(!r.stdout.contains("good-output"), "{}", r.stdout);
    assert_has(&r.stdout, "bad  | bad-output");
    assert_has(&r.stdout, "failed (exit 3)");
    assert_has(&r.stdout, "2 instances: 2 ran, 0 cached, 1 failed");
}

/// `-v` says, per instance, its key, how many files each glob matched, and
/// whether it hit or why it runs.
#[test]
fn verbose_names_keys_matches_and_reasons() {
    let p =
        Project::new("[gates.lint]\nrun = \"true\"\ninputs = [\"src/*.py\", \"pyproject.toml\"]\n");
    p.write("src/a.py", "a\n");
    p.write("src/b.py", "b\n");
    p.write("pyproject.toml", "\n");
    let r = p.run(&["-v", "run"]);
    r.code(0);
    assert_has(
        &r.stderr,
        "gate:lint: 3 input files (src/*.py: 2, pyproject.toml: 1)",
    );
    assert_has(&r.stderr, "gate:lint: key ");
    assert_has(&r.stderr, "gate:lint: runs (no-entry)");
    let r = p.run(&["-v", "run"]);
    assert_has(&r.stderr, "gate:lint: cached");
}

/// A partitioned instance whose glob matches nothing (a day without raw
/// files) is a warning naming the instance, even under --strict.
#[test]
fn an_empty_partition_warns_but_is_not_a_strict_error() {
    let p = Project::new(
        "[tasks.ingest]\nrun = \"cat raw/{partition}/*.csv > /dev/null || true\"\n\
         inputs = [\"raw/{partition}/*.csv\"]\npartitions = { daily = { start = \"2025-01-01\" } }\n",
    );
    p.write("raw/2025-01-01/a.csv", "x\n");
    let r = p.run(&["run", "--strict", "--backfill", "2025-01-01..2025-01-02"]);
    r.code(0);
    assert_has(
        &r.stderr,
        "ingest@2025-01-02: input glob `raw/2025-01-02/*.csv`",
    );
    assert!(!r.stderr.contains("ingest@2025-01-01:"), "{}", r.stderr);
}

/// `-v` gives the sizes of what is stored and restored; `-vv` the
/// scheduler's story.
#[test]
fn verbose_gives_store_and_restore_sizes() {
    let p = Project::new(
        "[tasks.t]\nrun = \"printf 12345 > out.txt\"\ninputs = [\"in\"]\noutputs = [\"out.txt\"]\n",
    );
    p.write("in", "1\n");
    let r = p.run(&["-v", "run"]);
    assert_has(&r.stderr, "t: stored 1 output files (5 bytes)");
    std::fs::remove_file(p.path("out.txt")).unwrap();
    let r = p.run(&["-vv", "run"]);
    assert_has(&r.stderr, "t: cached; restored 1 files (5 bytes)");
    assert_has(&r.stderr, "t: finished by its check");
    assert_has(&r.stderr, "t: done, cached");
}
