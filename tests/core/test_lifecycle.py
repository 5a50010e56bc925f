"""Lifecycle: async with, drain, aclose and closed buses, the synchronous publish entry,
and two buses in one process sharing nothing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from core import BusClosedError, Event, EventBus, MemoryEventStore, SyncPublishInLoopError


@dataclass(frozen=True, slots=True)
class Beat(Event, type_name="tests.core.lifecycle.Beat"):
    n: int = 0


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def _quick(event: Beat) -> None:
    return None


class TestAsyncLifecycle:
    async def test_async_with_opens_and_closes(self) -> None:
        """async with yields the bus and closes it on exit."""
        async with EventBus() as bus:
            assert not bus.closed
        assert bus.closed

    async def test_drain_waits_for_in_flight_work(self) -> None:
        """drain(timeout) is False while a handler runs and True once it finished."""
        gate = asyncio.Event()

        async def slow(event: Beat) -> None:
            await gate.wait()

        async with EventBus() as bus:
            bus.subscribe(Beat, name="slow")(slow)
            publish = asyncio.ensure_future(bus.publish_async(Beat()))
            await _settle()
            assert bus.statistics().in_flight == 1
            assert await bus.drain(timeout=0.01) is False
            gate.set()
            assert await bus.drain() is True
            assert publish.done()
            assert (await publish).ok

    async def test_drain_of_an_idle_bus_is_true_at_once(self) -> None:
        """Nothing in flight: drain() is True, also with timeout=0 (which used to time
        out the wait before it started) and after work has finished."""
        async with EventBus() as bus:
            assert await bus.drain(timeout=0) is True
            bus.subscribe(Beat, name="quick")(_quick)
            assert (await bus.publish_async(Beat())).ok
            assert await bus.drain(timeout=0) is True
            assert await bus.drain() is True

    @pytest.mark.parametrize("handlers", [pytest.param(1, id="one"), pytest.param(2, id="two")])
    async def test_aclose_drains_first(self, handlers: int) -> None:
        """aclose waits for running handlers to finish before it returns."""
        gate = asyncio.Event()
        finished: list[int] = []

        async def slow(event: Beat) -> None:
            await gate.wait()
            finished.append(event.n)

        bus = EventBus()
        for i in range(handlers):
            bus.subscribe(Beat, name=f"slow{i}")(slow)
        publish = asyncio.ensure_future(bus.publish_async(Beat(7)))
        await _settle()
        closing = asyncio.ensure_future(bus.aclose())
        await _settle()
        assert not closing.done()
        gate.set()
        await closing
        assert finished == [7] * handlers
        assert (await publish).ok

    @pytest.mark.parametrize(
        "store", [pytest.param(False, id="no-store"), pytest.param(True, id="memory-store")]
    )
    async def test_publish_after_aclose_is_refused(self, store: bool) -> None:
        """Publishing on a closed bus raises BusClosedError with a clear message."""
        bus = EventBus(MemoryEventStore() if store else None)
        bus.subscribe(Beat, name="h")(lambda e: None)
        await bus.publish_async(Beat())
        await bus.aclose()
        with pytest.raises(BusClosedError, match="create a new EventBus"):
            await bus.publish_async(Beat())
        with pytest.raises(BusClosedError):
            await bus.start()
        await bus.aclose()  # closing again is harmless


class TestSyncPublish:
    async def test_sync_publish_inside_a_loop_names_publish_async(self) -> None:
        """bus.publish() in a running loop raises SyncPublishInLoopError naming publish_async."""
        async with EventBus() as bus:
            with pytest.raises(SyncPublishInLoopError, match="publish_async"):
                bus.publish(Beat())

    def test_sync_publish_outside_a_loop_works(self) -> None:
        """bus.publish() in plain synchronous code dispatches and returns the result."""
        seen: list[int] = []

        async def handler(event: Beat) -> None:
            seen.append(event.n)

        bus = EventBus()
        bus.subscribe(Beat, name="h")(handler)
        try:
            first = bus.publish(Beat(1))
            second = bus.publish(Beat(2))
        finally:
            bus.close()
        assert first.ok
        assert second.ok
        assert seen == [1, 2]
        assert bus.closed


class TestIsolation:
    async def test_two_buses_share_nothing(self) -> None:
        """Subscriptions, metrics, dead letters, statistics and closing are per bus."""
        seen: list[str] = []

        async def failing(event: Beat) -> None:
            seen.append("a")
            raise ValueError("a fails")

        a, b = EventBus(), EventBus()
        a.subscribe(Beat, name="h")(failing)
        b.subscribe(Beat, name="h")(lambda e: seen.append("b"))  # same name, other bus
        await a.publish_async(Beat())
        assert seen == ["a"]
        assert await b.dead_letters.count_dead_letters() == 0
        assert await a.dead_letters.count_dead_letters() == 1
        assert b.statistics().published == 0
        assert b.metrics.snapshot()["handlers"] == {}
        await a.aclose()
        assert (await b.publish_async(Beat())).ok
        assert seen == ["a", "b"]
        await b.aclose()


class _SlowCommitStore(MemoryEventStore):
    """A memory store whose commit writes first and then waits for a gate: the
    moment a cancelled commit would have already written its dead letters."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.writing = asyncio.Event()

    async def commit_progress(
        self, group: str, seq: int, dead_letters: object = (), **kw: Any
    ) -> None:
        await super().commit_progress(group, seq, dead_letters, **kw)  # type: ignore[arg-type]
        if dead_letters:
            self.writing.set()
            await self.gate.wait()


class TestCommitOnClose:
    async def test_aclose_waits_for_the_commit_in_flight(self) -> None:
        """aclose during a checkpoint commit waits for it: its dead letter is stored
        once, not once by the interrupted commit and again by the final one."""
        store = _SlowCommitStore()

        async def broken(event: Beat) -> None:
            raise ValueError("no")

        bus = EventBus(store=store, commit_interval=0)
        bus.subscribe(Beat, name="broken")(broken)
        await bus.publish_async(Beat(n=1))
        await store.writing.wait()
        closing = asyncio.ensure_future(bus.aclose())
        await _settle()
        assert not closing.done()  # held by the commit in flight
        store.gate.set()
        await closing
        letters = await store.list_dead_letters()
        assert [(d.handler, d.seq) for d in letters] == [("broken", 1)]
        assert await store.load_checkpoint(bus.group) == 1


class TestCancelledByClose:
    @pytest.mark.parametrize("store", [False, True], ids=["no-store", "memory-store"])
    async def test_handler_cut_short_by_aclose_is_cancelled_not_raised(self, store: bool) -> None:
        """aclose past its timeout cancels a handler still running: the publisher gets
        a CANCELLED outcome for it (not a CancelledError of its own), its sibling's
        outcome stands, and with a store the checkpoint stays before that event."""
        never = asyncio.Event()
        memory = MemoryEventStore() if store else None

        async def stuck(event: Beat) -> None:
            await never.wait()

        async def quick(event: Beat) -> None:
            pass

        bus = EventBus(store=memory, commit_interval=0)
        bus.subscribe(Beat, name="stuck")(stuck)
        bus.subscribe(Beat, name="quick")(quick)
        publish = asyncio.ensure_future(bus.publish_async(Beat(n=7)))
        await _settle()
        await bus.aclose(timeout=0.01)
        result = await publish
        assert [(o.handler, o.status.value) for o in result] == [
            ("stuck", "cancelled"),
            ("quick", "ok"),
        ]
        if memory is not None:
            assert await memory.load_checkpoint(bus.group) == 0
