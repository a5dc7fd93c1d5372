//! Partitions: instances, backfills, incremental re-runs, fan-in, guardrails.

use crate::support::{Project, assert_all_cached, assert_has, instance, statuses, with_status};

const PIPELINE: &str = r#"
[settings]
backfill_limit = 100

[tasks."p:ingest"]
run = "mkdir -p bronze; echo $HOTPASS_PARTITION > bronze/{partition}.txt; cat raw/{partition}.csv >> bronze/{partition}.txt"
inputs = ["raw/{partition}.csv"]
outputs = ["bronze/{partition}.txt"]
partitions = { daily = { start = "2025-01-01" } }

[tasks."p:clean"]
deps = ["p:ingest"]
run = "mkdir -p silver; cp bronze/{partition}.txt silver/{partition}.txt"
inputs = ["bronze/{partition}.txt"]
outputs = ["silver/{partition}.txt"]
partitions = { daily = { start = "2025-01-01" } }

[tasks.report]
deps = ["p:clean"]
run = "cat silver/*.txt | wc -l > report.txt; echo ran >> report.count"
inputs = ["silver/*.txt"]
outputs = ["report.txt"]
"#;

fn pipeline() -> Project {
    let p = Project::new(PIPELINE);
    for d in 1..=31 {
        p.write(&format!("raw/2025-01-{d:02}.csv"), &format!("row {d}\n"));
    }
    p
}

fn count_status(s: &serde_json::Value, task: &str, status: &str) -> usize {
    s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["task"] == task && i["status"] == status)
        .count()
}

/// A 31-day backfill runs 31 instances per stage and the fan-in once; the
/// same backfill again is all cache hits.
#[test]
fn backfill_runs_each_day_and_fans_in_once() {
    let p = pipeline();
    let (r, s) = p.run_summary(
        &["run", "report", "--backfill", "2025-01-01..2025-01-31"],
        &[],
    );
    r.code(0);
    assert_eq!(count_status(&s, "p:ingest", "ok"), 31);
    assert_eq!(count_status(&s, "p:clean", "ok"), 31);
    assert_eq!(count_status(&s, "report", "ok"), 1);
    assert_eq!(p.read("report.txt").trim(), "62");
    assert_eq!(p.read("bronze/2025-01-07.txt"), "2025-01-07\nrow 7\n");
    let (_, s) = p.run_summary(
        &["run", "report", "--backfill", "2025-01-01..2025-01-31"],
        &[],
    );
    assert_all_cached(&s);
}

/// Editing one day's raw file re-runs exactly that day's chain and the fan-in.
#[test]
fn one_changed_day_reruns_its_chain_only() {
    let p = pipeline();
    p.run(&["run", "report", "--backfill", "2025-01-01..2025-01-31"])
        .code(0);
    p.write("raw/2025-01-15.csv", "row 15 fixed\n");
    let r = p.run(&[
        "run",
        "report",
        "--backfill",
        "2025-01-01..2025-01-31",
        "--dry-run=json",
    ]);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let runs: Vec<&str> = plan["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["action"] == "run")
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    // Downstream instances run because their dependency's key changed.
    assert_eq!(
        runs,
        vec!["p:ingest@2025-01-15", "p:clean@2025-01-15", "report"]
    );
    let (_, s) = p.run_summary(
        &["run", "report", "--backfill", "2025-01-01..2025-01-31"],
        &[],
    );
    let ran = with_status(&s, "ok");
    assert_eq!(
        ran,
        vec!["p:clean@2025-01-15", "p:ingest@2025-01-15", "report"]
    );
}

/// --partition runs one instance; TASK@P selects one too.
#[test]
fn single_partition_selection() {
    let p = pipeline();
    let (_, s) = p.run_summary(&["run", "p:clean", "--partition", "2025-01-03"], &[]);
    let names: Vec<String> = statuses(&s).into_keys().collect();
    assert_eq!(names, vec!["p:clean@2025-01-03", "p:ingest@2025-01-03"]);
    let (_, s) = p.run_summary(&["run", "p:ingest@2025-01-04"], &[]);
    assert_eq!(
        statuses(&s).into_keys().collect::<Vec<_>>(),
        vec!["p:ingest@2025-01-04"]
    );
}

/// Without --partition or --backfill, a daily task runs yesterday.
#[test]
fn latest_partition_is_yesterday() {
    let p = pipeline();
    let (r, s) = p.run_summary(&["run", "p:ingest"], &[("HOTPASS_TODAY", "2025-01-10")]);
    r.code(0);
    assert_eq!(
        statuses(&s).into_keys().collect::<Vec<_>>(),
        vec!["p:ingest@2025-01-09"]
    );
}

/// Values partitions run every value; {partition} and HOTPASS_PARTITION reach the command.
#[test]
fn values_partitions_run_every_value() {
    let p = Project::new(
        "[tasks.region]\nrun = \"echo {partition}-$HOTPASS_PARTITION >> regions\"\npartitions = { values = [\"za\", \"bw\", \"na\"] }\n",
    );
    p.run(&["run"]).code(0);
    let mut got: Vec<String> = p.read("regions").lines().map(String::from).collect();
    got.sort();
    assert_eq!(got, vec!["bw-bw", "na-na", "za-za"]);
}

/// max_parallel caps a task's concurrent instances even with more jobs.
#[test]
fn max_parallel_is_respected() {
    let p = Project::new(
        "[tasks.api]\nmax_parallel = 1\nrun = \"mkdir -p running; touch running/{partition}; ls running | wc -l >> counts; rm running/{partition}\"\npartitions = { daily = { start = \"2025-01-01\" } }\n",
    );
    p.run(&["run", "-j", "4", "--backfill", "2025-01-01..2025-01-08"])
        .code(0);
    let counts: Vec<u32> = p
        .read("counts")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 8);
    assert!(counts.iter().all(|c| *c == 1), "{counts:?}");
}

