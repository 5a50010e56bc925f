"""Handlers that return, handlers that publish, and the names handlers are known by:
stable across processes, one handler for a callable subscribed to several types, and
collisions resolved or refused with a message that says what to pass."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from core import (
    Event,
    EventBus,
    HandlerContext,
    MemoryEventStore,
    OutcomeStatus,
    RetryPolicy,
    Router,
    SubscriptionError,
)
from core.routing import handler_name
from core.testing import FakeClock


@dataclass(frozen=True, slots=True)
class Placed(Event, type_name="tests.core.identity.Placed"):
    order: str = "o-1"


@dataclass(frozen=True, slots=True)
class Shipped(Event, type_name="tests.core.identity.Shipped"):
    order: str = "o-1"


@dataclass(frozen=True, slots=True)
class Cancelled(Event, type_name="tests.core.identity.Cancelled"):
    order: str = "o-1"


class TestReturnValues:
    @pytest.mark.parametrize("handlers", [1, 3], ids=["one-handler", "three-handlers"])
    async def test_the_outcome_carries_the_very_object_returned(self, handlers: int) -> None:
        """Each outcome's value is the object the handler returned, not a copy."""
        made = [object() for _ in range(handlers)]
        bus = EventBus()
        for i in range(handlers):

            async def give(event: Placed, i: int = i) -> object:
                return made[i]

            bus.subscribe(Placed, name=f"h{i}")(give)
        async with bus:
            result = await bus.publish_async(Placed())
        assert [o.value for o in result] == made
        assert next(o.value for o in result) is made[0]
        assert result.values == {f"h{i}": made[i] for i in range(handlers)}

    async def test_sync_inline_retried_and_redriven_handlers_return_too(self) -> None:
        """Sync (executor), inline, retried and re-driven handlers carry their values."""
        clock = FakeClock()
        calls = {"flaky": 0}
        bus = EventBus(clock=clock)
        bus.subscribe(Placed, name="sync")(lambda e: "from a thread")
        bus.subscribe(Placed, name="inline", inline=True)(lambda e: "inline")

        @bus.subscribe(Placed, name="flaky", retry=RetryPolicy(max_attempts=3, base=1.0))
        async def flaky(event: Placed) -> str:
            calls["flaky"] += 1
            if calls["flaky"] < 3:
                raise RuntimeError("not yet")
            return "third time"

        async with bus:
            result = await bus.publish_async(Placed())
        assert result.values == {"sync": "from a thread", "inline": "inline", "flaky": "third time"}
        assert result.outcomes[2].attempts == 3

    async def test_a_redrive_outcome_has_the_value(self) -> None:
        """Re-driving a dead letter reports what the handler returned this time."""
        bus = EventBus()
        broken = {"yes": True}

        @bus.subscribe(Placed, name="charge")
        async def charge(event: Placed) -> str:
            if broken["yes"]:
                raise RuntimeError("card declined")
            return "charged"

        async with bus:
            first = await bus.publish_async(Placed())
            assert first.outcomes[0].status is OutcomeStatus.FAILED
            (letter,) = await bus.dead_letters.list_dead_letters()
            broken["yes"] = False
            assert letter.id is not None
            redriven = await bus.redrive(letter.id)
        assert redriven.resolved
        assert redriven.outcome is not None
        assert redriven.outcome.value == "charged"


class TestFollowUps:
    async def test_a_handler_publishes_follow_ups_durably_with_causality(self) -> None:
        """ctx.publish appends the follow-up on the dispatching bus's store, caused by
        the handled event and in its correlation."""
        store = MemoryEventStore()
        bus = EventBus(store)
        shipped: list[Shipped] = []

        @bus.subscribe(Placed, name="ship")
        async def ship(event: Placed, ctx: HandlerContext[Placed]) -> int | None:
            result = await ctx.publish(Shipped(event.order))
            return result.seq

        @bus.subscribe(Shipped, name="notify")
        async def notify(event: Shipped) -> None:
            shipped.append(event)

        async with bus:
            placed = Placed("o-9")
            result = await bus.publish_async(placed)
        assert result.outcomes[0].value == 2
        (follow_up,) = shipped
        assert follow_up.causation_id == placed.id
        assert follow_up.correlation_id == placed.id
        stored = await store.get(2)
        assert stored is not None
        assert stored.causation_id == placed.id
        assert [c.seq for c in await store.children(placed.id)] == [2]


