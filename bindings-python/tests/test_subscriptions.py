"""Resource subscriptions of a Python agent: ``Agent.notify_resource_updated`` reaches the pinned
official MCP client over mTLS in both protocol eras (a legacy session's ``resources/subscribe``
and its GET stream; a modern ``subscriptions/listen``), and a URI the agent does not serve is
refused."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import httpx2
import mcp.types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.subscriptions import ResourceUpdated
from meshkit import Certs

import toolmesh

WATCHED = "test://watched"


def watched_agent(certs: Certs) -> toolmesh.Agent:
    agent = toolmesh.Agent("watcher", **certs.options("alpha"))
    agent.add_resource(WATCHED, name="watched", text="v1", mime_type="text/plain")
    return agent


def http(certs: Certs) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(verify=certs.client_context(), timeout=httpx2.Timeout(10, read=30))


async def announce_until_delivered(agent: toolmesh.Agent, uri: str, deadline_s: float = 10) -> None:
    """Announces `uri` until a subscription stream took it: a legacy client opens its GET stream
    in the background, after `resources/subscribe` may already have been answered."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while agent.notify_resource_updated(uri) == 0:
        assert loop.time() < end, f"no subscription stream took {uri} within {deadline_s} s"
        await asyncio.sleep(0.01)


def test_the_official_legacy_client_receives_updates_on_its_session_stream(certs: Certs) -> None:
    agent = watched_agent(certs)
    updates: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.put_nowait(message.params.uri)

    async def scenario() -> None:
        async with agent, http(certs) as client_http:
            transport = streamable_http_client(agent.endpoint, http_client=client_http)
            async with Client(transport, mode="legacy", message_handler=on_message) as client:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # subscribe_resource is deprecated for modern servers
                    await client.subscribe_resource(WATCHED)
                    await announce_until_delivered(agent, WATCHED)
                    assert await asyncio.wait_for(updates.get(), 10) == WATCHED
                    await client.unsubscribe_resource(WATCHED)
                assert agent.notify_resource_updated(WATCHED) == 0, "unsubscribed: no stream takes it"

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_the_official_modern_client_receives_updates_on_its_listen_stream(certs: Certs) -> None:
    agent = watched_agent(certs)

    async def scenario() -> None:
        async with agent, http(certs) as client_http:
            transport = streamable_http_client(agent.endpoint, http_client=client_http)
            async with Client(transport, mode="2026-07-28") as client:
                async with client.listen(resource_subscriptions=[WATCHED, "test://unknown"]) as subscription:
                    assert subscription.honored.resource_subscriptions == [WATCHED]
                    # Entering waited for the acknowledgement: the subscription is in place.
                    assert agent.notify_resource_updated(WATCHED) == 1
                    event = await asyncio.wait_for(subscription.__anext__(), 10)
                    assert event == ResourceUpdated(uri=WATCHED)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_uri_the_agent_does_not_serve_is_refused(certs: Certs) -> None:
    agent = watched_agent(certs)

    async def scenario() -> None:
        async with agent:
            with pytest.raises(toolmesh.ConfigError, match="'test://nope' is not a resource this agent serves"):
                agent.notify_resource_updated("test://nope")

    asyncio.run(asyncio.wait_for(scenario(), 60))
