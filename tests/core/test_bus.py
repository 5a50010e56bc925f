"""Bus: publish results and failure aggregation, and the durable consumer over the
in-memory store (sequence numbers, duplicates, low-water-mark checkpoints, dead letters
committed with them, catch-up after restart, group leases, replay)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from core import (
    DeadLetter,
    DeadLetterReason,
    DispatchError,
    Event,
    EventBus,
    GroupLockedError,
    MemoryEventStore,
    OutcomeStatus,
    PubSubError,
    current_dispatch,
)
from core.testing import FakeClock


@dataclass(frozen=True, slots=True)
class Order(Event, type_name="tests.core.bus.Order"):
    n: int = 0


class TestPublishResult:
    async def test_every_outcome_is_listed(self) -> None:
        """The result holds ok, failed, timed-out and rejected outcomes with attempts and duration."""
        never = asyncio.Event()
        clock = FakeClock()

        async def ok(event: Order) -> None:
            pass

        async def failing(event: Order) -> None:
            raise ValueError("bad order")

        async def slow(event: Order) -> None:
            await never.wait()

        from core import BreakerPolicy

        async with EventBus(clock=clock) as bus:
            bus.subscribe(Order, name="ok")(ok)
            bus.subscribe(Order, name="failing", retry=2)(failing)
            bus.subscribe(Order, name="slow", timeout=0.01)(slow)
            bus.subscribe(Order, name="guarded", breaker=BreakerPolicy(failure_threshold=1))(
                failing
            )
            await bus.publish_async(Order(0))  # opens the breaker of "guarded"
            event = Order(1)
            result = await bus.publish_async(event)
        assert result.event is event
        assert result.seq is None
        assert not result.ok
        rows = [(o.handler, o.status, o.attempts) for o in result]
        assert rows == [
            ("ok", OutcomeStatus.OK, 1),
            ("failing", OutcomeStatus.FAILED, 2),
            ("slow", OutcomeStatus.TIMED_OUT, 1),
            ("guarded", OutcomeStatus.REJECTED, 0),
        ]
        assert all(isinstance(o.duration, float) and not math.isnan(o.duration) for o in result)
        assert [o.handler for o in result.failures] == ["failing", "slow", "guarded"]
        assert isinstance(result.outcomes[1].error, ValueError)
        assert result.outcomes[0].error is None

    async def test_no_matching_handler_is_ok(self) -> None:
        """An event nobody handles gives an empty, ok result."""
        async with EventBus() as bus:
            result = await bus.publish_async(Order())
        assert result.ok
        assert len(result) == 0


async def _fail_value(event: Order) -> None:
    raise ValueError("value")


async def _fail_key(event: Order) -> None:
    raise KeyError("key")


async def _succeed(event: Order) -> None:
    pass


class TestRaiseOnError:
    async def test_per_call_raises_a_dispatch_error_group(self) -> None:
        """raise_on_error=True raises a DispatchError (an ExceptionGroup) after all ran."""
        async with EventBus() as bus:
            bus.subscribe(Order, name="v")(_fail_value)
            bus.subscribe(Order, name="ok")(_succeed)
            bus.subscribe(Order, name="k")(_fail_key)
            with pytest.raises(DispatchError) as info:
                await bus.publish_async(Order(), raise_on_error=True)
            assert await bus.dead_letters.count_dead_letters() == 2
        err = info.value
        assert isinstance(err, ExceptionGroup)
        assert isinstance(err, PubSubError)
        assert [type(e) for e in err.exceptions] == [ValueError, KeyError]
        assert [o.handler for o in err.outcomes] == ["v", "ok", "k"]
        assert "v, k" in str(err)

    async def test_except_star_splits_the_failures(self) -> None:
        """except* ValueError catches the ValueError part and leaves the KeyError part."""
        caught: list[type[BaseException]] = []
        async with EventBus(raise_on_error=True) as bus:
            bus.subscribe(Order, name="v")(_fail_value)
            bus.subscribe(Order, name="k")(_fail_key)
            try:
                try:
                    await bus.publish_async(Order())
                except* ValueError as group:
                    caught.extend(type(e) for e in group.exceptions)
            except* KeyError as rest:
                caught.extend(type(e) for e in rest.exceptions)
                caught.append(type(rest))
        assert caught == [ValueError, KeyError, DispatchError]

    async def test_per_bus_and_catch_by_root(self) -> None:
        """A bus made with raise_on_error=True raises; PubSubError catches it."""
        async with EventBus(raise_on_error=True) as bus:
            bus.subscribe(Order, name="v")(_fail_value)
            with pytest.raises(PubSubError):
                await bus.publish_async(Order())

    async def test_per_call_false_overrides_the_bus(self) -> None:
        """raise_on_error=False on the call wins over the bus setting."""
        async with EventBus(raise_on_error=True) as bus:
            bus.subscribe(Order, name="v")(_fail_value)
            result = await bus.publish_async(Order(), raise_on_error=False)
        assert not result.ok

    async def test_success_never_raises(self) -> None:
        """raise_on_error does nothing when every handler succeeded."""
        async with EventBus(raise_on_error=True) as bus:
            bus.subscribe(Order, name="ok")(_succeed)
            assert (await bus.publish_async(Order())).ok

    async def test_statistics_count_outcomes(self) -> None:
        """The bus statistics count published events and handler outcomes."""
        async with EventBus() as bus:
            bus.subscribe(Order, name="ok")(_succeed)
            bus.subscribe(Order, name="v")(_fail_value)
            await bus.publish_async(Order())
            await bus.publish_async(Order())
            stats = bus.statistics()
        assert (stats.published, stats.handled_ok, stats.handled_failed) == (2, 2, 2)
        assert stats.dead_lettered == 2
        assert stats.in_flight == 0

    @pytest.mark.parametrize("store", [False, True])
    async def test_in_flight_counts_each_event_once(self, store: bool) -> None:
        """Three publishes whose handler is held: in flight 3, with or without a store
        (a durable publish that this bus also dispatches is one event, not two)."""
        gate = asyncio.Event()
        entered = 0

        async def held(event: Order) -> None:
            nonlocal entered
            entered += 1
            await gate.wait()

        async with EventBus(MemoryEventStore() if store else None) as bus:
            bus.subscribe(Order, name="held")(held)
            publishes = [asyncio.ensure_future(bus.publish_async(Order())) for _ in range(3)]
            for _ in range(50):
                await asyncio.sleep(0)
            assert entered == 3
            assert bus.statistics().in_flight == 3
            gate.set()
            await asyncio.wait_for(asyncio.gather(*publishes), 10)
            assert bus.statistics().in_flight == 0


class CommitLog(MemoryEventStore):
    """A memory store that records each checkpoint commit with what had finished then."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: set[int] = set()
        self.commits: list[tuple[int, frozenset[int], int]] = []

    async def commit_progress(
        self, group: str, seq: int, dead_letters: Sequence[DeadLetter] = (), **kw: Any
    ) -> None:
        self.commits.append((seq, frozenset(self.finished), len(dead_letters)))
        await super().commit_progress(group, seq, dead_letters, **kw)


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


