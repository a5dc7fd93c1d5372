//! Engine micro-benchmarks: loading and planning a large graph, and hashing a
//! tree of files cold versus through the stat memo.
//!
//! `cargo bench --bench engine`; whole-run comparisons with make and ninja
//! live in scripts/bench.py.

use criterion::{Criterion, criterion_group, criterion_main};
use hotpass::config::{LoadOptions, load};
use hotpass::fileset::{Ignored, Patterns};
use hotpass::graph::{InstanceGraph, PartitionArgs, parse_selectors};
use hotpass::hash::Memo;

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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = load_and_plan, hash_tree
}
criterion_main!(benches);