class TestNames:
    def test_default_names_are_module_and_qualname(self) -> None:
        """Functions, partials and callable objects get stable default names."""

        async def local(event: Placed) -> None:
            pass

        class Handler:
            async def __call__(self, event: Placed) -> None:
                pass

        here = __name__
        assert (
            handler_name(local)
            == f"{here}.TestNames.test_default_names_are_module_and_qualname.<locals>.local"
        )
        assert handler_name(functools.partial(local)) == handler_name(local)
        assert handler_name(Handler()).endswith("<locals>.Handler")

    async def test_one_callable_on_several_types_is_one_handler(self) -> None:
        """Stacked decorators: one name, called once per event, for each type."""
        seen: list[str] = []
        bus = EventBus()

        @bus.subscribe(Shipped)
        @bus.subscribe(Placed)
        async def audit(event: Event) -> None:
            seen.append(type(event).__name__)

        async with bus:
            await bus.publish_async(Placed())
            await bus.publish_async(Shipped())
        assert seen == ["Placed", "Shipped"]
        assert {s.name for s in bus.subscriptions} == {handler_name(audit)}
        assert bus.handlers_for(Placed) == bus.handlers_for(Shipped) == [handler_name(audit)]

    async def test_one_callable_with_different_policies_is_refused(self) -> None:
        """The same callable with two policies must be told apart by name."""
        bus = EventBus()

        async def audit(event: Event) -> None:
            pass

        bus.subscribe(Placed, timeout=1.0)(audit)
        with pytest.raises(SubscriptionError, match=r"different policies: pass name="):
            bus.subscribe(Shipped, timeout=2.0)(audit)

    async def test_closures_bound_methods_and_partials_without_a_store(self) -> None:
        """Different callables sharing a default name get #2, #3 in order (no store)."""

        def factory(tag: str):
            async def handle(event: Placed) -> str:
                return tag

            return handle

        class Shop:
            def __init__(self, tag: str) -> None:
                self.tag = tag

            async def on_placed(self, event: Placed) -> str:
                return self.tag

        async def tagged(tag: str, event: Placed) -> str:
            return tag

        bus = EventBus()
        for handler in (factory("a"), factory("b"), Shop("x").on_placed, Shop("y").on_placed):
            bus.subscribe(Placed)(handler)
        bus.subscribe(Placed)(functools.partial(tagged, "p"))
        bus.subscribe(Placed)(functools.partial(tagged, "q"))
        async with bus:
            result = await bus.publish_async(Placed())
        assert sorted(result.values.values()) == ["a", "b", "p", "q", "x", "y"]
        names = [o.handler for o in result]
        assert len(set(names)) == 6
        assert names[1] == names[0] + "#2"

    async def test_a_durable_bus_refuses_ambiguous_names(self) -> None:
        """With a store, two callables with one default name need name=..."""

        def factory() -> object:
            async def handle(event: Placed) -> None:
                pass

            return handle

        bus = EventBus(MemoryEventStore())
        bus.subscribe(Placed)(factory())  # type: ignore[arg-type]
        with pytest.raises(SubscriptionError, match=r"pass name='\.\.\.'"):
            bus.subscribe(Placed)(factory())  # type: ignore[arg-type]
        bus.subscribe(Placed, name="second")(factory())  # type: ignore[arg-type]
        assert len(bus.subscriptions) == 2
        await bus.aclose()

    def test_a_script_and_pubsub_run_name_handlers_alike(self, tmp_path: Path) -> None:
        """`python app.py` names its handlers by the file's stem, not `__main__`."""
        app = tmp_path / "shop_app.py"
        app.write_text(
            textwrap.dedent(
                """
                from dataclasses import dataclass
                from core import Event, Router

                @dataclass(frozen=True, slots=True)
                class Paid(Event, type_name="shop_app.Paid"):
                    amount: int = 0

                router = Router()

                @router.subscribe(Paid)
                async def charge(event: Paid) -> None:
                    pass

                if __name__ == "__main__":
                    print(router.subscriptions[0].name)
                """
            )
        )
        out = subprocess.run(
            [sys.executable, str(app)], capture_output=True, text=True, check=True, timeout=60
        )
        assert out.stdout.strip() == "shop_app.charge"


class TestFakeClock:
    async def test_a_long_timeout_takes_no_real_time(self) -> None:
        """A 1-hour timeout on the fake clock fires as soon as everything waits."""
        clock = FakeClock()
        bus = EventBus(clock=clock)

        @bus.subscribe(Placed, name="stuck", timeout=3600.0)
        async def stuck(event: Placed) -> None:
            await asyncio.Event().wait()

        loop = asyncio.get_running_loop()
        began = loop.time()
        async with bus:
            result = await bus.publish_async(Placed())
        assert result.outcomes[0].status is OutcomeStatus.TIMED_OUT
        assert clock.monotonic() == 3600.0
        assert loop.time() - began >= 0  # real time did move forward only a little

    async def test_sleepers_wake_in_deadline_order(self) -> None:
        """Concurrent sleeps on the fake clock end in deadline order, at exact times."""
        clock = FakeClock()
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append((name, clock.monotonic()))

        await asyncio.gather(sleeper("late", 5.0), sleeper("early", 2.0), sleeper("mid", 3.0))
        assert woke == [("early", 2.0), ("mid", 3.0), ("late", 5.0)]

    async def test_manual_mode_moves_only_when_advanced(self) -> None:
        """With autojump=False a sleeper waits until advance() passes its deadline."""
        clock = FakeClock(autojump=False)
        task = asyncio.create_task(clock.sleep(10.0))
        for _ in range(50):
            await asyncio.sleep(0)
        assert not task.done()
        clock.advance(9.0)
        await asyncio.sleep(0)
        assert not task.done()
        clock.advance(1.0)
        await task
        assert clock.sleeps == [10.0]


class TestRouterStillWorks:
    def test_a_router_can_be_included_in_two_buses(self) -> None:
        """A Router is declarative: two buses include it independently."""
        router = Router()

        @router.subscribe(Placed)
        async def one(event: Placed) -> None:
            pass

        first, second = EventBus(), EventBus()
        first.include(router)
        second.include(router)
        assert first.handlers_for(Placed) == second.handlers_for(Placed) == [handler_name(one)]
