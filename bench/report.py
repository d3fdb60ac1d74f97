"""Turns the raw figures of a run (bench/results/latest.json) into the Markdown table.

Ratios are taken pair by pair: each round measures the baseline and toolmesh back to back (in
alternating order), the ratio of that round's pair is computed, and the table shows the median
of those per-round ratios (and of the per-round figures). `python3 bench/report.py FILE.json`
re-renders a stored run.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from typing import Any, Optional


def med(values) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else float("nan")


def fmt(v: Optional[float], digits: int = 0, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if digits == 0 and abs(v) >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{max(digits, 1) if abs(v) < 100 else 0}f}{unit}"


def ratio(v: float) -> str:
    if v is None or math.isnan(v):
        return "–"
    return f"{v:.3g}×"


def at_least(value: float, target: float) -> str:
    """Met when value ≥ target; says by how much either way."""
    if value is None or math.isnan(value):
        return "**not measured**"
    if value >= target:
        return f"met ({ratio(value)} ≥ {ratio(target)}, {100 * (value / target - 1):.0f}% above)"
    return f"**missed** ({ratio(value)} < {ratio(target)}: {100 * (1 - value / target):.0f}% short; needs {target / value:.2f}× more)"


def at_most(value: float, target: float, unit: str = "×", shown=None) -> str:
    """Met when value ≤ target."""
    if value is None or math.isnan(value):
        return "**not measured**"
    show = shown or (lambda v: ratio(v) if unit == "×" else f"{v:,.0f} {unit}" if v >= 100 else f"{v:.3g} {unit}")
    if value <= target:
        return f"met ({show(value)} ≤ {show(target)}, {100 * (1 - value / target):.0f}% under)"
    return f"**missed** ({show(value)} > {show(target)}: {100 * (value / target - 1):.1f}% over the limit)"


def transport_rows(section: dict[str, Any]) -> list[str]:
    runs = section["runs"]
    out = ["| concurrency | toolmesh agent→agent calls/s (p50 / p99 ms) | raw HTTP/1.1 calls/s (p50 / p99) | raw HTTP/2 calls/s (p50 / p99) | toolmesh ÷ best raw | toolmesh ÷ raw HTTP/2 | target ≥ 0.8× |",
           "|---|---|---|---|---|---|---|"]
    for conc in sorted({r["concurrency"] for r in runs}):
        by_round: dict[int, dict[str, Any]] = {}
        for r in runs:
            if r["concurrency"] == conc:
                by_round.setdefault(r["round"], {})[r["system"]] = r["stats"]
        ratios_best, ratios_h2 = [], []
        for sysmap in by_round.values():
            tm, h1, h2 = sysmap["toolmesh"], sysmap["raw_h1"], sysmap["raw_h2"]
            ratios_best.append(tm["throughput"] / max(h1["throughput"], h2["throughput"]))
            ratios_h2.append(tm["throughput"] / h2["throughput"])

        def cell(system: str) -> str:
            stats = [s[system] for s in by_round.values()]
            return (f"{fmt(med(s['throughput'] for s in stats))} ({fmt(med(s['p50_ms'] for s in stats), 3)} / "
                    f"{fmt(med(s['p99_ms'] for s in stats), 3)})")

        rb = med(ratios_best)
        out.append(f"| {conc} | {cell('toolmesh')} | {cell('raw_h1')} | {cell('raw_h2')} | {ratio(rb)} | {ratio(med(ratios_h2))} | {at_least(rb, 0.8)} |")
    return out + bare_mcp_rows(runs)


def bare_mcp_rows(runs: list[dict[str, Any]]) -> list[str]:
    """The bare MCP `tools/call` on the raw stack, between the echo and toolmesh (when measured)."""
    if not any(r["system"] == "bare_mcp" for r in runs):
        return []
    out = ["", "The same stack answering a bare MCP `tools/call` (decode the JSON-RPC request, check the SEP-2243 headers, "
           "call `add`, encode the answer; no authorization, origin chain, trace or metrics), measured in the same rounds: "
           "what the protocol alone costs, and what toolmesh adds to it.", "",
           "| concurrency | bare MCP calls/s (p50 / p99 ms) | bare MCP ÷ raw HTTP/1.1 | toolmesh ÷ bare MCP |", "|---|---|---|---|"]
    for conc in sorted({r["concurrency"] for r in runs}):
        by_round: dict[int, dict[str, Any]] = {}
        for r in runs:
            if r["concurrency"] == conc:
                by_round.setdefault(r["round"], {})[r["system"]] = r["stats"]
        rounds = [m for m in by_round.values() if {"bare_mcp", "raw_h1", "toolmesh"} <= m.keys()]
        if not rounds:
            continue
        bare = [m["bare_mcp"] for m in rounds]
        out.append(f"| {conc} | {fmt(med(s['throughput'] for s in bare))} ({fmt(med(s['p50_ms'] for s in bare), 3)} / "
                   f"{fmt(med(s['p99_ms'] for s in bare), 3)}) | {ratio(med(m['bare_mcp']['throughput'] / m['raw_h1']['throughput'] for m in rounds))} | "
                   f"{ratio(med(m['toolmesh']['throughput'] / m['bare_mcp']['throughput'] for m in rounds))} |")
    return out


def python_rows(section: dict[str, Any]) -> list[str]:
    runs = section["runs"]
    out = ["| path | concurrency | toolmesh calls/s (p50 / p99 ms) | MCP Mesh calls/s (p50 / p99 ms) | throughput ratio | p99 ratio (toolmesh ÷ MCP Mesh) | target |",
           "|---|---|---|---|---|---|---|"]
    for path in ("chain", "direct"):
        for conc in (32, 1):
            by_round: dict[int, dict[str, Any]] = {}
            for r in runs:
                if r["path"] == path and r["concurrency"] == conc:
                    by_round.setdefault(r["round"], {})[r["system"]] = r["stats"]
            pairs = [p for p in by_round.values() if "toolmesh" in p and "mcpmesh" in p]
            if not pairs:
                continue
            thr = med(p["toolmesh"]["throughput"] / p["mcpmesh"]["throughput"] if p["mcpmesh"]["throughput"] else float("nan") for p in pairs)
            p99 = med(p["toolmesh"]["p99_ms"] / p["mcpmesh"]["p99_ms"] for p in pairs)

            def cell(system: str) -> str:
                stats = [p[system] for p in pairs]
                errors = sum(s["errors"] for s in stats)
                extra = f", {errors} errors" if errors else ""
                return f"{fmt(med(s['throughput'] for s in stats), 1)} ({fmt(med(s['p50_ms'] for s in stats), 2)} / {fmt(med(s['p99_ms'] for s in stats), 2)}{extra})"

            if path == "chain" and conc == 32:
                target = f"throughput {at_least(thr, 30)}; p99 {at_most(p99, 1 / 20)}"
            else:
                target = "–"
            label = "client → A → B" if path == "chain" else "client → B"
            out.append(f"| {label} | {conc} | {cell('toolmesh')} | {cell('mcpmesh')} | {ratio(thr)} | {ratio(p99)} | {target} |")
    loadgen = max((r.get("loadgen_cores") or 0) for r in runs)
    out.append("")
    out.append(f"Load generator (Rust, one keep-alive mTLS connection per worker): at most {loadgen:.2f} cores in any run.")
    return out


def memory_rows(section: dict[str, Any]) -> list[str]:
    rows = section["agents"]
    by = {r["agent"]: r for r in rows}
    out = ["| process | RSS idle after start (MiB) | RSS after load (MiB) | after ÷ idle | calls in the load |", "|---|---|---|---|---|"]
    for r in rows:
        name = "MCP Mesh agent (Python)" if r["agent"] == "mcpmesh-python" else f"toolmesh agent ({r['agent']})"
        if r.get("options"):
            name = f"toolmesh agent ({r['agent']}, `{r['options']}`)"
        grew = r["rss_after_load_mib"] / r["rss_idle_mib"] if r.get("rss_idle_mib") and r.get("rss_after_load_mib") else None
        out.append(f"| {name} | {fmt(r['rss_idle_mib'], 1)} | {fmt(r['rss_after_load_mib'], 1)} | {ratio(grew)} | {r['load_calls']:,} |")
    regs = section.get("registries", {})
    for name, label in (("toolmesh", "toolmesh registry"), ("mcpmesh", "MCP Mesh registry")):
        if name in regs:
            out.append(f"| {label} | {fmt(regs[name]['rss_after_start_mib'], 1)} | {fmt(regs[name]['rss_now_mib'], 1)} (after every section before this one) | – | – |")
    if "python" in by and "mcpmesh-python" in by:
        tm, mm = by["python"]["rss_idle_mib"], by["mcpmesh-python"]["rss_idle_mib"]
        r = tm / mm
        out.append("")
        out.append(f"Idle Python agent, toolmesh ÷ MCP Mesh: {tm:.2f} ÷ {mm:.2f} MiB = {r:.4f}× — target ≤ 0.25× "
                   f"(≤ {mm / 4:.2f} MiB): {at_most(r, 0.25)}")
    if "java" in by and by["java"].get("rss_idle_mib") and by["java"].get("rss_after_load_mib"):
        java = by["java"]
        r = java["rss_after_load_mib"] / java["rss_idle_mib"]
        out.append("")
        out.append(f"Java agent ({java.get('options') or 'JVM defaults'}), RSS after load ÷ idle: {r:.2f}× — target ≤ 1.5×: "
                   f"{at_most(r, 1.5)} (the JVM's defaults: see FINDINGS.md §5)")
    return out


def cold_rows(section: dict[str, Any]) -> list[str]:
    out = ["| agent | launch → registered (ms, median) | launch → callable (ms, median) | trials |", "|---|---|---|---|"]
    for label, trials in section.items():
        name = "MCP Mesh (Python)" if label == "mcpmesh-python" else f"toolmesh {label}"
        out.append(f"| {name} | {fmt(med(t['registered_ms'] for t in trials))} | {fmt(med(t['callable_ms'] for t in trials))} | {len(trials)} |")
    if "python" in section and "mcpmesh-python" in section:
        r = med(t["callable_ms"] for t in section["python"]) / med(t["callable_ms"] for t in section["mcpmesh-python"])
        out.append("")
        out.append(f"Python cold start, toolmesh ÷ MCP Mesh: {ratio(r)} — target ≤ 1/8 (0.125×): {at_most(r, 1 / 8)}")
    return out


def handshake_rows(section: dict[str, Any]) -> list[str]:
    runs = section["runs"]
    out = ["| handshake | configs | server side (per core-second) | client side (per core-second) | both sides on one core | core ÷ plain (both sides) |",
           "|---|---|---|---|---|---|"]
    for kind in ("full", "resumed"):
        # Pair by pair: core ÷ plain within each round, then the median.
        by_round: dict[int, dict[str, float]] = {}
        for r in runs:
            if r["kind"] == kind:
                by_round.setdefault(r["round"], {})[r["configs"]] = r["pair_per_core_s"]
        core_vs_plain = med(p["core"] / p["plain"] for p in by_round.values() if "core" in p and "plain" in p)
        for configs in ("core", "plain"):
            sel = [r for r in runs if r["kind"] == kind and r["configs"] == configs]
            pair = med(r["pair_per_core_s"] for r in sel)
            out.append(f"| {kind} mTLS | {'toolmesh core (Identity::server_config/client_config)' if configs == 'core' else 'plain rustls, same certificates'} "
                       f"| {fmt(med(r['server_per_core_s'] for r in sel))} | {fmt(med(r['client_per_core_s'] for r in sel))} | {fmt(pair)} | "
                       f"{ratio(core_vs_plain) if configs == 'core' else '–'} |")
    return out


def registry_rows(section: list[dict[str, Any]]) -> list[str]:
    out = ["| simulated agents | client certificates (pooled mTLS clients) | registration ramp (s) | registry CPU (cores) | registry RSS (MiB) | heartbeats/s | heartbeat p50 / p99 (ms) | new provider → all dependents callable (ms, worst of trials) | simulator CPU (cores) | targets (10,000) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for s in section:
        if s.get("replicas", 1) > 1:
            continue
        hb = s["heartbeat"]
        trials = [t.get("all_callable_ms") for t in s["trials"]]
        worst = None if any(t is None for t in trials) or not trials else max(trials)
        targets = "–"
        if s["agents"] >= 10000:
            targets = "; ".join([
                f"CPU {at_most(s['registry_cores'], 0.5, 'cores')}",
                f"p99 {at_most(hb['p99_ms'], 50, 'ms')}",
                f"new provider {at_most(worst if worst is not None else float('nan'), 1000, 'ms')}",
            ])
        sharded = f" ({s['shards']} simulator processes)" if s.get("shards", 1) > 1 else ""
        out.append(
            f"| {s['agents']:,} | {s['connections']:,}{sharded} | {s['ramp_seconds']:.1f} | {fmt(s['registry_cores'], 2)} | {fmt(s['registry_rss_mib_steady'], 1)} | "
            f"{fmt(s['heartbeats_per_second'])} | {fmt(hb['p50_ms'], 2)} / {fmt(hb['p99_ms'], 2)}{' (' + str(hb['errors']) + ' errors)' if hb['errors'] else ''} | "
            f"{fmt(worst)} | {fmt(s['simulator_cores'], 2)} | {targets} |")
    return out


def replica_rows(section: list[dict[str, Any]]) -> list[str]:
    """Rows of registry replicas on one PostgreSQL, each beside the single registry (embedded
    store) measured in the same run at the same size, with the issue's targets."""
    replicated = [s for s in section if s.get("replicas", 1) > 1]
    if not replicated:
        return []
    out = ["Registry replicas on one PostgreSQL (scripts/pg-server.sh), the simulated agents spread over them by the URL list; "
           "the new provider registers at replica 0, dependents at replicas 1, 2, 0 (a change that must cross replicas). "
           "Beside each, the single registry on its embedded store at the same size in the same run.", "",
           "| simulated agents | client certificates | registries | agents per replica | registry CPU per replica (cores) | PostgreSQL CPU (cores) | heartbeats/s | heartbeat p50 / p99 (ms) | new provider → all dependents callable (ms, worst of trials) | targets (≤ 0.5 core per replica, p99 ≤ 50 ms, new provider ≤ 1 s) |",
           "|---|---|---|---|---|---|---|---|---|---|"]

    def worst_of(s: dict[str, Any]) -> Optional[float]:
        trials = [t.get("all_callable_ms") for t in s["trials"]]
        return None if any(t is None for t in trials) or not trials else max(trials)

    for s in replicated:
        single = [x for x in section if x.get("replicas", 1) == 1 and x["agents"] == s["agents"] and x["connections"] == s["connections"]]
        for row in [*single[:1], s]:
            hb, worst = row["heartbeat"], worst_of(row)
            new_provider = fmt(worst) if worst is not None else "**not callable by every dependent within 10 s**" + (
                " (per dependent: " + "; ".join(f"replica {r}: {fmt(ms) if ms is not None else 'never'}"
                                               for t in row["trials"] for r, ms in zip(t.get("dependents_replica", []), t["dependents_callable_ms"])) + ")")
            targets = "; ".join([
                f"CPU {at_most(row['registry_cores'], 0.5, 'cores')}",
                f"p99 {at_most(hb['p99_ms'], 50, 'ms')}",
                f"new provider {at_most(worst, 1000, 'ms')}" if worst is not None else "new provider **missed** (not callable by every dependent)",
            ])
            cores = " / ".join(fmt(c, 2) for c in row.get("replica_cores", [row["registry_cores"]]))
            out.append(
                f"| {row['agents']:,} | {row['connections']:,} | {row.get('replicas', 1)}{' (PostgreSQL)' if row.get('replicas', 1) > 1 else ' (embedded)'} | "
                f"{' / '.join(str(a) for a in row.get('agents_per_replica', [row['agents']]))} | {cores} | {fmt(row.get('postgres_cores'), 2)} | "
                f"{fmt(row['heartbeats_per_second'])} | {fmt(hb['p50_ms'], 2)} / {fmt(hb['p99_ms'], 2)}{' (' + str(hb['errors']) + ' errors)' if hb['errors'] else ''} | "
                f"{new_provider} | {targets} |")
    return out


