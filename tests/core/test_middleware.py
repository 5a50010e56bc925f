"""Middleware: wraps dispatch, composed once and recomposed only when the chain changes,
can short-circuit, and its errors are reported, never lost."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import pytest

from core import Event, EventBus, HandlerOutcome, OutcomeStatus

CallNext = Callable[[Event], Awaitable[list[HandlerOutcome]]]


@dataclass(frozen=True, slots=True)
class Note(Event, type_name="tests.core.middleware.Note"):
    text: str = ""


def tracing(trace: list[str], label: str):  # type: ignore[no-untyped-def]
    async def mw(event: Event, call_next: CallNext) -> list[HandlerOutcome]:
        trace.append(f"{label}-in")
        outcomes = await call_next(event)
        trace.append(f"{label}-out")
        return outcomes

    return mw


def count_compositions(bus: EventBus, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap the bus's chain composition to count how often it happens."""
    count = [0]
    real = bus._compose

    def counted():  # type: ignore[no-untyped-def]
        count[0] += 1
        return real()

    monkeypatch.setattr(bus, "_compose", counted)
    return count


class TestChain:
    async def test_first_added_is_outermost(self) -> None:
        """Middleware wraps the handlers in the order it was added."""
        trace: list[str] = []
        async with EventBus() as bus:
            bus.add_middleware(tracing(trace, "a"))
            bus.add_middleware(tracing(trace, "b"))
            bus.subscribe(Note, name="h")(lambda e: trace.append("handler"))
            result = await bus.publish_async(Note())
        assert trace == ["a-in", "b-in", "handler", "b-out", "a-out"]
        assert result.ok

    async def test_composed_once_across_publishes(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Many publishes through an unchanged chain compose it only once."""
        trace: list[str] = []
        async with EventBus() as bus:
            count = count_compositions(bus, monkeypatch)
            bus.add_middleware(tracing(trace, "a"))
            bus.add_middleware(tracing(trace, "b"))
            for _ in range(5):
                await bus.publish_async(Note())
        assert count == [1]
        assert trace.count("a-in") == 5

    async def test_added_after_a_publish_takes_effect(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Middleware added after a publish runs on the next one; the chain is recomposed once."""
        trace: list[str] = []
        async with EventBus() as bus:
            count = count_compositions(bus, monkeypatch)
            bus.add_middleware(tracing(trace, "a"))
            await bus.publish_async(Note())
            bus.add_middleware(tracing(trace, "late"))
            await bus.publish_async(Note())
            await bus.publish_async(Note())
        assert count == [2]
        assert trace[:2] == ["a-in", "a-out"]
        assert trace[2:6] == ["a-in", "late-in", "late-out", "a-out"]

    async def test_first_middleware_on_a_plain_bus_takes_effect(self) -> None:
        """A bus that already published on its fast path runs middleware added later."""
        trace: list[str] = []

        async def handler(event: Note) -> None:
            trace.append("handler")

        async with EventBus() as bus:
            bus.subscribe(Note, name="h")(handler)
            await bus.publish_async(Note())
            bus.add_middleware(tracing(trace, "a"))
            await bus.publish_async(Note())
        assert trace == ["handler", "a-in", "handler", "a-out"]

    async def test_removed_middleware_stops_running(self) -> None:
        """remove_middleware takes it out of the chain for the next publish."""
        trace: list[str] = []
        mw = tracing(trace, "a")
        async with EventBus() as bus:
            bus.add_middleware(mw)
            assert bus.middleware == (mw,)
            await bus.publish_async(Note())
            bus.remove_middleware(mw)
            assert bus.middleware == ()
            await bus.publish_async(Note())
        assert trace == ["a-in", "a-out"]

    def test_middleware_and_hooks_are_read_only_views(self) -> None:
        """bus.middleware and bus.hooks list what was added, in order, as tuples that
        cannot change the bus."""
        first, second = tracing([], "a"), tracing([], "b")
        bus = EventBus()
        bus.add_middleware(first)
        bus.add_middleware(second)
        hook = bus.on_publish(lambda event: None)
        assert bus.middleware == (first, second)
        assert bus.hooks == (hook,)
        assert isinstance(bus.middleware, tuple)
        assert isinstance(bus.hooks, tuple)

    async def test_short_circuit_skips_the_handlers(self) -> None:
        """A middleware that returns without call_next stops dispatch."""
        called: list[str] = []

        async def gate(event: Event, call_next: CallNext) -> list[HandlerOutcome]:
            if isinstance(event, Note) and event.text == "blocked":
                return []
            return await call_next(event)

        async with EventBus() as bus:
            bus.add_middleware(gate)
            bus.subscribe(Note, name="h")(lambda e: called.append(e.text))
            blocked = await bus.publish_async(Note("blocked"))
            passed = await bus.publish_async(Note("fine"))
        assert called == ["fine"]
        assert len(blocked) == 0
        assert [o.handler for o in passed] == ["h"]

    async def test_middleware_can_replace_the_event(self) -> None:
        """The event a middleware passes to call_next is the one handlers get."""
        seen: list[str] = []

        async def upper(event: Event, call_next: CallNext) -> list[HandlerOutcome]:
            assert isinstance(event, Note)
            return await call_next(replace(event, text=event.text.upper()))

        async with EventBus() as bus:
            bus.add_middleware(upper)
            bus.subscribe(Note, name="h")(lambda e: seen.append(e.text))
            await bus.publish_async(Note("hi"))
        assert seen == ["HI"]


class TestMiddlewareErrors:
    async def test_raising_middleware_is_reported_not_lost(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A middleware error becomes a failed outcome, an internal error and a log record."""
        boom = RuntimeError("middleware broke")

        async def broken(event: Event, call_next: CallNext) -> list[HandlerOutcome]:
            raise boom

        with caplog.at_level(logging.WARNING, logger="pubsub"):
            async with EventBus() as bus:
                bus.add_middleware(broken)
                bus.subscribe(Note, name="h")(lambda e: None)
                result = await bus.publish_async(Note())
                letters = await bus.dead_letters.list_dead_letters()
        (outcome,) = result.outcomes
        assert outcome.status is OutcomeStatus.FAILED
        assert outcome.error is boom
        ((where, error),) = bus.internal_errors
        assert where.startswith("middleware ")
        assert "broken" in where
        assert error is boom
        assert "middleware broke" in caplog.text
        assert [entry.message for entry in letters] == ["middleware broke"]
