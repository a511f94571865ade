#!/usr/bin/env python3
"""Removes the test executables (and examples) that earlier builds left in the target directory:

  scripts/prune-test-binaries.py TARGET_DIR NEXTEST_BINARIES_JSON

Cargo writes each build of a test target to TARGET/debug/deps/NAME-HASH under a new hash whenever
its inputs change, and never removes the old one. With 68 test binaries of 50-150 MB each, a
machine that runs the suite after every change fills its disk: one had 570 such leftovers, 32 GB
(CI then failed with "No space left on device" in whichever test wrote next).

NEXTEST_BINARIES_JSON is `cargo nextest list --list-type binaries-only --message-format json`
for this workspace: the executables the current build uses. An executable in deps/ is removed
only where it is another build of one of those test targets (same NAME, a 16-hex-digit HASH,
not in the list, not hard-linked into TARGET/debug); the current ones, uplifted binaries, build
scripts, libraries and anything else are left alone.
Prints what it freed.
"""
import json
import os
import re
import sys

HASHED = re.compile(r"^(?P<name>.+)-(?P<hash>[0-9a-f]{16})$")


def main():
    target, listing = sys.argv[1], sys.argv[2]
    with open(listing, encoding="utf-8") as f:
        suites = json.load(f)["rust-binaries"].values()
    current = {os.path.realpath(s["binary-path"]) for s in suites}
    names = set()
    for path in current:
        m = HASHED.match(os.path.basename(path))
        if m:
            names.add(m["name"])
    deps = os.path.join(target, "debug", "deps")
    freed, count = 0, 0
    for entry in os.scandir(deps):
        m = HASHED.match(entry.name)
        if not m or m["name"] not in names or not entry.is_file(follow_symlinks=False):
            continue
        st = entry.stat(follow_symlinks=False)
        # st_nlink > 1: cargo's hard link of a binary it uplifted to TARGET/debug (the `cxrflow`
        # executable the tests start, not a test harness) shares NAME with a test target.
        if os.path.realpath(entry.path) in current or st.st_nlink > 1:
            continue
        if not os.access(entry.path, os.X_OK):
            continue
        freed += st.st_size
        os.remove(entry.path)
        count += 1
        # cargo's dep-info beside it (NAME-HASH.d) goes with it
        try:
            os.remove(entry.path + ".d")
        except FileNotFoundError:
            pass
    # Examples (built by the test run too) are uplifted to examples/NAME as a hard link to the
    # current examples/NAME-HASH; another NAME-HASH executable is an earlier build.
    examples = os.path.join(target, "debug", "examples")
    if os.path.isdir(examples):
        for entry in os.scandir(examples):
            m = HASHED.match(entry.name)
            if not m or not entry.is_file(follow_symlinks=False):
                continue
            uplifted = os.path.join(examples, m["name"])
            st = entry.stat(follow_symlinks=False)
            if st.st_nlink > 1 or not os.path.isfile(uplifted) or not os.access(entry.path, os.X_OK):
                continue
            if os.path.samefile(uplifted, entry.path):
                continue
            freed += st.st_size
            os.remove(entry.path)
            count += 1
    print(f"removed {count} executable(s) of earlier builds from {deps} and {examples}: {freed / 1e9:.1f} GB")


if __name__ == "__main__":
    main()