def paired_rows(runs: list[dict[str, Any]], base: tuple[str, str], other: tuple[str, str], versus: str, target: float) -> list[str]:
    """Agent → agent throughput of two systems measured back to back in each round (`base` and
    `other`: the system's name in the runs and its column heading), with the callee's CPU per call
    and the median of the per-round throughput ratios other ÷ base against `target`."""
    (a, a_label), (b, b_label) = base, other
    out = [f"| concurrency | {a_label}: calls/s (p50 / p99 ms) | {b_label}: calls/s (p50 / p99 ms) | callee CPU per call (µs; {versus}) | "
           f"throughput {versus} (per-round ratios) | target ≥ {target}× |",
           "|---|---|---|---|---|---|"]
    for conc in sorted({r["concurrency"] for r in runs}):
        by_round: dict[int, dict[str, Any]] = {}
        cpu_by_round: dict[int, dict[str, float]] = {}
        for r in runs:
            if r["concurrency"] == conc:
                by_round.setdefault(r["round"], {})[r["system"]] = r["stats"]
                # The callee's CPU per call (its cores over the window ÷ calls/s): steadier than
                # throughput on a shared machine.
                cores, calls = r.get("server_cores"), r["stats"]["throughput"]
                cpu_by_round.setdefault(r["round"], {})[r["system"]] = cores / calls * 1e6 if cores and calls else float("nan")
        pairs = [p for p in by_round.values() if a in p and b in p]
        ratios = [p[b]["throughput"] / p[a]["throughput"] for p in pairs if p[a]["throughput"]]
        rm = med(ratios)
        cpu_pairs = [(cpu[a], cpu[b]) for cpu in cpu_by_round.values() if a in cpu and b in cpu]
        cpu_cell = (f"{med(x for x, _ in cpu_pairs):.1f} → {med(y for _, y in cpu_pairs):.1f} ({ratio(med(y / x for x, y in cpu_pairs))})"
                    if cpu_pairs else "–")

        def cell(system: str) -> str:
            stats = [p[system] for p in pairs]
            errors = sum(s["errors"] for s in stats)
            extra = f", **{errors} errors**" if errors else ""
            return f"{fmt(med(s['throughput'] for s in stats))} ({fmt(med(s['p50_ms'] for s in stats), 3)} / {fmt(med(s['p99_ms'] for s in stats), 3)}{extra})"

        out.append(f"| {conc} | {cell(a)} | {cell(b)} | {cpu_cell} | {ratio(rm)} ({', '.join(f'{x:.3f}' for x in ratios)}) | {at_least(rm, target)} |")
    return out


