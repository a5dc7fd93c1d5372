//! The example projects load, and the pipeline example behaves as its README says.

use std::path::{Path, PathBuf};

use crate::support::{Project, assert_has, statuses, with_status};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_name() == "node_modules" {
            continue; // linked by the tests that need it, never copied
        }
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn example(name: &str) -> Project {
    let p = Project::new("");
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name),
        p.root(),
    );
    p
}

/// Every example's config is valid, and every input glob in it matches.
#[test]
fn every_example_loads() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = example(e.file_name().to_str().unwrap());
        p.run(&["list"]).code(0);
        // The clickstream's hours are in March; the others' days in January.
        let r = p.run_env(
            &["run", "--dry-run", "--strict"],
            &[
                ("HOTPASS_TODAY", "2025-01-08"),
                if e.file_name() == "clickstream" {
                    ("HOTPASS_NOW", "2025-03-30T22:30:00Z")
                } else {
                    ("HOTPASS_NOW", "")
                },
            ],
        );
        r.code(0);
        assert!(
            !r.stderr.contains("matches no file"),
            "{:?}: {}",
            e.file_name(),
            r.stderr
        );
    }
}

/// Whether the recipes' tools must be installed (CI says so); elsewhere a
/// missing tool skips the recipe's test with a printed reason.
fn tools_required() -> bool {
    std::env::var("HOTPASS_TEST_TOOLS").is_ok_and(|v| v == "1")
}

fn have(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a recipe twice: green with every gate run, then every instance cached.
fn green_then_cached(p: &Project, gates: &[&str]) {
    let (r, s) = p.run_summary(&["run"], &[]);
    assert_eq!(r.code, 0, "{r:?}");
    for g in gates {
        assert_eq!(statuses(&s)[*g], "ok", "{g}: {s}");
    }
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    assert!(statuses(&s).values().all(|v| v == "cached"), "{s}");
}

/// The Python recipe (ruff format, ruff check, mypy, pytest with coverage)
/// runs green with the real tools, stores coverage.xml, and restores it.
#[test]
fn python_recipe_runs_green_then_from_the_cache() {
    let ok = have("ruff", &["--version"])
        && have("mypy", &["--version"])
        && have("python3", &["-c", "import pytest, pytest_cov"]);
    if !ok {
        assert!(
            !tools_required(),
            "ruff, mypy, pytest and pytest-cov must be installed"
        );
        eprintln!("skipped: ruff, mypy, pytest or pytest-cov is not installed");
        return;
    }
    let p = example("python-project");
    green_then_cached(&p, &["gate:format", "gate:lint", "gate:types", "gate:test"]);
    std::fs::remove_file(p.path("coverage.xml")).unwrap();
    p.run(&["run", "gate:test"]).code(0);
    assert_has(&p.read("coverage.xml"), "<coverage");
}

/// The TypeScript recipe (tsc, eslint, node:test) runs green with the
/// packages its lock file pins, then comes from the cache.
#[test]
fn typescript_recipe_runs_green_then_from_the_cache() {
    let modules =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/typescript-library/node_modules");
    if !modules.join(".bin/tsc").exists() {
        assert!(
            !tools_required(),
            "run `npm ci` in examples/typescript-library first"
        );
        eprintln!("skipped: examples/typescript-library has no node_modules (run `npm ci` there)");
        return;
    }
    let p = example("typescript-library");
    std::os::unix::fs::symlink(&modules, p.path("node_modules")).unwrap();
    green_then_cached(&p, &["build", "gate:lint", "gate:test"]);
    std::fs::remove_dir_all(p.path("distribution")).unwrap();
    let (_, s) = p.run_summary(&["run"], &[]);
    assert!(statuses(&s).values().all(|v| v == "cached"), "{s}");
    assert!(
        p.exists("distribution/index.js"),
        "the build's outputs are restored"
    );
}

/// The pipeline backfills a week, then re-runs one changed day and the report only.
#[test]
fn pipeline_example_backfills_and_reruns_incrementally() {
    let p = example("pipeline");
    let (r, s) = p.run_summary(&["run", "--backfill", "2025-01-01..2025-01-07"], &[]);
    r.code(0);
    assert_eq!(s["counts"]["total"], 7 * 5 + 2);
    assert!(p.read("data/report.txt").contains("total"));
    let raw = p.read("data/raw/2025-01-03.csv");
    p.write(
        "data/raw/2025-01-03.csv",
        &format!("{raw}2025-01-03,newco.example,NewCo Ltd,EU\n"),
    );
    let (_, s) = p.run_summary(&["run", "--backfill", "2025-01-01..2025-01-07"], &[]);
    let ran = with_status(&s, "ok");
    assert_eq!(
        ran,
        vec![
            "gate:report",
            "gate:schema@2025-01-03",
            "pipeline:dedupe@2025-01-03",
            "pipeline:ingest@2025-01-03",
            "pipeline:normalize@2025-01-03",
            "pipeline:score@2025-01-03",
            "report"
        ]
    );
}

/// The schema gate fails on a malformed row and stops that day's chain.
#[test]
fn pipeline_schema_gate_catches_bad_rows() {
    let p = example("pipeline");
    let raw = p.read("data/raw/2025-01-02.csv");
    p.write(
        "data/raw/2025-01-02.csv",
        &format!("{raw}2025-01-02,broken.example\n"),
    );
    let (r, s) = p.run_summary(
        &[
            "run",
            "--backfill",
            "2025-01-01..2025-01-02",
            "--keep-going",
        ],
        &[],
    );
    r.code(1);
    let st = statuses(&s);
    assert_eq!(st["gate:schema@2025-01-02"], "failed");
    assert_eq!(st["pipeline:normalize@2025-01-02"], "skipped");
    assert_eq!(st["pipeline:score@2025-01-01"], "ok");
    assert_has(&r.stdout, "bad row");
}

/// The clickstream example: hours cut by Berlin's clocks, rolled up per
/// day. The day the clocks spring forward has 23 hours; a second run is
/// all cached; the last complete hour follows HOTPASS_NOW.
#[test]
fn clickstream_example_rolls_up_hours_across_a_dst_change() {
    let p = example("clickstream");
    let (r, s) = p.run_summary(
        &[
            "run",
            "--backfill",
            "2025-03-29..2025-03-30",
            "clicks:daily",
        ],
        &[],
    );
    r.code(0);
    assert_eq!(s["counts"]["ran"], 24 + 23 + 2, "{}", r.stdout);
    assert_has(&p.read("daily/2025-03-30.txt"), "hours 23");
    assert_has(&p.read("daily/2025-03-29.txt"), "hours 24");
    let (_, s) = p.run_summary(
        &[
            "run",
            "--backfill",
            "2025-03-29..2025-03-30",
            "clicks:daily",
        ],
        &[],
    );
    assert_eq!(s["counts"]["cached"], 49);
    // 10:20 UTC is 12:20 in Berlin (summer time): the last complete hour is 11.
    let (_, s) = p.run_summary(
        &["run", "clicks:count"],
        &[("HOTPASS_NOW", "2025-03-30T10:20:00Z")],
    );
    assert_eq!(
        statuses(&s).keys().collect::<Vec<_>>(),
        vec!["clicks:count@2025-03-30T11"]
    );
}
