"""The consumer's promises: redeliveries say so, a consumer that lost its lease stops
dispatching at the next record, its stale commit is refused, and duplicates after a
crash stay within the in-flight window."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from core import (
    Event,
    EventBus,
    GroupLockedError,
    HandlerContext,
    MemoryEventStore,
    current_dispatch,
)
from core.store import Lease
from core.testing import FakeClock


@dataclass(frozen=True, slots=True)
class Job(Event, type_name="tests.core.delivery.Job"):
    n: int = 0


class WallClock:
    """The store's wall clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def fill(store: MemoryEventStore, count: int) -> None:
    await store.append([Job(n) for n in range(1, count + 1)])


class TestRedelivery:
    async def test_catch_up_after_a_crash_is_marked_as_redelivery(self) -> None:
        """A consumer that takes over an unreleased lease tells its handlers so."""
        wall = WallClock()
        store = MemoryEventStore(wall_clock=wall)
        await fill(store, 3)
        # A first worker took the lease and died without releasing it.
        await store.acquire_lease("default", "dead-worker", 15.0)
        wall.now += 16.0
        seen: list[tuple[int, bool, bool]] = []
        bus = EventBus(store, holder="new-worker")

        @bus.subscribe(Job, name="work")
        async def work(event: Job, ctx: HandlerContext[Job]) -> None:
            dispatch = current_dispatch()
            assert dispatch is not None
            seen.append((event.n, ctx.redelivery, dispatch.redelivery))

        async with bus:
            await bus.drain()
            await bus.publish_async(Job(4))  # a live publish is a first delivery
        assert sorted(seen) == [
            (1, True, True),
            (2, True, True),
            (3, True, True),
            (4, False, False),
        ]

    async def test_a_clean_restart_is_not_a_redelivery(self) -> None:
        """After a worker released its lease, new events are first deliveries."""
        store = MemoryEventStore()
        first = EventBus(store, holder="first")
        first.subscribe(Job, name="work")(lambda e: None)
        async with first:
            pass
        await fill(store, 2)
        seen: list[bool] = []
        bus = EventBus(store, holder="second")

        @bus.subscribe(Job, name="work")
        async def work(event: Job, ctx: HandlerContext[Job]) -> None:
            seen.append(ctx.redelivery)

        async with bus:
            await bus.drain()
        assert seen == [False, False]


class TestLeaseCheckedPerRecord:
    async def test_a_stalled_consumer_stops_at_the_next_record(self) -> None:
        """After a stall past its TTL while another took the group, the consumer
        dispatches nothing more and its catch-up raises GroupLockedError."""
        clock = FakeClock(autojump=False)
        store = MemoryEventStore()
        await fill(store, 50)
        handled: list[int] = []
        bus = EventBus(store, holder="A", clock=clock, lease_ttl=15.0, max_in_flight=4)

        @bus.subscribe(Job, name="work")
        async def work(event: Job) -> None:
            handled.append(event.n)
            if event.n == 3:
                # This process is stopped (SIGSTOP) for 20 s; B takes the group over.
                clock.advance(20.0)
                store._leases["default"] = Lease("default", "B", 4_102_444_800.0)

        with pytest.raises(GroupLockedError):
            await bus.start()
        await bus.drain()
        assert max(handled) <= 3 + 4  # at most the in-flight window after the stall
        assert len(handled) < 50
        assert await store.load_checkpoint("default") < 50

    async def test_a_stale_commit_is_refused_by_the_store(self) -> None:
        """The consumer's commit carries its lease; once B holds the group, A's
        checkpoint does not move, even before A's next heartbeat."""
        store = MemoryEventStore()
        bus = EventBus(store, holder="A", commit_interval=0)
        gate = asyncio.Event()

        @bus.subscribe(Job, name="work")
        async def work(event: Job) -> None:
            await gate.wait()

        await bus.start()
        publishing = asyncio.create_task(bus.publish_async(Job(1)))
        await asyncio.sleep(0)
        store._leases["default"] = Lease("default", "B", 4_102_444_800.0)
        gate.set()
        await publishing
        await bus.drain()
        assert await store.load_checkpoint("default") == 0
        assert bus.consumer is not None
        with pytest.raises(GroupLockedError):
            await bus.catch_up()
        await bus.aclose()


class TestDuplicateBound:
    async def test_uncommitted_events_never_exceed_the_window(self) -> None:
        """During catch-up, no event is started more than max_in_flight past the
        committed checkpoint, even while commits are slow."""
        window = 8
        violations: list[int] = []

        class SlowCommits(MemoryEventStore):
            async def commit_progress(self, *args: object, **kw: object) -> None:
                await asyncio.sleep(0)
                await super().commit_progress(*args, **kw)  # type: ignore[arg-type]

        store = SlowCommits()
        await fill(store, 300)
        bus = EventBus(store, max_in_flight=window, commit_interval=0.001)

        @bus.subscribe(Job, name="work")
        async def work(event: Job) -> None:
            committed = await store.load_checkpoint("default")
            if event.n - committed > window:
                violations.append(event.n)
            await asyncio.sleep(0)

        async with bus:
            await bus.drain()
        assert violations == []
        assert await store.load_checkpoint("default") == 300

    async def test_a_full_window_behind_a_slow_handler_waits_without_spinning(self) -> None:
        """While one slow event holds the checkpoint back and the window is full, the
        consumer waits: no stream of empty commits, and everything runs once it ends."""
        commits: list[int] = []

        class Counting(MemoryEventStore):
            async def commit_progress(self, group: str, seq: int, *a: object, **kw: object) -> None:
                commits.append(seq)
                await super().commit_progress(group, seq, *a, **kw)  # type: ignore[arg-type]

        store = Counting()
        await fill(store, 40)
        gate = asyncio.Event()
        bus = EventBus(store, max_in_flight=4, commit_interval=0)

        @bus.subscribe(Job, name="work")
        async def work(event: Job) -> None:
            if event.n == 1:
                await gate.wait()

        attempts: list[int] = []
        starting = asyncio.create_task(bus.start())
        for _ in range(100):  # the consumer exists once its lease is taken
            if bus.consumer is not None:
                break
            await asyncio.sleep(0)
        consumer = bus._consumer
        assert consumer is not None
        real = consumer._commit

        async def counted() -> None:
            attempts.append(1)
            await real()

        consumer._commit = counted  # type: ignore[method-assign]
        for _ in range(300):
            await asyncio.sleep(0)
        assert not starting.done()  # the window is full behind event 1
        assert len(commits) <= 2
        assert len(attempts) <= 5  # not one commit attempt per loop turn
        gate.set()
        await starting
        await bus.drain()
        await bus.aclose()
        assert await store.load_checkpoint("default") == 40
