"""What the comparison benchmarks share: the hotpass binary, a generated
project of N copy tasks, and interleaved timing of variants of one command
(medians, with the ratio of each to the first)."""

import os
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hotpass_bin():
    """HOTPASS_BIN, or the release build of this checkout."""
    return os.environ.get("HOTPASS_BIN") or os.path.join(ROOT, "target", "release", "hotpass")


def copy_project(d, tasks, lines=1):
    """Writes `tasks` tasks into `d`, each copying its own input file (of
    `lines` lines) to its own output."""
    with open(os.path.join(d, "hotpass.toml"), "w") as f:
        for i in range(tasks):
            with open(os.path.join(d, f"f{i}.txt"), "w") as g:
                g.write(f"input {i}\n" * lines)
            f.write(f'[tasks.t{i}]\nrun = "cp f{i}.txt o{i}.out"\n'
                    f'inputs = ["f{i}.txt"]\noutputs = ["o{i}.out"]\n')


def interleaved(cwd, variants, runs):
    """Runs each (name, args, env) variant `runs` times, interleaved; fails
    on a non-zero exit or a warning that something could not be done.
    Returns the median milliseconds of each, by name, in order."""
    times = {name: [] for name, _, _ in variants}
    for _ in range(runs):
        for name, args, env in variants:
            start = time.perf_counter()
            r = subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
            times[name].append((time.perf_counter() - start) * 1000)
            if r.returncode != 0 or "could not" in r.stderr:
                raise SystemExit(f"{name}: {r.stderr}")
    return {name: statistics.median(t) for name, t in times.items()}


def print_medians(title, medians):
    """The medians, each with its ratio to the first."""
    print(title)
    first = next(iter(medians.values()))
    for i, (name, ms) in enumerate(medians.items()):
        ratio = "" if i == 0 else f"   ({ms / first:.2f}x)"
        print(f"  {name:<16} {ms:8.1f} ms{ratio}")
