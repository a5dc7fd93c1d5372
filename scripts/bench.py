#!/usr/bin/env python3
"""Benchmarks hotpass against make and ninja on the same generated workloads.

    cargo build --release && python3 scripts/bench.py [--runs N] [--only NAME] [--baseline BIN]

`HOTPASS_BIN` measures another build than target/release/hotpass, and
`--baseline BIN` adds another hotpass binary (say, a build of the previous
commit) to every workload, so a change is measured before and after in the
same run.

Workloads (each generated in a fresh temporary folder):
  run1000    1,000 independent tasks running `true`, uncached: a full run.
  noop1000   1,000 tasks copying one input file each; a no-op after a full run.
  files100k  50 tasks whose globs match 2,000 files each (100,000 files); a no-op.
  change1    noop1000 after editing one input: exactly one task must re-run.
  backfill365  a 3-stage daily pipeline over 365 partitions (hotpass only: no
             peer has partitions): the dry run, and the no-op backfill.

Prints the median wall time of each tool and hotpass's ratio to ninja. Needs
`make` and `ninja` on PATH (Debian: make, ninja-build).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOTPASS = os.environ.get("HOTPASS_BIN") or os.path.join(ROOT, "target", "release", "hotpass")
JOBS = "2"


def timed(cmd, cwd, env=None):
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def median_of(runs, cmd, cwd, before=None):
    times = []
    for _ in range(runs):
        if before:
            before()
        times.append(timed(cmd, cwd))
    return statistics.median(times)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def gen_run1000(d):
    toml, mk, nj = [], ["all:"], ["rule r\n  command = true\n"]
    for i in range(1000):
        toml.append(f'[tasks.t{i}]\nrun = "true"\n')
        mk[0] += f" t{i}"
        mk.append(f"t{i}:\n\t@true")
        nj.append(f"build t{i}: r")
    write(f"{d}/hotpass.toml", "\n".join(toml))
    write(f"{d}/Makefile", ".PHONY: all " + " ".join(f"t{i}" for i in range(1000)) + "\n" + "\n".join(mk) + "\n")
    write(f"{d}/build.ninja", "\n".join(nj) + "\n")


def gen_noop1000(d):
    toml, mk, nj = [], ["all:"], ["rule cp\n  command = cp $in $out\n"]
    for i in range(1000):
        write(f"{d}/src/f{i}.txt", f"input {i}\n")
        toml.append(f'[tasks.t{i}]\nrun = "mkdir -p out && cp src/f{i}.txt out/f{i}.txt"\ninputs = ["src/f{i}.txt"]\noutputs = ["out/f{i}.txt"]\n')
        mk[0] += f" out/f{i}.txt"
        mk.append(f"out/f{i}.txt: src/f{i}.txt\n\t@mkdir -p out && cp $< $@")
        nj.append(f"build out/f{i}.txt: cp src/f{i}.txt")
    write(f"{d}/hotpass.toml", "\n".join(toml))
    write(f"{d}/Makefile", "\n".join(mk) + "\n")
    write(f"{d}/build.ninja", "\n".join(nj) + "\n")


def gen_files100k(d):
    toml, mk, nj = [], ["all:"], ["rule stamp\n  command = touch $out\n"]
    for t in range(50):
        files = []
        for sub in range(20):
            for f in range(100):
                rel = f"pkg{t}/d{sub}/f{f}.txt"
                write(f"{d}/{rel}", f"{t} {sub} {f}\n")
                files.append(rel)
        toml.append(f'[tasks.p{t}]\nrun = "mkdir -p stamps && touch stamps/p{t}"\ninputs = ["pkg{t}/**/*.txt"]\noutputs = ["stamps/p{t}"]\n')
        mk[0] += f" stamps/p{t}"
        mk.append(f"stamps/p{t}: " + " ".join(files) + "\n\t@mkdir -p stamps && touch $@")
        nj.append(f"build stamps/p{t}: stamp " + " ".join(files))
    write(f"{d}/hotpass.toml", "\n".join(toml))
    write(f"{d}/Makefile", "\n".join(mk) + "\n")
    write(f"{d}/build.ninja", "\n".join(nj) + "\n")


TOOLS = {
    "hotpass": [HOTPASS, "-q", "run", "-j", JOBS],
    "ninja": ["ninja", "-j", JOBS],
    "make": ["make", "-s", "-j", JOBS],
}


def bench_noop(name, gen, runs, results):
    for tool, cmd in TOOLS.items():
        with tempfile.TemporaryDirectory() as d:
            gen(d)
            subprocess.run(cmd, cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(2.5)  # past hotpass's racy window, as on a real machine
            subprocess.run(cmd, cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            results.setdefault(name, {})[tool] = median_of(runs, cmd, d)


def bench_full(name, gen, runs, results):
    for tool, cmd in TOOLS.items():
        with tempfile.TemporaryDirectory() as d:
            gen(d)
            extra = ["--no-cache"] if tool == "hotpass" else []
            results.setdefault(name, {})[tool] = median_of(runs, cmd + extra, d)


def bench_change1(runs, results):
    for tool, cmd in TOOLS.items():
        with tempfile.TemporaryDirectory() as d:
            gen_noop1000(d)
            subprocess.run(cmd, cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            counter = [0]

            def edit():
                counter[0] += 1
                write(f"{d}/src/f500.txt", f"edited {counter[0]}\n")

            results.setdefault("change1", {})[tool] = median_of(runs, cmd, d, before=edit)
            if tool == "hotpass":
                edit()
                summary = os.path.join(d, "summary.json")
                subprocess.run(cmd + ["--summary", summary], cwd=d, check=True, stdout=subprocess.DEVNULL)
                with open(summary) as f:
                    s = json.load(f)
                ran = [i["name"] for i in s["instances"] if i["status"] == "ok"]
                results["change1"]["hotpass_reran"] = ran


def gen_backfill365(d):
    stage = 'partitions = { daily = { start = "2025-01-01" } }'
    toml = f"""
