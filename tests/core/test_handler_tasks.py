"""Handler tasks: a handler runs in exactly one task for its whole life, so asyncio's
timeouts, current_task() and cancellation bind where asyncio says, and one handler's
timeout or cancellation never reaches its siblings or the publisher."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from core import Event, EventBus, MemoryEventStore, OutcomeStatus
from core.testing import FakeClock


@dataclass(frozen=True, slots=True)
class Job(Event, type_name="tests.core.tasks.Job"):
    n: int = 0


async def started(*events: asyncio.Event) -> None:
    for event in events:
        await event.wait()


class TestTheReportedDefect:
    async def test_a_timeout_cancels_neither_the_sibling_nor_the_publisher(self) -> None:
        """The issue's snippet: b times out, a completes, publish returns both outcomes."""
        clock = FakeClock(autojump=False)
        a_started, b_started, release_a = asyncio.Event(), asyncio.Event(), asyncio.Event()
        bus = EventBus(clock=clock)

        @bus.subscribe(Job, name="a")
        async def a(event: Job) -> str:
            a_started.set()
            await release_a.wait()
            return "a done"

        @bus.subscribe(Job, name="b", timeout=0.05)
        async def b(event: Job) -> None:
            b_started.set()
            await asyncio.Event().wait()  # never set: only the timeout ends it

        async with bus:
            publishing = asyncio.create_task(bus.publish_async(Job()))
            await started(a_started, b_started)
            clock.advance(0.05)
            for _ in range(5):
                await asyncio.sleep(0)
            assert not publishing.done()  # the publisher is still waiting for a
            release_a.set()
            result = await publishing
        by_name = {o.handler: o for o in result}
        assert by_name["a"].status is OutcomeStatus.OK
        assert by_name["a"].value == "a done"
        assert by_name["b"].status is OutcomeStatus.TIMED_OUT
        assert [o.handler for o in result] == ["a", "b"]

    async def test_with_a_store_the_event_is_finished_and_checkpointed(self) -> None:
        """With a store attached the timed-out event still finishes: the checkpoint passes it."""
        clock = FakeClock()
        store = MemoryEventStore()
        bus = EventBus(store, clock=clock, commit_interval=0)

        @bus.subscribe(Job, name="a")
        async def a(event: Job) -> None:
            await asyncio.sleep(0)

        @bus.subscribe(Job, name="b", timeout=0.05)
        async def b(event: Job) -> None:
            await asyncio.Event().wait()

        async with bus:
            result = await bus.publish_async(Job())
        assert [o.status for o in result] == [OutcomeStatus.OK, OutcomeStatus.TIMED_OUT]
        assert await store.load_checkpoint("default") == result.seq == 1
        (letter,) = await store.list_dead_letters()
        assert letter.handler == "b"


