//! Bad configuration: every problem exits 2 before anything runs, with a
//! diagnostic that names the file, line and column and says what to do.

use crate::support::{Project, assert_has};

fn check(config: &str) -> String {
    let p = Project::new(config);
    let r = p.run(&["run"]);
    r.code(2);
    assert!(!p.exists("ran"), "nothing may run on a config error");
    r.stderr
}

/// Malformed TOML points at the broken line.
#[test]
fn malformed_toml_is_located() {
    let err = check("[tasks.a]\nrun = \"touch ran\"\ndeps = [\n");
    assert!(err.contains("hotpass.toml:"), "{err}");
    insta::assert_snapshot!(err);
}

/// An unknown field suggests the closest known one.
#[test]
fn unknown_field_suggests_closest() {
    let err = check("[tasks.a]\nrun = \"touch ran\"\ninptus = [\"x\"]\n");
    assert!(err.contains("did you mean `inputs`?"), "{err}");
    assert!(err.contains("hotpass.toml:3:1"), "{err}");
    insta::assert_snapshot!(err);
}

/// A value of the wrong type is reported at the value.
#[test]
fn wrong_type_is_located() {
    let err = check("[tasks.a]\nrun = \"touch ran\"\ndeps = \"b\"\n");
    assert!(err.contains("hotpass.toml:3:8"), "{err}");
    insta::assert_snapshot!(err);
}

/// An unknown dependency suggests the closest task names.
#[test]
fn unknown_dep_suggests_closest_name() {
    let err = check(
        "[tasks.build]\nrun = \"touch ran\"\n\n[tasks.test]\nrun = \"true\"\ndeps = [\"biuld\"]\n",
    );
    assert!(err.contains("did you mean `build`?"), "{err}");
    assert!(err.contains("hotpass.toml:6:9"), "{err}");
    insta::assert_snapshot!(err);
}

/// A task defined in hotpass.toml and again in an included file shows both places.
#[test]
fn duplicate_task_across_files_shows_both() {
    let p = Project::new("[tasks.lint]\nrun = \"touch ran\"\n");
    p.write(
        "tasks/more.toml",
        "[tasks.other]\nrun = \"true\"\n\n[tasks.lint]\nrun = \"true\"\n",
    );
    let r = p.run(&["run"]);
    r.code(2);
    assert_has(&r.stderr, "tasks/more.toml:4:8");
    assert_has(&r.stderr, "hotpass.toml:1:8");
    insta::assert_snapshot!(r.stderr);
}

/// A dependency cycle is shown whole.
#[test]
fn cycle_is_shown_whole() {
    let err = check(
        "[tasks.a]\nrun = \"touch ran\"\ndeps = [\"b\"]\n\n[tasks.b]\nrun = \"true\"\ndeps = [\"c\"]\n\n[tasks.c]\nrun = \"true\"\ndeps = [\"a\"]\n",
    );
    assert!(err.contains("a -> b -> c -> a"), "{err}");
    insta::assert_snapshot!(err);
}

/// A name with a space is refused, with the allowed characters.
#[test]
fn invalid_name_is_refused() {
    let err = check("[tasks.\"my task\"]\nrun = \"touch ran\"\n");
    assert!(err.contains("invalid task name `my task`"), "{err}");
    insta::assert_snapshot!(err);
}

/// A timeout that is not a duration is refused.
#[test]
fn bad_timeout_is_refused() {
    let err = check("[tasks.a]\nrun = \"touch ran\"\ntimeout = \"soon\"\n");
    assert!(err.contains("hotpass.toml:3:11"), "{err}");
    insta::assert_snapshot!(err);
}

/// Several problems are reported in one go.
#[test]
fn all_problems_are_reported_at_once() {
    let err = check("[tasks.a]\nrun = \"touch ran\"\ndeps = [\"nope\"]\ntimeout = \"x\"\n");
    assert!(err.contains("found 2 problems"), "{err}");
    assert!(err.contains("unknown dependency"), "{err}");
    assert!(err.contains("invalid timeout"), "{err}");
}

/// Settings are refused in an included file.
#[test]
fn settings_in_included_file_are_refused() {
    let p = Project::new("[tasks.a]\nrun = \"touch ran\"\n");
    p.write("tasks/x.toml", "[settings]\njobs = 2\n");
    let r = p.run(&["run"]);
    r.code(2);
    assert_has(&r.stderr, "only allowed in hotpass.toml");
}