def telemetry_rows(section: dict[str, Any]) -> list[str]:
    out = paired_rows(section["transport"]["runs"], ("toolmesh_metrics_off", "metrics off (both agents)"), ("toolmesh", "metrics on (the default)"),
                      "on ÷ off", 0.98)
    out += ["", "Both ends of each call record (the caller's client histogram, the callee's server histogram and in-flight gauges) "
            "or, with `TOOLMESH_METRICS=off`, skip it; the rest of the agent is the same.", ""]
    out += paired_rows(section["transport"]["runs"], ("toolmesh_traces_off", "tracing off (both agents)"),
                       ("toolmesh", "tracing on, every span to the registry (the default)"), "on ÷ off", 0.9)
    store = section.get("trace_store", {})
    kept = (f"after the run the registry's store listed {store['traces_listed']:,} traces holding {store['spans_in_listed']:,} spans"
            if "traces_listed" in store else f"the registry's store could not be read: {store.get('error', '?')}")
    out += ["", "Both ends of each call record a span (100% sampling: `parentbased_always_on`) and export it over mTLS to the "
            "registry's trace store, the live collector with no `OTEL_EXPORTER_OTLP_ENDPOINT` set, or, with "
            f"`OTEL_TRACES_EXPORTER=none`, record nothing; the rest of the agent is the same; {kept}."]
    return out


