#!/usr/bin/env python3
"""Latency from a file write to the start of the re-run it causes, in
`hotpass watch`:

  many     a generated project of 1,000 tasks: one task's input is edited;
  busy     an edit to task A while an unrelated task B sleeps 30 s: A must
           not wait for B;
  service  an edit to a service's input: the time until its dependent
           starts again (the service restarted and ready again).

    cargo build --release && python3 scripts/watch_latency.py [--edits 20] [--debounce MS] [--only NAME]

Each task writes the wall-clock time (ns) it started to a marker file before
doing anything else; the script writes an input, then reads the marker.
Prints the median, min and max over the edits.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOTPASS = os.path.join(ROOT, "target", "release", "hotpass")


def time_rerun(marker, path, k, label):
    """Writes edit `k` to `path` and waits (at most 30 s) for the task to
    write a new start time to `marker`; returns the latency in ms."""
    before = open(marker).read()
    t0 = time.time_ns()
    with open(path, "w") as f:
        f.write(f"{k + 1}\n")
    deadline = time.time() + 30
    while True:
        now = open(marker).read()
        if now != before and now.strip():
            return (int(now.strip()) - t0) / 1e6
        if time.time() > deadline:
            sys.exit(f"{label}: no re-run within 30 s")
        time.sleep(0.002)


def report(label, args, latencies):
    print(f"{label}, edits {args.edits}, debounce {args.debounce or 'default'}: "
          f"write -> re-run start median {statistics.median(latencies):.1f} ms "
          f"(min {min(latencies):.1f}, max {max(latencies):.1f})")


def edits(d, args, input_of, marker, label, extra=()):
    """Starts watch in `d`, waits for `marker`, then edits `input_of(k)` and
    times each re-run start; prints the summary line."""
    cmd = [HOTPASS, "watch", *extra] + (["--debounce", str(args.debounce)] if args.debounce is not None else [])
    proc = subprocess.Popen(cmd, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (os.path.exists(marker) and open(marker).read().strip()):
            if time.time() > deadline:
                sys.exit(f"{label}: nothing started within 60 s")
            time.sleep(0.01)
        latencies = [time_rerun(marker, input_of(k), k, label) for k in range(args.edits)]
        report(label, args, latencies)
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def busy(args):
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/hotpass.toml", "w") as f:
            f.write('[tasks.a]\nrun = "date +%s%N > a.started"\ninputs = ["a.txt"]\n'
                    '[tasks.b]\nrun = "sleep 30"\ninputs = ["b.txt"]\n')
        for name in ("a.txt", "b.txt"):
            open(f"{d}/{name}", "w").write("0\n")
        edits(d, args, lambda k: f"{d}/a.txt", f"{d}/a.started",
              "busy: an edit while an unrelated 30 s task runs", ["-j", "2"])


def service(args):
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/hotpass.toml", "w") as f:
            f.write('[tasks.api]\nservice = true\nrun = "echo ready; exec sleep 300"\n'
                    'ready = { log = "^ready" }\ninputs = ["api.conf"]\n'
                    '[tasks.check]\ndeps = ["api"]\nrun = "date +%s%N > check.started"\n')
        open(f"{d}/api.conf", "w").write("0\n")
        edits(d, args, lambda k: f"{d}/api.conf", f"{d}/check.started",
              "service: restart to ready (its dependent starts again)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--debounce", type=int, default=None)
    ap.add_argument("--only", choices=["many", "busy", "service"])
    args = ap.parse_args()
    if args.only in (None, "busy"):
        busy(args)
    if args.only in (None, "service"):
        service(args)
    if args.only not in (None, "many"):
        return
    with tempfile.TemporaryDirectory() as d:
        toml = []
        for i in range(args.tasks):
            os.makedirs(f"{d}/src/p{i}", exist_ok=True)
            with open(f"{d}/src/p{i}/f.txt", "w") as f:
                f.write("0\n")
            toml.append(f'[tasks.t{i}]\nrun = "date +%s%N > started/t{i}; cat src/p{i}/f.txt > out/t{i}.txt"\ninputs = ["src/p{i}/*.txt"]\noutputs = ["out/t{i}.txt"]\n')
        os.makedirs(f"{d}/started")
        os.makedirs(f"{d}/out")
        with open(f"{d}/hotpass.toml", "w") as f:
            f.write("\n".join(toml))
        cmd = [HOTPASS, "watch"] + (["--debounce", str(args.debounce)] if args.debounce is not None else [])
        proc = subprocess.Popen(cmd, cwd=d, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        cycles = [0]
        cond = threading.Condition()

        def reader():
            for line in proc.stdout:
                if "watching for changes" in line:
                    with cond:
                        cycles[0] += 1
                        cond.notify_all()

        threading.Thread(target=reader, daemon=True).start()

        def wait_cycles(n, limit=120):
            with cond:
                if not cond.wait_for(lambda: cycles[0] >= n, timeout=limit):
                    proc.kill()
                    sys.exit(f"timed out waiting for cycle {n}")

        try:
            wait_cycles(1)
            latencies = []
            for k in range(args.edits):
                i = (k * 37) % args.tasks
                latencies.append(time_rerun(f"{d}/started/t{i}", f"{d}/src/p{i}/f.txt", k, "many"))
                wait_cycles(k + 2)
            report(f"many: {args.tasks} tasks", args, latencies)
        finally:
            proc.send_signal(2)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
