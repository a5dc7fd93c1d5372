//! The cache's state file and the kept parsed project: what makes a no-op
//! fast must never make a result wrong.

use std::time::{Duration, SystemTime};

use crate::support::{Project, assert_all_cached, assert_has, statuses};

/// Three independent copy tasks.
fn copies() -> Project {
    let mut toml = String::new();
    for i in 0..3 {
        toml.push_str(&format!(
            "[tasks.t{i}]\nrun = \"cp in{i}.txt out{i}.txt\"\ninputs = [\"in{i}.txt\"]\noutputs = [\"out{i}.txt\"]\n"
        ));
    }
    let p = Project::new(&toml);
    for i in 0..3 {
        p.write(&format!("in{i}.txt"), &format!("v{i}\n"));
    }
    p
}

/// Sets the modification time of `rel` to `secs` seconds ago (so that it
/// is out of the racy window, as a file edited a while back is).
fn age(p: &Project, rel: &str, secs: u64) {
    std::fs::File::options()
        .append(true)
        .open(p.path(rel))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(secs))
        .unwrap();
}

/// A truncated, corrupted or foreign state file is a full re-check: no
/// crash, no wrong hit, one warning; the next run has a sound file again.
#[test]
fn a_damaged_state_file_is_rechecked_with_one_warning() {
    let p = copies();
    p.run(&["run"]).code(0);
    p.run(&["run"]).code(0);
    let sound = std::fs::read(p.path("cache/state")).unwrap();
    assert!(sound.len() > 32, "the runs wrote a state file");
    let mut flipped = sound.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x5a;
    let damaged: [(&str, Vec<u8>); 3] = [
        ("truncated", sound[..sound.len() - 7].to_vec()),
        ("flipped", flipped),
        // The file's own header, then nonsense.
        (
            "garbage",
            [&sound[..16], b"\xff\xff\xff\x7fgarbage"].concat(),
        ),
    ];
    for (what, bytes) in damaged {
        std::fs::write(p.path("cache/state"), bytes).unwrap();
        // An input changed meanwhile must still be seen.
        p.write("in1.txt", &format!("{what}\n"));
        let (r, s) = p.run_summary(&["run"], &[]);
        r.code(0);
        assert_eq!(
            r.stderr.matches("state file").count(),
            1,
            "{what}: one warning: {}",
            r.stderr
        );
        assert_has(&r.stderr, "damaged");
        let st = statuses(&s);
        assert_eq!(st["t0"], "cached", "{what}");
        assert_eq!(st["t1"], "ok", "{what}: the changed input re-runs");
        assert_eq!(st["t2"], "cached", "{what}");
        assert_eq!(p.read("out1.txt"), format!("{what}\n"));
        let (r, s) = p.run_summary(&["run"], &[]);
        assert!(
            !r.stderr.contains("state file"),
            "{what}: the next run reads a sound file: {}",
            r.stderr
        );
        assert_all_cached(&s);
    }
}

/// Two runs appending to one state file at once leave a file the next run
/// reads whole.
#[test]
fn concurrent_runs_leave_a_state_file_the_next_run_reads() {
    let mut toml = String::new();
    for i in 0..200 {
        toml.push_str(&format!(
            "[tasks.t{i}]\nrun = \"echo {i} > o{i}.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"o{i}.txt\"]\n"
        ));
    }
    let p = Project::new(&toml);
    p.write("in.txt", "x\n");
    for round in 0..3 {
        p.write("in.txt", &format!("round {round}\n"));
        let mut a = p.spawn(&["run", "-q"]);
        let mut b = p.spawn(&["run", "-q"]);
        let limit = Duration::from_secs(120);
        let (ca, ea) = a.wait_output(limit).expect("the first run ends");
        let (cb, eb) = b.wait_output(limit).expect("the second run ends");
        assert_eq!((ca, cb), (Some(0), Some(0)), "{ea}\n{eb}");
        let (r, s) = p.run_summary(&["run"], &[]);
        r.code(0);
        assert!(
            !r.stderr.contains("damaged"),
            "round {round}: the state file reads whole: {}",
            r.stderr
        );
        assert_all_cached(&s);
    }
}

