//! The example projects load, and the pipeline example behaves as its README says.

use std::path::{Path, PathBuf};

use crate::support::{Project, assert_has, statuses, with_status};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
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

/// Every example's config is valid.
#[test]
fn every_example_loads() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = example(e.file_name().to_str().unwrap());
        p.run(&["list"]).code(0);
    }
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
