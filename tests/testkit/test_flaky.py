"""fail_times: a handler that fails N times, then behaves, keeping its name, its
signature and its kind (async or sync)."""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

import pytest

from core import EventBus, HandlerContext, RetryPolicy
from core.routing import handler_name
from core.testing import FakeClock
from plugins.testkit import FailTimes, InjectedFailure, Recorder, fail_times

from .test_recorder import Order


async def charge(event: Order) -> str:
    return f"charged {event.order_id}"


def bill(event: Order) -> str:
    return threading.current_thread().name


class TestFailures:
    """How many calls fail, and with what."""

    async def test_fails_n_times_then_calls_through(
        self, pubsub_bus: EventBus, pubsub_clock: FakeClock
    ) -> None:
        """Two failures, then the handler's own value; the attempts and the clock say
        exactly two retries happened (backoffs 2 and 4)."""
        flaky = fail_times(2, exc=ConnectionError)
        pubsub_bus.subscribe(Order, retry=RetryPolicy(max_attempts=3, base=2.0))(flaky(charge))
        result = await asyncio.wait_for(pubsub_bus.publish_async(Order("A-1")), 10)
        (outcome,) = result.outcomes
        assert (outcome.ok, outcome.attempts, outcome.value) == (True, 3, "charged A-1")
        assert (flaky.calls, flaky.failed) == (3, 2)
        assert pubsub_clock.sleeps == [2.0, 4.0]

    async def test_too_few_attempts_fail_with_the_injected_error(
        self, pubsub_bus: EventBus, pubsub_recorder: Recorder
    ) -> None:
        """With fewer attempts than failures the handler gives up with the injected
        exception, whose message says which failure it was."""
        pubsub_bus.subscribe(Order, retry=2)(fail_times(3)(charge))
        await asyncio.wait_for(pubsub_bus.publish_async(Order("A-1")), 10)
        (delivery,) = pubsub_recorder.deliveries_to(charge)
        assert isinstance(delivery.error, InjectedFailure)
        assert str(delivery.error) == "fail_times: injected failure 2 of 3"
        assert delivery.attempts == 2

    async def test_exception_instance_is_raised_as_is(self) -> None:
        """An exception instance is raised itself, each time."""
        boom = KeyError("gone")
        wrapped = fail_times(2, exc=boom)(charge)
        for _ in range(2):
            with pytest.raises(KeyError) as raised:
                await wrapped(Order("A-1"))
            assert raised.value is boom
        assert await wrapped(Order("A-1")) == "charged A-1"

    async def test_count_is_shared_until_reset_or_per_event(self) -> None:
        """By default the first N calls fail whatever the event; reset() starts again;
        with per_event each event fails its own first N calls."""
        shared = fail_times(1)
        wrapped = shared(charge)
        with pytest.raises(InjectedFailure):
            await wrapped(Order("A-1"))
        assert await wrapped(Order("B-1")) == "charged B-1"
        shared.reset()
        assert (shared.calls, shared.failed) == (0, 0)
        with pytest.raises(InjectedFailure):
            await wrapped(Order("B-1"))

        each = fail_times(1, per_event=True)(charge)
        a, b = Order("A-1"), Order("B-1")
        for event in (a, b):
            with pytest.raises(InjectedFailure):
                await each(event)
        assert [await each(a), await each(b)] == ["charged A-1", "charged B-1"]

    def test_bad_arguments(self) -> None:
        """A negative count, an exc that is no exception, a non-callable: refused."""
        with pytest.raises(ValueError, match=">= 0"):
            fail_times(-1)
        with pytest.raises(TypeError, match="exception class or instance"):
            fail_times(1, exc=int)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="wraps a handler"):
            fail_times(1)(42)  # type: ignore[type-var]


class TestWrapper:
    """The wrapper looks to the bus like the handler it wraps."""

    def test_keeps_the_default_name(self) -> None:
        """A function, a partial and a callable object keep their default names."""

        class Gateway:
            async def __call__(self, event: Order) -> None:
                pass

        part = functools.partial(charge)
        for handler in (charge, part, Gateway()):
            assert handler_name(fail_times(1)(handler)) == handler_name(handler)

    async def test_sync_handler_stays_sync(self, pubsub_bus: EventBus) -> None:
        """A sync handler's wrapper is sync: the bus runs it in its threads."""
        pubsub_bus.subscribe(Order, retry=2)(fail_times(1)(bill))
        result = await asyncio.wait_for(pubsub_bus.publish_async(Order("A-1")), 10)
        (outcome,) = result.outcomes
        assert (outcome.ok, outcome.attempts) == (True, 2)
        assert outcome.value.startswith("pubsub-sync")

    async def test_context_is_still_passed(self, pubsub_bus: EventBus) -> None:
        """A handler taking a HandlerContext gets one through the wrapper, with the
        attempt number."""
        attempts: list[int] = []

        async def with_ctx(event: Order, ctx: HandlerContext[Order]) -> None:
            attempts.append(ctx.attempt)

        pubsub_bus.subscribe(Order, retry=3)(fail_times(2)(with_ctx))
        await asyncio.wait_for(pubsub_bus.publish_async(Order("A-1")), 10)
        assert attempts == [3]

    def test_repr(self) -> None:
        """The controller's repr says its settings and counts."""
        flaky: Any = FailTimes(2, exc=ValueError)
        assert repr(flaky) == (
            "FailTimes(2, exc=<class 'ValueError'>, per_event=False, calls=0, failed=0)"
        )
