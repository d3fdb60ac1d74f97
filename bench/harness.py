#!/usr/bin/env python3
"""Runs the toolmesh benchmarks side by side with their baselines and writes the table.

Started by bench/run.sh (which builds and installs everything first); see bench/README.md.
Every figure comes from real processes on this machine in this run: the Rust binary
toolmesh-bench measures, this script starts and stops processes, alternates baseline and
toolmesh, and aggregates. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / ".work"
LOGS = WORK / "logs"
CERTS = WORK / "certs"
RESULTS = BENCH / "results"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BENCH_BIN = TARGET / "release" / "toolmesh-bench"
TOOLMESH = TARGET / "release" / "toolmesh"
TM_PYTHON = WORK / "tm-venv" / "bin" / "python"
MM_VENV = WORK / "mm-venv"
MM_BIN = WORK / "mm-npm" / "node_modules" / "@mcpmesh" / "cli-linux-x64" / "bin"
MM_HOME = WORK / "mm-home"
MM_TLS = MM_HOME / ".mcp-mesh" / "tls"
# Written by run.sh: the files meshctl --tls-auto actually wrote (its names follow the script's
# file name, not the agent's), {"ca": path, "registry": {"cert", "key"}, "agent-a": {...}, ...}.
MM_MANIFEST = WORK / "mm-certs.json"
AGENTS = BENCH / "agents"

# How long each kind of measurement runs, per mode.
MODES = {
    "quick": dict(
        transport_rounds=1, transport_seconds=1.0, handshake_rounds=1, handshake_seconds=0.5,
        py_rounds=1, py_seconds=2.0, py_warmup=0.5, memory_load_seconds=2.0, cold_trials=1,
        scales=[(100, 8, 1), (1000, 8, 1), (1000, 1000, 1), (1000, 1000, 3)], scale_window=5.0, scale_trials=1,
        policy_rounds=1, policy_iterations=100_000, policy_transport_rounds=6, policy_transport_seconds=0.5,
        telemetry_rounds=6, telemetry_seconds=0.5, long_rounds=2, long_notifications=500, long_cancels=5,
        stream_rounds=2, stream_calls=2, stream_notifications=200, stream_cancels=2, stream_hang=5,
    ),
    "full": dict(
        transport_rounds=5, transport_seconds=3.0, handshake_rounds=5, handshake_seconds=2.0,
        py_rounds=5, py_seconds=5.0, py_warmup=1.0, memory_load_seconds=5.0, cold_trials=3,
        scales=[(100, 8, 1), (1000, 8, 1), (1000, 1000, 1), (1000, 1000, 3), (10000, 8, 1), (10000, 10000, 1), (10000, 10000, 3)],
        scale_window=15.0, scale_trials=3,
        policy_rounds=3, policy_iterations=200_000, policy_transport_rounds=20, policy_transport_seconds=1.0,
        telemetry_rounds=20, telemetry_seconds=1.0, long_rounds=10, long_notifications=20_000, long_cancels=20,
        stream_rounds=5, stream_calls=3, stream_notifications=500, stream_cancels=3, stream_hang=15,
    ),
}


# The Java agent's JVM options: the ones FINDINGS.md §5 recommends for an agent (serial
# collector, 64 MiB heap: under load the JVM's default G1 heap, sized from the machine's RAM,
# grows RSS 3.4× by touching eden, not by anything the agent keeps; live heap after a GC ≈ 3 MiB). The memory
# section measures the JVM's defaults beside them ("java, JVM defaults"). BENCH_JAVA_OPTIONS
# (space-separated) replaces them.
JAVA_OPTIONS = os.environ.get("BENCH_JAVA_OPTIONS", "-XX:+UseSerialGC -Xmx64m").split()

# The sections, in the order they run; `--only mcp-mesh` names every section with MCP Mesh rows.
SECTIONS = ("transport", "handshakes", "python", "memory", "coldstart", "registry", "policy", "telemetry", "long_calls",
            "long_calls_vs_mcpmesh")
MM_SECTIONS = {"python", "memory", "coldstart", "long_calls_vs_mcpmesh"}
ALIASES = {"mcp-mesh": MM_SECTIONS}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> Optional[float]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


class Noise(threading.Thread):
    """Samples the 1-minute load average and the machine's busy fraction every 2 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    @staticmethod
    def _cpu() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle

    def run(self) -> None:
        total, idle = self._cpu()
        while not self.stop.wait(2.0):
            t, i = self._cpu()
            busy = 1 - (i - idle) / max(1, t - total)
            total, idle = t, i
            self.samples.append((loadavg(), busy))

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {}
        loads = [s[0] for s in self.samples]
        busy = [s[1] for s in self.samples]
        return {
            "loadavg_min": min(loads), "loadavg_median": statistics.median(loads), "loadavg_max": max(loads),
            "machine_busy_median": statistics.median(busy), "samples": len(self.samples),
        }


