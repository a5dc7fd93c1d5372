#!/usr/bin/env python3
"""Benchmarks hotpass against make and ninja on the same generated workloads.

    cargo build --release && python3 scripts/bench.py [--runs N] [--only NAME] [--scale] [--baseline BIN]

`HOTPASS_BIN` measures another build than target/release/hotpass, and
`--baseline BIN` adds another hotpass binary (say, a build of the previous
commit) to every workload, so a change is measured before and after in the
same run.

Workloads (each tool gets its own fresh copy of a generated project; the
tools' runs are interleaved, so a busy moment of the machine costs them all):
  noop1000     1,000 independent tasks copying one small input file each to
               one output (`cp`); a no-op after a full run. Also reports each
               tool's peak RSS on that no-op.
  change1      noop1000 after editing one input: exactly one task re-runs.
  cold1000     the 1,000 copy tasks from nothing (no outputs, no cache, no
               .ninja_log): per task, spawning and storing included. On ext4
               without a journal it also measures the file system's recent
               deletions (see docs/performance.md); `TMPDIR` chooses the file
               system the projects are made on.
  layered2000  2,000 tasks in 20 layers of 100, each depending on 3 tasks of
               the layer below; a no-op.
  files100k    50 tasks whose globs match 2,000 files each (100,000 files); a no-op.
  backfill365  a 3-stage daily pipeline over 365 partitions (hotpass only: no
               peer has partitions): the dry run, and the no-op backfill.
  --scale adds independent and layered graphs of 10,000 and 100,000 tasks
  (ninja and hotpass; make takes minutes): the no-op, and peak RSS.

Prints the median wall time of each tool and hotpass's ratio to ninja. Needs
`make` and `ninja` on PATH (Debian: make, ninja-build).
"""

import argparse
import datetime
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

TOOLS = {
    "hotpass": [HOTPASS, "-q", "run", "-j", JOBS],
    "ninja": ["ninja", "-j", JOBS],
    "make": ["make", "-s", "-j", JOBS],
}


def run(cmd, cwd):
    """Runs `cmd` (output discarded) and returns its wall time in seconds."""
    start = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd} (exit {r.returncode})")
    return elapsed


def peak_rss(cmd, cwd):
    """The peak RSS of `cmd` in MB, as GNU time reports it (a small parent:
    a process forked from Python would count Python's memory too)."""
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name] + cmd, cwd=cwd, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return int(out.read().split()[-1]) / 1024


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def gen_graph(d, n, layers=1, deps=0):
    """`n` tasks in `layers` layers, each writing one small output from its
    inputs: its own input file, and on a layer above the first the outputs
    of `deps` tasks of the layer below. A task copies its one input
    (`cat`); one with more checksums them (`cksum`: an output of a few
    lines, not one that grows layer by layer). The output folder exists, as
    ninja makes it itself."""
    width = n // layers
    toml, mk, nj = [], ["all:"], [
        "rule cp\n  command = cat $in > $out\n",
        "rule sum\n  command = cksum $in > $out\n",
    ]
    os.makedirs(f"{d}/src", exist_ok=True)
    os.makedirs(f"{d}/out", exist_ok=True)
    for i in range(n):
        layer, pos = divmod(i, width)
        with open(f"{d}/src/f{i}.txt", "w") as f:
            f.write(f"input {i}\n")
        below = [(layer - 1) * width + (pos + k) % width for k in range(deps)] if layer else []
        ins = [f"src/f{i}.txt"] + [f"out/f{b}.txt" for b in below]
        dep_names = ", ".join(json.dumps(f"t{b}") for b in below)
        dep_line = f"deps = [{dep_names}]\n" if below else ""
        in_list = ", ".join(json.dumps(x) for x in ins)
        tool, rule = ("cksum", "sum") if below else ("cat", "cp")
        toml.append(
            f'[tasks.t{i}]\nrun = "{tool} {" ".join(ins)} > out/f{i}.txt"\n{dep_line}'
            f'inputs = [{in_list}]\noutputs = ["out/f{i}.txt"]\n'
        )
        mk[0] += f" out/f{i}.txt"
        mk.append(f"out/f{i}.txt: {' '.join(ins)}\n\t@{tool} $^ > $@")
        nj.append(f"build out/f{i}.txt: {rule} {' '.join(ins)}")
    write(f"{d}/hotpass.toml", "\n".join(toml))
    write(f"{d}/Makefile", "\n".join(mk) + "\n")
    write(f"{d}/build.ninja", "\n".join(nj) + "\n")