class TestDurablePublish:
    async def test_publish_returns_the_sequence_number(self) -> None:
        """Each publish appends and returns its gap-free sequence number."""
        store = MemoryEventStore()
        async with EventBus(store) as bus:
            bus.subscribe(Order, name="ok")(_succeed)
            seqs = [(await bus.publish_async(Order(i))).seq for i in range(3)]
        assert seqs == [1, 2, 3]
        assert await store.last_seq() == 3
        assert await store.load_checkpoint("default") == 3

    async def test_duplicate_id_is_not_dispatched_again(self) -> None:
        """Publishing an event id twice returns duplicate=True and dispatches once."""
        calls: list[int] = []
        store = MemoryEventStore()
        async with EventBus(store) as bus:
            bus.subscribe(Order, name="count")(lambda e: calls.append(e.n))
            event = Order(1)
            first = await bus.publish_async(event)
            again = await bus.publish_async(event)
        assert (first.seq, first.duplicate) == (1, False)
        assert (again.seq, again.duplicate, len(again)) == (1, True, 0)
        assert calls == [1]
        assert await store.last_seq() == 1

    async def test_producer_only_bus_appends_without_dispatch(self) -> None:
        """consume=False appends and returns the seq but runs no handler."""
        calls: list[int] = []
        store = MemoryEventStore()
        async with EventBus(store, consume=False) as bus:
            bus.subscribe(Order, name="count")(lambda e: calls.append(e.n))
            result = await bus.publish_async(Order(1))
        assert (result.seq, len(result)) == (1, 0)
        assert calls == []

    async def test_raise_on_error_with_a_store(self) -> None:
        """A durable publish raises DispatchError too, after committing the event."""
        store = MemoryEventStore()
        async with EventBus(store, raise_on_error=True) as bus:
            bus.subscribe(Order, name="v")(_fail_value)
            with pytest.raises(DispatchError):
                await bus.publish_async(Order())
        assert await store.last_seq() == 1


