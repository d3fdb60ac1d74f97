#!/usr/bin/env python3
"""Where the Java agent's memory goes under load: RSS idle and after load, per JVM option set,
with the JVM's own account (Native Memory Tracking) of each, category by category.

    bash bench/run.sh --only memory --quick     # once: builds the Java agent into bench/.work/java
    python3 bench/java_memory.py                # the option sets below → bench/.work/java-memory.json
    python3 bench/java_memory.py --options "-Xmx64m" --options "-XX:+UseSerialGC"

Each option set: a fresh toolmesh registry, the agent started as the memory section starts it
(plus -XX:NativeMemoryTracking=summary), RSS 3 s after it is callable, then 16 concurrent `add`
calls for --seconds, RSS 1 s later; `jcmd PID VM.native_memory summary` at both points. NMT
counts what the JVM itself reserves and commits (heap, code cache, threads, GC, compiler...),
not what the Rust library allocates with malloc: the difference between RSS and NMT's committed
total (and NMT's committed figure exceeding what is resident) bounds that.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

DEFAULT_SETS = [
    "",                                     # the JVM's defaults (G1; initial heap 1/64 of RAM, max 1/4)
    "-Xmx64m",                              # a cap on the heap only
    "-XX:+UseSerialGC",                     # the collector alone
    "-XX:+UseSerialGC -Xmx64m",
    "-XX:MaxRAMPercentage=1",               # the cap as a fraction of RAM (1% of this machine's 24 GiB)
    "-XX:+UseSerialGC -Xmx64m -XX:TieredStopAtLevel=1",  # and no C2 compiler
]


def nmt(pid: int) -> dict[str, int]:
    """Committed KiB per NMT category, and 'Total'."""
    out = subprocess.run(["jcmd", str(pid), "VM.native_memory", "summary"], capture_output=True, text=True, timeout=60).stdout
    committed: dict[str, int] = {}
    for match in re.finditer(r"^-?\s*(Total|[A-Z][\w ]+?) \(reserved=\d+KB, committed=(\d+)KB\)", out, re.M):
        committed[match.group(1).strip()] = int(match.group(2))
    total = re.search(r"Total: reserved=\d+KB, committed=(\d+)KB", out)
    if total:
        committed["Total"] = int(total.group(1))
    return committed


def status(pid: int) -> dict[str, float]:
    """RssAnon / RssFile (MiB) and Threads from /proc/PID/status."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
        elif key == "Threads":
            out[key] = int(value)
    return out


def measure(run: harness.Run, options: str, seconds: float) -> dict:
    java = [a for a in run.language_agents() if a[0] == "java"]
    if not java:
        raise SystemExit(f"no Java agent: {run.results['missing'].get('java')}")
    _, name, cmd, env = java[0]
    cmd = [cmd[0], "-XX:NativeMemoryTracking=summary", *options.split(), *cmd[1:]]
    started = run.launch("javamem", "toolmesh", run.registry_url, name, cmd, env, keep=True)
    pid = started["pid"]
    time.sleep(3.0)
    idle_rss, idle_nmt, idle_status = harness.rss_mib(pid), nmt(pid), status(pid)
    loaded = harness.bench_json(["load", *run.client_tls("tm"), "--url", started["endpoint"], "--tool", "add",
                                 "--arguments", '{"a":20,"b":22}', "--expect", "42", "--concurrency", "16",
                                 "--seconds", str(seconds), "--warmup", "0.5", "--max-calls", "2000000"],
                                timeout=seconds + 120, name="javamem-load")
    time.sleep(1.0)
    after_rss, after_nmt, after_status = harness.rss_mib(pid), nmt(pid), status(pid)
    run.procs.stop(pid)
    return {"options": options or "(defaults)", "rss_idle_mib": idle_rss, "rss_after_mib": after_rss,
            "calls": loaded["stats"]["calls"], "throughput": loaded["stats"]["throughput"],
            "nmt_idle_kib": idle_nmt, "nmt_after_kib": after_nmt, "status_idle": idle_status, "status_after": after_status}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--options", action="append", help="a JVM option set (repeatable); default: the sets in this file")
    parser.add_argument("--seconds", type=float, default=5.0, help="load duration (the full bench's memory section: 5)")
    args = parser.parse_args()
    harness.LOGS.mkdir(parents=True, exist_ok=True)
    run = harness.Run("quick", {"memory"})
    rows = []
    try:
        run.registry_url, run.registry_pid = run.start_tm_registry("javamem-registry")
        for options in args.options or DEFAULT_SETS:
            row = measure(run, options, args.seconds)
            rows.append(row)
            a, b = row["nmt_idle_kib"], row["nmt_after_kib"]
            grew = sorted(((b.get(k, 0) - a.get(k, 0)) / 1024, k) for k in b if k != "Total")[::-1][:4]
            print(f"{row['options']:<50} RSS {row['rss_idle_mib']:6.1f} → {row['rss_after_mib']:6.1f} MiB "
                  f"({row['rss_after_mib'] / row['rss_idle_mib']:.2f}×), {row['throughput']:8.0f} calls/s; "
                  f"NMT committed {a.get('Total', 0) / 1024:.0f} → {b.get('Total', 0) / 1024:.0f} MiB; grew: "
                  + ", ".join(f"{k} +{d:.1f}" for d, k in grew)
                  + f"; heap committed {a.get('Java Heap', 0) / 1024:.0f} MiB; anon {row['status_idle']['RssAnon']:.0f} → "
                  f"{row['status_after']['RssAnon']:.0f} MiB, threads {row['status_idle']['Threads']:.0f} → "
                  f"{row['status_after']['Threads']:.0f}", flush=True)
    finally:
        run.procs.stop_all()
    out = harness.WORK / "java-memory.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