def gen_files100k(d):
    toml, mk, nj = [], ["all:"], ["rule stamp\n  command = touch $out\n"]
    os.makedirs(f"{d}/stamps", exist_ok=True)
    for t in range(50):
        files = []
        for sub in range(20):
            for f in range(100):
                rel = f"pkg{t}/d{sub}/f{f}.txt"
                write(f"{d}/{rel}", f"{t} {sub} {f}\n")
                files.append(rel)
        toml.append(f'[tasks.p{t}]\nrun = "touch stamps/p{t}"\ninputs = ["pkg{t}/**/*.txt"]\noutputs = ["stamps/p{t}"]\n')
        mk[0] += f" stamps/p{t}"
        mk.append(f"stamps/p{t}: " + " ".join(files) + "\n\t@touch $@")
        nj.append(f"build stamps/p{t}: stamp " + " ".join(files))
    write(f"{d}/hotpass.toml", "\n".join(toml))
    write(f"{d}/Makefile", "\n".join(mk) + "\n")
    write(f"{d}/build.ninja", "\n".join(nj) + "\n")


def copies(gen, tools):
    """A fresh copy of the generated project for each tool."""
    base = tempfile.mkdtemp(prefix="hotpass-bench-")
    gen(f"{base}/src")
    dirs = {}
    for tool in tools:
        dirs[tool] = f"{base}/{tool}"
        shutil.copytree(f"{base}/src", dirs[tool])
    return base, dirs


def interleave(tools, dirs, runs, before=None, extra=lambda tool: []):
    """Median seconds of each tool, the runs interleaved; then the median
    peak RSS of three more runs. Each round starts with the next tool, so
    that no tool always follows the same other one (on a file system that
    remembers recent deletions, the tool before matters: see cold1000)."""
    times = {t: [] for t in tools}
    order = list(tools)
    for i in range(runs):
        for tool in order[i % len(order):] + order[:i % len(order)]:
            if before:
                before(tool, dirs[tool], i)
            times[tool].append(run(TOOLS[tool] + extra(tool), dirs[tool]))
    rss = {}
    if shutil.which("/usr/bin/time") and not before:
        rss = {t: statistics.median(peak_rss(TOOLS[t] + extra(t), dirs[t]) for _ in range(3)) for t in tools}
    return {t: statistics.median(times[t]) for t in tools}, rss


def settle(tools, dirs):
    """A full run, then a wait past hotpass's racy window (as on a real
    machine, where a no-op comes seconds after the build), then a no-op that
    saves what the first could not trust yet."""
    for tool in tools:
        run(TOOLS[tool], dirs[tool])
    time.sleep(2.5)
    for tool in tools:
        run(TOOLS[tool], dirs[tool])


def bench_noop(gen, tools, runs):
    base, dirs = copies(gen, tools)
    try:
        settle(tools, dirs)
        return interleave(tools, dirs, runs)
    finally:
        shutil.rmtree(base)


def bench_change1(tools, runs):
    base, dirs = copies(lambda d: gen_graph(d, 1000), tools)
    try:
        settle(tools, dirs)

        def edit(tool, d, i):
            write(f"{d}/src/f500.txt", f"edited {i}\n")

        times, _ = interleave(tools, dirs, runs, before=edit)
        d = dirs["hotpass"]
        write(f"{d}/src/f500.txt", "edited again\n")
        run(TOOLS["hotpass"] + ["--summary", "summary.json"], d)
        with open(f"{d}/summary.json") as f:
            ran = [i["name"] for i in json.load(f)["instances"] if i["status"] == "ok"]
        return times, ran
    finally:
        shutil.rmtree(base)


def bench_cold(tools, runs):
    """Each run starts from nothing: outputs, cache and build logs removed."""
    base, dirs = copies(lambda d: gen_graph(d, 1000), tools)
    try:
        def reset(tool, d, i):
            for name in ("cache", "out", ".ninja_log", ".ninja_deps"):
                p = f"{d}/{name}"
                if os.path.isdir(p):
                    shutil.rmtree(p)
                elif os.path.exists(p):
                    os.remove(p)
            os.makedirs(f"{d}/out")

        times, _ = interleave(tools, dirs, runs, before=reset)
        return times
    finally:
        shutil.rmtree(base)


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
    day = datetime.date(2025, 1, 1)
    for _ in range(365):
        write(f"{d}/raw/{day.isoformat()}.csv", f"{day},a\n{day},b\n")
        day += datetime.timedelta(days=1)


