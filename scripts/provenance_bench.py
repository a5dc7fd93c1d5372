#!/usr/bin/env python3
"""The cost of --provenance on a 1,000-output run: a cached run of 1,000
tasks (each copying one input to one output), with and without writing the
statement, interleaved; prints medians and the ratio.

    python3 scripts/provenance_bench.py [--runs 21] [--tasks 1000]

HOTPASS_BIN picks the binary (default: target/release/hotpass).
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--tasks", type=int, default=1000)
    args = ap.parse_args()
    hotpass = os.environ.get("HOTPASS_BIN") or os.path.join(ROOT, "target", "release", "hotpass")
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "hotpass.toml"), "w") as f:
            for i in range(args.tasks):
                with open(os.path.join(d, f"f{i}.txt"), "w") as g:
                    g.write(f"input {i}\n" * 64)
                f.write(f'[tasks.t{i}]\nrun = "cp f{i}.txt o{i}.out"\n'
                        f'inputs = ["f{i}.txt"]\noutputs = ["o{i}.out"]\n')
        subprocess.run([hotpass, "-q", "run"], cwd=d, check=True, stdout=subprocess.DEVNULL)
        times = {"plain": [], "--provenance": []}
        for _ in range(args.runs):
            for name, extra in (("plain", []), ("--provenance", ["--provenance", "prov.json"])):
                start = time.perf_counter()
                subprocess.run([hotpass, "-q", "run", *extra], cwd=d, check=True,
                               stdout=subprocess.DEVNULL)
                times[name].append((time.perf_counter() - start) * 1000)
    a, b = statistics.median(times["plain"]), statistics.median(times["--provenance"])
    print(f"{args.tasks} cached tasks, {args.tasks} outputs, medians of {args.runs} interleaved runs")
    print(f"  plain          {a:8.1f} ms")
    print(f"  --provenance   {b:8.1f} ms   ({b / a:.2f}x)")


if __name__ == "__main__":
    main()
