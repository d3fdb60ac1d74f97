"""Fixtures of the cross-process suite: certificates from the CLI, a registry process, and a
running chain front -> back of agent processes shared by the tests that only call it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import pytest
from meshkit import Agent, Certs, Mesh, Registry, certs, mesh, registry, session_mesh  # noqa: F401  (fixtures)

# Headers the agents of the chain propagate (TOOLMESH_PROPAGATE_HEADERS).
PROPAGATED = "x-tenant"


@dataclass
class Chain:
    registry: Registry
    front: Agent
    back: Agent


@pytest.fixture(scope="session")
def chain(session_mesh: Mesh, registry: Registry) -> Iterator[Chain]:
    env = {"TOOLMESH_PROPAGATE_HEADERS": PROPAGATED}
    back = session_mesh.start_agent("back.py", "back", registry, env)
    front = session_mesh.start_agent("front.py", "front", registry, env)
    session_mesh.wait_listed(registry, {"front", "back"})
    yield Chain(registry, front, back)