class TestCheckpoint:
    async def test_low_water_mark_never_passes_an_unfinished_event(self) -> None:
        """Events finishing out of order never let the checkpoint pass the unfinished one."""
        store = CommitLog()
        gate = asyncio.Event()

        async def handler(event: Order) -> None:
            if event.n == 1:
                await gate.wait()
            store.finished.add(event.n)

        async with EventBus(store, commit_interval=0.0) as bus:
            bus.subscribe(Order, name="h")(handler)
            first = asyncio.ensure_future(bus.publish_async(Order(1)))
            await _settle()
            assert [(await bus.publish_async(Order(n))).seq for n in (2, 3)] == [2, 3]
            await _settle()
            assert await store.load_checkpoint("default") == 0
            assert bus.statistics().checkpoint == 0
            gate.set()
            assert (await first).seq == 1
        assert await store.load_checkpoint("default") == 3
        assert store.commits
        for seq, finished, _ in store.commits:
            assert set(range(1, seq + 1)) <= finished, (seq, finished)

    async def test_dead_letters_commit_with_the_checkpoint(self) -> None:
        """A dead letter is stored only when the checkpoint passes its event, with it."""
        store = CommitLog()
        gate = asyncio.Event()

        async def handler(event: Order) -> None:
            if event.n == 1:
                await gate.wait()
            store.finished.add(event.n)
            if event.n == 2:
                raise ValueError("no stock")

        async with EventBus(store, commit_interval=0.0) as bus:
            bus.subscribe(Order, name="reserve")(handler)
            first = asyncio.ensure_future(bus.publish_async(Order(1)))
            await _settle()
            failed = await bus.publish_async(Order(2))
            await _settle()
            assert await store.list_dead_letters() == []
            gate.set()
            await first
        (letter,) = await store.list_dead_letters()
        assert not failed.ok
        assert (letter.seq, letter.group, letter.source) == (2, "default", "live")
        assert (letter.handler, letter.reason, letter.message) == (
            "reserve",
            DeadLetterReason.EXHAUSTED,
            "no stock",
        )
        assert [(seq, n) for seq, _, n in store.commits if n] == [(2, 1)]

    async def test_restart_catches_up_past_the_checkpoint(self) -> None:
        """A consumer started later dispatches exactly the events after its checkpoint."""
        store = MemoryEventStore()
        async with EventBus(store, consume=False) as producer:
            for n in (1, 2, 3):
                await producer.publish_async(Order(n))
        await store.commit_progress("default", 1)
        seen: list[tuple[int, int]] = []

        async def handler(event: Order) -> None:
            ctx = current_dispatch()
            assert ctx is not None
            seen.append((event.n, ctx.attempt))

        consumer = EventBus(store)
        consumer.subscribe(Order, name="h")(handler)
        async with consumer:  # starting catches up
            await consumer.drain()
            assert await consumer.catch_up() == 0
        assert sorted(seen) == [(2, 1), (3, 1)]
        assert await store.load_checkpoint("default") == 3
        again = EventBus(store)
        again.subscribe(Order, name="h")(handler)
        async with again:
            await again.drain()
        assert len(seen) == 2

    async def test_events_cut_short_by_close_are_delivered_again(self) -> None:
        """Handlers cancelled by aclose(timeout) leave their event past the checkpoint,
        so the next consumer delivers it again (at least once)."""
        store = MemoryEventStore()
        never = asyncio.Event()
        seen: list[int] = []

        async def stuck(event: Order) -> None:
            seen.append(event.n)
            if event.n == 2 and seen.count(2) == 1:  # only the first delivery hangs
                await never.wait()

        async def other(event: Order) -> None:
            await asyncio.sleep(0)

        bus = EventBus(store)
        bus.subscribe(Order, name="stuck")(stuck)
        bus.subscribe(Order, name="other")(other)
        await bus.start()
        await bus.publish_async(Order(1))
        pending = asyncio.ensure_future(bus.publish_async(Order(2)))
        await _settle()
        await bus.aclose(timeout=0.01)
        result = await pending  # the publisher is told, not cancelled itself
        assert [(o.handler, o.status.value) for o in result] == [
            ("stuck", "cancelled"),
            ("other", "ok"),
        ]
        assert await store.load_checkpoint("default") == 1

        restarted = EventBus(store)
        restarted.subscribe(Order, name="stuck")(stuck)
        restarted.subscribe(Order, name="other")(other)
        async with restarted:
            await restarted.drain()
        assert seen == [1, 2, 2]
        assert await store.load_checkpoint("default") == 2