def policy_rows(section: dict[str, Any]) -> list[str]:
    decide = section["decide"]
    runs = decide["runs"]
    out = ["| measured | rules | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | mean, batches of 100 (µs) | answer | target: p99 ≤ 50 µs (0.05 ms) |",
           "|---|---|---|---|---|---|---|---|---|"]
    seen: list[tuple[str, str]] = []
    for r in runs:
        if (r["kind"], r["case"]) not in seen:
            seen.append((r["kind"], r["case"]))
    for kind, case in seen:
        sel = [r for r in runs if r["kind"] == kind and r["case"] == case]
        p99 = med(r["p99_us"] for r in sel)
        label = "`Policy::decide`" if kind == "decide" else "callee gate (`Gate::caller` + `admit_call`)"
        target = at_most(p99, 50, "µs") if "100 rules" in case and "limits" not in case else "–"
        answer = ("allowed" if sel[0]["allowed"] else "denied") + (f" by '{sel[0]['rule']}'" if kind == "decide" or sel[0]["allowed"] else " (default: deny)")
        out.append(f"| {label}: {case} | {sel[0]['rules']} | {med(r['p50_us'] for r in sel):.3f} | {p99:.3f} | {med(r['p999_us'] for r in sel):.3f} | "
                   f"{max(r['max_us'] for r in sel):.1f} | {med(r['batch_mean_us'] for r in sel):.3f} | {answer} | {target} |")
    out.append("")
    out.append(f"{decide['iterations']:,} calls timed one by one per case and round ({len({r['round'] for r in runs})} rounds; medians of the rounds, "
               f"max over all); the timer's own cost, included, is {decide['timer_p50_us']:.3f} µs. The gate verifies a real origin chain "
               f"({decide['origin_header_bytes']:,}-byte header, cached after the first call) and a real peer certificate.")
    out.append("")
    out += paired_rows(section["transport"]["runs"], ("toolmesh", "callee without policy"), ("toolmesh_policy", "callee with a 100-rule policy"),
                       "with ÷ without", 0.95)
    out.append("")
    out.append(f"Callee with the policy: {section.get('callee_policy', '?')} (its last rule allows the call; the one without runs the built-in default).")
    return out


