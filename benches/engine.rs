//! Engine micro-benchmarks: loading and planning a large graph, hashing a
//! tree of files cold versus through the stat memo, loading the cache's
//! state file, and the check of one hit (key, decision, restore).
//!
//! `cargo bench --bench engine`; whole-run comparisons with make and ninja
//! live in scripts/bench.py.

use std::collections::BTreeMap;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use hotpass::cache::policy::{Blobs, Decision};
use hotpass::cache::state::{Known, KnownEntry, State};
use hotpass::cache::store::{Entry, OutputFile};
use hotpass::cache::{Cache, Mode};
use hotpass::config::{LoadOptions, load};
use hotpass::fileset::{Ignored, Patterns};
use hotpass::graph::{InstanceGraph, PartitionArgs, parse_selectors};
use hotpass::hash::Memo;
use hotpass::hash::Stat;

fn project_of(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    for i in 0..n {
        let deps = if i == 0 {
            String::new()
        } else {
            format!("deps = [\"t{}\"]\n", i / 2)
        };
        toml.push_str(&format!(
            "[tasks.t{i}]\nrun = \"true\"\ninputs = [\"src/{i}/**\"]\n{deps}\n"
        ));
    }
    std::fs::write(dir.path().join("hotpass.toml"), toml).unwrap();
    dir
}

fn load_and_plan(c: &mut Criterion) {
    let dir = project_of(1000);
    let opts = LoadOptions {
        cwd: dir.path().to_path_buf(),
        ..Default::default()
    };
    c.bench_function("load and plan 1000 tasks", |b| {
        b.iter(|| {
            let project = load(&opts).unwrap();
            let sel = parse_selectors(&project, &[]).unwrap();
            let graph =
                InstanceGraph::build(&project, &sel, &PartitionArgs::default(), None).unwrap();
            graph.order().len()
        })
    });
}

fn hash_tree(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    for d in 0..100 {
        std::fs::create_dir_all(dir.path().join(format!("src/{d}"))).unwrap();
        for f in 0..100 {
            std::fs::write(
                dir.path().join(format!("src/{d}/{f}.txt")),
                format!("{d} {f}\n").repeat(20),
            )
            .unwrap();
        }
    }
    let patterns = Patterns::new(&["src/**/*.txt"]).unwrap();
    let hash_all = |memo: &Memo| {
        let files = patterns.expand(dir.path(), Ignored::Skip, &[]).unwrap();
        let pairs: Vec<_> = files.iter().map(|f| (f.abs.as_path(), &f.meta)).collect();
        memo.hash_files(&pairs).unwrap().len()
    };
    c.bench_function("hash 10k files, cold", |b| {
        b.iter(|| hash_all(&Memo::new()))
    });
    let warm = Memo::new();
    hash_all(&warm);
    c.bench_function("hash 10k files, stat memo warm", |b| {
        b.iter(|| hash_all(&warm))
    });
}

/// A state file of `n` instances, each with one input file and an entry
/// of one output, as a run of `n` copy tasks leaves it.
fn state_of(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (state, _) = State::load(&dir.path().join("state"));
    let mut files = Vec::with_capacity(n);
    for i in 0..n {
        let digest = *blake3::hash(format!("key {i}").as_bytes()).as_bytes();
        let hash = blake3::hash(format!("output {i}").as_bytes())
            .to_hex()
            .to_string();
        let entry = Entry {
            format: 1,
            key: hotpass::hash::hex(&digest),
            instance: format!("t{i}"),
            exit_code: 0,
            duration_ms: 3,
            created_unix: 1_790_000_000,
            log: None,
            log_size: None,
            outputs: vec![OutputFile {
                path: format!("out/f{i}.txt"),
                hash,
                size: 10,
                mode: 0o644,
                link: None,
            }],
            dep_keys: BTreeMap::new(),
            invocation: Some("0199b8f4-7d2e-7c41-9a3e-3f1c2b4d5e6f".into()),
        };
        let sig = Stat {
            size: 400,
            mtime_ns: 1_790_000_000_000_000_000 + i as i64,
            ino: 1_000_000 + i as u64,
        };
        state.set(
            &entry.instance,
            Known {
                digest,
                entry: KnownEntry::of(&entry, sig).map(Box::new),
            },
        );
        files.push((
            PathBuf::from(format!("/home/dev/project/src/f{i}.txt")),
            Stat {
                size: 10,
                mtime_ns: 1_780_000_000_000_000_000 + i as i64,
                ino: 2_000_000 + i as u64,
            },
            *blake3::hash(format!("input {i}").as_bytes()).as_bytes(),
        ));
    }
    state.save(files).unwrap();
    dir
}

fn state_file(c: &mut Criterion) {
    for n in [1_000, 100_000] {
        let dir = state_of(n);
        let path = dir.path().join("state");
        c.bench_function(&format!("state file: load {n} instances"), |b| {
            // A run never frees what it loaded (it exits): neither does this.
            b.iter_with_large_drop(|| State::load(&path))
        });
    }
}

/// A project of `n` copy tasks, run twice with the real binary (its inputs
/// dated in the past, so the stat memo keeps them): every instance a hit.
fn stored_project(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for i in 0..n {
        let input = dir.path().join(format!("src/f{i}.txt"));
        std::fs::write(&input, format!("input {i}\n")).unwrap();
        std::fs::File::options()
            .append(true)
            .open(&input)
            .unwrap()
            .set_modified(past)
            .unwrap();
        toml.push_str(&format!(
            "[tasks.t{i}]\nrun = \"cp src/f{i}.txt out/f{i}.txt\"\ninputs = [\"src/f{i}.txt\"]\noutputs = [\"out/f{i}.txt\"]\n"
        ));
    }
    std::fs::write(dir.path().join("hotpass.toml"), toml).unwrap();
    for _ in 0..2 {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_hotpass"))
            .args(["-q", "run"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    dir
}

/// One hit, as a run checks it: its key from the tree, the decision (the
/// state file answers, with a stat of the entry) and the restore (the
/// output is in place: a stat). Measured over the 1,000 instances.
fn hit_check(c: &mut Criterion) {
    let dir = stored_project(1000);
    let opts = LoadOptions {
        cwd: dir.path().to_path_buf(),
        ..Default::default()
    };
    let project = load(&opts).unwrap();
    let sel = parse_selectors(&project, &[]).unwrap();
    let graph = InstanceGraph::build(&project, &sel, &PartitionArgs::default(), None).unwrap();
    let cache = Cache::open(&project.settings.cache_dir, Mode::Normal).unwrap();
    c.bench_function("check 1000 hits (key, decision, restore)", |b| {
        b.iter(|| {
            let mut hits = 0;
            for id in graph.order() {
                let inst = graph.get(*id);
                let task = &project.task(inst.task).name;
                let (key, _) = cache.key(task, inst, BTreeMap::new()).unwrap();
                let digest = key.digest();
                if let Decision::Hit(entry) =
                    cache.decide(&inst.name, true, Some((&key, &digest)), Blobs::OnRestore)
                {
                    cache.restore(&entry, &project.root, inst).unwrap();
                    hits += 1;
                }
            }
            assert_eq!(hits, 1000);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = load_and_plan, hash_tree, state_file, hit_check
}
criterion_main!(benches);
