#!/usr/bin/env python3
"""The module map in docs/architecture.md, made from the first sentence of each Rust module's
`//!` doc, so that it names every file there is and says what each holds.

    python3 scripts/module-map.py          # rewrite the map in docs/architecture.md
    python3 scripts/module-map.py --check  # fail when the committed map is not what the tree says (CI)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
BEGIN, END = "<!-- module-map: begin (scripts/module-map.py writes this) -->", "<!-- module-map: end -->"
CRATES = [
    ("core/src", "toolmesh-core (`core/`): every rule that must behave alike in every language; `#![forbid(unsafe_code)]`"),
    ("ca/src", "toolmesh-ca (`ca/`): the operator's side of certificates, used by the CLI and the registry, never linked into agents"),
    ("registry/src", "toolmesh-registry (`registry/`): the phone book, a library the CLI runs"),
    ("cli/src", "toolmesh-cli (`cli/`): the `toolmesh` command"),
    ("ffi/src", "toolmesh-ffi (`ffi/`): the C ABI; `include/toolmesh.h` is generated from it"),
    ("bindings-python/src", "bindings-python: the pyo3 adapter `toolmesh._native`; the package is `python/toolmesh/`"),
    ("bindings-node/src", "bindings-node: the napi-rs adapter `toolmesh.node`; the TypeScript package beside it"),
    ("bindings-java/src", "bindings-java: the JNI adapter `libtoolmesh_jni`; the Java API is `src/main/java/dev/toolmesh/`"),
    ("bench/src", "toolmesh-bench (`bench/`): the benchmarks' Rust side"),
]


def first_sentence(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("//!"):
            text = line[3:].strip()
            if not text:
                break
            lines.append(text)
        elif lines:
            break
    text = " ".join(lines)
    if not text:
        raise SystemExit(f"module-map: {path.relative_to(REPO)} has no //! doc saying what it holds; add one")
    match = re.match(r"(.+?\.)(\s|$)", text)
    return (match.group(1) if match else text).replace("|", "\\|")


def module_map() -> str:
    out = [BEGIN]
    for directory, title in CRATES:
        root = REPO / directory
        if not root.exists():
            continue
        out += ["", f"### {title}", "", "| module | what it holds |", "|---|---|"]
        for path in sorted(root.rglob("*.rs")):
            relative = path.relative_to(root).as_posix()
            # Test modules and the crates' lib.rs (their doc is the title above) say nothing new.
            if path.name == "tests.rs" or "/tests/" in f"/{relative}" or relative in ("lib.rs", "main.rs"):
                continue
            out.append(f"| `{relative}` | {first_sentence(path)} |")
    out += ["", END]
    return "\n".join(out)


def main() -> None:
    text = DOC.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    updated = text[:start] + module_map() + text[end:]
    if "--check" in sys.argv[1:]:
        if updated != text:
            raise SystemExit("module-map: docs/architecture.md does not match the tree; run python3 scripts/module-map.py and commit it")
        return
    DOC.write_text(updated)


if __name__ == "__main__":
    main()