def long_calls_rows(section: dict[str, Any]) -> list[str]:
    """Progress throughput and cancel-to-stop, each round's chain figure against its direct one."""
    runs = section["runs"]
    rounds = sorted({r["round"] for r in runs})
    by = {(r["round"], r["path"]): r for r in runs}
    pairs = [(by[(n, "direct")], by[(n, "three_hops")]) for n in rounds if (n, "direct") in by and (n, "three_hops") in by]
    direct_rate, chain_rate = med(d["per_second"] for d, _ in pairs), med(c["per_second"] for _, c in pairs)
    rate_ratio = med(c["per_second"] / d["per_second"] for d, c in pairs)
    # Per hop: a round's median cancel-to-stop time divided by its hops.
    per_hop = lambda r: med(r["cancel_ms"]) / r["hops"]  # noqa: E731
    direct_hop, chain_hop = med(per_hop(d) for d, _ in pairs), med(per_hop(c) for _, c in pairs)
    hop_ratio = med(per_hop(c) / per_hop(d) for d, c in pairs)
    every = lambda path: sorted(ms for r in runs if r["path"] == path for ms in r["cancel_ms"])  # noqa: E731
    p90 = lambda values: values[min(len(values) - 1, int(0.9 * len(values)))] if values else float("nan")  # noqa: E731
    out = ["| measured | direct (1 hop, baseline) | through 3 hops | 3 hops ÷ direct | target |", "|---|---|---|---|---|"]
    out.append(f"| progress notifications per second (one call, {section['notifications_per_call']:,} reports) | {fmt(direct_rate)} | "
               f"{fmt(chain_rate)} | {ratio(rate_ratio)} | – |")
    out.append(f"| cancel → last handler sees it, whole path (median / p90 of all, ms) | {fmt(med(every('direct')), 2)} / {fmt(p90(every('direct')), 2)} | "
               f"{fmt(med(every('three_hops')), 2)} / {fmt(p90(every('three_hops')), 2)} | – | – |")
    out.append(f"| cancel-to-stop per hop (ms) | {fmt(direct_hop, 2)} | {fmt(chain_hop, 2)} | {ratio(hop_ratio)} | "
               f"{at_most(chain_hop, 100, 'ms')} |")
    out += ["", f"{len(pairs)} rounds, direct and chain back to back in alternating order; {section['cancels_per_round']} cancellations per "
            "round and path. The four agents (client, h1, h2, h3) run in one process on its runtime, each on its own mTLS listener over "
            "loopback; the middle hops only call their dependency with their request's context. Progress: the last hop reports as fast "
            "as it can, then answers; the figure is reports received ÷ the call's time. Cancel: once the last hop's first report "
            "reached the client, the client drops its call (its stream closes); the time runs until the last hop's "
            "`context.cancelled()` returns."]
    return out


