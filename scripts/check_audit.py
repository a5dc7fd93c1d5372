#!/usr/bin/env python3
"""Fails (exit 1) when an audit's JSON (`hotpass run --audit=json` or
`hotpass audit --json`) reports an undeclared input inside the project, so
that CI keeps configs honest. Undeclared outputs are printed, not failed.

Usage: scripts/check_audit.py AUDIT.json..."""

import json
import sys


def main(paths):
    if not paths:
        raise SystemExit(__doc__)
    bad = 0
    audited = 0
    for path in paths:
        with open(path) as f:
            audit = json.load(f)
        for inst in audit["instances"]:
            audited += 1
            if not inst["succeeded"]:
                print(f"{path}: {inst['instance']} failed under the audit")
                bad += 1
            for name in inst["undeclared_inputs"]:
                print(f"{path}: {inst['instance']} reads {name}, which its inputs do not declare "
                      f"({inst['defined_at']})")
                bad += 1
            for name in inst["undeclared_outputs"]:
                print(f"{path}: note: {inst['instance']} writes {name}, which its outputs do not declare")
    if audited == 0:
        print("nothing was audited")
        bad += 1
    print(f"audit: {audited} instances, {bad} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