/// No hotpass.toml anywhere up the tree says how to make one.
#[test]
fn missing_config_suggests_init() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::support::bin())
        .arg("list")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hotpass init"));
}

/// The config is found in a parent folder, and -C / --config override.
#[test]
fn config_is_found_upwards_and_overridable() {
    let p = Project::new("[tasks.a]\ndescription = \"root task\"\nrun = \"true\"\n");
    p.write("sub/deeper/.keep", "");
    let out = std::process::Command::new(crate::support::bin())
        .arg("list")
        .current_dir(p.path("sub/deeper"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("root task"));
    p.write("other/alt.toml", "[tasks.b]\ndescription = \"alt task\"\n");
    let r = p.run(&["--config", "other/alt.toml", "list"]);
    r.code(0);
    assert!(r.stdout.contains("alt task"));
    let r = p.run(&["-C", "other", "--config", "alt.toml", "list"]);
    assert!(r.stdout.contains("alt task"), "{r:?}");
}

/// A timeout too large to be meant (once a panic and a hang, adding it to
/// the clock) is a located config error.
#[test]
fn huge_timeout_is_refused() {
    let p = Project::new("[tasks.t]\nrun = \"true\"\ntimeout = 9223372036854775807\n");
    let r = p.run(&["run"]);
    r.code(2);
    assert!(
        r.stderr.contains("longer than the most hotpass accepts"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hotpass.toml:3"), "{}", r.stderr);
}

/// Every mistake in one run: an unknown field in hotpass.toml, a wrong type
/// in an included file (which says what included it) and an unknown
/// dependency behind the typo'd field are all reported together.
#[test]
fn every_problem_across_files_is_reported_in_one_run() {
    let p = Project::new(
        "[tasks.build]\nrun = \"touch ran\"\ninptus = [\"src\"]\ndeps = [\"codegne\"]\n\n[tasks.codegen]\nrun = \"true\"\n",
    );
    p.write(
        "tasks/deploy.toml",
        "[tasks.deploy]\nrun = \"true\"\ntimeout = [1]\n",
    );
    let r = p.run(&["run"]);
    r.code(2);
    assert!(!p.exists("ran"));
    let err = r.stderr.clone();
    assert!(err.contains("found 3 problems"), "{err}");
    assert!(err.contains("unknown field `inptus`"), "{err}");
    assert!(err.contains("did you mean `inputs`?"), "{err}");
    assert!(err.contains("tasks/deploy.toml:3:11"), "{err}");
    assert!(
        err.contains("note: tasks/deploy.toml is read because the include pattern `tasks/*.toml`"),
        "{err}"
    );
    assert!(err.contains("unknown dependency `codegne`"), "{err}");
    insta::assert_snapshot!(err);
}

/// Runs `p`, expecting exit 2 and fewer than `most` bytes of diagnostics.
#[track_caller]
fn refused_briefly(p: &Project, most: usize) -> crate::support::Run {
    let r = p.run(&["run"]);
    r.code(2);
    assert!(
        r.stderr.len() < most,
        "{} bytes of diagnostics",
        r.stderr.len()
    );
    r
}

/// Pathological configs end with a clear answer, never a panic, and their
/// diagnostics stay short (issue 17): a 65,536-character task name in
/// `list` and the dry run; a dependency name of 1 MB among 5,000 tasks; a
/// cycle through 10,000 tasks; a 70,000-character line with a mistake on it.
#[test]
fn pathological_configs_end_cleanly_with_short_diagnostics() {
    let long = "a".repeat(65_536);
    let p = Project::new(&format!("[tasks.{long}]\nrun = \"true\"\n"));
    p.run(&["list"]).code(0);
    p.run(&["run", "--dry-run"]).code(0);

    let mut toml = String::new();
    for i in 0..5000 {
        toml.push_str(&format!("[tasks.t{i}]\nrun = \"true\"\n"));
    }
    toml.push_str(&format!(
        "[tasks.x]\nrun = \"true\"\ndeps = [\"{}\"]\n",
        "b".repeat(1 << 20)
    ));
    let p = Project::new(&toml);
    let r = refused_briefly(&p, 4_000);
    assert!(
        r.stderr.contains("unknown dependency"),
        "{}",
        &r.stderr[..500.min(r.stderr.len())]
    );

    let mut toml = String::new();
    for i in 0..10_000 {
        toml.push_str(&format!(
            "[tasks.c{i}]\nrun = \"true\"\ndeps = [\"c{}\"]\n",
            (i + 1) % 10_000
        ));
    }
    let p = Project::new(&toml);
    let r = refused_briefly(&p, 8_000);
    assert!(r.stderr.contains("9992 more"), "{}", r.stderr);

    let p = Project::new(&format!(
        "[tasks.a]\nrun = \"true\"\ndeps = [\"{}\"]\n",
        "q".repeat(70_000)
    ));
    let r = refused_briefly(&p, 4_000);
    assert!(r.stderr.contains("hotpass.toml:3:9"), "{}", r.stderr);
}

/// Errors name the file they are about (issue 17): an input that cannot be
/// read (a path through a symlink loop: unreadable even for root), a hotpass.toml that is
/// a folder, and a config that is not UTF-8 (located at its first bad byte).
#[test]
fn errors_name_the_file_they_are_about() {
    let p = Project::new("[tasks.t]\nrun = \"true\"\ninputs = [\"loop/x\"]\n");
    std::os::unix::fs::symlink("loop", p.path("loop")).unwrap();
    let r = p.run(&["run"]);
    assert_has(&r.stderr, "could not hash its inputs");
    assert_has(&r.stderr, &format!("{}", p.path("loop").display()));
    let r = p.run(&["run", "--dry-run"]);
    r.code(1);
    assert_has(&r.stderr, &format!("{}", p.path("loop").display()));

    let p = Project::new("");
    std::fs::remove_file(p.path("hotpass.toml")).unwrap();
    std::fs::create_dir(p.path("hotpass.toml")).unwrap();
    let r = p.run(&["run"]);
    r.code(2);
    assert_has(&r.stderr, "is a folder, not a file");

    let p = Project::new("");
    std::fs::write(p.path("hotpass.toml"), b"[tasks.a]\nrun = \"\xff\"\n").unwrap();
    let r = p.run(&["run"]);
    r.code(2);
    assert_has(&r.stderr, "not valid UTF-8");
    assert_has(&r.stderr, "hotpass.toml:2:8");
}

/// Outputs outside the project are config errors, located: absolute, or
/// climbing out with `..` (also from a task's cwd) (issue 17).
#[test]
fn outputs_outside_the_project_are_refused() {
    for (cwd, output) in [
        ("", "/tmp/out.txt"),
        ("", "../escaped.txt"),
        ("cwd = \"sub\"\n", "../../x"),
    ] {
        let err = check(&format!(
            "[tasks.a]\nrun = \"touch ran\"\n{cwd}outputs = [\"{output}\"]\n"
        ));
        assert!(
            err.contains(&format!("output `{output}` is outside the project")),
            "{err}"
        );
    }
    // Inside, even through `..` from a sub-folder cwd, is fine.
    let p = Project::new("[tasks.a]\nrun = \"true\"\ncwd = \"sub\"\noutputs = [\"../ok.txt\"]\n");
    p.run(&["list"]).code(0);
}

/// An input named longer than the file system allows matches nothing (a
/// warning), like a missing file: the dry run does not fail on it. Found by
/// the fuzz test (case 561 of its seed).
#[test]
fn an_impossibly_long_input_name_matches_nothing() {
    // Longer than a file name may be (255), shorter than a path may be.
    let long = "x".repeat(1_000);
    let p = Project::new(&format!(
        "[tasks.t]\nrun = \"true\"\ninputs = [\"data/{long}\"]\n"
    ));
    p.run(&["run", "--dry-run"]).code(0);
    let r = p.run(&["run"]);
    r.code(0);
    assert_has(&r.stderr, "matches no file");
}

/// A glob longer than any path is a located config error, not minutes of
/// compiling it; found by the fuzz test.
#[test]
fn a_glob_longer_than_any_path_is_refused() {
    let long = format!("{}source/**", "x".repeat(60_000));
    let p = Project::new(&format!(
        "[settings]\nstrict = true\n[tasks.t]\nrun = \"touch ran\"\ninputs = [\"{long}\"]\n"
    ));
    let r = p.run(&["run", "--dry-run"]);
    r.code(2);
    assert_has(&r.stderr, "is longer than any path (4096)");
}
