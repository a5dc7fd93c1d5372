//! Packs: a run that stores many results keeps its first ones as loose
//! files and packs the rest (entries and small blobs in two files). Hits,
//! restores, damage, concurrency and gc behave as with loose files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{Project, assert_all_cached, assert_has, instance, statuses, with_status};

/// Tasks a run stores: more than it keeps loose (16).
const TASKS: usize = 40;

/// `TASKS` tasks, each writing one small output from its input, and
/// printing a line (its captured output).
fn project() -> Project {
    project_saying(" && echo said-{i}")
}

/// The same, each task's command ending with `say` (`{i}` its number).
fn project_saying(say: &str) -> Project {
    let mut toml = String::new();
    for i in 0..TASKS {
        let say = say.replace("{i}", &i.to_string());
        toml.push_str(&format!(
            "[tasks.t{i}]\nrun = \"mkdir -p out && cat in/{i}.txt > out/{i}.txt{say}\"\ninputs = [\"in/{i}.txt\"]\noutputs = [\"out/{i}.txt\"]\n"
        ));
    }
    let p = Project::new(&toml);
    for i in 0..TASKS {
        p.write(&format!("in/{i}.txt"), &format!("data-{i}\n"));
    }
    p
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

fn outputs_are_right(p: &Project) {
    for i in 0..TASKS {
        assert_eq!(p.read(&format!("out/{i}.txt")), format!("data-{i}\n"));
    }
}

/// The first 16 results are loose files, the rest two packs; all are hits
/// the next time, restore byte for byte, and replay their output.
#[test]
fn a_big_run_packs_its_results_and_restores_them() {
    let p = project();
    p.run(&["run"]).code(0);
    assert_eq!(files(&p.path("cache/entries"), "entry").len(), 16);
    assert_eq!(files(&p.path("cache/entries"), "pack").len(), 1);
    assert_eq!(files(&p.path("cache/blobs"), "pack").len(), 1);
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    assert_all_cached(&s);
    for i in 0..TASKS {
        assert_has(&r.stdout, &format!("said-{i}"));
    }
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    assert_all_cached(&s);
    outputs_are_right(&p);
    let stats: serde_json::Value =
        serde_json::from_str(&p.run(&["cache", "stats", "--json"]).stdout).unwrap();
    assert_eq!(stats["entries"], TASKS);
    assert_eq!(stats["blobs"], 2 * TASKS, "an output and a log each");
    p.run(&["doctor"]).code(0);
}

/// A no-op after a big run is answered by the state file from each pack's
/// stat signature, as it is from a loose entry's: with its outputs in
/// place and nothing to replay, a pack is not read. (A pack rewritten
/// behind hotpass's back with its size, time and inode kept goes
/// unnoticed, as an entry file would.)
#[test]
fn a_no_op_does_not_read_the_packs() {
    let p = project_saying("");
    p.run(&["run"]).code(0);
    let pack = files(&p.path("cache/entries"), "pack").remove(0);
    let len = std::fs::metadata(&pack).unwrap().len() as usize;
    let keep = p.path("kept-time");
    std::fs::write(&keep, b"").unwrap();
    let status = std::process::Command::new("touch")
        .arg("-r")
        .arg(&pack)
        .arg(&keep)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(&pack, vec![b'x'; len]).unwrap();
    let status = std::process::Command::new("touch")
        .arg("-r")
        .arg(&keep)
        .arg(&pack)
        .status()
        .unwrap();
    assert!(status.success());
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    assert_all_cached(&s);
    assert!(!r.stderr.contains("damaged"), "{}", r.stderr);
}

/// A hit marks its pack as used (what `cache gc --max-age` reads) when
/// the pack was last used more than an hour ago; the state file learns the
/// pack's new signature, and every result stays a hit.
#[test]
fn a_hit_marks_an_old_pack_as_used() {
    let p = project_saying("");
    p.run(&["run"]).code(0);
    let pack = files(&p.path("cache/entries"), "pack").remove(0);
    let status = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&pack)
        .status()
        .unwrap();
    assert!(status.success());
    let age = |f: &Path| {
        std::fs::metadata(f)
            .unwrap()
            .modified()
            .unwrap()
            .elapsed()
            .unwrap_or_default()
    };
    assert!(age(&pack) > Duration::from_secs(3600));
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_all_cached(&s);
    assert!(age(&pack) < Duration::from_secs(3600), "marked as used");
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_all_cached(&s);
    p.run(&["cache", "gc", "--max-age", "1h"]).code(0);
    assert_eq!(files(&p.path("cache/entries"), "pack").len(), 1, "kept");
}

/// A byte changed inside one packed entry loses that entry alone: it runs
/// again as `corrupt-entry`, with a warning; the others still hit.
#[test]
fn a_damaged_entry_in_a_pack_is_lost_alone() {
    let p = project();
    p.run(&["run"]).code(0);
    let pack = files(&p.path("cache/entries"), "pack").remove(0);
    let mut bytes = std::fs::read(&pack).unwrap();
    // Inside the first frame's JSON: after its length (4) and key (64).
    let at = 4 + 64 + 20;
    bytes[at] ^= 0x01;
    std::fs::write(&pack, &bytes).unwrap();
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    let ran = with_status(&s, "ok");
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(instance(&s, &ran[0])["reason"], "corrupt-entry");
    assert_has(&r.stderr, "corrupt");
    outputs_are_right(&p);
}

