#!/usr/bin/env python3
"""Rewrites the "Modules (crates/*/src)" section of docs/architecture.md from the source tree:
every .rs file of every crate with the first sentence of its module doc (`//!`).
crates/keel-core/tests/it/docs.rs fails when the section and the tree disagree."""
import os
import re
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
crates = sorted(d for d in os.listdir(f"{root}/crates") if os.path.isdir(f"{root}/crates/{d}/src"))
out = [
    "## Modules (crates/*/src)",
    "",
    "Every source file, with the first sentence of its module doc. `crates/keel-core/tests/it/docs.rs`",
    "checks that this list and `ls` agree; `python3 scripts/module-map.py` rewrites it.",
    "",
]
for c in crates:
    files = []
    for dp, _, fn in os.walk(f"{root}/crates/{c}/src"):
        files += [os.path.relpath(os.path.join(dp, f), f"{root}/crates/{c}/src") for f in fn if f.endswith(".rs")]
    out.append(f"- **{c}**:")
    for f in sorted(files):
        text = []
        for line in open(f"{root}/crates/{c}/src/{f}", encoding="utf-8"):
            if not line.startswith("//!"):
                if text:
                    break
                continue
            t = line[3:].strip()
            if t.startswith("#"):
                continue
            if not t:
                if text:
                    break
                continue
            text.append(t)
        t = " ".join(text)
        m = re.match(r"(.+?\.)(\s|$)", t)
        desc = (m.group(1) if m else t).rstrip(".")
        desc = re.sub(r"\[`([^`]+)`\](\([^)]*\))?", r"`\1`", desc)
        if len(desc) > 110:
            desc = desc[:107].rsplit(" ", 1)[0] + "..."
        if f == "lib.rs":
            desc = "front page: crate docs, module declarations, re-exports"
        out.append(f"  - `{f}`: {desc}")
path = f"{root}/docs/architecture.md"
s = open(path, encoding="utf-8").read()
a = s.index("## Modules (crates/*/src)")
b = s.index("\n## ", a + 1) + 1
s = s[:a] + "\n".join(out) + "\n\n" + s[b:]
open(path, "w", encoding="utf-8").write(s)
sys.exit(0)
