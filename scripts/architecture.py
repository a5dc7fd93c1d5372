#!/usr/bin/env python3
"""Prints hotpass's architecture as the code has it: the dependency edges
between top-level modules of src/ (an arrow means "uses"), whether they form
a cycle, and the longest functions.

    python3 scripts/architecture.py [--longest N] [SRC]

Unit-test modules (`#[cfg(test)] mod tests`) are left out of both.
"""

import argparse
import os
import re
import sys


def sources(src):
    for root, _, files in os.walk(src):
        for f in sorted(files):
            if f.endswith(".rs"):
                path = os.path.join(root, f)
                text = open(path, encoding="utf-8").read()
                yield path, re.sub(r"(?s)#\[cfg\(test\)\]\s*(pub(\(crate\))? )?mod tests.*", "", text)


def top_module(src, path):
    rel = os.path.relpath(path, src)
    top = rel.split(os.sep)[0]
    return top[:-3] if top.endswith(".rs") else top


def edges(src):
    found = {}
    for path, text in sources(src):
        mod = top_module(src, path)
        if mod in ("lib", "main"):
            continue
        targets = set(re.findall(r"\bcrate::(\w+)", text))
        for group in re.findall(r"crate::\{((?:[^{}]|\{[^{}]*\})*)\}", text):
            group = re.sub(r"\{[^{}]*\}", "", group)
            targets |= {p.strip().split("::")[0] for p in group.split(",") if p.strip()}
        found.setdefault(mod, set()).update(t for t in targets if t != mod)
    mods = set(found)
    return {m: sorted(t for t in ts if t in mods) for m, ts in found.items()}


def cycle(graph):
    state = {}

    def visit(m, stack):
        state[m] = 1
        for t in graph.get(m, []):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t, stack + [t])
                if found:
                    return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m, [m])
            if found:
                return found
    return None


def functions(src):
    fn = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")
    for path, text in sources(src):
        lines = text.split("\n")
        i = 0
        while i < len(lines):
            m = fn.match(lines[i])
            if not m:
                i += 1
                continue
            depth, started, j = 0, False, i
            while j < len(lines):
                code = re.sub(r'"(\\.|[^"\\])*"|//.*', "", lines[j])
                depth += code.count("{") - code.count("}")
                started = started or "{" in code
                if code.rstrip().endswith(";") and not started:
                    break  # a declaration without a body
                if started and depth <= 0:
                    yield j - i + 1, f"{os.path.relpath(path, src)}:{i + 1}", m.group(6)
                    break
                j += 1
            i += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src", nargs="?", default=os.path.join(os.path.dirname(__file__), "..", "src"))
    ap.add_argument("--longest", type=int, default=5)
    args = ap.parse_args()
    graph = edges(args.src)
    print("module edges (A -> B: A uses B)")
    for m in sorted(graph):
        print(f"  {m:<10} -> {', '.join(graph[m]) or '(nothing)'}")
    c = cycle(graph)
    print("cycle: " + (" -> ".join(c) if c else "none"))
    print(f"\nthe {args.longest} longest functions (lines)")
    for n, where, name in sorted(functions(args.src), reverse=True)[: args.longest]:
        print(f"  {n:4}  {name:<24} {where}")
    sys.exit(1 if c else 0)


if __name__ == "__main__":
    main()
