"""Hooks and collectors: on_publish sees every event before dispatch; a hook or a
metrics collector that raises is reported and disabled, never allowed to kill dispatch."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from core import (
    BreakerPolicy,
    Event,
    EventBus,
    InMemoryMetrics,
    MetricsCollector,
    OutcomeStatus,
    PublishDetails,
)
from core.metrics import HandlerRecorder, NullMetrics
from core.policies import BreakerState
from core.testing import FakeClock


@dataclass(frozen=True, slots=True)
class Tick(Event, type_name="tests.core.hooks.Tick"):
    n: int = 0


class TestOnPublish:
    async def test_hook_sees_every_event_before_dispatch(self) -> None:
        """Each published event reaches the hook before any handler runs."""
        order: list[str] = []
        async with EventBus() as bus:
            bus.on_publish(lambda d: order.append(f"hook {d.event.n}"))
            bus.subscribe(Tick, name="h")(lambda e: order.append(f"handler {e.n}"))
            await bus.publish_async(Tick(1))
            await bus.publish_async(Tick(2))
        assert order == ["hook 1", "handler 1", "hook 2", "handler 2"]

    async def test_hook_sees_events_nobody_handles(self) -> None:
        """An event without handlers still reaches the hook."""
        seen: list[Event] = []
        async with EventBus() as bus:
            bus.on_publish(lambda d: seen.append(d.event))
            event = Tick()
            await bus.publish_async(event)
        assert seen == [event]

    async def test_raising_hook_is_reported_and_removed(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A hook that raises is logged, counted, removed, and dispatch goes on."""
        calls: list[int] = []
        handled: list[int] = []
        good: list[int] = []

        def bad(details: PublishDetails) -> None:
            calls.append(1)
            raise RuntimeError("hook broke")

        with caplog.at_level(logging.WARNING, logger="pubsub"):
            async with EventBus() as bus:
                bus.on_publish(bad)
                bus.on_publish(lambda e: good.append(1))
                bus.subscribe(Tick, name="h")(lambda e: handled.append(e.n))
                first = await bus.publish_async(Tick(1))
                await bus.publish_async(Tick(2))
        assert first.ok
        assert calls == [1]
        assert good == [1, 1]
        assert handled == [1, 2]
        ((where, exc),) = bus.internal_errors
        assert "on_publish hook" in where
        assert str(exc) == "hook broke"
        assert bus.statistics().internal_errors == 1
        assert "hook broke" in caplog.text


class BrokenLookup(InMemoryMetrics):
    """A collector that fails when asked for a handler's recorder."""

    def for_handler(self, handler: str, event_type: str) -> HandlerRecorder:
        raise RuntimeError("collector broke")


class BrokenBreakerReport(InMemoryMetrics):
    """A collector that fails when told about a breaker state change."""

    def breaker_changed(self, handler: str, state: BreakerState) -> None:
        raise RuntimeError("breaker report broke")


class TestBrokenCollector:
    def test_in_memory_metrics_is_a_collector(self) -> None:
        """The default collector satisfies the MetricsCollector protocol."""
        assert isinstance(InMemoryMetrics(), MetricsCollector)

    async def test_raising_collector_is_reported_and_disabled(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A collector that raises is replaced by a null one; handlers still run."""
        handled: list[int] = []
        with caplog.at_level(logging.WARNING, logger="pubsub"):
            async with EventBus(metrics=BrokenLookup()) as bus:
                bus.subscribe(Tick, name="h")(lambda e: handled.append(e.n))
                result = await bus.publish_async(Tick(1))
                again = await bus.publish_async(Tick(2))
        assert result.ok
        assert again.ok
        assert handled == [1, 2]
        assert isinstance(bus.metrics, NullMetrics)
        ((where, exc),) = bus.internal_errors
        assert "metrics collector" in where
        assert str(exc) == "collector broke"
        assert "collector broke" in caplog.text

    async def test_raising_breaker_report_is_reported_and_disabled(self) -> None:
        """A collector failing on breaker_changed is reported once and then disabled."""
        metrics: Any = BrokenBreakerReport()

        async def failing(event: Tick) -> None:
            raise ValueError("down")

        clock = FakeClock()
        async with EventBus(metrics=metrics, clock=clock) as bus:
            policy = BreakerPolicy(failure_threshold=1, reset_timeout=1.0)
            bus.subscribe(Tick, name="h", breaker=policy)(failing)
            await bus.publish_async(Tick())  # opens the breaker: the report raises
            clock.advance(1.0)
            await bus.publish_async(Tick())  # half-open, then open again
        assert [str(exc) for _, exc in bus.internal_errors] == ["breaker report broke"]
        assert isinstance(bus.metrics, NullMetrics)


class _ExplodingRecorder:
    """A recorder whose every method raises."""

    def __getattr__(self, name: str) -> Any:
        def boom(*args: Any) -> None:
            raise RuntimeError(f"{name} broke")

        return boom


class BrokenRecorders(InMemoryMetrics):
    """A collector that hands out recorders that raise when used."""

    def for_handler(self, handler: str, event_type: str) -> HandlerRecorder:
        return _ExplodingRecorder()  # type: ignore[return-value]

    def for_event_type(self, event_type: str) -> Any:
        return _ExplodingRecorder()


class TestBrokenRecorders:
    @pytest.mark.parametrize("handlers", [1, 3], ids=["one-handler", "three-handlers"])
    @pytest.mark.parametrize("fails", [False, True], ids=["ok", "failing"])
    async def test_recorder_raising_on_the_hot_path_is_reported(
        self, handlers: int, fails: bool
    ) -> None:
        """A recorder that raises (published, succeeded, failed, dead_lettered) never
        reaches the publisher: the handlers' outcomes stand, the error is reported
        once and the collector is replaced by a null one."""
        ran: list[int] = []

        async def handler(event: Tick) -> None:
            ran.append(event.n)
            if fails:
                raise ValueError("handler broke")

        bus = EventBus(metrics=BrokenRecorders())
        for i in range(handlers):
            bus.subscribe(Tick, name=f"h{i}")(handler)
        first = await bus.publish_async(Tick(1))
        second = await bus.publish_async(Tick(2))
        assert ran == [1] * handlers + [2] * handlers
        expected = OutcomeStatus.FAILED if fails else OutcomeStatus.OK
        assert [o.status for o in first] == [expected] * handlers
        assert [o.status for o in second] == [expected] * handlers
        assert isinstance(bus.metrics, NullMetrics)
        ((where, exc),) = bus.internal_errors
        assert "metrics collector" in where
        assert str(exc).endswith("broke")
        await bus.aclose()