/// Emptying `cache/blobs` empties the packs of blobs too: every hit whose
/// outputs are gone fails to restore and runs (SPEC: `restore-failed`).
#[test]
fn emptying_blobs_makes_packed_hits_restore_failed() {
    let p = project();
    p.run(&["run"]).code(0);
    std::fs::remove_dir_all(p.path("cache/blobs")).unwrap();
    std::fs::create_dir_all(p.path("cache/blobs")).unwrap();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    for i in 0..TASKS {
        let t = instance(&s, &format!("t{i}"));
        assert_eq!(t["status"], "ok", "t{i}");
        assert_eq!(t["reason"], "restore-failed", "t{i}");
    }
    outputs_are_right(&p);
}

/// A pack of entries cut short or overwritten loses the entries it held,
/// never gives a wrong hit: they run again as `corrupt-entry`, with a
/// warning, and the next run hits.
#[test]
fn a_damaged_pack_is_a_miss_with_a_warning() {
    for damage in ["truncate", "garbage"] {
        let p = project();
        p.run(&["run"]).code(0);
        let pack = files(&p.path("cache/entries"), "pack").remove(0);
        let bytes = std::fs::read(&pack).unwrap();
        match damage {
            "truncate" => std::fs::write(&pack, &bytes[..bytes.len() / 2]).unwrap(),
            _ => std::fs::write(&pack, vec![b'x'; bytes.len()]).unwrap(),
        }
        let (r, s) = p.run_summary(&["run"], &[]);
        r.code(0);
        assert_has(&r.stderr, "damaged");
        let ran = with_status(&s, "ok");
        assert!(!ran.is_empty(), "{damage}: the lost entries run again");
        assert!(
            ran.len() <= TASKS - 16,
            "{damage}: the loose entries still hit"
        );
        for name in &ran {
            assert_eq!(instance(&s, name)["reason"], "corrupt-entry", "{damage}");
        }
        outputs_are_right(&p);
        let (_, s) = p.run_summary(&["run"], &[]);
        assert_all_cached(&s);
    }
}

/// Two big runs at once each write a pack of their own; the next run
/// hits everything.
#[test]
fn concurrent_big_runs_share_a_cache() {
    let p = project();
    let mut a = p.spawn(&["run"]);
    let mut b = p.spawn(&["run"]);
    assert_eq!(a.wait_code(Duration::from_secs(60)), Some(0));
    assert_eq!(b.wait_code(Duration::from_secs(60)), Some(0));
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    assert_all_cached(&s);
    outputs_are_right(&p);
}

/// gc evicts a packed entry by when its pack was written: a pack of old
/// results goes whole; the newer results stay hits.
#[test]
fn gc_evicts_old_packs_and_keeps_new_ones() {
    let p = project();
    p.run(&["run"]).code(0);
    // Everything stored so far looks two days old.
    for dir in ["cache/entries", "cache/blobs"] {
        let status = std::process::Command::new("find")
            .args([p.path(dir).to_str().unwrap(), "-type", "f", "-exec"])
            .args(["touch", "-d", "2 days ago", "{}", "+"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    for i in 0..TASKS {
        p.write(&format!("in/{i}.txt"), &format!("new-{i}\n"));
    }
    p.run(&["run"]).code(0);
    assert_eq!(files(&p.path("cache/entries"), "pack").len(), 2);
    p.run(&["cache", "gc", "--max-age", "1d"]).code(0);
    assert_eq!(files(&p.path("cache/entries"), "pack").len(), 1);
    let stats: serde_json::Value =
        serde_json::from_str(&p.run(&["cache", "stats", "--json"]).stdout).unwrap();
    assert_eq!(stats["entries"], TASKS);
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (_, s) = p.run_summary(&["run"], &[]);
    assert_all_cached(&s);
    for i in 0..TASKS {
        assert_eq!(p.read(&format!("out/{i}.txt")), format!("new-{i}\n"));
    }
    // Evicting everything leaves no pack behind, and the next run runs.
    p.run(&["cache", "gc", "--max-size", "0B"]).code(0);
    assert!(files(&p.path("cache/entries"), "pack").is_empty());
    assert!(files(&p.path("cache/blobs"), "pack").is_empty());
    let (_, s) = p.run_summary(&["run"], &[]);
    assert!(statuses(&s).values().all(|v| v == "ok"));
}

/// A packed entry whose pack lost a result's blob is `restore-failed`,
/// and the outputs left in the tree are untouched until the task runs.
#[test]
fn a_pack_of_blobs_cut_short_is_restore_failed() {
    let p = project();
    p.run(&["run"]).code(0);
    let pack = files(&p.path("cache/blobs"), "pack").remove(0);
    std::fs::write(&pack, b"").unwrap();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    let failed: Vec<String> = with_status(&s, "ok");
    assert!(
        !failed.is_empty() && failed.len() <= TASKS - 16,
        "only packed results had blobs in the pack: {failed:?}"
    );
    for name in &failed {
        assert_eq!(instance(&s, name)["reason"], "restore-failed");
    }
    outputs_are_right(&p);
}
