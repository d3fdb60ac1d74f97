"""The README demo: the example agents, started as a user would, answer through the CLI."""

from __future__ import annotations

import json

from meshkit import ROOT, Mesh, wait_until

EXAMPLES = ROOT / "examples" / "python"


def test_stats_calls_calc_through_the_mesh(mesh: Mesh) -> None:
    registry = mesh.start_registry()
    mesh.start_agent(str(EXAMPLES / "calc.py"), "calc", registry)
    mesh.start_agent(str(EXAMPLES / "stats.py"), "stats", registry)
    listed = mesh.wait_listed(registry, {"calc", "stats"})
    tools = {tool["name"]: tool for agent in listed for tool in agent["tools"]}
    assert tools["add"]["tags"] == ["math"]
    assert tools["mean3"]["description"] == "The mean of three numbers."
    assert tools["mean3"]["dependencies"] == [{"capability": "sum3", "version": ">=1.0"}]

    def mean3() -> float:
        done = mesh.cli("call", "mean3", '{"a": 1, "b": 2, "c": 6}', registry=registry)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert wait_until(mean3, timeout=15, what="mean3 through stats -> calc") == 3.0
