#!/usr/bin/env python3
"""What the input audit and the sandbox cost, against a plain run of the same
work, interleaved (medians):

  cold1000   1,000 copy tasks from nothing (no outputs, no cache): plain,
             `run --audit` (user notification, and ptrace), and with
             `settings.sandbox = true`
  pytest     the Python example's test gate (pytest with coverage), forced:
             plain, audited, sandboxed
  cargo      `cargo test --lib` of this checkout (already built), forced:
             plain and audited (cargo writes to ~/.cargo, outside what a
             sandbox allows)

Usage: scripts/audit_bench.py [--runs N] [--only NAME,...]
The hotpass binary is HOTPASS_BIN, or target/release/hotpass."""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, copy_project, hotpass_bin, print_medians  # noqa: E402


PTRACE = dict(os.environ, HOTPASS_AUDIT_METHOD="ptrace")


def timed(args, cwd, reset=None, env=None):
    """Milliseconds of one run of `args` in `cwd`, after `reset()`."""
    if reset:
        reset()
    start = time.perf_counter()
    r = subprocess.run(args, cwd=cwd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, env=env)
    ms = (time.perf_counter() - start) * 1000
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} in {cwd}: exit {r.returncode}\n{r.stderr}")
    return ms


def medians(variants, runs):
    """Each (name, thunk) run `runs` times, interleaved."""
    times = {name: [] for name, _ in variants}
    for _ in range(runs):
        for name, thunk in variants:
            times[name].append(thunk())
    return {name: statistics.median(t) for name, t in times.items()}


def cold1000(hp, work, runs):
    plain = os.path.join(work, "plain")
    boxed = os.path.join(work, "boxed")
    for d in (plain, boxed):
        os.makedirs(d)
        copy_project(d, 1000)
    with open(os.path.join(boxed, "hotpass.toml")) as f:
        text = f.read()
    with open(os.path.join(boxed, "hotpass.toml"), "w") as f:
        f.write("[settings]\nsandbox = true\n\n" + text)

    def reset(d):
        def go():
            shutil.rmtree(os.path.join(d, "cache"), ignore_errors=True)
            for name in os.listdir(d):
                if name.endswith(".out"):
                    os.remove(os.path.join(d, name))
        return go

    m = medians([
        ("plain", lambda: timed([hp, "run"], plain, reset(plain))),
        ("--audit", lambda: timed([hp, "run", "--audit"], plain, reset(plain))),
        ("--audit ptrace", lambda: timed([hp, "run", "--audit"], plain, reset(plain), PTRACE)),
        ("sandbox", lambda: timed([hp, "run"], boxed, reset(boxed))),
    ], runs)
    print_medians("cold run of 1,000 copy tasks", m)
    print("  per task: " + ", ".join(f"{k} {v / 1000:.2f} ms" for k, v in m.items()))


def pytest(hp, work, runs):
    if subprocess.run([sys.executable, "-c", "import pytest, pytest_cov"],
                      capture_output=True).returncode != 0:
        print("pytest: skipped (pip install pytest pytest-cov)")
        return
    plain = os.path.join(work, "py-plain")
    boxed = os.path.join(work, "py-boxed")
    for d in (plain, boxed):
        shutil.copytree(os.path.join(ROOT, "examples", "python-project"), d)
    allow = sorted({sys.base_prefix, sys.prefix, os.path.expanduser("~/.pyenv")})
    with open(os.path.join(boxed, "hotpass.toml")) as f:
        text = f.read()
    allowed = ", ".join(f'"{a}"' for a in allow)
    text = text.replace("[settings]\n", f"[settings]\nsandbox = true\nsandbox_allow = [{allowed}]\n")
    # Coverage's database goes in a folder of its own: SQLite opens a new
    # file for reading and writing, which a folder of sources cannot allow.
    text = text.replace('outputs = ["coverage.xml"]',
                        'outputs = ["coverage.xml", "cov/**"]\nenv = { COVERAGE_FILE = "cov/.coverage" }')
    with open(os.path.join(boxed, "hotpass.toml"), "w") as f:
        f.write(text)
    m = medians([
        ("plain", lambda: timed([hp, "run", "--force", "gate:test"], plain)),
        ("--audit", lambda: timed([hp, "run", "--audit", "gate:test"], plain)),
        ("--audit ptrace", lambda: timed([hp, "run", "--audit", "gate:test"], plain, env=PTRACE)),
        ("sandbox", lambda: timed([hp, "run", "--force", "gate:test"], boxed)),
    ], runs)
    print_medians("pytest (examples/python-project gate:test)", m)


def cargo(hp, work, runs):
    d = os.path.join(work, "cargo")
    os.makedirs(d)
    with open(os.path.join(d, "hotpass.toml"), "w") as f:
        f.write(f'[tasks.unit]\nrun = "cd {ROOT} && cargo test --lib --quiet"\ncache = false\n')
    subprocess.run(["cargo", "test", "--lib", "--no-run", "--quiet"], cwd=ROOT, check=True)
    m = medians([
        ("plain", lambda: timed([hp, "run", "unit"], d)),
        ("--audit", lambda: timed([hp, "run", "--audit", "unit"], d)),
        ("--audit ptrace", lambda: timed([hp, "run", "--audit", "unit"], d, env=PTRACE)),
    ], runs)
    print_medians("cargo test --lib (this checkout, built)", m)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--only", default="cold1000,pytest,cargo")
    a = ap.parse_args()
    hp = hotpass_bin()
    work = tempfile.mkdtemp(prefix="hotpass-audit-bench-")
    try:
        for name in a.only.split(","):
            {"cold1000": cold1000, "pytest": pytest, "cargo": cargo}[name](hp, work, a.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