def long_calls_vs_mcpmesh_rows(section: dict[str, Any]) -> list[str]:
    """Progress through three Python hops and one, toolmesh and MCP Mesh measured by one client,
    each round's toolmesh figure against that round's MCP Mesh one."""
    runs, n = section["runs"], section["notifications_per_call"]
    systems = ("toolmesh", "mcpmesh")
    # (round, path, system) -> the run; a run's figure is the median of its calls.
    by = {(r["round"], r["path"], r["system"]): r for r in runs}
    rounds = sorted({r["round"] for r in runs})

    def figure(run: Optional[dict[str, Any]], key: str) -> float:
        return med(c[key] for c in run["calls"]) if run else float("nan")

    def per_hop(rnd: int, system: str) -> float:
        return (figure(by.get((rnd, "chain", system)), "first_ms") - figure(by.get((rnd, "direct", system)), "first_ms")) / 2

    def row(label: str, value, better: str, digits: int = 0) -> str:
        """`value(round, system)`; the ratio is toolmesh ÷ MCP Mesh per round, then the median."""
        cells = [med(value(rnd, s) for rnd in rounds) for s in systems]
        ratios = [value(rnd, "toolmesh") / value(rnd, "mcpmesh") for rnd in rounds
                  if value(rnd, "mcpmesh") and not math.isnan(value(rnd, "mcpmesh"))]
        return f"| {label} | {fmt(cells[0], digits)} | {fmt(cells[1], digits)} | {ratio(med(ratios))} ({better}) |"

    out = ["| measured (Python agents, stateless `tools/call` with a progress token) | toolmesh | MCP Mesh | toolmesh ÷ MCP Mesh |",
           "|---|---|---|---|"]
    for path, label in (("direct", "client → c"), ("chain", "client → a → b → c")):
        out.append(row(f"{label}: notifications/s ({n:,} per call)", lambda rnd, s: figure(by.get((rnd, path, s)), "per_second"), "higher is better"))
    for path, label in (("direct", "client → c"), ("chain", "client → a → b → c")):
        out.append(row(f"{label}: first notification (ms after the request)", lambda rnd, s: figure(by.get((rnd, path, s)), "first_ms"), "lower is better", 2))
    for path, label in (("direct", "client → c"), ("chain", "client → a → b → c")):
        out.append(row(f"{label}: whole call (ms)", lambda rnd, s: figure(by.get((rnd, path, s)), "result_ms"), "lower is better", 1))
    out.append(row("added latency per hop, first notification ((chain − direct) ÷ 2, ms)", per_hop, "lower is better", 2))
    out.append(row("chain ÷ direct, notifications/s", lambda rnd, s: figure(by.get((rnd, "chain", s)), "per_second")
                   / figure(by.get((rnd, "direct", s)), "per_second"), "closer to 1 is better", 2))
    # Cancellations were timed after the rounds, per path and system: medians, and their ratio.
    cancels = {(x["path"], x["system"]): x["cancels"] for x in section.get("cancels", [])}
    hang = section.get("hang_seconds", "?")

    def cancel_cell(path: str, system: str, hops: int) -> tuple[str, float]:
        timed = cancels.get((path, system), [])
        seen = [x["cancel_ms"] for x in timed if x["cancel_ms"] is not None]
        if not timed:
            return "–", float("nan")
        if not seen:
            finished = sum(1 for x in timed if (x["error"] or "").startswith("never cancelled"))
            return f"**never** (0 of {len(timed)}; {finished} of them ran c's whole {hang} s wait)", float("nan")
        value = med(seen) / hops
        return fmt(value, 2) + (f" ({len(timed) - len(seen)} of {len(timed)} never)" if len(seen) < len(timed) else ""), value

    for path, label, hops in (("direct", "client → c", 1), ("chain", "client → a → b → c", 1), ("chain", "client → a → b → c, per hop (÷ 3)", 3)):
        if not any(k[0] == path for k in cancels):
            continue
        (tm_text, tm_value), (mm_text, mm_value) = (cancel_cell(path, s, hops) for s in systems)
        out.append(f"| {label}: connection closed → last hop sees its call cancelled (ms, median) | {tm_text} | {mm_text} | "
                   f"{ratio(tm_value / mm_value) if mm_value else '–'} (lower is better) |")
    out.append("")
    for s, name in zip(systems, ("toolmesh", "MCP Mesh")):
        mine = [r for r in runs if r["system"] == s]
        calls = [c for r in mine for c in r["calls"]]
        short = [c for c in calls if c["error"]]
        got = sorted({c["notifications"] for c in calls})
        # Where the notifications arrive in the call: spread over it, or bunched at the end.
        spread = med((c["last_ms"] - c["first_ms"]) / c["result_ms"] for c in calls if c.get("first_ms") is not None and c.get("result_ms"))
        timed = [c for (_, system), xs in cancels.items() if system == s for c in xs]
        never = [c for c in timed if c["cancel_ms"] is None]
        text = (f"{name}: {len(calls)} calls, notifications received per call {', '.join(str(g) for g in got)} of {n:,}; first → last "
                f"notification spans {100 * spread:.0f}% of the call (median)" if not math.isnan(spread) else
                f"{name}: {len(calls)} calls, notifications received per call {', '.join(str(g) for g in got)} of {n:,}")
        if short:
            text += f"; **{len(short)} calls not right**: {short[0]['error']}"
        if timed:
            text += (f"; cancellations: {len(timed) - len(never)} of {len(timed)} reached the last hop"
                     + (f" (the others: {never[0]['error']})" if never else ""))
        out.append(f"- {text}.")
    out += ["", f"{len(rounds)} rounds; in each, both paths and both systems back to back, the order of the systems and of the paths "
            "alternating by round; each figure is the median of its round's calls, the ratio the median of the per-round ratios. One Rust "
            "client (`toolmesh-bench stream-calls`) for both: a stateless `tools/call` (revision 2025-06-18) with `_meta.progressToken` on "
            "a fresh mTLS connection, its server-sent events read as they arrive. toolmesh: c calls `toolmesh.context().report_progress` "
            "n times, b and a only call their dependency (core relays). MCP Mesh: c is a `mesh.Stream[str]` tool yielding n chunks "
            "(each a `notifications/progress`), b and a re-yield `dep.stream()`. Cancel (after the rounds, per path and system): c "
            f"reports once and waits {hang} s; after that notification the client closes the connection; c writes the CLOCK_MONOTONIC time "
            "its handler saw the cancellation, or that its wait ran out uncancelled."]
    return out


