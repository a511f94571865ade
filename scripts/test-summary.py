#!/usr/bin/env python3
"""What a test run's pass count hides, for scripts/test.sh to print at the end of the run:

  scripts/test-summary.py SKIP_LOG JUNIT_XML

SKIP_LOG: the lines tests appended when a tool they need was missing (cxrflow_testkit::tools;
test<TAB>tool<TAB>reason). JUNIT_XML: nextest's JUnit report, where a test that failed and then
passed on its retry has <flakyFailure> elements and no <failure>.
"""
import os
import sys
import xml.etree.ElementTree as ET


def skipped(path):
    if not os.path.exists(path):
        return []
    seen, out = set(), []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or tuple(parts) in seen:
                continue
            seen.add(tuple(parts))
            out.append(parts)
    return sorted(out)


def retried(path):
    """Tests that passed only on a retry; None when there is no report."""
    if not os.path.exists(path):
        return None
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("flakyFailure") is not None and case.find("failure") is None:
            out.append(f"{case.get('classname')} {case.get('name')}")
    return sorted(out)


def main():
    skip_log, junit = sys.argv[1], sys.argv[2]
    skips = skipped(skip_log)
    if skips:
        print(f"{len(skips)} test{'s' if len(skips) != 1 else ''} skipped:")
        for test, tool, reason in skips:
            print(f"  {test} — {tool} missing: {reason}")
    else:
        print("no test skipped")
    flaky = retried(junit)
    if flaky is None:
        print(f"tests that needed their retry: unknown (no JUnit report at {junit})")
    elif flaky:
        print(f"tests that needed their retry ({len(flaky)}):")
        for test in flaky:
            print(f"  {test}")
    else:
        print("tests that needed their retry: none")


if __name__ == "__main__":
    main()