class Processes:
    """The processes this run started; each is stopped (SIGTERM, then SIGKILL) by its pid."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.popens: dict[int, subprocess.Popen] = {}

    def start(self, name: str, cmd: list[str], env: Optional[dict[str, str]] = None, cwd: Optional[Path] = None) -> subprocess.Popen:
        logfile = open(LOGS / f"{name}.log", "w")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, cwd=cwd)
        self.pids.append(proc.pid)
        self.popens[proc.pid] = proc
        return proc

    def adopt(self, pid: int) -> None:
        self.pids.append(pid)

    def stop(self, pid: int, grace: float = 10.0) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.time() + grace
        while time.time() < deadline:
            if pid in self.popens:
                if self.popens[pid].poll() is not None:
                    break
            else:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                if not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid):
                    break
            time.sleep(0.05)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if pid in self.pids:
            self.pids.remove(pid)

    def stop_all(self) -> None:
        for pid in list(reversed(self.pids)):
            self.stop(pid, grace=5.0)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "gone"


def wait_for_line(path: Path, marker: str, timeout: float = 30.0) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                if marker in line:
                    return line
        time.sleep(0.05)
    raise RuntimeError(f"no '{marker}' in {path} within {timeout} s:\n{path.read_text(errors='replace')[-2000:] if path.exists() else ''}")


def bench_json(args: list[str], timeout: float, name: str) -> dict[str, Any]:
    """Runs a toolmesh-bench subcommand (bounded by `timeout`) and returns its JSON line."""
    with open(LOGS / f"{name}.stderr.log", "w") as err:
        done = subprocess.run([str(BENCH_BIN), *args], stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"toolmesh-bench {args[0]} failed ({done.returncode}): {(LOGS / f'{name}.stderr.log').read_text()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mm_certs() -> dict[str, Any]:
    """MCP Mesh's certificate files, as run.sh found them; a clear error when they are not there."""
    if not MM_MANIFEST.exists():
        raise RuntimeError(f"MCP Mesh's certificates are not set up: {MM_MANIFEST} is missing (bench/run.sh writes it "
                           "with meshctl --tls-auto; run the bench through bench/run.sh)")
    manifest = json.loads(MM_MANIFEST.read_text())
    for role in ("ca", "registry", "agent-a", "agent-b"):
        entry = manifest.get(role)
        files = [entry] if isinstance(entry, str) else list((entry or {}).values())
        missing = [f for f in files if not Path(f).is_file()] if files else [f"(no '{role}' entry)"]
        if missing:
            raise RuntimeError(f"MCP Mesh certificate for {role} missing: {', '.join(missing)} (named in {MM_MANIFEST}); "
                               f"delete {MM_MANIFEST} and rerun bench/run.sh to regenerate them with meshctl")
    return manifest


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a process's log, for an error message that names the cause."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:]) if text else f"({path} is empty)"


def med(values: list[float]) -> float:
    values = [v for v in values if v is not None and v == v]
    return statistics.median(values) if values else float("nan")


