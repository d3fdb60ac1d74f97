#!/usr/bin/env python3
"""Walks README.md the way a new user would: every ```bash block, top to bottom, in one shell.

The walk runs in a fresh clone of the committed tree (so nothing the checkout happens to hold
helps), with `dist/` taken from the build CI made with the README's own `bash scripts/dist.sh`.
Commands run one at a time in a single bash session, like a terminal: `cd`, `export` and an
activated venv carry over from block to block, and the background processes a block starts are
stopped when the block ends.

What a person typing the commands does and a script would not, the walker does too, and only
that: after a block starts a background process, a foreground command that fails is tried again
for up to RETRY_SECONDS (a person waits for "registered" before calling), and the next command
waits until the background process has stopped printing for a second (a person reads a starting
registry's join token before starting an agent that needs it). A comment `→ VALUE`
(or `# VALUE,` right after the command) is the output the README promises: the command's output
must contain VALUE. The fixed port 8443 is replaced by a free port, since a shared machine may
hold it.

A block is skipped only when the line before it says why: `<!-- readme-walk: skip REASON -->`
(the demo and the full test run, which CI runs as themselves). A code block of another language
marked `<!-- readme-walk: same as PATH -->` must be the file at PATH (blank lines and comments
aside), which the walk compiles or runs.

Usage: python3 tests/readme/walk.py [--dist DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RETRY_SECONDS = 60
COMMAND_TIMEOUT_SECONDS = 600
SKIP_MARK = re.compile(r"<!--\s*readme-walk:\s*skip\s+(.+?)\s*-->")
SAME_AS_MARK = re.compile(r"<!--\s*readme-walk:\s*same as\s+(\S+)\s*-->")
PROMISE = re.compile(r"#.*?→\s*(\S+)")


def bash_blocks(readme: str) -> list[tuple[int, str, str | None]]:
    """(line number, code, skip reason) of every ```bash block."""
    blocks, lines, i = [], readme.splitlines(), 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            start, body = i + 1, []
            previous = next((l for l in reversed(lines[:i]) if l.strip()), "")
            skip = SKIP_MARK.search(previous)
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            blocks.append((start, "\n".join(body), skip.group(1) if skip else None))
        i += 1
    return blocks


def snippet_mismatches(readme: str) -> list[str]:
    """The marked snippets that are not the example file they claim to be."""
    def code_lines(text: str) -> list[str]:
        comment = re.compile(r"^\s*(\*|/\*\*|\*/|//)")
        return [l.rstrip() for l in text.splitlines() if l.strip() and not comment.match(l)]
    problems, lines = [], readme.splitlines()
    for i, line in enumerate(lines):
        mark = SAME_AS_MARK.search(line)
        if not mark:
            continue
        end = next(j for j in range(i + 2, len(lines)) if lines[j].strip() == "```")
        snippet, path = code_lines("\n".join(lines[i + 2:end])), REPO / mark.group(1)
        source = code_lines(path.read_text()) if path.exists() else []
        if not any(source[k:k + len(snippet)] == snippet for k in range(len(source))):
            problems.append(f"README line {i + 2}: the snippet is not {mark.group(1)}")
    return problems


def commands(block: str) -> list[str]:
    """Splits a block into whole commands: continuation lines and heredocs stay together."""
    result, current, heredoc_end = [], [], None
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current.append(line)
        if heredoc_end is not None:
            if line.strip() == heredoc_end:
                heredoc_end = None
                result.append("\n".join(current))
                current = []
            continue
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if heredoc:
            heredoc_end = heredoc.group(1)
            continue
        if line.rstrip().endswith("\\"):
            continue
        result.append("\n".join(current))
        current = []
    if current:
        result.append("\n".join(current))
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Shell:
    """One long-lived bash, fed a command at a time, like a terminal."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)
        self.pending = b""

    def run(self, command: str) -> tuple[int, str]:
        marker = f"__readme_walk_{secrets.token_hex(8)}__"
        # stdin is the walker's pipe: a command must not read the rest of the walk as its input.
        script = f"{{\n{command}\n}} </dev/null\nprintf '\\n{marker} %s\\n' \"$?\"\n"
        self.proc.stdin.write(script.encode())
        self.proc.stdin.flush()
        deadline, out = time.monotonic() + COMMAND_TIMEOUT_SECONDS, self.pending
        pattern = re.compile(rb"\n" + marker.encode() + rb" (\d+)\n")
        while not (found := pattern.search(out)):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise SystemExit(f"readme walk: no end of `{command}` within {COMMAND_TIMEOUT_SECONDS} s\n{out.decode(errors='replace')}")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 1.0))
            if ready:
                out += os.read(self.proc.stdout.fileno(), 65536)
        self.pending = out[found.end():]
        return int(found.group(1)), out[: found.start()].decode(errors="replace")

    def settle(self, quiet: float = 1.0, longest: float = 15.0) -> None:
        """Waits until the shell has printed nothing for `quiet` seconds (at most `longest`): a
        person reads what a background process prints before typing the next command."""
        deadline = time.monotonic() + longest
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, quiet))
            if not ready:
                return
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return
            self.pending += chunk

    def close(self) -> None:
        self.run("kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; true")
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def walk(dist: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="readme-walk-"))
    clone = work / "toolmesh"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    if dist.exists():
        shutil.copytree(dist, clone / "dist", symlinks=True)
    env = dict(os.environ, HOME=str(work / "home"), TERM="dumb")
    # The user's caches are theirs to keep: a fresh HOME would download everything again.
    real_home = Path.home()
    env.setdefault("npm_config_cache", str(real_home / ".npm"))
    env.setdefault("PIP_CACHE_DIR", str(real_home / ".cache" / "pip"))
    env.setdefault("CARGO_HOME", str(real_home / ".cargo"))
    env.setdefault("RUSTUP_HOME", str(real_home / ".rustup"))
    (work / "home" / ".m2").mkdir(parents=True)
    (work / "home" / ".m2" / "settings.xml").write_text(
        f"<settings><localRepository>{real_home / '.m2' / 'repository'}</localRepository></settings>\n")
    readme = (REPO / "README.md").read_text()
    if problems := snippet_mismatches(readme):
        raise SystemExit("readme walk: " + "; ".join(problems))
    port = str(free_port())
    shell = Shell(clone, env)
    ran = 0
    try:
        for line, block, skip in bash_blocks(readme):
            if skip:
                print(f"-- README line {line}: skipped ({skip})", flush=True)
                continue
            print(f"-- README line {line}", flush=True)
            background_since = None
            for command in commands(block):
                sent = command.replace("8443", port)
                started = time.monotonic()
                while True:
                    rc, out = shell.run(sent)
                    promised = PROMISE.search(command)
                    kept = promised is None or promised.group(1) in out
                    if rc == 0 and kept:
                        break
                    waiting = background_since is not None and time.monotonic() - started < RETRY_SECONDS
                    if not waiting:
                        why = f"exit status {rc}" if rc else f"output lacks the promised {promised.group(1)!r}"
                        raise SystemExit(f"readme walk: README line {line}: `{command}` failed ({why})\n{out}")
                    time.sleep(1)
                ran += 1
                print(f"   $ {command.splitlines()[0]}{' …' if chr(10) in command else ''}", flush=True)
                if re.search(r"&\s*(#.*)?$", command):
                    shell.settle()
                    background_since = time.monotonic()
            shell.run("kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; true")
    finally:
        shell.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"readme walk: {ran} commands ran as written")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=REPO / "dist")
    walk(parser.parse_args().dist)