/// Every guardrail and bad range exits 2 with its message, running nothing.
#[test]
fn guardrails_and_bad_ranges_exit_2() {
    let p = pipeline();
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "report", "--backfill", "2025-01-01..2025-12-31"],
            "backfill_limit",
        ),
        (
            &["run", "report", "--backfill", "2025-01-31..2025-01-01"],
            "reversed",
        ),
        (
            &["run", "report", "--backfill", "2025-01-01"],
            "not a range",
        ),
        (
            &["run", "report", "--backfill", "2025-13-01..2025-13-02"],
            "not a valid date",
        ),
        (
            &["run", "p:ingest", "--partition", "2024-12-31"],
            "before the task's first partition",
        ),
        (&["run", "p:ingest@yesterday"], "not a date"),
    ];
    for (args, needle) in cases {
        let r = p.run(args);
        r.code(2);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
    let r = p.run(&["run", "report", "--backfill", "2025-01-01..2025-12-31"]);
    assert!(
        r.stderr.contains("730 partition instances") && r.stderr.contains("backfill_limit of 100"),
        "{}",
        r.stderr
    );
    let q = Project::new("[tasks.plain]\nrun = \"touch ran\"\n");
    let r = q.run(&["run", "plain", "--partition", "2025-01-01"]);
    r.code(2);
    assert_has(&r.stderr, "not partitioned");
    assert!(!p.exists("report.count") && !q.exists("ran"));
}

/// Mismatched partitionings are a config error unless a mapping is declared.
#[test]
fn mismatched_partition_kinds_need_a_mapping() {
    let base = "[tasks.m]\nrun = \"true\"\npartitions = { monthly = { start = \"2025-01\" } }\n[tasks.d]\nrun = \"echo $HOTPASS_PARTITION >> d.log\"\ndeps = [\"m\"]\npartitions = { daily = { start = \"2025-01-01\" } }\n";
    let p = Project::new(base);
    let r = p.run(&["run", "d", "--partition", "2025-02-03"]);
    r.code(2);
    assert_has(&r.stderr, "partition_map");
    let p = Project::new(&format!("{base}partition_map = \"calendar\"\n"));
    let (r, s) = p.run_summary(&["run", "d", "--partition", "2025-02-03"], &[]);
    r.code(0);
    assert_eq!(
        statuses(&s).into_keys().collect::<Vec<_>>(),
        vec!["d@2025-02-03", "m@2025-02"]
    );
}