class Run:
    def __init__(self, mode: str, only: Optional[set[str]]) -> None:
        self.mode = mode
        self.cfg = MODES[mode]
        self.only = only
        self.procs = Processes()
        self.results: dict[str, Any] = {"sections": {}, "missing": {}}
        self.registry_url = ""
        self.registry_pid = 0
        self.registry_rss_start: Optional[float] = None
        # MCP Mesh's registry: its pid once started, or why it could not be (every MCP Mesh row then fails with that cause).
        self.mm_registry_pid = 0
        self.mm_registry_rss_start: Optional[float] = None
        self.mm_error = ""
        self.mm_port = 0

    def wants(self, section: str) -> bool:
        return self.only is None or section in self.only

    # ---- toolmesh plumbing -------------------------------------------------------------
    def tm_env(self, cert: str, name: Optional[str] = None) -> dict[str, str]:
        env = {
            "TOOLMESH_REGISTRY_URL": self.registry_url,
            "TOOLMESH_TLS_CERT": str(CERTS / f"{cert}.pem"),
            "TOOLMESH_TLS_KEY": str(CERTS / f"{cert}.key"),
            "TOOLMESH_TLS_CA": str(CERTS / "ca.pem"),
        }
        if name:
            env["BENCH_AGENT_NAME"] = name
        return env

    def start_tm_registry(self, name: str = "tm-registry", extra: tuple[str, ...] = ()) -> tuple[str, int]:
        log_path = LOGS / f"{name}.log"
        proc = self.procs.start(name, [str(TOOLMESH), "registry", "--port", "0", "--health-port", "off",
                                       "--tls-cert", str(CERTS / "registry.pem"), "--tls-key", str(CERTS / "registry.key"),
                                       "--tls-ca", str(CERTS / "ca.pem"), *extra])
        line = wait_for_line(log_path, "listening on https://")
        return line.split("listening on ")[1].strip(), proc.pid

    def launch(self, name: str, kind: str, registry: str, agent_name: str, cmd: list[str], env: dict[str, str],
               keep: bool, tool: str = "add", client: str = "tm", arguments: str = '{"a":20,"b":22}', expect: str = "42") -> dict[str, Any]:
        """Launches an agent through `toolmesh-bench coldstart` (launch → registered → callable:
        `tool` called with `arguments` answers `expect`)."""
        tls = self.client_tls(client)
        args = ["coldstart", "--kind", kind, "--registry", registry, "--name", agent_name, "--tool", tool,
                "--arguments", arguments, "--expect", expect, "--log", str(LOGS / f"{name}.log"), *tls]
        if keep:
            args.append("--keep")
        old_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            answer = bench_json([*args, "--", *cmd], timeout=120, name=f"{name}-coldstart")
        except RuntimeError as error:
            # The probe says what it saw; the agent's own log usually says why.
            raise RuntimeError(f"{kind} agent {agent_name} ({name}) did not become callable: {error}\n"
                               f"last lines of {LOGS / f'{name}.log'}:\n{log_tail(LOGS / f'{name}.log')}") from None
        finally:
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        if keep:
            self.procs.adopt(answer["pid"])
        return answer

    @staticmethod
    def client_tls(client: str) -> list[str]:
        if client == "tm":
            return ["--cert", str(CERTS / "loadgen.pem"), "--key", str(CERTS / "loadgen.key"), "--ca", str(CERTS / "ca.pem")]
        # Any MCP Mesh leaf works as a client certificate (the reference says so).
        mm = mm_certs()
        return ["--cert", mm["registry"]["cert"], "--key", mm["registry"]["key"], "--ca", mm["ca"]]

    # ---- MCP Mesh plumbing -------------------------------------------------------------
    def mm_registry_env(self) -> dict[str, str]:
        return {
            "HOME": str(MM_HOME),
            "DATABASE_URL": str(MM_HOME / ".mcp-mesh" / "mcp_mesh_registry.db"),
            "MCP_MESH_LOG_LEVEL": "INFO", "MCP_MESH_DEBUG_MODE": "false",
            "MCP_MESH_TLS_MODE": "auto", "MCP_MESH_TRUST_BACKEND": "localca,filestore", "MCP_MESH_TRUST_DIR": str(Path(mm_certs()["ca"]).parent),
            "MCP_MESH_TLS_CERT": mm_certs()["registry"]["cert"],
            "MCP_MESH_TLS_KEY": mm_certs()["registry"]["key"],
            "MCP_MESH_TLS_CA": mm_certs()["ca"],
        }

    def mm_agent_env(self, cert_name: str, agent_name: str, port: int) -> dict[str, str]:
        """The environment `meshctl start AGENT --tls-auto --env HOST=127.0.0.1 --env MCP_MESH_HTTP_HOST=127.0.0.1`
        gives an agent (read from such an agent's /proc/PID/environ), with our registry port."""
        return {
            "HOME": str(MM_HOME), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "MCP_MESH_REGISTRY_URL": f"https://localhost:{self.mm_port}", "MCP_MESH_REGISTRY_HOST": "localhost",
            "MCP_MESH_REGISTRY_PORT": str(self.mm_port),
            "MCP_MESH_DATABASE_URL": f"sqlite:///{MM_HOME / '.mcp-mesh' / 'mcp_mesh_registry.db'}",
            "MCP_MESH_LOG_LEVEL": "INFO", "MCP_MESH_DEBUG_MODE": "false",
            "HOST": "127.0.0.1", "MCP_MESH_HTTP_HOST": "127.0.0.1",
            "MCP_MESH_TLS_MODE": "auto", "MCP_MESH_TRUST_BACKEND": "localca", "MCP_MESH_TRUST_DIR": str(Path(mm_certs()["ca"]).parent),
            "MCP_MESH_TLS_CERT": mm_certs()[cert_name]["cert"],
            "MCP_MESH_TLS_KEY": mm_certs()[cert_name]["key"],
            "MCP_MESH_TLS_CA": mm_certs()["ca"],
            "BENCH_AGENT_NAME": agent_name, "BENCH_PORT": str(port),
        }

    def start_mm_registry(self) -> int:
        # A fresh registry database each run, as toolmesh's registry starts empty.
        for old in (MM_HOME / ".mcp-mesh").glob("mcp_mesh_registry.db*"):
            old.unlink()
        self.mm_port = free_port()
        proc = self.procs.start("mm-registry", [str(MM_BIN / "mcp-mesh-registry"), "--host", "localhost", "--port", str(self.mm_port)],
                                env=self.mm_registry_env(), cwd=WORK / "mm")
        wait_for_line(LOGS / "mm-registry.log", "Starting TLS listener", timeout=30)
        return proc.pid

    def mm_url(self) -> str:
        return f"https://localhost:{self.mm_port}"

    def mm_launch(self, name: str, script: str, cert_name: str, agent_name: str, keep: bool, tool: str = "add",
                  env: Optional[dict[str, str]] = None, **probe: str) -> dict[str, Any]:
        if not self.mm_registry_pid:
            raise RuntimeError(f"MCP Mesh's registry is not running: {self.mm_error or 'not started'}")
        port = free_port()
        env = {**self.mm_agent_env(cert_name, agent_name, port), **(env or {})}
        return self.launch(name, "mcpmesh", self.mm_url(), agent_name, [str(MM_VENV / "bin" / "python"), str(AGENTS / script)],
                           env, keep, tool=tool, client="mm", **probe)

    # ---- sections ----------------------------------------------------------------------
    def transport(self) -> None:
        log("transport: raw hyper+rustls echo, a bare MCP tools/call on the same stack, and agent-to-agent tools/call (Rust handler)")
        raw = self.procs.start("raw-echo", [str(BENCH_BIN), "serve-raw", "--cert", str(CERTS / "bench-b.pem"),
                                            "--key", str(CERTS / "bench-b.key"), "--ca", str(CERTS / "ca.pem")])
        raw_addr = wait_for_line(LOGS / "raw-echo.log", "READY").split("https://")[1].split("/")[0]
        agent = self.procs.start("rust-server-agent", [str(BENCH_BIN), "serve-agent", "--name", "bench-b", "--capability", "bench-add"],
                                 env={**self.tm_env("bench-b"), "TOOLMESH_HEALTH_PORT": "off"})
        wait_for_line(LOGS / "rust-server-agent.log", "READY")
        c = self.cfg
        answer = bench_json(["transport", "--cert", str(CERTS / "bench-a.pem"), "--key", str(CERTS / "bench-a.key"),
                             "--ca", str(CERTS / "ca.pem"), "--registry-url", self.registry_url, "--raw-addr", raw_addr,
                             "--capability", "bench-add", "--rounds", str(c["transport_rounds"]),
                             "--seconds", str(c["transport_seconds"]), "--raw-pid", str(raw.pid), "--agent-pid", str(agent.pid),
                             "--systems", "raw_h1,raw_h2,bare_mcp,toolmesh"],
                            timeout=900, name="transport")
        self.procs.stop(agent.pid)
        self.procs.stop(raw.pid)
        self.results["sections"]["transport"] = answer

    def handshakes(self) -> None:
        log("handshakes: full and resumed, core's rustls configurations and plain rustls")
        c = self.cfg
        answer = bench_json(["handshakes", "--cert", str(CERTS / "bench-b.pem"), "--key", str(CERTS / "bench-b.key"),
                             "--ca", str(CERTS / "ca.pem"), "--client-cert", str(CERTS / "bench-a.pem"),
                             "--client-key", str(CERTS / "bench-a.key"), "--rounds", str(c["handshake_rounds"]),
                             "--seconds", str(c["handshake_seconds"])], timeout=600, name="handshakes")
        self.results["sections"]["handshakes"] = answer

    def python_chain(self) -> None:
        log("python: client → A → B and client → B, toolmesh against MCP Mesh, alternately")
        c = self.cfg
        tm_b = self.launch("tm-py-b", "toolmesh", self.registry_url, "py-b", [str(TM_PYTHON), str(AGENTS / "tm_agent_b.py")],
                           self.tm_env("py-b", "py-b"), keep=True)
        tm_a = self.launch("tm-py-a", "toolmesh", self.registry_url, "py-a", [str(TM_PYTHON), str(AGENTS / "tm_agent_a.py")],
                           self.tm_env("py-a", "py-a"), keep=True, tool="add_via_mesh")
        mm_b = self.mm_launch("mm-py-b", "mm_agent_b.py", "agent-b", "agent-b", keep=True)
        mm_a = self.mm_launch("mm-py-a", "mm_agent_a.py", "agent-a", "agent-a", keep=True, tool="add_via_mesh")
        systems = {
            "toolmesh": {"a": tm_a, "b": tm_b, "tls": self.client_tls("tm")},
            "mcpmesh": {"a": mm_a, "b": mm_b, "tls": self.client_tls("mm")},
        }
        runs = []
        for rnd in range(c["py_rounds"]):
            for path in ("chain", "direct"):
                for conc in (32, 1):
                    order = ["toolmesh", "mcpmesh"] if rnd % 2 == 0 else ["mcpmesh", "toolmesh"]
                    for i, system in enumerate(order):
                        s = systems[system]
                        target = s["a"] if path == "chain" else s["b"]
                        tool = "add_via_mesh" if path == "chain" else "add"
                        pids = [str(s["a"]["pid"]), str(s["b"]["pid"])]
                        answer = bench_json(["load", *s["tls"], "--url", target["endpoint"], "--tool", tool,
                                             "--arguments", '{"a":20,"b":22}', "--expect", "42", "--concurrency", str(conc),
                                             "--seconds", str(c["py_seconds"]), "--warmup", str(c["py_warmup"]),
                                             "--max-calls", "200000", "--call-timeout", "30", "--pids", ",".join(pids)],
                                            timeout=c["py_seconds"] + c["py_warmup"] + 120, name=f"load-{system}-{path}-{conc}")
                        st = answer["stats"]
                        log(f"  round {rnd} {path} c={conc} {system}: {st['throughput']:.1f} calls/s, p50 {st['p50_ms']:.2f} ms, "
                            f"p99 {st['p99_ms']:.2f} ms, errors {st['errors']}, load generator {answer['loadgen_cores'] or 0:.2f} cores")
                        runs.append({"round": rnd, "path": path, "concurrency": conc, "system": system, "order": i, **answer})
        self.results["sections"]["python"] = {
            "runs": runs,
            "rss_after_load_mib": {f"{sys_}-{ab}": rss_mib(systems[sys_][ab]["pid"]) for sys_ in systems for ab in ("a", "b")},
        }
        for s in systems.values():
            for ab in ("a", "b"):
                self.procs.stop(s[ab]["pid"])

    def language_agents(self, jvm_defaults: bool = False) -> list[tuple[str, str, list[str], dict[str, str]]]:
        """(label, registry name, command, environment) of each toolmesh agent that exists; each
        holds a certificate of its registry name (the registry takes the name from it)."""
        agents = [("python", "py-mem", [str(TM_PYTHON), str(AGENTS / "tm_agent_b.py")], self.tm_env("py-mem", "py-mem"))]
        node_pkg = ROOT / "examples" / "node" / "node_modules" / "toolmesh"
        if (ROOT / "examples" / "node" / "calc.mjs").exists() and node_pkg.exists() and shutil.which("node"):
            agents.append(("node", "calc", ["node", str(ROOT / "examples" / "node" / "calc.mjs")], self.tm_env("calc")))
        else:
            self.results["missing"]["node"] = "examples/node or its toolmesh link is missing (scripts/node-env.sh)"
        classpath = WORK / "java" / "dependencies.txt"
        classes = WORK / "java" / "classes"
        if (classes / "Calc.class").exists() and classpath.exists() and shutil.which("java"):
            # The release JNI library of this run's cargo build, found on java.library.path.
            def java(options: list[str]) -> list[str]:
                return ["java", *options, f"-Djava.library.path={TARGET / 'release'}",
                        "-cp", f"{classes}:{classpath.read_text().strip()}", "Calc"]
            agents.append(("java", "calc", java(JAVA_OPTIONS), self.tm_env("calc")))
            if jvm_defaults:
                agents.append(("java, JVM defaults", "calc", java([]), self.tm_env("calc")))
        else:
            self.results["missing"]["java"] = ("the Java agent was not built: bench/run.sh builds it when javac and mvn are on PATH "
                                               "(scripts/java-env.sh installs them); see bench/.work/logs/java-build.log")
        c_bin = WORK / "c" / "squares"
        if c_bin.exists():
            agents.append(("c", "squares", [str(c_bin)], self.tm_env("squares")))
        else:
            self.results["missing"]["c"] = "examples/c/squares could not be built (make -C examples/c)"
        agents.append(("rust", "rust", [str(BENCH_BIN), "serve-agent", "--name", "rust"], self.tm_env("rust")))
        return agents

    def memory(self) -> None:
        log("memory: idle RSS after start and after load, per language; MCP Mesh beside")
        c = self.cfg
        rows = []
        for label, name, cmd, env in self.language_agents(jvm_defaults=True) + [("mcpmesh-python", "agent-b", None, None)]:
            try:
                if cmd is None:
                    started = self.mm_launch("mem-mm-b", "mm_agent_b.py", "agent-b", "agent-b", keep=True)
                    tls = self.client_tls("mm")
                else:
                    started = self.launch(f"mem-{label.replace(', ', '-').replace(' ', '-')}", "toolmesh", self.registry_url, name, cmd, env, keep=True)
                    tls = self.client_tls("tm")
            except Exception as error:
                log(f"  {label} FAILED: {error}")
                self.results.setdefault("failed", {})[f"memory-{label}"] = str(error)
                continue
            pid = started["pid"]
            time.sleep(3.0)
            idle = rss_mib(pid)
            loaded = bench_json(["load", *tls, "--url", started["endpoint"], "--tool", "add", "--arguments", '{"a":20,"b":22}',
                                 "--expect", "42", "--concurrency", "16", "--seconds", str(c["memory_load_seconds"]),
                                 "--warmup", "0.5", "--max-calls", "200000"], timeout=120, name=f"mem-load-{label.replace(', ', '-').replace(' ', '-')}")
            time.sleep(1.0)
            after = rss_mib(pid)
            log(f"  {label}: idle {idle:.1f} MiB, after {loaded['stats']['calls']} calls {after:.1f} MiB")
            rows.append({"agent": label, "pid": pid, "options": " ".join(JAVA_OPTIONS) if label == "java" else None, "rss_idle_mib": idle, "rss_after_load_mib": after,
                         "load_calls": loaded["stats"]["calls"], "load_throughput": loaded["stats"]["throughput"]})
            self.procs.stop(pid)
        self.results["sections"]["memory"] = {
            "agents": rows,
            "registries": {
                "toolmesh": {"rss_after_start_mib": self.registry_rss_start, "rss_now_mib": rss_mib(self.registry_pid)},
                "mcpmesh": {"rss_after_start_mib": self.mm_registry_rss_start,
                            "rss_now_mib": rss_mib(self.mm_registry_pid) if self.mm_registry_pid else None},
            },
        }

    def cold_start(self) -> None:
        log("cold start: launch → registered → callable, per language; MCP Mesh beside")
        trials: dict[str, list[dict[str, Any]]] = {}
        agents = self.language_agents()
        for t in range(self.cfg["cold_trials"]):
            for label, name, cmd, env in agents:
                try:
                    answer = self.launch(f"cold-{label}", "toolmesh", self.registry_url, name, cmd, env, keep=False)
                except Exception as error:
                    log(f"  {label} FAILED: {error}")
                    self.results.setdefault("failed", {})[f"coldstart-{label}"] = str(error)
                    continue
                trials.setdefault(label, []).append(answer)
                log(f"  trial {t} {label}: registered {answer['registered_ms']:.0f} ms, callable {answer['callable_ms']:.0f} ms")
            try:
                answer = self.mm_launch("cold-mm-b", "mm_agent_b.py", "agent-b", "agent-b", keep=False)
            except Exception as error:
                log(f"  mcpmesh-python FAILED: {error}")
                self.results.setdefault("failed", {})["coldstart-mcpmesh-python"] = str(error)
                continue
            trials.setdefault("mcpmesh-python", []).append(answer)
            log(f"  trial {t} mcpmesh-python: registered {answer['registered_ms']:.0f} ms, callable {answer['callable_ms']:.0f} ms")
        self.results["sections"]["coldstart"] = trials

    def registry_scale(self) -> None:
        log("registry scale: simulated agents registering and heartbeating every 5 s")
        out = []
        # (agents, pooled connections, registries): a few shared connections, and one connection
        # per agent (what real agents hold); one registry on its embedded store, or 3 replicas on
        # one PostgreSQL (scripts/pg-server.sh), the agents spread over them by the URL list.
        # BENCH_SCALES="10000x10000x3,10000x10000x1" runs those rows only (agents x connections x registries).
        override = os.environ.get("BENCH_SCALES")
        scales = [tuple(int(x) for x in row.split("x")) for row in override.split(",")] if override else self.cfg["scales"]
        for n, connections, replicas in scales:
            # One descriptor per connection in the simulator (core's client peeks at a kept
            # connection's own socket for the peer's close; it no longer holds a duplicate), one in
            # the registry, plus listeners, certificate files, real agents, runtime: a margin of
            # 512. When one simulator process cannot hold them, the row runs in several (shards),
            # each with its share.
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
            shards = 1
            while -(-connections // shards) + 512 > limit and shards < 8:
                shards += 1
            needed = -(-connections // shards) + 512
            if needed > limit or connections + 512 > limit:
                message = (f"registry row {n} agents / {connections} connections not run: it needs {max(needed, connections + 512)} "
                           f"open files per process, the limit is {soft} (hard {hard}); bench/run.sh raises the soft limit to the hard one, "
                           "so raise the hard limit (limits.conf nofile; docker --ulimit nofile=65536:65536; or as root with "
                           "CAP_SYS_RESOURCE, which run.sh uses) and rerun")
                log(f"  {message}")
                self.results.setdefault("failed", {})[f"registry-{n}-{connections}-{replicas}"] = message
                continue
            # Few connections (identities) register many simulated agents: lift the per-identity quotas.
            unlimited = ("--max-agents-per-identity", str(n), "--max-tools-per-identity", str(n), "--max-bytes-per-identity", "1GiB")
            # Every simulated connection comes from 127.0.0.1: lift the registry's connection caps
            # (1,024 in all and 256 per address by default). A pooled client opens a connection per
            # request in flight, so up to one per simulated agent, plus the real agents'.
            cap = str(max(n, connections) + 256)
            unlimited += ("--max-connections", cap, "--max-connections-per-peer", cap)
            name = f"scale-registry-{n}-{connections}" + (f"-{replicas}-replicas" if replicas > 1 else "")
            pids: list[int] = []
            postgres_dir = WORK / f"scale-postgres-{n}-{connections}"
            postgres_pid = None
            try:
                if replicas > 1:
                    shutil.rmtree(postgres_dir, ignore_errors=True)
                    store = subprocess.run(["bash", str(ROOT / "scripts" / "pg-server.sh"), "start", str(postgres_dir), str(free_port())],
                                           check=True, capture_output=True, text=True).stdout.strip()
                    postgres_pid = int((postgres_dir / "data" / "postmaster.pid").read_text().split()[0])
                    started = [self.start_tm_registry(f"{name}-{r}", (*unlimited, "--store", store)) for r in range(replicas)]
                else:
                    started = [self.start_tm_registry(name, unlimited)]
                url = ",".join(u for u, _ in started)
                pids = [p for _, p in started]
                rss_start = rss_mib(pids[0])
                common = ["registry-scale", "--registry-url", url, "--ca", str(CERTS / "ca.pem"),
                          "--ca-key", str(CERTS / "ca.key"), "--registry-pid", ",".join(map(str, pids)), "--agents", str(n),
                          "--connections", str(connections), "--window", str(self.cfg["scale_window"]),
                          "--trials", str(self.cfg["scale_trials"]), "--shards", str(shards),
                          *(["--postgres-pid", str(postgres_pid)] if postgres_pid else [])]
                others = [self.procs.start(f"registry-scale-{n}-{connections}-{replicas}-shard-{k}",
                                           [str(BENCH_BIN), *common, "--shard", str(k), "--work-dir", str(WORK / f"scale-certs-{k}")])
                          for k in range(1, shards)]
                try:
                    answer = bench_json([*common, "--shard", "0", "--work-dir", str(WORK / "scale-certs")],
                                        timeout=600, name=f"registry-scale-{n}-{connections}-{replicas}")
                finally:
                    for other in others:
                        self.procs.stop(other.pid)
                if others:
                    # The registry's CPU and RSS are shard 0's measurements (the registry serves every
                    # shard in that window); heartbeats add up, p99 is the worst shard's.
                    figures = []
                    for k in range(1, shards):
                        lines = [l for l in (LOGS / f"registry-scale-{n}-{connections}-{replicas}-shard-{k}.log").read_text().splitlines()
                                 if l.startswith("{")]
                        if not lines:
                            raise RuntimeError(f"simulator shard {k} printed no figures; see {LOGS / f'registry-scale-{n}-{connections}-{replicas}-shard-{k}.log'}")
                        figures.append(json.loads(lines[-1]))
                    answer["other_shards"] = figures
                    answer["heartbeats_per_second"] += sum(f["heartbeats_per_second"] for f in figures)
                    answer["heartbeat"]["p99_ms"] = max([answer["heartbeat"]["p99_ms"], *(f["heartbeat"]["p99_ms"] for f in figures)])
                    answer["register_failures"] += sum(f["register_failures"] for f in figures)
                    answer["heartbeat"]["errors"] += sum(f["heartbeat"]["errors"] for f in figures)
                    answer["simulator_cores"] = sum(c for c in [answer["simulator_cores"], *(f["simulator_cores"] for f in figures)] if c)
                answer["registry_rss_mib_after_start"] = rss_start
                out.append(answer)
            except Exception as error:  # one row must not lose the others
                message = f"registry row {n} agents / {connections} connections failed: {error}\nlast lines of {LOGS / f'{name}.log'}:\n{log_tail(LOGS / f'{name}.log')}"
                log(f"  {message}")
                self.results.setdefault("failed", {})[f"registry-{n}-{connections}-{replicas}"] = message
            finally:
                for pid in pids:
                    self.procs.stop(pid)
                if postgres_pid:
                    subprocess.run(["bash", str(ROOT / "scripts" / "pg-server.sh"), "stop", str(postgres_dir)], check=False)
                    shutil.rmtree(postgres_dir, ignore_errors=True)
        self.results["sections"]["registry_scale"] = out

    def policy(self) -> None:
        log("policy: decision and callee-gate cost at 1 and 100 rules; agent→agent with a 100-rule policy and without")
        c = self.cfg
        decide = bench_json(["policy-decide", "--rounds", str(c["policy_rounds"]), "--iterations", str(c["policy_iterations"])],
                            timeout=600, name="policy-decide")
        # The callee with the policy: its last rule (of 100) allows bench-a to call `add` on
        # bench-p; the default is deny, so each call gets through by that rule only.
        policy_file = WORK / "policy-100.json"
        bench_json(["policy-decide", "--write-policy", str(policy_file), "--caller", "bench-a", "--target-agent", "bench-p",
                    "--capability", "bench-add-policy"], timeout=60, name="policy-write")
        plain = self.procs.start("policy-agent-none", [str(BENCH_BIN), "serve-agent", "--name", "bench-b", "--capability", "bench-add"],
                                 env={**self.tm_env("bench-b"), "TOOLMESH_HEALTH_PORT": "off"})
        guarded = self.procs.start("policy-agent-100", [str(BENCH_BIN), "serve-agent", "--name", "bench-p", "--capability", "bench-add-policy"],
                                   env={**self.tm_env("bench-p"), "TOOLMESH_HEALTH_PORT": "off", "TOOLMESH_POLICY_FILE": str(policy_file)})
        wait_for_line(LOGS / "policy-agent-none.log", "READY")
        wait_for_line(LOGS / "policy-agent-100.log", "READY")
        transport = bench_json(["transport", "--cert", str(CERTS / "bench-a.pem"), "--key", str(CERTS / "bench-a.key"),
                                "--ca", str(CERTS / "ca.pem"), "--registry-url", self.registry_url,
                                "--capability", "bench-add", "--policy-capability", "bench-add-policy",
                                "--systems", "toolmesh,toolmesh_policy", "--rounds", str(c["policy_transport_rounds"]),
                                "--seconds", str(c["policy_transport_seconds"]), "--agent-pid", str(plain.pid),
                                "--policy-agent-pid", str(guarded.pid)], timeout=900, name="policy-transport")
        self.procs.stop(guarded.pid)
        self.procs.stop(plain.pid)
        self.results["sections"]["policy"] = {"decide": decide, "transport": transport,
                                              "callee_policy": wait_for_line(LOGS / "policy-agent-100.log", "policy:").strip()}

    def telemetry(self) -> None:
        log("telemetry: agent→agent with metrics on (the default) and off, and tracing on (the default: every span to the registry's store) and off, alternating")
        c = self.cfg
        recording = self.procs.start("telemetry-agent-on", [str(BENCH_BIN), "serve-agent", "--name", "bench-b", "--capability", "bench-add"],
                                     env={**self.tm_env("bench-b"), "TOOLMESH_HEALTH_PORT": "off"})
        quiet = self.procs.start("telemetry-agent-off", [str(BENCH_BIN), "serve-agent", "--name", "bench-q", "--capability", "bench-add-quiet"],
                                 env={**self.tm_env("bench-q"), "TOOLMESH_HEALTH_PORT": "off", "TOOLMESH_METRICS": "off"})
        untraced = self.procs.start("telemetry-agent-untraced", [str(BENCH_BIN), "serve-agent", "--name", "bench-u", "--capability", "bench-add-untraced"],
                                    env={**self.tm_env("bench-u"), "TOOLMESH_HEALTH_PORT": "off", "OTEL_TRACES_EXPORTER": "none"})
        wait_for_line(LOGS / "telemetry-agent-on.log", "READY")
        wait_for_line(LOGS / "telemetry-agent-off.log", "READY")
        wait_for_line(LOGS / "telemetry-agent-untraced.log", "READY")
        transport = bench_json(["transport", "--cert", str(CERTS / "bench-a.pem"), "--key", str(CERTS / "bench-a.key"),
                                "--ca", str(CERTS / "ca.pem"), "--registry-url", self.registry_url,
                                "--capability", "bench-add", "--metrics-off-capability", "bench-add-quiet",
                                "--traces-off-capability", "bench-add-untraced",
                                "--systems", "toolmesh,toolmesh_metrics_off,toolmesh_traces_off", "--rounds", str(c["telemetry_rounds"]),
                                "--seconds", str(c["telemetry_seconds"]), "--agent-pid", str(recording.pid),
                                "--metrics-off-agent-pid", str(quiet.pid), "--traces-off-agent-pid", str(untraced.pid)],
                               timeout=900, name="telemetry-transport")
        self.procs.stop(untraced.pid)
        self.procs.stop(quiet.pid)
        self.procs.stop(recording.pid)
        self.results["sections"]["telemetry"] = {"transport": transport, "trace_store": self.trace_store()}

    def long_calls(self) -> None:
        log("long calls: progress notifications per second and cancel-to-stop time, three hops against one, alternating")
        c = self.cfg
        self.results["sections"]["long_calls"] = bench_json(
            ["long-calls", "--certs", str(CERTS), "--registry-url", self.registry_url, "--rounds", str(c["long_rounds"]),
             "--notifications", str(c["long_notifications"]), "--cancels", str(c["long_cancels"])], timeout=900, name="long-calls")

    def long_calls_vs_mcpmesh(self) -> None:
        log("long calls vs MCP Mesh: progress through client → a → b → c and client → c, Python agents, alternately")
        c = self.cfg
        n = c["stream_notifications"]
        probe = {"arguments": '{"n":1}'}
        cancel_files = {"toolmesh": WORK / "stream-cancel-toolmesh", "mcpmesh": WORK / "stream-cancel-mcpmesh"}
        systems: dict[str, dict[str, Any]] = {}
        try:
            tm = {}
            for hop in ("c", "b", "a"):  # each callable (through its dependencies) before the next starts
                env = {**self.tm_env(f"py-s{hop}", f"py-s{hop}"), "BENCH_CANCEL_FILE": str(cancel_files["toolmesh"])}
                tm[hop] = self.launch(f"tm-stream-{hop}", "toolmesh", self.registry_url, f"py-s{hop}",
                                      [str(TM_PYTHON), str(AGENTS / f"tm_stream_{hop}.py")], env, keep=True,
                                      tool=f"stream_{hop}", expect="1", **probe)
            systems["toolmesh"] = {"agents": tm, "tls": self.client_tls("tm"), "expect": str(n)}
            # MCP Mesh ties no agent name to a certificate (any of its leaves will do): b and c share agent-b's.
            mm_env = {"BENCH_CANCEL_FILE": str(cancel_files["mcpmesh"])}
            mm = {hop: self.mm_launch(f"mm-stream-{hop}", f"mm_stream_{hop}.py", "agent-a" if hop == "a" else "agent-b",
                                      f"stream-{hop}", keep=True, tool=f"stream_{hop}", env=mm_env, expect=".", **probe)
                  for hop in ("c", "b", "a")}
            systems["mcpmesh"] = {"agents": mm, "tls": self.client_tls("mm"), "expect": "." * n}

            def stream_calls(system: str, path: str, what: list[str]) -> dict[str, Any]:
                s, hop = systems[system], "a" if path == "chain" else "c"
                return bench_json(["stream-calls", *s["tls"], "--url", s["agents"][hop]["endpoint"], "--tool", f"stream_{hop}",
                                   "--n", str(n), "--expect", s["expect"], "--call-timeout", "120", "--hang", str(c["stream_hang"]), *what],
                                  timeout=900, name=f"stream-{system}-{path}")

            runs = []
            for rnd in range(c["stream_rounds"]):
                order = ["toolmesh", "mcpmesh"] if rnd % 2 == 0 else ["mcpmesh", "toolmesh"]
                for path in (("direct", "chain") if rnd % 2 == 0 else ("chain", "direct")):
                    for i, system in enumerate(order):
                        answer = stream_calls(system, path, ["--calls", str(c["stream_calls"]), "--warmup", "1"])
                        calls = answer["calls"]
                        log(f"  round {rnd} {path} {system}: {med([x['per_second'] for x in calls]):.0f} notifications/s, "
                            f"first after {med([x['first_ms'] for x in calls]):.1f} ms, received {[x['notifications'] for x in calls]} of {n}, "
                            f"errors {[x['error'] for x in calls if x['error']]}")
                        runs.append({"round": rnd, "path": path, "system": system, "order": i, **answer})
            # Cancellations last: a last hop that never sees its cancellation keeps its call (and its
            # hops theirs) open for its whole wait, which must not weigh on the progress figures.
            cancels = []
            for path in ("direct", "chain"):
                for system in systems:
                    answer = stream_calls(system, path, ["--calls", "0", "--warmup", "0", "--cancels", str(c["stream_cancels"]),
                                                         "--cancel-file", str(cancel_files[system])])
                    log(f"  cancel {path} {system}: {[x['cancel_ms'] for x in answer['cancels']]} ms {[x['error'] for x in answer['cancels'] if x['error']]}")
                    cancels.append({"path": path, "system": system, "cancels": answer["cancels"]})
            self.results["sections"]["long_calls_vs_mcpmesh"] = {"notifications_per_call": n, "runs": runs, "cancels": cancels,
                                                                 "hang_seconds": c["stream_hang"]}
        finally:
            for s in systems.values():
                for started in s["agents"].values():
                    self.procs.stop(started["pid"])

    def trace_store(self) -> dict[str, Any]:
        """What the registry's trace store kept after the run (the traced calls' spans reached it)."""
        out = subprocess.run([str(TOOLMESH), "trace", "--last", "1000", "--json", "--registry", self.registry_url,
                              "--tls-cert", str(CERTS / "operator.pem"), "--tls-key", str(CERTS / "operator.key"),
                              "--tls-ca", str(CERTS / "ca.pem")], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            return {"error": out.stderr.strip()}
        traces = json.loads(out.stdout)["traces"]
        return {"traces_listed": len(traces), "spans_in_listed": sum(t["span_count"] for t in traces)}

    # ---- the run -----------------------------------------------------------------------
    def go(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        noise = Noise()
        noise.start()
        started = time.time()
        self.results["started"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.results["mode"] = self.mode
        self.results["machine"] = {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
                                   "loadavg_at_start": loadavg()}
        self.results["git"] = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                                             text=True).stdout.strip()
        try:
            try:
                self.registry_url, self.registry_pid = self.start_tm_registry()
            except Exception as error:
                # Every section but handshakes, policy's decision bench and registry (its own registries) needs it.
                registry_error = f"toolmesh's registry did not start: {error}"
                log(registry_error)
                self.results.setdefault("failed", {})["toolmesh-registry"] = registry_error
            time.sleep(0.5)
            self.registry_rss_start = rss_mib(self.registry_pid) if self.registry_pid else None
            if any(self.wants(s) for s in MM_SECTIONS):
                try:
                    self.mm_registry_pid = self.start_mm_registry()
                    time.sleep(0.5)
                    self.mm_registry_rss_start = rss_mib(self.mm_registry_pid)
                except Exception as error:
                    self.mm_error = f"{error}\nlast lines of {LOGS / 'mm-registry.log'}:\n{log_tail(LOGS / 'mm-registry.log')}"
                    log(f"MCP Mesh's registry did not start (its rows will fail): {self.mm_error}")
                    self.results.setdefault("failed", {})["mcpmesh-registry"] = self.mm_error
            for section in SECTIONS:
                if not self.wants(section):
                    continue
                t = time.time()
                try:
                    {"transport": self.transport, "handshakes": self.handshakes, "python": self.python_chain,
                     "memory": self.memory, "coldstart": self.cold_start, "registry": self.registry_scale,
                     "policy": self.policy, "telemetry": self.telemetry, "long_calls": self.long_calls,
                     "long_calls_vs_mcpmesh": self.long_calls_vs_mcpmesh}[section]()
                except Exception as error:  # one broken section must not lose the others
                    log(f"{section} FAILED: {error}")
                    self.results.setdefault("failed", {})[section] = str(error)
                self.results.setdefault("section_seconds", {})[section] = round(time.time() - t, 1)
        finally:
            self.procs.stop_all()
            noise.stop.set()
            self.results["noise"] = noise.summary()
            self.results["seconds"] = round(time.time() - started, 1)
        RESULTS.mkdir(parents=True, exist_ok=True)
        suffix = "" if self.mode == "full" and self.only is None else f"-{self.mode}"
        (RESULTS / f"latest{suffix}.json").write_text(json.dumps(self.results, indent=1, sort_keys=True) + "\n")
        import report  # bench/report.py

        markdown = report.render(self.results)
        (RESULTS / f"latest{suffix}.md").write_text(markdown)
        print(markdown)
        log(f"wrote {RESULTS / f'latest{suffix}.md'} and .json in {self.results['seconds']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (results in latest-quick.*)")
    parser.add_argument("--only", help=f"comma-separated sections: {','.join(SECTIONS)}; "
                        f"mcp-mesh stands for every section with MCP Mesh rows ({','.join(sorted(MM_SECTIONS))})")
    args = parser.parse_args()
    sys.path.insert(0, str(BENCH))
    only = None
    if args.only:
        only = set()
        for name in args.only.split(","):
            if name in ALIASES:
                only |= ALIASES[name]
            elif name in SECTIONS:
                only.add(name)
            else:
                parser.error(f"unknown section '{name}' in --only; sections: {','.join(SECTIONS)}; groups: "
                             + ", ".join(f"{k} ({','.join(sorted(v))})" for k, v in ALIASES.items()))
    Run("quick" if args.quick else "full", only).go()


if __name__ == "__main__":
    main()