class TestLeases:
    async def test_second_consumer_of_a_group_is_locked_out(self) -> None:
        """A second live consumer of the same group gets GroupLockedError."""
        store = MemoryEventStore()
        async with EventBus(store, holder="worker-1"):
            other = EventBus(store, holder="worker-2")
            with pytest.raises(GroupLockedError) as info:
                await other.start()
            await other.aclose()
        assert info.value.group == "default"
        assert info.value.holder == "worker-1"

    async def test_two_buses_in_one_process_do_not_share_a_lease(self) -> None:
        """Two buses with default holders are two consumers: the second is locked out."""
        store = MemoryEventStore()
        async with EventBus(store):
            other = EventBus(store)
            with pytest.raises(GroupLockedError):
                await other.start()
            await other.aclose()

    async def test_another_group_is_independent(self) -> None:
        """A consumer of another group runs alongside and keeps its own checkpoint."""
        store = MemoryEventStore()
        async with EventBus(store, group="a") as a, EventBus(store, group="b") as b:
            a.subscribe(Order, name="h")(_succeed)
            b.subscribe(Order, name="h")(_succeed)
            await a.publish_async(Order())
        assert await store.load_checkpoint("a") == 1
        assert await store.load_checkpoint("b") == 0

    async def test_lease_is_released_on_close(self) -> None:
        """After aclose, another holder can take the group at once."""
        store = MemoryEventStore()
        async with EventBus(store, holder="one"):
            pass
        async with EventBus(store, holder="two") as bus:
            assert bus.holder == "two"


class TestReplay:
    async def test_replay_moves_no_checkpoint_and_appends_nothing(self) -> None:
        """Replay re-dispatches stored events, tags dead letters 'replay', changes nothing else."""
        store = MemoryEventStore()
        async with EventBus(store) as bus:
            bus.subscribe(Order, name="ok")(_succeed)
            for n in (1, 2, 3):
                await bus.publish_async(Order(n))
        checkpoint = await store.load_checkpoint("default")
        seen: list[tuple[int, bool]] = []

        async def picky(event: Order) -> None:
            ctx = current_dispatch()
            assert ctx is not None
            seen.append((event.n, ctx.redelivery))
            if event.n == 2:
                raise ValueError("replayed failure")

        async with EventBus(store, consume=False) as replayer:
            replayer.subscribe(Order, name="picky")(picky)
            replayer.subscribe(Order, name="ok")(_succeed)
            report = await replayer.replay(store.read(), handlers=["picky"])
        assert seen == [(1, True), (2, True), (3, True)]
        assert (report.events, report.dead_letters) == (3, 1)
        assert (report.first_seq, report.last_seq) == (1, 3)
        assert report.per_handler["picky"].ok == 2
        assert report.per_handler["picky"].failed == 1
        assert "ok" not in report.per_handler
        assert await store.last_seq() == 3
        assert await store.load_checkpoint("default") == checkpoint
        (letter,) = await store.list_dead_letters()
        assert (letter.source, letter.seq, letter.handler) == ("replay", 2, "picky")

    @pytest.mark.parametrize("handlers", [1, 2], ids=["one-handler", "two-handlers"])
    async def test_replay_counts_and_reports_progress(self, handlers: int) -> None:
        """A replay of 600 events counts every handler's successes and calls progress
        every 256 events and once at the end with the total."""
        store = MemoryEventStore()
        async with EventBus(store, consume=False) as producer:
            for n in range(600):
                await producer.publish_async(Order(n))
        calls: list[int] = []
        async with EventBus(store, consume=False) as replayer:
            for i in range(handlers):
                replayer.subscribe(Order, name=f"h{i}")(_succeed)
            report = await replayer.replay(store.read(), progress=calls.append)
        assert calls == [256, 512, 600]
        assert report.events == 600
        assert {name: t.ok for name, t in report.per_handler.items()} == {
            f"h{i}": 600 for i in range(handlers)
        }

    async def test_replay_to_an_unknown_handler_is_refused(self) -> None:
        """Naming a handler the bus does not have raises SubscriptionError."""
        from core import SubscriptionError

        async with EventBus(MemoryEventStore(), consume=False) as bus:
            with pytest.raises(SubscriptionError, match="missing"):
                await bus.replay(bus.store.read(), handlers=["missing"])  # type: ignore[union-attr]
