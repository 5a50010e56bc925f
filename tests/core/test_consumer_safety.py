"""A consumer that must stop: its lease taken over, its start failing, a corrupt record
in its way. Each leaves the group to exactly one live consumer and loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from core import (
    ChecksumMismatchError,
    Event,
    EventBus,
    GroupLockedError,
    MemoryEventStore,
    StoreUnavailableError,
)
from core.store import Lease, StoredEvent


@dataclass(frozen=True, slots=True)
class Job(Event, type_name="tests.core.consumer_safety.Job"):
    n: int = 0


class CorruptAt(MemoryEventStore):
    """A memory store whose reads fail at one seq as a flipped bit would."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.bad = bad

    async def read(self, **kwargs: Any) -> AsyncIterator[StoredEvent]:  # type: ignore[override]
        async for record in super().read(**kwargs):
            if record.seq == self.bad:
                raise ChecksumMismatchError(record.seq, record.type_name)
            yield record


class FailingRead(MemoryEventStore):
    """A memory store that cannot be read (a disk gone away)."""

    async def read(self, **kwargs: Any) -> AsyncIterator[StoredEvent]:  # type: ignore[override]
        raise StoreUnavailableError("memory://", "disk gone")
        yield  # pragma: no cover - makes this an async generator


async def _fill(store: MemoryEventStore, count: int) -> None:
    await store.append([Job(n) for n in range(1, count + 1)])


class TestLeaseLost:
    async def test_a_bus_whose_lease_was_taken_stops_consuming(self) -> None:
        """When the heartbeat finds another holder, the bus reports it, stops moving
        the checkpoint, refuses to catch up, and publishes append without dispatch."""
        store = MemoryEventStore()
        handled: list[int] = []

        async def work(event: Job) -> None:
            handled.append(event.n)

        bus = EventBus(store, holder="A", commit_interval=0)
        bus.subscribe(Job, name="work")(work)
        await bus.start()
        await bus.publish_async(Job(1))
        await bus.drain()
        # A stalled past its TTL and B took the group over.
        store._leases[bus.group] = Lease(bus.group, "B", 4_102_444_800.0)
        await bus._consumer._heartbeat_once()  # type: ignore[union-attr]
        ((where, exc),) = bus.internal_errors
        assert "lease of group 'default' lost" in where
        assert isinstance(exc, GroupLockedError)
        result = await bus.publish_async(Job(2))
        assert (result.seq, len(result)) == (2, 0)  # appended, not dispatched by A
        assert handled == [1]
        with pytest.raises(GroupLockedError):
            await bus.catch_up()
        await bus.aclose()
        assert (await store.groups())[0].holder == "B"  # A released nothing of B's


class TestFailedStart:
    async def test_a_start_that_fails_releases_the_lease(self) -> None:
        """A consumer whose catch-up fails closes itself and frees the group, so the
        next consumer can start at once."""
        store = FailingRead()
        await _fill(store, 1)
        bus = EventBus(store, holder="A")
        with pytest.raises(StoreUnavailableError):
            await bus.start()
        assert bus.closed
        assert all(g.holder is None for g in await store.groups())
        await store.acquire_lease(bus.group, "B", 10.0)  # not GroupLockedError


class TestCorruptRecord:
    async def test_catch_up_dead_letters_a_corrupt_record_and_goes_on(self) -> None:
        """A record failing its checksum is a dead letter naming its seq; the events
        after it are dispatched and the checkpoint passes it."""
        store = CorruptAt(bad=2)
        await _fill(store, 4)
        handled: list[int] = []

        async def work(event: Job) -> None:
            handled.append(event.n)

        async with EventBus(store, commit_interval=0) as bus:
            bus.subscribe(Job, name="work")(work)
            await bus.catch_up()
            await bus.drain()
        assert sorted(handled) == [1, 3, 4]
        (letter,) = await store.list_dead_letters()
        assert (letter.seq, letter.handler, letter.reason.value) == (2, "<decode>", "decode_error")
        assert "ChecksumMismatchError" in letter.error_type
        assert await store.load_checkpoint(bus.group) == 4


class SlowLease(MemoryEventStore):
    """A memory store whose lease is granted only when the test opens a gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.asked = asyncio.Event()

    async def acquire_lease(self, group: str, holder: str, ttl: float) -> Lease:
        self.asked.set()
        await self.gate.wait()
        return await super().acquire_lease(group, holder, ttl)


class TestCancelledStart:
    async def test_a_start_cancelled_while_taking_the_lease_gives_it_back(self) -> None:
        """Cancelled while the store is still granting the lease, start leaves no
        lease behind once the store has granted it."""
        store = SlowLease()
        bus = EventBus(store, holder="A")
        starting = asyncio.ensure_future(bus.start())
        await store.asked.wait()
        starting.cancel()
        store.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await starting
        await bus.drain()  # the release runs as one of the bus's tasks
        assert all(g.holder is None for g in await store.groups())
        await store.acquire_lease(bus.group, "B", 10.0)  # not GroupLockedError


class TestCloseTimeout:
    async def test_aclose_waits_close_timeout_by_default(self) -> None:
        """Without a timeout argument, aclose waits the bus's close_timeout for a
        handler still running, then cancels it (its outcome says cancelled)."""
        never = asyncio.Event()

        async def stuck(event: Job) -> None:
            await never.wait()

        async def quick(event: Job) -> None:
            pass

        bus = EventBus(close_timeout=0.01)
        bus.subscribe(Job, name="stuck")(stuck)
        bus.subscribe(Job, name="quick")(quick)
        publish = asyncio.ensure_future(bus.publish_async(Job()))
        for _ in range(5):
            await asyncio.sleep(0)
        await bus.aclose()
        result = await publish
        assert [o.status.value for o in result] == ["cancelled", "ok"]
