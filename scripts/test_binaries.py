#!/usr/bin/env python3
"""Lists the test binaries `cargo test --no-run --message-format=json` built,
one per line: the package directory, a name for people (`<package> <kind>
<target>`), and the executable, separated by tabs. scripts/test.sh runs each
one in its package directory, as `cargo test` does."""
import json
import os
import sys

seen = set()
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if not line.startswith("{"):
        continue
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("profile", {}).get("test"):
        continue
    exe = m.get("executable")
    if not exe or exe in seen:
        continue
    seen.add(exe)
    target = m["target"]
    kind = "test" if "test" in target["kind"] else "unit"
    # `path+file:///dir#0.1.0`, or `path+file:///dir#name@0.1.0` when the
    # package is not named after its directory.
    source, _, fragment = m["package_id"].partition("#")
    package = fragment.split("@")[0] if "@" in fragment else source.rstrip("/").rsplit("/", 1)[-1]
    print(f"{os.path.dirname(m['manifest_path'])}\t{package} {kind} {target['name']}\t{exe}")
