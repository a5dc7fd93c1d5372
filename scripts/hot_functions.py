#!/usr/bin/env python3
"""Writes src/hot-functions.txt: the functions of the hotpass binary that a
run executes, in the order they first run, for the linker to place side by
side (build.rs passes the file to lld as `--symbol-ordering-file`).

A no-op touches a few hundred kilobytes of code scattered through twenty
megabytes; the kernel maps 64 KiB around every page touched, so scattered
code is resident memory. Clustered, the same functions take a fraction of
it (docs/performance.md says how much).

The list comes from valgrind's callgrind, which records every function a
process runs, over three runs of generated projects: a 1,000-task no-op, a
cold run of a small layered graph, and a run after one edit (with the
terminal report). Names are the binary's own symbols; a name that a later
build no longer has is skipped by the linker, so an old list costs only
memory, never correctness. Run it again after large changes, on a release
build of the sources as they will be committed (formatted: a moved line
changes the names LLVM gives its local functions, and `cargo bench`
replaces target/release/hotpass with a build of its own profile), then
build again and check that every name is found:

    cargo build --release && python3 scripts/hot_functions.py
    cargo build --release && python3 scripts/hot_functions.py --check
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import bench  # noqa: E402

HOTPASS = os.path.join(ROOT, "target", "release", "hotpass")
OUT = os.path.join(ROOT, "src", "hot-functions.txt")


def callgrind(cmd, cwd, out):
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}"] + cmd,
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=600)


def names_in_order(path):
    """Function names as callgrind first names them (fn= and cfn= lines)."""
    seen, order = set(), []
    with open(path) as f:
        for line in f:
            m = re.match(r"^c?fn=\((\d+)\) (.*)$", line.rstrip("\n"))
            if m and m.group(1) not in seen:
                seen.add(m.group(1))
                order.append(m.group(2))
    return order


def check():
    """How many listed names the binary lacks (each one's function is
    placed wherever the linker puts it)."""
    nm = subprocess.run(["nm", "--defined-only", HOTPASS], capture_output=True, text=True, check=True)
    symbols = {parts[2] for parts in (l.split() for l in nm.stdout.splitlines()) if len(parts) == 3}
    with open(OUT) as f:
        listed = [l.strip() for l in f if l.strip()]
    missing = [n for n in listed if n not in symbols]
    print(f"{len(listed) - len(missing)} of {len(listed)} listed functions are in {os.path.relpath(HOTPASS, ROOT)}")
    for n in missing[:10]:
        print(f"  missing: {n}")
    sys.exit(1 if missing else 0)


def main():
    if sys.argv[1:] == ["--check"]:
        check()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not on PATH (Debian: apt-get install valgrind)")
    if not os.path.exists(HOTPASS):
        sys.exit("build first: cargo build --release")
    nm = subprocess.run(["nm", "--defined-only", HOTPASS], capture_output=True, text=True, check=True)
    symbols = {parts[2] for parts in (l.split() for l in nm.stdout.splitlines())
               if len(parts) == 3 and parts[1] in "tT"}
    base = tempfile.mkdtemp(prefix="hotpass-hot-")
    try:
        runs = []
        noop = os.path.join(base, "noop")
        bench.gen_graph(noop, 1000)
        subprocess.run([HOTPASS, "-q", "run"], cwd=noop, stdout=subprocess.DEVNULL, check=True)
        time.sleep(2.5)  # out of the racy window, as a no-op a while later is
        subprocess.run([HOTPASS, "-q", "run"], cwd=noop, stdout=subprocess.DEVNULL, check=True)
        # Under valgrind, /proc/self/exe is valgrind's own tool: the project
        # kept in config.bin (stamped with the binary it was saved by) is
        # not taken, and the run parses. A first run under valgrind saves it
        # again with valgrind's stamp, so the no-op recorded reads it, as a
        # real no-op does.
        callgrind([HOTPASS, "-q", "run", "-j", "2"], noop, os.path.join(base, "warm"))
        runs.append(([HOTPASS, "-q", "run", "-j", "2"], noop))
        cold = os.path.join(base, "cold")
        bench.gen_graph(cold, 40, layers=2, deps=3)
        runs.append(([HOTPASS, "-q", "run", "-j", "2"], cold))
        runs.append(([HOTPASS, "run", "-j", "2"], cold))  # after the edit below
        order, listed = [], set()
        for i, (cmd, cwd) in enumerate(runs):
            if i == 2:
                with open(os.path.join(cold, "src", "f3.txt"), "a") as f:
                    f.write("edited\n")
            out = os.path.join(base, f"callgrind.{i}")
            callgrind(cmd, cwd, out)
            for name in names_in_order(out):
                if name in symbols and name not in listed:
                    listed.add(name)
                    order.append(name)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    with open(OUT, "w") as f:
        f.write("\n".join(order) + "\n")
    print(f"{len(order)} functions written to {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