/// A partitioned task that depends on a plain task: every instance waits for
/// the one run of it.
#[test]
fn partitioned_on_plain_waits_for_the_one_task() {
    let p = Project::new(
        "[tasks.setup]\nrun = \"echo once >> setup.log\"\n[tasks.day]\ndeps = [\"setup\"]\nrun = \"test -f setup.log && echo {partition} >> days.log\"\npartitions = { daily = { start = \"2025-01-01\" } }\n",
    );
    let (r, s) = p.run_summary(
        &[
            "run",
            "day",
            "--backfill",
            "2025-01-01..2025-01-05",
            "-j",
            "2",
        ],
        &[],
    );
    r.code(0);
    assert_eq!(p.read("setup.log"), "once\n");
    assert_eq!(p.read("days.log").lines().count(), 5);
    let day = instance(&s, "day@2025-01-03");
    assert_eq!(day["deps"][0], "setup");
}

/// Monthly partitions: keys are YYYY-MM, the latest is last month, and a
/// backfill covers whole months.
#[test]
fn monthly_partitions_backfill_and_latest() {
    let p = Project::new(
        "[tasks.m]\nrun = \"echo $HOTPASS_PARTITION >> months.log\"\npartitions = { monthly = { start = \"2024-11\" } }\n",
    );
    let (_, s) = p.run_summary(&["run", "--backfill", "2024-11..2025-02"], &[]);
    assert_eq!(statuses(&s).len(), 4);
    assert!(p.read("months.log").contains("2025-01"));
    let (_, s) = p.run_summary(&["run"], &[("HOTPASS_TODAY", "2025-03-15")]);
    assert_eq!(
        statuses(&s).into_keys().collect::<Vec<_>>(),
        vec!["m@2025-02"]
    );
    let r = p.run(&["run", "--partition", "2025-02-01"]);
    r.code(2);
    assert_has(&r.stderr, "YYYY-MM");
}

/// explain works on one instance of a partitioned task.
#[test]
fn explain_an_instance() {
    let p = pipeline();
    p.run(&["run", "p:ingest", "--partition", "2025-01-02"])
        .code(0);
    let r = p.run(&["explain", "p:ingest@2025-01-02"]);
    r.code(0);
    assert_has(&r.stdout, "HIT");
    p.write("raw/2025-01-02.csv", "changed\n");
    let r = p.run(&["explain", "p:ingest@2025-01-02"]);
    assert_has(&r.stdout, "file changed: raw/2025-01-02.csv");
}

/// Instances held back by `max_parallel` do not stop other ready tasks from
/// starting: the first `api` instance can only finish once `other` has run.
#[test]
fn capped_instances_do_not_block_other_tasks() {
    let p = Project::new(
        "[tasks.api]\nmax_parallel = 1\nrun = \"i=0; while [ ! -f other.done ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; test -f other.done\"\npartitions = { daily = { start = \"2025-01-01\" } }\n[tasks.other]\ndeps = [\"z\"]\nrun = \"touch other.done\"\n[tasks.z]\nrun = \"true\"\n",
    );
    // More instances than one check batch, and `other` ready only after `z`
    // has run: by then capped `api` instances fill the queue.
    let (r, s) = p.run_summary(
        &["run", "--backfill", "2025-01-01..2025-10-27", "-j", "2"],
        &[],
    );
    r.code(0);
    assert_eq!(with_status(&s, "ok").len(), 302);
}

/// The backfill guardrail counts partition instances only: 1,500 plain
/// tasks plan and run with the default limit of 1,000.
#[test]
fn plain_tasks_never_count_against_the_backfill_limit() {
    let mut toml = String::new();
    for i in 0..1500 {
        toml.push_str(&format!("[tasks.t{i}]\nrun = \"true\"\n"));
    }
    let p = Project::new(&toml);
    let r = p.run(&["run", "--dry-run=json"]);
    r.code(0);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(plan["instances"].as_array().unwrap().len(), 1500);
    let r = p.run(&["-q", "run"]);
    r.code(0);
    assert_has(&r.stdout, "1500 instances: 1500 ran");
}

