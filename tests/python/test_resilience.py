"""The registry is not in the data path; providers come and go without losing calls."""

from __future__ import annotations

import signal
import threading
import time

from meshkit import Mesh, call_tool, wait_until


def test_calls_survive_a_registry_outage_and_agents_return_after_a_restart(mesh: Mesh) -> None:
    registry = mesh.start_registry()
    mesh.start_agent("back.py", "back", registry)
    # front beats more often than the registry asks, so it usually registers again before back:
    # for a moment the restarted registry knows no provider of `add`, and front must not lose it.
    front = mesh.start_agent("front.py", "front", registry, env={"TOOLMESH_HEARTBEAT_INTERVAL_MS": "100"})
    mesh.wait_listed(registry, {"front", "back"})
    context = mesh.certs.client_context()
    wait_until(lambda: call_tool(front.endpoint, context, "sum3", {"a": 1, "b": 1, "c": 1}) == 3, 15, "the chain")

    # Calls run back to back from before the registry is killed until a second after both agents
    # are listed by its successor.
    answered: list[float] = []
    failures: list[tuple[float, BaseException]] = []
    done = threading.Event()

    def caller() -> None:
        deadline = time.monotonic() + 60
        n = 0
        while not done.is_set() and time.monotonic() < deadline:
            try:
                assert call_tool(front.endpoint, context, "sum3", {"a": n, "b": 1, "c": 1}) == n + 2
                answered.append(time.monotonic())
            except BaseException as error:  # collected: an assert in a thread would be lost
                failures.append((time.monotonic(), error))
            n += 1

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        time.sleep(0.3)
        killed = time.monotonic()
        registry.process.stop(signal.SIGKILL)
        # Several heartbeat intervals without a registry: the cached topology keeps serving.
        time.sleep(2)
        restarting = time.monotonic()
        restarted = mesh.start_registry(port=registry.port)
        assert restarted.url == registry.url
        mesh.wait_listed(restarted, {"front", "back"}, timeout=20)
        time.sleep(1)
    finally:
        done.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert failures == [], f"{len(failures)} calls failed, the first {failures[0][0] - killed:.2f}s after the kill: {failures[0][1]}"
    assert sum(1 for t in answered if killed < t < restarting) > 5  # served from the cache meanwhile
    assert sum(1 for t in answered if t > restarting) > 5  # and through the re-registration
    assert call_tool(front.endpoint, context, "sum3", {"a": 2, "b": 2, "c": 2}) == 6


def test_two_providers_share_calls_and_one_leaving_loses_none(mesh: Mesh) -> None:
    registry = mesh.start_registry()
    mesh.start_agent("back.py", "back", registry)
    leaving = mesh.start_agent("back.py", "back2", registry)
    front = mesh.start_agent("front.py", "front", registry)
    mesh.wait_listed(registry, {"front", "back", "back2"})
    context = mesh.certs.client_context()

    answered: set[str] = set()

    def both_answer() -> bool:
        answered.add(call_tool(front.endpoint, context, "relay_who", {}))
        return answered == {"back", "back2"}

    wait_until(both_answer, 15, "both providers to receive calls", interval=0.02)

    # Calls run back to back from before back2 is stopped (SIGTERM) until a second after it exited.
    results: list[str] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def caller() -> None:
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            try:
                results.append(call_tool(front.endpoint, context, "relay_who", {}))
            except BaseException as error:  # collected: an assert in a thread would be lost
                failures.append(error)

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        time.sleep(1)
        assert leaving.process.stop(signal.SIGTERM) == 0, leaving.process.output()
        time.sleep(1)
    finally:
        done.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert failures == []
    assert len(results) > 20 and "back2" in results  # back2 took calls until it left
    assert results[-1] == "back"  # after the drain only back answers
    assert "Traceback" not in leaving.process.output()
    listed = {agent["name"] for agent in mesh.list_agents(registry)}
    assert "back2" not in listed  # it deregistered on the way out