def render(results: dict[str, Any]) -> str:
    s = results["sections"]
    noise = results.get("noise", {})
    lines = [
        f"# toolmesh benchmarks — {results['mode']} run, {results['started']}",
        "",
        f"Commit `{results.get('git', '?')}`; {results['machine']['cpus']} CPUs, Linux {results['machine']['kernel']}; "
        f"run took {results.get('seconds', 0):.0f} s. Machine noise during the run: load average median "
        f"{noise.get('loadavg_median', float('nan')):.2f} (min {noise.get('loadavg_min', float('nan')):.2f}, max {noise.get('loadavg_max', float('nan')):.2f}), "
        f"whole machine busy {100 * noise.get('machine_busy_median', float('nan')):.0f}% (median of 2-s samples, this run included). "
        "Ratios are medians of per-round ratios (baseline and toolmesh measured back to back, alternating order). "
        "Not a CI gate: see bench/README.md.",
        "",
    ]
    if "transport" in s:
        lines += ["## 1. Transport limit (Rust handler, agent → agent `tools/call` vs raw hyper + rustls mTLS echo)", ""]
        lines += transport_rows(s["transport"]) + [""]
    if "python" in s:
        lines += ["## 2. Python agents: toolmesh against MCP Mesh (mTLS, same agent code)", ""]
        lines += python_rows(s["python"]) + [""]
    if "memory" in s:
        lines += ["## 3. Memory (RSS)", ""] + memory_rows(s["memory"]) + [""]
    if "coldstart" in s:
        lines += ["## 4. Cold start (process launch → in the registry → answers a `tools/call`)", ""] + cold_rows(s["coldstart"]) + [""]
    if "handshakes" in s:
        lines += ["## 5. mTLS handshakes (rustls, ECDSA P-256, in memory, CPU time per side)", ""] + handshake_rows(s["handshakes"]) + [""]
    if "registry_scale" in s:
        lines += ["## 6. Registry scale (heartbeat every 5 s, default interval)", ""] + registry_rows(s["registry_scale"]) + [""]
        lines += replica_rows(s["registry_scale"]) + [""] if any(r.get("replicas", 1) > 1 for r in s["registry_scale"]) else []
    if "policy" in s:
        lines += ["## 7. Authorization cost (policy decision, callee gate, agent → agent with and without a 100-rule policy)", ""]
        lines += policy_rows(s["policy"]) + [""]
    if "telemetry" in s:
        lines += ["## 8. Telemetry cost (agent → agent with metrics on and off)", ""] + telemetry_rows(s["telemetry"]) + [""]
    if "long_calls" in s:
        lines += ["## 9. Long calls (progress and cancellation through three hops against one)", ""] + long_calls_rows(s["long_calls"]) + [""]
    if "long_calls_vs_mcpmesh" in s:
        lines += ["## 10. Long calls against MCP Mesh (progress through three Python agents and one)", ""]
        lines += long_calls_vs_mcpmesh_rows(s["long_calls_vs_mcpmesh"]) + [""]
    if results.get("missing"):
        lines += ["## Not measured", ""] + [f"- {k}: {v}" for k, v in results["missing"].items()] + [""]
    if results.get("failed"):
        # The cause on the bullet, the log lines that show it indented under it.
        lines += ["## Failed sections", ""]
        for k, v in results["failed"].items():
            first, *rest = str(v).splitlines() or [""]
            lines.append(f"- **{k}**: {first}")
            if rest:
                lines += ["", "  ```"] + [f"  {line}" for line in rest] + ["  ```"]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(json.loads(open(sys.argv[1]).read())))