/// The dry run's instances (name → partition) of `task`.
fn planned(p: &Project, args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut all = vec!["run", "--dry-run=json"];
    all.extend_from_slice(args);
    let r = p.run_env(&all, env);
    r.code(0);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    plan["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["partition"].as_str().map(str::to_owned))
        .collect()
}

/// Hours follow the zone's clocks: a spring-forward day in Berlin has 23
/// hourly partitions, a fall-back day 25, the repeated hour twice with
/// distinct keys (issue 15).
#[test]
fn hourly_partitions_follow_daylight_saving_time() {
    let p = Project::new(
        "[tasks.h]\nrun = \"true\"\npartitions = { hourly = { start = \"2025-01-01T00\", timezone = \"Europe/Berlin\" } }\n",
    );
    let spring = planned(&p, &["--backfill", "2025-03-30T00..2025-03-30T23"], &[]);
    assert_eq!(spring.len(), 23, "{spring:?}");
    assert!(!spring.iter().any(|k| k == "2025-03-30T02"));
    let fall = planned(&p, &["--backfill", "2025-10-26T00..2025-10-26T23"], &[]);
    assert_eq!(fall.len(), 25, "{fall:?}");
    let distinct: std::collections::BTreeSet<_> = fall.iter().collect();
    assert_eq!(distinct.len(), 25);
    assert!(fall.iter().any(|k| k == "2025-10-26T02+02:00"));
    assert!(fall.iter().any(|k| k == "2025-10-26T02+01:00"));
    // The repeated hour named without its offset is refused, saying both.
    let r = p.run(&["run", "--partition", "2025-10-26T02"]);
    r.code(2);
    assert_has(&r.stderr, "2025-10-26T02+01:00");
    // A zone that does not exist is a config error at its span.
    p.write(
        "hotpass.toml",
        "[tasks.h]\nrun = \"true\"\npartitions = { hourly = { start = \"2025-01-01T00\", timezone = \"Mars/Olympus\" } }\n",
    );
    let r = p.run(&["list"]);
    r.code(2);
    assert_has(&r.stderr, "not a known time zone");
}

/// The latest hourly partition is the last complete hour in the zone, at
/// the instant `HOTPASS_NOW` gives; a daily one the last complete day there.
#[test]
fn the_latest_partition_is_the_last_complete_one_in_the_zone() {
    let p = Project::new(
        "[tasks.h]\nrun = \"true\"\npartitions = { hourly = { start = \"2025-01-01T00\", timezone = \"America/New_York\" } }\n\
         [tasks.d]\nrun = \"true\"\npartitions = { daily = { start = \"2025-01-01\", timezone = \"America/New_York\" } }\n",
    );
    // 03:30 UTC on 2 July is 23:30 on 1 July in New York.
    let now = [("HOTPASS_NOW", "2025-07-02T03:30:00Z")];
    assert_eq!(planned(&p, &["h"], &now), vec!["2025-07-01T22"]);
    assert_eq!(planned(&p, &["d"], &now), vec!["2025-06-30"]);
    let r = p.run_env(&["run", "--dry-run"], &[("HOTPASS_NOW", "yesterday")]);
    r.code(2);
    assert_has(&r.stderr, "HOTPASS_NOW");
}

/// A `files` partitioning has one partition per file stem; a new file is a
/// new partition, and the next run runs only its chain.
#[test]
fn files_partitions_pick_up_a_new_file_and_run_only_its_chain() {
    let p = Project::new(
        "[tasks.ingest]\nrun = \"mkdir -p out && cp data/{partition}.csv out/{partition}.txt\"\n\
         inputs = [\"data/{partition}.csv\"]\noutputs = [\"out/{partition}.txt\"]\npartitions = { files = \"data/*.csv\" }\n\
         [tasks.count]\ndeps = [\"ingest\"]\nrun = \"wc -l < out/{partition}.txt > out/{partition}.n\"\n\
         inputs = [\"out/{partition}.txt\"]\noutputs = [\"out/{partition}.n\"]\npartitions = { files = \"data/*.csv\" }\n",
    );
    p.write("data/a.csv", "1\n");
    p.write("data/b.csv", "1\n2\n");
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(statuses(&s).values().filter(|v| *v == "ok").count(), 4);
    p.write("data/c.csv", "1\n2\n3\n");
    let (_, s) = p.run_summary(&["run"], &[]);
    let ran: Vec<String> = statuses(&s)
        .into_iter()
        .filter(|(_, v)| v == "ok")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(ran, vec!["count@c", "ingest@c"]);
    assert_eq!(p.read("out/c.n").trim(), "3");
    // A stem that is not there is refused with the ones that are.
    let r = p.run(&["run", "--partition", "zz"]);
    r.code(2);
    assert_has(&r.stderr, "a, b, c");
}

/// `--order newest-first` starts the newest partition first; oldest first
/// is the default (with -j 1, the start order is the log's order).
#[test]
fn backfill_order_holds_for_starts() {
    let p = Project::new(
        "[tasks.d]\nrun = \"echo {partition} >> order.log\"\npartitions = { daily = { start = \"2025-01-01\" } }\n",
    );
    let days = "2025-01-01..2025-01-04";
    p.run(&["run", "-j", "1", "--backfill", days]).code(0);
    assert_eq!(
        p.read("order.log"),
        "2025-01-01\n2025-01-02\n2025-01-03\n2025-01-04\n"
    );
    std::fs::remove_file(p.path("order.log")).unwrap();
    p.run(&[
        "run",
        "-j",
        "1",
        "--backfill",
        days,
        "--order",
        "newest-first",
    ])
    .code(0);
    assert_eq!(
        p.read("order.log"),
        "2025-01-04\n2025-01-03\n2025-01-02\n2025-01-01\n"
    );
}

/// A backfill stopped by a failure is resumed by running it again: the
/// partitions that succeeded are hits; only the failed and the unrun run.
/// The summary's last line counts the partitions that are complete.
#[test]
fn a_stopped_backfill_resumes_where_it_stopped() {
    let p = Project::new(
        "[tasks.d]\nrun = \"test ! -f fail-{partition} && mkdir -p out && echo {partition} > out/{partition}\"\n\
         inputs = [\"in\"]\noutputs = [\"out/{partition}\"]\npartitions = { daily = { start = \"2025-01-01\" } }\n",
    );
    p.write("in", "1\n");
    p.write("fail-2025-01-02", "");
    let days = "2025-01-01..2025-01-04";
    let (r, s) = p.run_summary(&["run", "-j", "1", "--backfill", days], &[]);
    r.code(1);
    assert_eq!(instance(&s, "d@2025-01-01")["status"], "ok");
    assert_eq!(instance(&s, "d@2025-01-02")["status"], "failed");
    assert_has(&r.stdout, "1 of 4 partitions complete");
    std::fs::remove_file(p.path("fail-2025-01-02")).unwrap();
    let (r, s) = p.run_summary(&["run", "-j", "1", "--backfill", days], &[]);
    r.code(0);
    assert_eq!(instance(&s, "d@2025-01-01")["status"], "cached");
    for day in ["2025-01-02", "2025-01-03", "2025-01-04"] {
        assert_eq!(instance(&s, &format!("d@{day}"))["status"], "ok", "{day}");
    }
    assert_has(&r.stdout, "4 of 4 partitions complete");
    // `-q` prints the same counts, without the per-instance lists.
    let r = p.run(&["-q", "run", "-j", "1", "--backfill", days]);
    r.code(0);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert_has(
        &r.stdout,
        "4 instances: 0 ran, 4 cached, 0 failed, 0 skipped",
    );
    assert_has(&r.stdout, "4 of 4 partitions complete");
}

/// `hotpass partitions` tells cached, stale, failed and never-run
/// partitions apart from the cache's records, without running anything.
#[test]
fn partitions_report_each_state() {
    let p = Project::new(
        "[tasks.d]\nrun = \"test ! -f fail-{partition} && echo {partition} >> ran.log\"\n\
         inputs = [\"data/{partition}.csv\"]\npartitions = { daily = { start = \"2025-01-01\", end = \"2025-01-04\" } }\n",
    );
    for day in 1..=4 {
        p.write(&format!("data/2025-01-0{day}.csv"), "x\n");
    }
    p.write("fail-2025-01-03", "");
    p.run(&[
        "run",
        "--keep-going",
        "--backfill",
        "2025-01-01..2025-01-03",
    ])
    .code(1);
    p.write("data/2025-01-02.csv", "changed\n");
    let before = p.read("ran.log");
    let r = p.run(&[
        "partitions",
        "d",
        "--json",
        "--backfill",
        "2025-01-01..2025-01-04",
    ]);
    r.code(0);
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let states: Vec<(&str, &str)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["partition"].as_str().unwrap(),
                r["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("2025-01-01", "cached"),
            ("2025-01-02", "stale"),
            ("2025-01-03", "failed"),
            ("2025-01-04", "never-run"),
        ]
    );
    assert_eq!(p.read("ran.log"), before, "nothing ran");
    // Off a terminal: a table, and the counts.
    let r = p.run(&["partitions", "d", "--backfill", "2025-01-01..2025-01-04"]);
    r.code(0);
    assert_has(&r.stdout, "2025-01-03  failed");
    assert_has(
        &r.stdout,
        "4 partitions: 1 cached, 1 stale, 1 failed, 1 never run",
    );
}
