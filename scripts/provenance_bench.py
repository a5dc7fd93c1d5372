#!/usr/bin/env python3
"""The cost of --provenance on a 1,000-output run: a cached run of 1,000
tasks (each copying one input to one output), with and without writing the
statement, interleaved; prints medians and the ratio.

    python3 scripts/provenance_bench.py [--runs 21] [--tasks 1000]

HOTPASS_BIN picks the binary (default: target/release/hotpass).
"""

import argparse
import os
import subprocess
import tempfile

from benchlib import copy_project, hotpass_bin, interleaved, print_medians


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--tasks", type=int, default=1000)
    args = ap.parse_args()
    hotpass = hotpass_bin()
    with tempfile.TemporaryDirectory() as d:
        copy_project(d, args.tasks, lines=64)
        subprocess.run([hotpass, "-q", "run"], cwd=d, check=True, stdout=subprocess.DEVNULL)
        env = dict(os.environ)
        medians = interleaved(d, [
            ("plain", [hotpass, "-q", "run"], env),
            ("--provenance", [hotpass, "-q", "run", "--provenance", "prov.json"], env),
        ], args.runs)
    print_medians(f"{args.tasks} cached tasks, {args.tasks} outputs, "
                  f"medians of {args.runs} interleaved runs", medians)


if __name__ == "__main__":
    main()
