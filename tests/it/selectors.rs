//! Selectors: exact names, globs, and unknown names with suggestions.

use crate::support::{Project, assert_has, statuses};

const CONFIG: &str = r#"
[tasks.build]
run = "echo build >> order"
[tasks.test]
run = "echo test >> order"
deps = ["build"]
[gates.types]
run = "echo types >> order"
[gates.lint]
run = "echo lint >> order"
"#;

/// An unknown selector exits 2, suggests the closest name, and runs nothing.
#[test]
fn unknown_selector_suggests_closest_name() {
    let p = Project::new(CONFIG);
    let r = p.run(&["run", "tset"]);
    r.code(2);
    assert_has(&r.stderr, "did you mean `test`?");
    assert!(!p.exists("order"));
}

/// A glob selects every matching task; dependencies run first.
#[test]
fn glob_selects_gates_only() {
    let p = Project::new(CONFIG);
    let (r, s) = p.run_summary(&["run", "gate:*"], &[]);
    r.code(0);
    let names: Vec<String> = statuses(&s).into_keys().collect();
    assert_eq!(names, vec!["gate:lint", "gate:types"]);
}

/// Selecting a task runs its dependencies before it.
#[test]
fn dependencies_run_first() {
    let p = Project::new(CONFIG);
    p.run(&["run", "test"]).code(0);
    assert_eq!(p.read("order"), "build\ntest\n");
}

/// A glob that matches nothing is an error.
#[test]
fn glob_matching_nothing_is_an_error() {
    let p = Project::new(CONFIG);
    p.run(&["run", "deploy:*"]).code(2);
}

/// `--shard` splits the selection into disjoint shares that cover it.
#[test]
fn shards_partition_the_selection() {
    let mut cfg = String::new();
    for i in 0..12 {
        cfg.push_str(&format!("[tasks.t{i}]\nrun = \"true\"\n"));
    }
    let p = Project::new(&cfg);
    let mut seen = Vec::new();
    for k in 1..=3 {
        let (r, s) = p.run_summary(&["run", "--shard", &format!("{k}/3")], &[]);
        r.code(0);
        seen.extend(statuses(&s).into_keys());
    }
    seen.sort();
    let mut all: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    all.sort();
    assert_eq!(seen, all);
    p.run(&["run", "--shard", "4/3"]).code(2);
}
