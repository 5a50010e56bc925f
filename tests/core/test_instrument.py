"""Instrumentation seam: what a bus tells its instrumentation (publish, delivery, each
handler attempt, in that nesting), the headers it stores and hands back, and that an
instrumentation which raises is reported and removed while dispatch goes on."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from core import (
    AttemptOutcome,
    Delivery,
    Event,
    EventBus,
    MemoryEventStore,
    OutcomeStatus,
    RetryPolicy,
)
from core.testing import FakeClock, ScriptedRandom


@dataclass(frozen=True, slots=True)
class Job(Event, type_name="tests.core.instrument.Job"):
    n: int = 0


# What is "current" for the fake: a stack of open span names, as OpenTelemetry keeps its
# current span in a context variable.
_current: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("fake", default=())


@dataclass
class Recorder:
    """A fake Instrumentation: every span it begins and ends, with what was current."""

    headers: Mapping[str, str] | None = None
    began: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    ended: list[tuple[str, Any]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    fail_on: str | None = None

    def _begin(self, name: str) -> contextvars.Token[tuple[str, ...]]:
        if self.fail_on == name.split(" ")[0]:
            raise RuntimeError(f"broken {name}")
        self.began.append((name, _current.get()))
        return _current.set((*_current.get(), name))

    def publish(self, event: Event, *, durable: bool) -> Any:
        token = self._begin(f"publish {event.n}")  # type: ignore[attr-defined]
        recorder = self

        class Span:
            headers = recorder.headers if durable else None

            def end(self, *, seq: int | None, duplicate: bool, error: BaseException | None) -> None:
                recorder.ended.append((f"publish {event.n}", (seq, duplicate, error)))  # type: ignore[attr-defined]
                _current.reset(token)

        return Span()

    def deliver(self, delivery: Delivery) -> Any:
        self.deliveries.append(delivery)
        token = self._begin(f"deliver {delivery.event.n}")  # type: ignore[attr-defined]

        class Scope:
            def end(self) -> None:
                _current.reset(token)

        return Scope()

    def handle(self, event: Event, handler: str, attempt: int) -> Any:
        name = f"handle {handler} {attempt}"
        token = self._begin(name)
        recorder = self

        class Span:
            def end(self, outcome: AttemptOutcome, error: BaseException | None) -> None:
                recorder.ended.append((name, (outcome, type(error).__name__ if error else None)))
                _current.reset(token)

        return Span()


class TestSpans:
    async def test_publish_then_each_handler_inside_it(self) -> None:
        """Without a store: a publish span, and one handler span per handler begun while
        the publish span is current; the handler sees its own span as current."""
        rec = Recorder()
        seen: dict[str, tuple[str, ...]] = {}
        async with EventBus() as bus:

            @bus.subscribe(Job, name="a")
            async def a(event: Job) -> None:
                seen["a"] = _current.get()

            @bus.subscribe(Job, name="b")
            async def b(event: Job) -> None:
                await asyncio.sleep(0)
                seen["b"] = _current.get()

            bus.instrument(rec)
            result = await bus.publish_async(Job(1))
        assert result.ok
        assert rec.began == [
            ("publish 1", ()),
            ("handle a 1", ("publish 1",)),
            ("handle b 1", ("publish 1",)),
        ]
        assert seen == {"a": ("publish 1", "handle a 1"), "b": ("publish 1", "handle b 1")}
        assert ("publish 1", (None, False, None)) in rec.ended

    async def test_sync_handler_in_a_thread_sees_its_span(self) -> None:
        """A sync handler run in the executor sees its handler span as current."""
        rec = Recorder()
        seen: list[tuple[tuple[str, ...], bool]] = []
        async with EventBus() as bus:

            @bus.subscribe(Job, name="sync")
            def sync(event: Job) -> None:
                seen.append((_current.get(), threading.current_thread() is threading.main_thread()))

            bus.instrument(rec)
            await bus.publish_async(Job(2))
        assert seen == [(("publish 2", "handle sync 1"), False)]

    async def test_each_attempt_is_a_span_with_its_outcome(self) -> None:
        """A retried handler: one span per attempt, numbered, the last one failed."""
        rec = Recorder()
        async with EventBus(clock=FakeClock(), rng=ScriptedRandom([0.0])) as bus:

            @bus.subscribe(Job, name="flaky", retry=RetryPolicy(max_attempts=3, base=0.1))
            async def flaky(event: Job) -> None:
                raise ValueError("no")

            bus.instrument(rec)
            result = await bus.publish_async(Job(3))
        assert result.outcomes[0].status is OutcomeStatus.FAILED
        handled = [e for e in rec.ended if e[0].startswith("handle")]
        assert handled == [
            ("handle flaky 1", (AttemptOutcome.RETRY, "ValueError")),
            ("handle flaky 2", (AttemptOutcome.RETRY, "ValueError")),
            ("handle flaky 3", (AttemptOutcome.FAILED, "ValueError")),
        ]

    async def test_a_timeout_is_its_own_outcome(self) -> None:
        """The last attempt timing out ends its span as timed_out with a TimeoutError."""
        rec = Recorder()
        async with EventBus(clock=FakeClock()) as bus:

            @bus.subscribe(Job, name="slow", timeout=1.0)
            async def slow(event: Job) -> None:
                await bus._clock.sleep(5)

            bus.instrument(rec)
            await bus.publish_async(Job(4))
        assert ("handle slow 1", (AttemptOutcome.TIMED_OUT, "TimeoutError")) in rec.ended

    async def test_headers_are_stored_and_delivered_back(self) -> None:
        """On a store: the publish span's headers are appended with the event, and a
        worker bus delivering it hands the same headers to its instrumentation, with the
        handler span begun inside the delivery."""
        store = MemoryEventStore()
        producer_rec = Recorder(headers={"traceparent": "00-abc-def-01"})
        async with EventBus(store, consume=False) as producer:
            producer.instrument(producer_rec)
            await producer.publish_async(Job(5))
        (record,) = [r async for r in store.read()]
        assert dict(record.headers) == {"traceparent": "00-abc-def-01"}
        assert producer_rec.ended == [("publish 5", (1, False, None))]

        worker_rec = Recorder()
        worker = EventBus(store, group="g")
        worker.subscribe(Job, name="h")(lambda e: None)
        worker.instrument(worker_rec)
        async with worker:
            await worker.drain()
        (delivery,) = worker_rec.deliveries
        assert dict(delivery.headers) == {"traceparent": "00-abc-def-01"}
        assert (delivery.seq, delivery.group, delivery.source) == (1, "g", "live")
        assert worker_rec.began == [("deliver 5", ()), ("handle h 1", ("deliver 5",))]

    async def test_replay_and_redrive_deliver_with_stored_headers(self) -> None:
        """Replay and re-drive tell the instrumentation their source and the headers."""
        store = MemoryEventStore()
        await store.append([Job(6)], headers=[{"k": "v"}])
        rec = Recorder()
        bus = EventBus(store, consume=False)
        calls: list[int] = []

        @bus.subscribe(Job, name="h")
        async def h(event: Job) -> None:
            calls.append(event.n)
            if len(calls) == 1:
                raise ValueError("first time")

        bus.instrument(rec)
        async with bus:
            await bus.replay(store.read())
            (letter,) = await store.list_dead_letters()
            assert letter.id is not None
            redriven = await bus.redrive(letter.id)
        assert redriven.resolved
        assert [(d.source, d.seq, dict(d.headers)) for d in rec.deliveries] == [
            ("replay", 1, {"k": "v"}),
            ("redrive", 1, {"k": "v"}),
        ]

    async def test_duplicate_publish_ends_its_span_as_a_duplicate(self) -> None:
        """Publishing a stored id again ends the publish span with duplicate=True."""
        rec = Recorder()
        job = Job(7)
        async with EventBus(MemoryEventStore(), consume=False) as bus:
            bus.instrument(rec)
            await bus.publish_async(job)
            await bus.publish_async(job)
        assert [e for e in rec.ended if e[0] == "publish 7"] == [
            ("publish 7", (1, False, None)),
            ("publish 7", (1, True, None)),
        ]


class TestFreeWhenUnused:
    async def test_instrumented_bus_leaves_the_fast_path_and_comes_back(self) -> None:
        """Instrumenting a bus takes it off the inline path; removing the
        instrumentation puts it back, and nothing is recorded any more."""
        rec = Recorder()
        async with EventBus() as bus:
            bus.subscribe(Job, name="h")(_async_noop)
            assert bus._plain
            bus.instrument(rec)
            assert not bus._plain
            assert bus.instrumentation is rec
            await bus.publish_async(Job(1))
            bus.instrument(None)
            assert bus._plain
            await bus.publish_async(Job(2))
        assert [name for name, _ in rec.began] == ["publish 1", "handle h 1"]


async def _async_noop(event: Job) -> None:
    return None


class TestFailingInstrumentation:
    @pytest.mark.parametrize("where", ["publish", "handle", "deliver"])
    async def test_is_reported_removed_and_dispatch_goes_on(self, where: str) -> None:
        """An instrumentation that raises is counted in internal_errors, removed, and
        the event still reaches its handler."""
        store = MemoryEventStore()
        rec = Recorder(fail_on=where)
        handled: list[int] = []
        bus = EventBus(store, group="g")
        bus.subscribe(Job, name="h")(lambda e: handled.append(e.n))
        bus.instrument(rec)
        async with bus:
            await bus.publish_async(Job(1))
            await bus.publish_async(Job(2))
        assert handled == [1, 2]
        assert bus.instrumentation is None
        (where_, error), *more = bus.internal_errors
        assert not more
        assert where_.startswith("instrumentation ")
        assert str(error).startswith("broken")
