//! A seeded, deterministic fuzzer over configs: the repository's own and the
//! examples', mutated (byte flips, truncation, unknown keys, huge numbers,
//! long strings, invalid UTF-8, duplicated and deleted lines), then read by
//! `list` and `run --dry-run`. Every case ends with exit 0 or 2, never a
//! panic, and a refusal is a hotpass diagnostic (issue 17).
//!
//! `HOTPASS_FUZZ_CASES=N` runs N cases instead of the default, and
//! `HOTPASS_FUZZ_SEED=S` another sequence; the default seed is fixed, so a
//! failure names the case that reproduces it.

use std::path::PathBuf;

use crate::support::Project;

/// xorshift64*: small, seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<Vec<u8>> = [
        "hotpass.toml",
        "tasks/gates.toml",
        "examples/pipeline/hotpass.toml",
        "examples/python-project/hotpass.toml",
        "examples/typescript-library/hotpass.toml",
    ]
    .iter()
    .filter_map(|f| std::fs::read(root.join(f)).ok())
    .collect();
    out.push(
        br#"[settings]
jobs = 2
backfill_limit = 50
env_mode = "strict"
[tasks."p:a"]
run = "echo {partition}"
inputs = ["raw/{partition}.csv", "$TOKEN"]
outputs = ["out/{partition}.txt"]
partitions = { daily = { start = "2025-01-01", end = "2025-01-05" } }
timeout = "1m"
max_parallel = 2
[gates.b]
deps = ["p:a"]
run = ["true", "true"]
partitions = { values = ["x", "y"] }
partition_map = "all"
tools = ["sh"]
pass_env = ["CI*"]
"#
        .to_vec(),
    );
    out
}

fn mutate(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
    let mut t = text.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(t.len() + 1);
        let line_start = t[..at]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        match rng.below(9) {
            0 if !t.is_empty() => {
                let i = at.min(t.len() - 1);
                t[i] = rng.next() as u8;
            }
            1 => t.truncate(at),
            2 => t
                .splice(line_start..line_start, b"zzz_unknown = 1\n".iter().copied())
                .for_each(drop),
            3 => t
                .splice(at..at, b"9223372036854775807".iter().copied())
                .for_each(drop),
            4 => t.splice(at..at, b"-1".iter().copied()).for_each(drop),
            5 => {
                let long = "x".repeat(10_000 + rng.below(60_000));
                t.splice(at..at, long.bytes()).for_each(drop)
            }
            6 => t.splice(at..at, [0xff, 0xfe]).for_each(drop),
            7 => {
                let end = t[at..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(t.len(), |i| at + i + 1);
                let line = t[line_start..end].to_vec();
                t.splice(end..end, line).for_each(drop)
            }
            _ => {
                let end = t[at..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(t.len(), |i| at + i + 1);
                t.drain(line_start..end).for_each(drop)
            }
        }
    }
    t
}

/// Mutated configs never crash `list` or the dry run.
#[test]
fn mutated_configs_never_crash_list_or_the_dry_run() {
    let cases: usize = std::env::var("HOTPASS_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(150);
    let seeds = seeds();
    let seed: u64 = std::env::var("HOTPASS_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15);
    let mut rng = Rng(seed.max(1));
    let p = Project::new("");
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..cases {
        let seed = &seeds[rng.below(seeds.len())];
        let config = mutate(&mut rng, seed);
        std::fs::write(p.path("hotpass.toml"), &config).unwrap();
        for args in [&["list"][..], &["run", "--dry-run"]] {
            let r = p.run_env(args, &[("HOTPASS_TODAY", "2025-01-08")]);
            let shown = String::from_utf8_lossy(&config[..config.len().min(300)]).into_owned();
            assert!(
                !r.stderr.contains("panicked") && (r.code == 0 || r.code == 2),
                "case {case} ({args:?}) exited {}:\n{}\n--- config (first 300 bytes)\n{shown}",
                r.code,
                &r.stderr[..r.stderr.len().min(2000)]
            );
            if r.code == 2 {
                refused += 1;
                assert!(
                    r.stderr.contains("hotpass::"),
                    "case {case}: no diagnostic: {}",
                    r.stderr
                );
            } else {
                accepted += 1;
            }
        }
    }
    eprintln!("fuzz: seed {seed}, {cases} cases, {accepted} accepted, {refused} refused");
    assert!(
        accepted > 0 && refused > 0,
        "the mutations exercise both paths"
    );
}

/// The same mutations, read in this process through the library's `run`, so
/// a long run covers far more cases per second than spawning the binary:
/// `HOTPASS_FUZZ_INPROCESS_CASES=N` (the closing note's million-case runs).
/// A panic is caught and fails the test with the case that caused it.
#[test]
fn mutated_configs_never_panic_in_process() {
    let cases: usize = std::env::var("HOTPASS_FUZZ_INPROCESS_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("HOTPASS_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0x2545_F491_4F6C_DD1D);
    let seeds = seeds();
    let mut rng = Rng(seed.max(1));
    let p = Project::new("");
    let dir = p.root().to_string_lossy().into_owned();
    let (ok, usage) = (
        std::process::ExitCode::from(0),
        std::process::ExitCode::from(2),
    );
    let (mut accepted, mut refused) = (0usize, 0usize);
    let started = std::time::Instant::now();
    for case in 0..cases {
        let pick = rng.below(seeds.len());
        let config = mutate(&mut rng, &seeds[pick]);
        std::fs::write(p.path("hotpass.toml"), &config).unwrap();
        for args in [&["list"][..], &["run", "--dry-run", "-q"]] {
            let argv = ["hotpass", "--directory", dir.as_str(), "--color", "never"]
                .into_iter()
                .chain(args.iter().copied());
            let code = std::panic::catch_unwind(|| hotpass::run(argv)).unwrap_or_else(|_| {
                let shown = String::from_utf8_lossy(&config[..config.len().min(300)]).into_owned();
                panic!("case {case} ({args:?}) panicked; config (first 300 bytes):\n{shown}")
            });
            assert!(
                code == ok || code == usage,
                "case {case} ({args:?}): {code:?}"
            );
            if code == ok {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        if case % 10_000 == 9_999 {
            println!(
                "fuzz (in process): {} cases in {:.0?}, {accepted} accepted, {refused} refused",
                case + 1,
                started.elapsed()
            );
        }
    }
    println!(
        "fuzz (in process): seed {seed}, {cases} cases, {accepted} accepted, {refused} refused"
    );
    assert!(
        accepted > 0 && refused > 0,
        "the mutations exercise both paths"
    );
}
