//! The cache: miss, store, hit; what invalidates a key and what does not;
//! restored outputs; corruption; concurrency; explain; gc.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Project, assert_all_cached, assert_has, instance, statuses};

const PIPE: &str = r#"
[tasks.gen]
run = "echo ran >> gen.count; mkdir -p out; cat src/in.txt > out/gen.txt; printf 'bin' > out/tool; chmod 755 out/tool; echo generated-line"
inputs = ["src/**"]
outputs = ["out/**"]
[tasks.use]
deps = ["gen"]
run = "echo ran >> use.count; cat out/gen.txt > used.txt"
inputs = ["out/gen.txt", "$SECRET"]
[tasks.other]
run = "echo ran >> other.count"
inputs = ["other/*.txt"]
"#;

fn project() -> Project {
    let p = Project::new(PIPE);
    p.write("src/in.txt", "v1\n").write("other/a.txt", "a\n");
    p
}

fn count(p: &Project, name: &str) -> usize {
    p.read(&format!("{name}.count")).lines().count()
}

/// The second run of an unchanged tree is all cache hits and runs nothing.
#[test]
fn cache_hit_skips_execution() {
    let p = project();
    p.run(&["run"]).code(0);
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    assert_all_cached(&s);
    assert_eq!(count(&p, "gen"), 1);
    assert!(
        r.stdout.contains("generated-line"),
        "a hit replays the output: {}",
        r.stdout
    );
    assert!(s["cache_saved_ms"].is_u64());
}

/// Changing an input re-runs the task and its dependents, nothing else.
#[test]
fn content_change_reruns_task_and_dependents_only() {
    let p = project();
    p.run(&["run"]).code(0);
    p.write("src/in.txt", "v2\n");
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    let st = statuses(&s);
    assert_eq!(st["gen"], "ok");
    assert_eq!(st["use"], "ok");
    assert_eq!(st["other"], "cached");
    let g = instance(&s, "gen");
    assert_eq!(g["reason"], "file:src/in.txt");
    assert_eq!(p.read("used.txt"), "v2\n");
}