class TestOneTaskPerHandler:
    async def test_a_handlers_own_asyncio_timeout_while_a_sibling_suspends(self) -> None:
        """A handler's own `async with asyncio.timeout()` fires in its own task only."""
        release = asyncio.Event()
        bus = EventBus()

        @bus.subscribe(Job, name="own")
        async def own(event: Job) -> str:
            try:
                async with asyncio.timeout(0):
                    await asyncio.Event().wait()
            except TimeoutError:
                release.set()
                return "caught its own timeout"
            return "no timeout"

        @bus.subscribe(Job, name="sibling")
        async def sibling(event: Job) -> str:
            await release.wait()
            return "sibling done"

        async with bus:
            result = await bus.publish_async(Job())
        assert [(o.status, o.value) for o in result] == [
            (OutcomeStatus.OK, "caught its own timeout"),
            (OutcomeStatus.OK, "sibling done"),
        ]

    async def test_current_task_is_not_the_publishers_with_several_handlers(self) -> None:
        """In a route of several handlers, each runs in a task of its own."""
        seen: dict[str, asyncio.Task[Any] | None] = {}
        bus = EventBus()

        @bus.subscribe(Job, name="suspends")
        async def suspends(event: Job) -> None:
            seen["suspends-before"] = asyncio.current_task()
            await asyncio.sleep(0)
            seen["suspends-after"] = asyncio.current_task()

        @bus.subscribe(Job, name="returns")
        async def returns(event: Job) -> None:
            seen["returns"] = asyncio.current_task()

        async with bus:
            await bus.publish_async(Job())
        me = asyncio.current_task()
        assert seen["suspends-before"] is seen["suspends-after"]
        assert seen["suspends-before"] is not me
        assert seen["returns"] is not me
        assert seen["returns"] is not seen["suspends-before"]

    async def test_a_single_handler_runs_inline_in_the_publishers_task(self) -> None:
        """A route of one handler awaits it in the caller's task, like a plain await."""
        seen: list[asyncio.Task[Any] | None] = []
        bus = EventBus()

        @bus.subscribe(Job, name="only")
        async def only(event: Job) -> None:
            seen.append(asyncio.current_task())
            await asyncio.sleep(0)
            seen.append(asyncio.current_task())

        async with bus:
            await bus.publish_async(Job())
        assert seen == [asyncio.current_task()] * 2

    async def test_cancelling_one_handler_task_spares_the_sibling_and_publisher(self) -> None:
        """Cancelling a handler's task gives it a cancelled outcome; nothing else stops."""
        victim_task: list[asyncio.Task[Any] | None] = []
        victim_started, release = asyncio.Event(), asyncio.Event()
        bus = EventBus()

        @bus.subscribe(Job, name="victim")
        async def victim(event: Job) -> None:
            victim_task.append(asyncio.current_task())
            victim_started.set()
            await asyncio.Event().wait()

        @bus.subscribe(Job, name="survivor")
        async def survivor(event: Job) -> str:
            await release.wait()
            return "survived"

        async with bus:
            publishing = asyncio.create_task(bus.publish_async(Job()))
            await victim_started.wait()
            (task,) = victim_task
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)
            release.set()
            result = await publishing
        assert [(o.handler, o.status) for o in result] == [
            ("victim", OutcomeStatus.CANCELLED),
            ("survivor", OutcomeStatus.OK),
        ]
        assert result.outcomes[1].value == "survived"

    async def test_cancelling_the_publisher_cancels_its_handlers(self) -> None:
        """A cancelled publisher takes its handlers' tasks with it, and waits for them."""
        cleaned: list[str] = []
        both = asyncio.Event(), asyncio.Event()
        bus = EventBus()

        def handler(name: str, ready: asyncio.Event) -> Any:
            async def run(event: Job) -> None:
                ready.set()
                try:
                    await asyncio.Event().wait()
                finally:
                    cleaned.append(name)

            return run

        bus.subscribe(Job, name="x")(handler("x", both[0]))
        bus.subscribe(Job, name="y")(handler("y", both[1]))
        async with bus:
            publishing = asyncio.create_task(bus.publish_async(Job()))
            await started(*both)
            publishing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await publishing
            assert sorted(cleaned) == ["x", "y"]


ORDERS = list(itertools.permutations(["slow", "fast", "broken"]))


class TestEverySubscriptionOrder:
    @pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
    async def test_outcomes_do_not_depend_on_the_subscription_order(
        self, order: tuple[str, ...]
    ) -> None:
        """A timeout, a success and a failure give the same outcomes in every order."""
        clock = FakeClock()
        bus = EventBus(clock=clock)

        async def slow(event: Job) -> None:
            await asyncio.Event().wait()

        async def fast(event: Job) -> int:
            await asyncio.sleep(0)
            return event.n * 2

        async def broken(event: Job) -> None:
            raise ValueError("broken")

        handlers = {"slow": slow, "fast": fast, "broken": broken}
        for name in order:
            timeout = 30.0 if name == "slow" else None
            bus.subscribe(Job, name=name, timeout=timeout)(handlers[name])
        async with bus:
            result = await bus.publish_async(Job(21))
        assert [o.handler for o in result] == list(order)
        by_name = {o.handler: o for o in result}
        assert by_name["slow"].status is OutcomeStatus.TIMED_OUT
        assert (by_name["fast"].status, by_name["fast"].value) == (OutcomeStatus.OK, 42)
        assert by_name["broken"].status is OutcomeStatus.FAILED
        assert isinstance(by_name["broken"].error, ValueError)
        assert clock.monotonic() == 30.0  # the timeout ran on the fake clock, exactly
