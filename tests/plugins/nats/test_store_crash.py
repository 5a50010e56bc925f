"""The JetStream store when its server dies: a clear store error within the store's
timeout (never a hang on an acknowledgement that cannot come), and after a restart
every acknowledged event is there. Each test kills a server of its own (``kill -9``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from nats_servers import NatsServer

from core.errors import StoreUnavailableError
from core.events import Event
from core.store import AppendResult
from plugins.nats import JetStreamEventStore

BOUND = 30  # seconds: a safety net against a hang, never a timed assertion


@dataclass(frozen=True, slots=True)
class Tick(Event, type_name="nats.crash.tick"):
    n: int


async def test_kill_during_append_fails_clearly_and_keeps_acked_events(
    nats_servers: list[NatsServer],
) -> None:
    """A publisher appending in a loop when the server is killed gets one
    StoreUnavailableError (no hang); after a restart every event whose append returned
    is stored, under the sequence number it was given."""
    server = nats_servers[0]
    url = f"{server.url}?ns=crash&timeout=2"
    store = await asyncio.wait_for(JetStreamEventStore.open(url), BOUND)
    acked: list[AppendResult] = []
    enough = asyncio.Event()

    async def publish_forever() -> None:
        n = 0
        while True:
            batch = [Tick(n + i) for i in range(20)]
            n += len(batch)
            acked.extend(await store.append(batch))
            if len(acked) >= 400:
                enough.set()

    task = asyncio.create_task(publish_forever())
    try:
        await asyncio.wait_for(enough.wait(), BOUND)
        await asyncio.to_thread(server.kill)
        with pytest.raises(StoreUnavailableError) as info:
            await asyncio.wait_for(task, BOUND)
    finally:
        task.cancel()
        await store.aclose()
    assert "appending events" in str(info.value)
    assert "\n" not in str(info.value)

    if server.process is not None and server.process.stderr is not None:
        server.process.stderr.close()  # kill() leaves the dead process's pipe open
    await asyncio.to_thread(server.start)
    reopened = await asyncio.wait_for(JetStreamEventStore.open(url), BOUND)
    try:
        stored = {r.seq: r.event_id async for r in reopened.read()}
    finally:
        await reopened.aclose()
    missing = [r for r in acked if stored.get(r.seq) != r.event_id]
    assert missing == []
    assert len(acked) >= 400


async def test_calls_on_a_stopped_server_fail_within_the_timeout(
    nats_servers: list[NatsServer],
) -> None:
    """With the server gone, reads and appends of an open store each end in a
    StoreUnavailableError (the client keeps reconnecting, every wait is bounded)."""
    server = nats_servers[0]
    store = await asyncio.wait_for(
        JetStreamEventStore.open(f"{server.url}?ns=gone&timeout=1"), BOUND
    )
    try:
        await store.append([Tick(1)])
        await asyncio.to_thread(server.kill)
        with pytest.raises(StoreUnavailableError, match="appending events"):
            await asyncio.wait_for(store.append([Tick(2)]), BOUND)
        with pytest.raises(StoreUnavailableError, match="reading stream"):
            await asyncio.wait_for(store.last_seq(), BOUND)
        with pytest.raises(StoreUnavailableError):
            await asyncio.wait_for(store.list_dead_letters(), BOUND)
    finally:
        await asyncio.wait_for(store.aclose(), BOUND)