/// Touching a file without changing it is still a hit.
#[test]
fn touch_alone_is_a_hit() {
    let p = project();
    p.run(&["run"]).code(0);
    let f = std::fs::File::options()
        .append(true)
        .open(p.path("src/in.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    assert_all_cached(&s);
}

/// A `$NAME` input's value is part of the key; other env vars are not.
#[test]
fn named_env_change_misses_unnamed_does_not() {
    let p = project();
    p.run_env(&["run"], &[("SECRET", "one")]).code(0);
    let (_, s) = p.run_summary(&["run"], &[("SECRET", "one"), ("UNRELATED", "x")]);
    assert_eq!(statuses(&s)["use"], "cached");
    let (_, s) = p.run_summary(&["run"], &[("SECRET", "two")]);
    assert_eq!(statuses(&s)["use"], "ok");
    let u = instance(&s, "use");
    assert_eq!(u["reason"], "env:SECRET");
}

/// Secret values never appear in output, summaries, explain or the cache.
#[test]
fn secret_values_never_leak() {
    let p = project();
    let secret = "hunter2-very-secret";
    let (r, s) = p.run_summary(&["run"], &[("SECRET", secret)]);
    let explain = p.run_env(&["explain", "use"], &[("SECRET", "changed")]);
    let dry = p.run_env(&["run", "--dry-run=json"], &[("SECRET", secret)]);
    for text in [
        &r.stdout,
        &r.stderr,
        &s.to_string(),
        &explain.stdout,
        &dry.stdout,
    ] {
        assert!(!text.contains(secret));
    }
    for entry in walk(&p.path("cache")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Deleted outputs come back from the cache byte for byte, with their mode.
#[test]
fn deleted_outputs_are_restored_with_mode() {
    let p = project();
    p.run(&["run"]).code(0);
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (r, s) = p.run_summary(&["run", "gen"], &[]);
    r.code(0);
    assert_eq!(statuses(&s)["gen"], "cached");
    assert_eq!(p.read("out/gen.txt"), "v1\n");
    assert_eq!(p.read("out/tool"), "bin");
    let mode = std::fs::metadata(p.path("out/tool"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o755);
    assert_eq!(count(&p, "gen"), 1);
}

/// A corrupted entry is a miss with a warning, and the task runs correctly.
#[test]
fn corrupt_entry_is_a_miss_with_warning() {
    let p = project();
    p.run(&["run"]).code(0);
    for e in std::fs::read_dir(p.path("cache/entries"))
        .unwrap()
        .flatten()
    {
        let mut bytes = std::fs::read(e.path()).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(e.path(), bytes).unwrap();
    }
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    assert_has(&r.stderr, "corrupt");
    let g = instance(&s, "gen");
    assert_eq!(g["status"], "ok");
    assert_eq!(g["reason"], "corrupt-entry");
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_all_cached(&s);
}

/// A missing blob leaves the tree untouched and runs the task (restore-failed).
#[test]
fn missing_blob_runs_task_instead() {
    let p = project();
    p.run(&["run"]).code(0);
    std::fs::remove_dir_all(p.path("cache/blobs")).unwrap();
    std::fs::create_dir_all(p.path("cache/blobs")).unwrap();
    std::fs::remove_file(p.path("out/gen.txt")).unwrap();
    let (r, s) = p.run_summary(&["run", "gen"], &[]);
    r.code(0);
    let g = &s["instances"][0];
    assert_eq!(g["status"], "ok");
    assert_eq!(g["reason"], "restore-failed");
    assert_has(&r.stderr, "could not be restored");
    assert_eq!(p.read("out/gen.txt"), "v1\n");
}

/// A manifest path that leaves the project is refused, never written.
#[test]
fn escaping_manifest_path_is_refused() {
    let p = project();
    p.run(&["run", "gen"]).code(0);
    for e in std::fs::read_dir(p.path("cache/entries"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap();
        let body = text
            .split_once('\n')
            .unwrap()
            .1
            .replace("\"out/gen.txt\"", "\"../escaped.txt\"");
        let sum = blake3::hash(body.as_bytes()).to_hex().to_string();
        std::fs::write(e.path(), format!("{sum}\n{body}")).unwrap();
    }
    std::fs::remove_file(p.path("out/gen.txt")).unwrap();
    let r = p.run(&["run", "gen"]);
    r.code(0);
    assert!(!p.root().parent().unwrap().join("escaped.txt").exists());
    assert_has(&r.stderr, "refusing");
}

/// Two runs started together on one cache both succeed, and the next run hits.
#[test]
fn concurrent_runs_share_a_cache_safely() {
    let p = project();
    let mut a = p.spawn(&["run"]);
    let mut b = p.spawn(&["run"]);
    assert_eq!(a.wait_code(std::time::Duration::from_secs(60)), Some(0));
    assert_eq!(b.wait_code(std::time::Duration::from_secs(60)), Some(0));
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    assert_all_cached(&s);
}

/// --force runs on a hit and stores; --no-cache neither reads nor writes.
#[test]
fn force_and_no_cache() {
    let p = project();
    p.run(&["run"]).code(0);
    let (_, s) = p.run_summary(&["run", "--force", "gen"], &[]);
    assert_eq!(s["instances"][0]["reason"], "forced");
    assert_eq!(count(&p, "gen"), 2);
    let q = project();
    q.run(&["run", "--no-cache"]).code(0);
    assert!(!q.exists("cache"), "--no-cache must not create the cache");
    let (_, s) = q.run_summary(&["run", "--no-cache"], &[]);
    assert!(statuses(&s).values().all(|v| v == "ok"));
    assert_eq!(s["instances"][0]["reason"], "cache-disabled");
}

/// --dry-run=json shows the plan with keys and reasons, and runs nothing.
#[test]
fn dry_run_json_is_the_plan() {
    let p = project();
    let r = p.run(&["run", "--dry-run=json"]);
    r.code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    let items = v["instances"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i["action"] == "run"
        && i["reason"] == "no-entry"
        && i["key"].as_str().unwrap().len() == 64));
    assert!(!p.exists("gen.count"));
    p.run(&["run"]).code(0);
    let v: serde_json::Value =
        serde_json::from_str(&p.run(&["run", "--dry-run=json"]).stdout).unwrap();
    assert!(
        v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["action"] == "cached")
    );
    let text = p.run(&["run", "--dry-run"]);
    assert_has(&text.stdout, "0 to run, 3 cached");
}

/// explain names the changed file, the changed env var and the upstream cause.
#[test]
fn explain_names_every_difference() {
    let p = project();
    p.run_env(&["run"], &[("SECRET", "a")]).code(0);
    let r = p.run_env(&["explain", "use"], &[("SECRET", "a")]);
    r.code(0);
    assert_has(&r.stdout, "HIT");
    p.write("src/in.txt", "v2\n");
    let r = p.run_env(&["explain", "use"], &[("SECRET", "b")]);
    assert_has(&r.stdout, "MISS");
    assert_has(&r.stdout, "$SECRET");
    assert_has(&r.stdout, "dependency gen changed");
    assert_has(&r.stdout, "file changed: src/in.txt");
}

/// gc brings the cache under the size asked, and the next run still works.
#[test]
fn gc_shrinks_cache_and_runs_still_work() {
    let p = Project::new(
        "[tasks.big]\nrun = \"head -c 200000 /dev/urandom > big.bin\"\ninputs = [\"v.txt\"]\noutputs = [\"big.bin\"]\n",
    );
    for v in 0..3 {
        p.write("v.txt", &v.to_string());
        p.run(&["run"]).code(0);
    }
    let before: serde_json::Value =
        serde_json::from_str(&p.run(&["cache", "stats", "--json"]).stdout).unwrap();
    assert!(before["bytes"].as_u64().unwrap() > 500_000);
    p.run(&["cache", "gc", "--max-size", "300KB"]).code(0);
    let after: serde_json::Value =
        serde_json::from_str(&p.run(&["cache", "stats", "--json"]).stdout).unwrap();
    assert!(after["bytes"].as_u64().unwrap() <= 300_000, "{after}");
    assert_eq!(after["entries"], 1, "the most recent entry is kept");
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(statuses(&s)["big"], "cached");
    p.run(&["cache", "gc", "--max-size", "lots"]).code(2);
    p.run(&["cache", "clean"]).code(0);
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(statuses(&s)["big"], "ok");
}

/// The cache folder ignores itself in git.
#[test]
fn cache_folder_has_gitignore() {
    let p = project();
    p.run(&["run"]).code(0);
    assert_eq!(p.read("cache/.gitignore"), "*\n");
}

/// A task without inputs is not cached; cache = true caches on command and env.
#[test]
fn no_inputs_means_no_cache_unless_asked() {
    let p = Project::new(
        "[tasks.a]\nrun = \"echo x >> a.count\"\n[tasks.b]\ncache = true\nrun = \"echo x >> b.count\"\n",
    );
    p.run(&["run"]).code(0);
    p.run(&["run"]).code(0);
    assert_eq!(count(&p, "a"), 2);
    assert_eq!(count(&p, "b"), 1);
}

/// HOTPASS_CACHE_DIR moves the cache.
#[test]
fn cache_dir_env_moves_the_cache() {
    let p = project();
    let elsewhere = tempfile::tempdir().unwrap();
    p.run_env(
        &["run"],
        &[("HOTPASS_CACHE_DIR", elsewhere.path().to_str().unwrap())],
    )
    .code(0);
    assert!(!p.exists("cache"));
    assert!(elsewhere.path().join("entries").is_dir());
}

/// When storing fails (a full disk, an unwritable cache), the task's own
/// result and exit code stand, with one warning, and nothing is stored.
#[test]
fn store_failure_keeps_the_result() {
    let p = project();
    // Every blob prefix folder is a file: storing any blob fails.
    for i in 0..=255u8 {
        p.write(&format!("cache/blobs/{i:02x}"), "not a folder");
    }
    let (r, s) = p.run_summary(&["run", "gen"], &[]);
    r.code(0);
    assert_eq!(statuses(&s)["gen"], "ok");
    assert_has(&r.stderr, "could not store");
    assert_eq!(r.stderr.matches("could not store").count(), 1);
    let entries = std::fs::read_dir(p.path("cache/entries"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(entries, 0, "no entry without its blobs");
}

/// A cache folder that cannot be opened degrades to running without the
/// cache, with a warning; it never fails the run.
#[test]
fn broken_cache_folder_runs_uncached() {
    let p = project();
    p.write("cache", "a file where the cache folder should be");
    let (r, s) = p.run_summary(&["run", "gen"], &[]);
    r.code(0);
    assert_eq!(statuses(&s)["gen"], "ok");
    assert_has(&r.stderr, "without the cache");
}

/// Configured remote services that this version does not use are named in a warning.
#[test]
fn an_unreachable_remote_cache_is_one_warning_and_the_run_goes_on() {
    let port = crate::support::free_port();
    let p = Project::new(&format!(
        "[settings.remote_cache]\nurl = \"webdav+http://127.0.0.1:{port}/cache\"\n[tasks.a]\nrun = \"true\"\ninputs = [\"in\"]\n"
    ));
    p.write("in", "");
    let r = p.run(&["run"]);
    r.code(0);
    assert_eq!(r.stderr.matches("remote cache").count(), 1, "{}", r.stderr);
    assert_has(&r.stderr, "going on with the local cache only");
}

/// A remote cache URL that cannot work is a config error at its span:
/// an unknown scheme, or credentials written into the URL.
#[test]
fn bad_remote_cache_urls_are_config_errors() {
    for (url, says) in [
        ("ftp://host/cache", "unknown remote cache scheme"),
        ("s3://AKIA:secret@bucket/x", "from the environment only"),
        ("s3://bucket/x?secret_access_key=y", "unknown URL option"),
    ] {
        let p = Project::new(&format!(
            "[settings.remote_cache]\nurl = \"{url}\"\n[tasks.a]\nrun = \"true\"\n"
        ));
        let r = p.run(&["run"]);
        r.code(2);
        assert_has(&r.stderr, says);
        assert_has(&r.stderr, "hotpass.toml:2:7");
    }
}

/// gc --max-age evicts entries not used for longer than the age.
#[test]
fn gc_max_age_evicts_old_entries() {
    let p = project();
    p.run(&["run"]).code(0);
    let entries: Vec<_> = std::fs::read_dir(p.path("cache/entries"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(entries.len(), 3);
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 86400);
    std::fs::File::options()
        .append(true)
        .open(&entries[0])
        .unwrap()
        .set_modified(old)
        .unwrap();
    let r = p.run(&["cache", "gc", "--max-age", "1d"]);
    r.code(0);
    assert_has(&r.stdout, "removed 1 entries");
    assert_eq!(
        std::fs::read_dir(p.path("cache/entries")).unwrap().count(),
        2
    );
    p.run(&["cache", "gc"]).code(2);
}

/// cache stats reports entries and the hit rate of recent runs.
#[test]
fn cache_stats_reports_hit_rate() {
    let p = project();
    p.run(&["run"]).code(0);
    p.run(&["run"]).code(0);
    let v: serde_json::Value =
        serde_json::from_str(&p.run(&["cache", "stats", "--json"]).stdout).unwrap();
    assert_eq!(v["entries"], 3);
    assert_eq!(v["recent_runs"], 2);
    assert_eq!(v["recent_hits"], 3);
    assert_eq!(v["recent_misses"], 3);
    let text = p.run(&["cache", "stats"]).stdout;
    assert!(text.contains("hit rate: 50%"), "{text}");
}

/// On a fresh project, the keys the dry run shows are the keys the run uses,
/// `$NAME` inputs included (their digests share the cache's salt).
#[test]
fn dry_run_keys_match_the_run_on_a_fresh_project() {
    let p = Project::new("[tasks.t]\nrun = \"true\"\ninputs = [\"src/**\", \"$SECRET\"]\n");
    p.write("src/a.txt", "a\n");
    let env = [("SECRET", "s3")];
    let plan: serde_json::Value =
        serde_json::from_str(&p.run_env(&["run", "--dry-run=json"], &env).stdout).unwrap();
    let (_, s) = p.run_summary(&["run"], &env);
    assert_eq!(plan["instances"][0]["key"], instance(&s, "t")["key"]);
}

/// An input changed while its task ran is not stored: the result may come
/// from either version. Later, with the first version back, the task runs
/// again instead of restoring an output made from the other (issue 17).
#[test]
fn an_input_changed_during_the_run_is_not_stored() {
    let p = Project::new(
        "[tasks.t]\nrun = \"if [ -f flip ]; then echo B > in.txt; rm flip; fi; cat in.txt > out.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"out.txt\"]\n",
    );
    p.write("in.txt", "A\n");
    p.write("flip", "");
    let r = p.run(&["run"]);
    r.code(0);
    assert_has(&r.stderr, "t: input in.txt changed while the task ran");
    assert_eq!(p.read("out.txt"), "B\n");
    p.write("in.txt", "A\n");
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(instance(&s, "t")["status"], "ok", "{s}");
    assert_eq!(p.read("out.txt"), "A\n");
}

/// Two hotpass processes never run the same instance at once: the second
/// says it waits, and then takes the first one's result (issue 17).
#[test]
fn a_second_process_waits_for_the_same_instance_and_takes_its_result() {
    use std::time::Duration;
    let p = Project::new(
        "[tasks.t]\nrun = \"echo x >> runs.log; while [ ! -f go ]; do sleep 0.05; done; cp in.txt out.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"out.txt\"]\n",
    );
    p.write("in.txt", "1\n");
    let mut first = p.spawn(&["run"]);
    assert!(
        crate::support::wait_for(Duration::from_secs(10), || p.exists("runs.log")),
        "the first run did not start its task"
    );
    let err = std::fs::File::create(p.path("second.err")).unwrap();
    let summary = p.path("second.json");
    let mut second = crate::support::ChildGuard(Some(
        p.command(&["run", "--summary", summary.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap(),
    ));
    let waited = crate::support::wait_for(Duration::from_secs(10), || {
        p.read("second.err").contains("waiting for its result")
    });
    p.write("go", "");
    assert_eq!(first.wait_code(Duration::from_secs(20)), Some(0));
    assert_eq!(second.wait_code(Duration::from_secs(20)), Some(0));
    assert!(
        waited,
        "the second run did not say it waits: {}",
        p.read("second.err")
    );
    assert_eq!(p.read("runs.log"), "x\n", "the task ran once");
    let s: serde_json::Value = serde_json::from_str(&p.read("second.json")).unwrap();
    assert_eq!(instance(&s, "t")["status"], "cached");
}

/// Rewrites the only entry in the cache with `edit`, keeping its checksum
/// valid: what a tampered (or hostile remote) entry looks like.
fn tamper(p: &Project, edit: impl Fn(&mut serde_json::Value)) {
    let dir = p.path("cache/entries");
    let entry = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&entry).unwrap();
    let (_, body) = text.split_once('\n').unwrap();
    let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
    edit(&mut v);
    let body = serde_json::to_string(&v).unwrap();
    let sum = blake3::hash(body.as_bytes()).to_hex().to_string();
    std::fs::write(&entry, format!("{sum}\n{body}")).unwrap();
}

/// A tampered entry cannot do harm: modes are masked (no setuid, setgid,
/// sticky or world-writable bit), and a file outside the task's declared
/// outputs (`.git/hooks`, the cache's own salt) is never written; such an
/// entry is a restore failure and the task runs (issue 17).
#[test]
fn tampered_entries_cannot_write_modes_or_places_they_should_not() {
    let p = Project::new(
        "[tasks.t]\nrun = \"mkdir -p out && cp in.txt out/a.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"out/**\"]\n",
    );
    p.write("in.txt", "1\n");
    p.run(&["run"]).code(0);
    tamper(&p, |v| v["outputs"][0]["mode"] = serde_json::json!(0o6777));
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(instance(&s, "t")["status"], "cached");
    let mode = std::fs::metadata(p.path("out/a.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7002, 0, "restored with mode {mode:o}");

    for target in [".git/hooks/pre-commit", "cache/salt", "elsewhere.txt"] {
        tamper(&p, |v| v["outputs"][0]["path"] = serde_json::json!(target));
        std::fs::remove_dir_all(p.path("out")).unwrap();
        let salt = p.read("cache/salt");
        let (r, s) = p.run_summary(&["run"], &[]);
        assert_eq!(instance(&s, "t")["status"], "ok", "{target}: {s}");
        assert_eq!(instance(&s, "t")["reason"], "restore-failed");
        assert_has(&r.stderr, "not a declared output");
        assert!(!p.exists(".git/hooks/pre-commit") && !p.exists("elsewhere.txt"));
        assert_eq!(p.read("cache/salt"), salt, "the salt is untouched");
        // The run stored a good entry again; tamper with that one next.
        assert!(p.exists("out/a.txt"));
    }
}

/// A FIFO, or a symlink to a device, under an input or output glob is
/// skipped with a warning naming it, never read: run, the dry run and
/// explain all finish (issue 17).
#[test]
fn fifos_and_devices_under_globs_are_skipped_not_read() {
    use std::time::Duration;
    let p = Project::new(
        "[tasks.t]\nrun = \"mkdir -p out && cp data/a.txt out/a.txt\"\ninputs = [\"data/*\"]\noutputs = [\"out/**\"]\n",
    );
    p.write("data/a.txt", "a\n");
    std::fs::create_dir_all(p.path("out")).unwrap();
    for fifo in ["data/pipe", "out/pipe"] {
        let path = std::ffi::CString::new(p.path(fifo).to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    }
    std::os::unix::fs::symlink("/dev/zero", p.path("data/zero")).unwrap();
    for args in [&["run"][..], &["run", "--dry-run"], &["explain", "t"]] {
        let mut child = p.spawn(args);
        let (code, _) = child
            .wait_output(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{args:?} hung on a FIFO"));
        assert_eq!(code, Some(0), "{args:?}");
    }
    let r = p.run(&["run", "--force"]);
    r.code(0);
    assert_has(&r.stderr, "data/pipe: not a regular file");
    assert_has(&r.stderr, "out/pipe: not a regular file");
    assert!(
        !r.stderr.contains("zero"),
        "a link to a device is left out quietly: {}",
        r.stderr
    );
}

/// A cache folder that cannot be opened (here: a name too long for the
/// file system) plans uncached with a warning naming it, as a run runs
/// uncached; found by the fuzz test (case 8949 of its seed).
#[test]
fn a_cache_that_cannot_be_opened_plans_and_runs_uncached() {
    let long = "c".repeat(300);
    let p = Project::new(&format!(
        "[settings]\ncache_dir = \"{long}\"\n[tasks.t]\nrun = \"true\"\ninputs = [\"in\"]\n"
    ));
    p.write("in", "1\n");
    let r = p.run(&["run", "--dry-run"]);
    r.code(0);
    assert_has(&r.stderr, "running without the cache");
    assert_has(&r.stderr, &long[..50]);
    assert_has(&r.stdout, "cache-disabled");
    p.run(&["run"]).code(0);
}

/// What a killed run leaves behind — a partial file being restored into an
/// output folder, a partial blob in the cache's temp folder — is never
/// stored or taken for an output, and is removed by the next run (issue 17).
#[test]
fn partial_files_of_a_killed_run_are_neither_stored_nor_kept() {
    let p = Project::new(
        "[tasks.t]\nrun = \"mkdir -p out && cp in.txt out/a.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"out/**\"]\n",
    );
    p.write("in.txt", "1\n");
    p.run(&["run"]).code(0);
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let partial = format!("out/.hotpass-{dead}-x1");
    let blob = format!("cache/tmp/.hotpass-{dead}-x2");
    p.write(&partial, "half a file");
    p.write(&blob, "half a blob");
    // A miss: the task runs, and its outputs do not include the partial file.
    p.write("in.txt", "2\n");
    p.run(&["run"]).code(0);
    assert!(!p.exists(&blob), "a dead run's partial blob is removed");
    for e in std::fs::read_dir(p.path("cache/entries")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(
            !text.contains(".hotpass-"),
            "a partial file was stored: {text}"
        );
    }
    // A hit that restores into the folder clears what a killed restore left.
    std::fs::remove_file(p.path("out/a.txt")).unwrap();
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(instance(&s, "t")["status"], "cached");
    assert!(!p.exists(&partial), "the partial restore is removed");
    assert_eq!(p.read("out/a.txt"), "2\n");
}

/// File names that are not UTF-8 keep their bytes: two such names never
/// share a key entry, a change to one is a miss, and a restore writes the
/// exact name back (issue 17).
#[test]
fn file_names_that_are_not_utf8_keep_their_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let p = Project::new(
        "[tasks.t]\nrun = \"mkdir -p out && cp data/* out/\"\ninputs = [\"data/*\"]\noutputs = [\"out/*\"]\n",
    );
    let bad = std::ffi::OsStr::from_bytes(b"bad\xff.txt");
    let worse = std::ffi::OsStr::from_bytes(b"bad\xfe.txt");
    std::fs::create_dir_all(p.path("data")).unwrap();
    std::fs::write(p.path("data").join(bad), "one\n").unwrap();
    std::fs::write(p.path("data").join(worse), "two\n").unwrap();
    p.run(&["run"]).code(0);
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(instance(&s, "t")["status"], "cached");
    assert_eq!(
        std::fs::read_to_string(p.path("out").join(bad)).unwrap(),
        "one\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.path("out").join(worse)).unwrap(),
        "two\n"
    );
    // A change to one of them is a miss (no stale hit).
    std::fs::write(p.path("data").join(worse), "three\n").unwrap();
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(instance(&s, "t")["status"], "ok");
    assert_eq!(
        std::fs::read_to_string(p.path("out").join(worse)).unwrap(),
        "three\n"
    );
}

/// A symlink under an output glob is stored as a link (its target text),
/// never copied through, and restored as that link; an input symlink that
/// does not name a regular file counts by its target text, so pointing it
/// elsewhere is a miss, and it is never read (issue 17).
#[test]
fn symlinks_are_kept_as_links_and_never_followed_into_devices() {
    let p = Project::new(
        "[tasks.t]\nrun = \"mkdir -p out && cp data/a.txt out/a.txt && ln -sfn a.txt out/latest && ln -sfn /dev/zero out/zero\"\ninputs = [\"data/*\"]\noutputs = [\"out/**\"]\n",
    );
    p.write("data/a.txt", "a\n");
    std::os::unix::fs::symlink("a.txt", p.path("data/current")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", p.path("data/device")).unwrap();
    p.run(&["run"]).code(0);
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(instance(&s, "t")["status"], "cached");
    assert_eq!(
        std::fs::read_link(p.path("out/latest")).unwrap(),
        std::path::Path::new("a.txt")
    );
    assert_eq!(
        std::fs::read_link(p.path("out/zero")).unwrap(),
        std::path::Path::new("/dev/zero")
    );
    assert_eq!(std::fs::read_to_string(p.path("out/a.txt")).unwrap(), "a\n");
    // A link replaced by a file of the same content is put back as a link.
    std::fs::remove_file(p.path("out/latest")).unwrap();
    p.write("out/latest", "a\n");
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(instance(&s, "t")["status"], "cached");
    assert!(
        std::fs::symlink_metadata(p.path("out/latest"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // The input link to a device now names another one: a miss.
    std::fs::remove_file(p.path("data/device")).unwrap();
    std::os::unix::fs::symlink("/dev/null", p.path("data/device")).unwrap();
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(instance(&s, "t")["status"], "ok");
}

/// An absolute input names that file wherever it is, and `../` climbs out
/// of the project: a change to either is a miss, never a stale hit, and
/// `hotpass inputs` lists them as written (issue 17).
#[test]
fn absolute_and_escaping_inputs_are_the_files_they_name() {
    let outside = tempfile::tempdir().unwrap();
    let shared = outside.path().join("shared.txt");
    std::fs::write(&shared, "one\n").unwrap();
    let p = Project::new(&format!(
        "[tasks.t]\nrun = \"true\"\ncwd = \"app\"\ninputs = [\"{}\", \"../beside/*.md\"]\n",
        shared.display()
    ));
    p.write("app/keep", "");
    p.write("beside/notes.md", "a\n");
    p.run(&["run"]).code(0);
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(instance(&s, "t")["status"], "cached");
    std::fs::write(&shared, "two\n").unwrap();
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(
        instance(&s, "t")["status"],
        "ok",
        "the absolute input changed"
    );
    p.write("beside/notes.md", "b\n");
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_eq!(
        instance(&s, "t")["status"],
        "ok",
        "the escaping input changed"
    );
    let r = p.run(&["inputs", "t"]);
    r.code(0);
    assert_has(&r.stdout, &shared.display().to_string());
    assert_has(&r.stdout, "../beside/notes.md");
}

/// A blob swapped for a symlink to `/dev/zero` (or a FIFO) is an
/// integrity error, never read: the restore fails, the task runs, and the
/// run ends (issue 17, item 5).
#[test]
fn a_blob_swapped_for_a_device_is_refused_not_read() {
    use std::time::Duration;
    let p = Project::new(
        "[tasks.t]\nrun = \"mkdir -p out && echo data > out/a.txt\"\ninputs = [\"in\"]\noutputs = [\"out/a.txt\"]\n",
    );
    p.write("in", "1\n");
    p.run(&["run"]).code(0);
    let blob = walk(&p.path("cache/blobs"))
        .into_iter()
        .find(|b| std::fs::read(b).is_ok_and(|c| c == b"data\n"))
        .expect("the output's blob");
    std::fs::remove_file(&blob).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &blob).unwrap();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let mut child = p.spawn(&["run", "--summary", "s.json"]);
    let (code, _) = child
        .wait_output(Duration::from_secs(30))
        .expect("a blob that is /dev/zero hung the run");
    assert_eq!(code, Some(0));
    let s: serde_json::Value = serde_json::from_str(&p.read("s.json")).unwrap();
    assert_eq!(instance(&s, "t")["status"], "ok");
    assert_eq!(p.read("out/a.txt"), "data\n");
}