/// The parsed project is kept between runs, and an edit of the config is
/// still seen at once: a changed command, a new task file.
#[test]
fn an_edited_config_is_read_again() {
    let p = Project::new(
        "[tasks.t]\nrun = \"echo one > out.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"out.txt\"]\n",
    );
    p.write("in.txt", "x\n");
    age(&p, "hotpass.toml", 60);
    p.run(&["run"]).code(0);
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_all_cached(&s);
    assert!(p.exists("cache/config.bin"), "the parsed project is kept");
    // The same length, a second later: only the file's signature differs.
    p.write(
        "hotpass.toml",
        "[tasks.t]\nrun = \"echo two > out.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"out.txt\"]\n",
    );
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    assert_eq!(statuses(&s)["t"], "ok");
    assert_eq!(s["instances"][0]["reason"], "command");
    assert_eq!(p.read("out.txt"), "two\n");
    // A task file that appears under tasks/ is included.
    age(&p, "hotpass.toml", 60);
    p.run(&["run"]).code(0);
    p.write("tasks/more.toml", "[tasks.more]\nrun = \"true\"\n");
    let r = p.run(&["list"]);
    r.code(0);
    assert_has(&r.stdout, "more");
    // And one that goes away is no longer.
    std::fs::remove_file(p.path("tasks/more.toml")).unwrap();
    let r = p.run(&["run", "more"]);
    r.code(2);
}

/// Touching every input (new times, same content) re-runs nothing.
#[test]
fn touching_every_input_reruns_nothing() {
    let p = copies();
    p.run(&["run"]).code(0);
    for i in 0..3 {
        age(&p, &format!("in{i}.txt"), 30);
    }
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_all_cached(&s);
    for i in 0..3 {
        std::fs::File::options()
            .append(true)
            .open(p.path(&format!("in{i}.txt")))
            .unwrap()
            .set_modified(SystemTime::now())
            .unwrap();
    }
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_all_cached(&s);
}

/// `run --no-cache` neither reads nor writes the kept parsed project.
#[test]
fn no_cache_leaves_the_parsed_project_alone() {
    let p = copies();
    age(&p, "hotpass.toml", 60);
    p.run(&["run"]).code(0);
    p.run(&["run"]).code(0);
    let kept = p.path("cache/config.bin");
    assert!(kept.exists());
    // A kept project that no longer decodes: read, it would be parsed again
    // and rewritten.
    std::fs::write(&kept, b"not a project").unwrap();
    p.run(&["run", "--no-cache"]).code(0);
    assert_eq!(std::fs::read(&kept).unwrap(), b"not a project");
    std::fs::remove_file(&kept).unwrap();
    p.run(&["run", "--no-cache"]).code(0);
    assert!(!kept.exists(), "--no-cache wrote the parsed project");
}

/// A run reads the state file of `cache/` while the project loads, before
/// it knows where the settings put the cache: a project whose cache is
/// elsewhere and which has a folder of its own named `cache` finds that
/// folder untouched, and hears nothing about it.
#[test]
fn a_folder_named_cache_that_is_not_the_cache_is_left_alone() {
    let p = Project::new(
        "[settings]\ncache_dir = \".hotpass\"\n[tasks.t]\nrun = \"cp in.txt out.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"out.txt\"]\n",
    );
    p.write("in.txt", "1\n");
    p.write("cache/state", "the project's own data, not a state file\n");
    p.write("cache/tmp/.hotpass-1-x", "a file of the project's\n");
    for _ in 0..2 {
        let r = p.run(&["run"]);
        r.code(0);
        assert!(!r.stderr.contains("state file"), "{}", r.stderr);
    }
    let mut names: Vec<String> = walk_names(&p.path("cache"));
    names.sort();
    assert_eq!(names, ["state", "tmp", "tmp/.hotpass-1-x"]);
    assert_eq!(
        p.read("cache/state"),
        "the project's own data, not a state file\n"
    );
    assert!(
        p.exists(".hotpass/state"),
        "the cache is where the settings say"
    );
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_all_cached(&s);
}

/// Every path under `dir`, relative to it.
fn walk_names(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            out.extend(
                walk_names(&e.path())
                    .into_iter()
                    .map(|n| format!("{name}/{n}")),
            );
        }
        out.push(name);
    }
    out
}
