#!/usr/bin/env python3
"""Loads a hotpass JUnit file with junitparser (a real consumer) and checks it.

    python3 scripts/check_junit.py junit.xml EXPECTED_TESTS EXPECTED_FAILURES
"""
import sys

from junitparser import JUnitXml, Failure

path, tests, failures = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
xml = JUnitXml.fromfile(path)
cases = [case for suite in xml for case in suite]
failed = [c for c in cases if any(isinstance(r, Failure) for r in c.result)]
assert len(cases) == tests, f"{len(cases)} test cases, expected {tests}"
assert len(failed) == failures, f"{len(failed)} failures, expected {failures}"
print(f"junitparser: {len(cases)} cases, {len(failed)} failures: as expected")