def bench_backfill365(tools, runs):
    tools = [t for t in tools if t.startswith("hotpass")]
    base, dirs = copies(gen_backfill365, tools)
    rng = ["--backfill", "2025-01-01..2025-12-31"]
    try:
        for t in tools:
            run(TOOLS[t] + rng, dirs[t])
        time.sleep(2.5)
        for t in tools:
            run(TOOLS[t] + rng, dirs[t])
        dry, _ = interleave(tools, dirs, runs, extra=lambda t: rng + ["--dry-run=json"])
        noop, _ = interleave(tools, dirs, runs, extra=lambda t: rng)
        return {t: {"dry_run": dry[t], "noop": noop[t]} for t in tools}
    finally:
        shutil.rmtree(base)


def line(name, times, tools, unit=1000, suffix="ms"):
    cells = "  ".join(f"{t} {times[t] * unit:8.1f} {suffix}" for t in tools)
    ratio = f"  hotpass/ninja {times['hotpass'] / times['ninja']:5.2f}x" if "ninja" in times else ""
    if "make" in times:
        ratio += f"  hotpass/make {times['hotpass'] / times['make']:5.2f}x"
    if "hotpass-baseline" in times:
        ratio += f"  hotpass/baseline {times['hotpass'] / times['hotpass-baseline']:5.2f}x"
    print(f"{name:<16} {cells}{ratio}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--only")
    ap.add_argument("--scale", action="store_true", help="add the 10k and 100k-task graphs")
    ap.add_argument("--baseline", help="another hotpass binary to measure alongside")
    args = ap.parse_args()
    if args.baseline:
        TOOLS["hotpass-baseline"] = [os.path.abspath(args.baseline), "-q", "run", "-j", JOBS]
    if not os.path.exists(HOTPASS):
        sys.exit("build first: cargo build --release")
    for tool in ("make", "ninja"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not on PATH (Debian: apt-get install make ninja-build)")
    tools = list(TOOLS)
    results = {}

    def want(name):
        return not args.only or args.only == name

    if want("noop1000"):
        t, rss = bench_noop(lambda d: gen_graph(d, 1000), tools, args.runs)
        results["noop1000"] = {"time": t, "rss_mb": rss}
        line("noop1000", t, tools)
        if rss:
            line("  peak RSS", rss, tools, unit=1, suffix="MB")
    if want("change1"):
        t, ran = bench_change1(tools, args.runs)
        results["change1"] = {"time": t, "hotpass_reran": ran}
        line("change1", t, tools)
        print(f"{'':<16} hotpass re-ran: {ran}")
    if want("cold1000"):
        t = bench_cold(tools, max(3, args.runs // 2))
        results["cold1000"] = {"time": t}
        line("cold1000/task", {k: v / 1000 for k, v in t.items()}, tools)
    if want("layered2000"):
        t, rss = bench_noop(lambda d: gen_graph(d, 2000, layers=20, deps=3), tools, args.runs)
        results["layered2000"] = {"time": t, "rss_mb": rss}
        line("layered2000", t, tools)
    if want("files100k"):
        t, _ = bench_noop(gen_files100k, tools, max(3, args.runs // 2))
        results["files100k"] = {"time": t}
        line("files100k", t, tools)
    if want("backfill365"):
        r = bench_backfill365(tools, args.runs)
        results["backfill365"] = r
        for tool, t in r.items():
            print(f"backfill365 (1,095 instances) {tool}: dry-run {t['dry_run'] * 1000:.1f} ms  "
                  f"no-op {t['noop'] * 1000:.1f} ms", flush=True)
    if args.scale:
        big = [t for t in tools if t != "make"]
        for n in (10_000, 100_000):
            for shape, gen in (("independent", lambda d, n=n: gen_graph(d, n)),
                               ("layered", lambda d, n=n: gen_graph(d, n, layers=n // 1000, deps=3))):
                name = f"{shape}{n // 1000}k"
                t, rss = bench_noop(gen, big, max(3, args.runs // 2))
                results[name] = {"time": t, "rss_mb": rss}
                line(name, t, big)
                if rss:
                    line("  peak RSS", rss, big, unit=1, suffix="MB")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