[settings]
backfill_limit = 2000
[tasks."p:ingest"]
run = "mkdir -p bronze && cp raw/{{partition}}.csv bronze/{{partition}}.csv"
inputs = ["raw/{{partition}}.csv"]
outputs = ["bronze/{{partition}}.csv"]
{stage}
[tasks."p:clean"]
deps = ["p:ingest"]
run = "mkdir -p silver && sort -u bronze/{{partition}}.csv > silver/{{partition}}.csv"
inputs = ["bronze/{{partition}}.csv"]
outputs = ["silver/{{partition}}.csv"]
{stage}
[tasks."p:score"]
deps = ["p:clean"]
run = "mkdir -p gold && wc -l < silver/{{partition}}.csv > gold/{{partition}}.txt"
inputs = ["silver/{{partition}}.csv"]
outputs = ["gold/{{partition}}.txt"]
{stage}
"""
    write(f"{d}/hotpass.toml", toml)
    import datetime
    day = datetime.date(2025, 1, 1)
    for _ in range(365):
        write(f"{d}/raw/{day.isoformat()}.csv", f"{day},a\n{day},b\n")
        day += datetime.timedelta(days=1)


def bench_backfill365(runs, results):
    for tool, cmd in TOOLS.items():
        if not tool.startswith("hotpass"):
            continue
        with tempfile.TemporaryDirectory() as d:
            gen_backfill365(d)
            base = cmd + ["--backfill", "2025-01-01..2025-12-31"]
            subprocess.run(base, cwd=d, check=True, stdout=subprocess.DEVNULL)
            time.sleep(2.5)  # let the stat memo trust the files (racy window)
            subprocess.run(base, cwd=d, check=True, stdout=subprocess.DEVNULL)
            results.setdefault("backfill365", {})[tool] = {
                "dry_run": median_of(runs, base + ["--dry-run=json"], d),
                "noop": median_of(runs, base, d),
            }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--only")
    ap.add_argument("--baseline", help="another hotpass binary to measure alongside")
    args = ap.parse_args()
    if args.baseline:
        TOOLS["hotpass-baseline"] = [os.path.abspath(args.baseline), "-q", "run", "-j", JOBS]
    if not os.path.exists(HOTPASS):
        sys.exit("build first: cargo build --release")
    for tool in ("make", "ninja"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not on PATH (Debian: apt-get install make ninja-build)")
    results = {}
    plan = [
        ("run1000", lambda: bench_full("run1000", gen_run1000, args.runs, results)),
        ("noop1000", lambda: bench_noop("noop1000", gen_noop1000, args.runs, results)),
        ("files100k", lambda: bench_noop("files100k", gen_files100k, max(3, args.runs // 2), results)),
        ("change1", lambda: bench_change1(args.runs, results)),
        ("backfill365", lambda: bench_backfill365(args.runs, results)),
    ]
    for name, fn in plan:
        if args.only and args.only != name:
            continue
        fn()
        r = results[name]
        if name == "backfill365":
            for tool, t in r.items():
                print(f"backfill365 (1,095 instances) {tool}: dry-run {t['dry_run'] * 1000:.1f} ms  no-op {t['noop'] * 1000:.1f} ms", flush=True)
            continue
        line = "  ".join(f"{t} {r[t] * 1000:8.1f} ms" for t in TOOLS)
        ratio = r["hotpass"] / r["ninja"]
        extra = f"  hotpass/baseline {r['hotpass'] / r['hotpass-baseline']:5.2f}x" if "hotpass-baseline" in r else ""
        print(f"{name:<10} {line}  hotpass/ninja {ratio:5.2f}x  hotpass/make {r['hotpass'] / r['make']:5.2f}x{extra}", flush=True)
        if name == "run1000":
            print(f"{'':<10} hotpass per-task overhead {r['hotpass'] * 1000 / 1000:.3f} ms (with -j {JOBS})")
        if "hotpass_reran" in r:
            print(f"{'':<10} hotpass re-ran: {r['hotpass_reran']}")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
