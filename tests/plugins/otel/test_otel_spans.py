"""OpenTelemetry spans in one process: a producer span per publish and a consumer span
per handler attempt, named and attributed per the messaging conventions, errors
recorded, retries as spans of their own, and every handler's own spans nested under its
consumer span (async, sync in the executor, sync inline, several handlers at once)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import (
    NonRecordingSpan,
    NoOpTracerProvider,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    Tracer,
    TraceState,
    use_span,
)
from otel_helpers import Ordered, Shipped, Spans, parent_id, span_id, trace_id

from core import EventBus, HandlerContext, MemoryEventStore, OutcomeStatus, RetryPolicy
from core.testing import FakeClock, ScriptedRandom
from plugins.otel import instrument

ORDERED = "tests.otel.Ordered"


class TestNamesAndAttributes:
    async def test_producer_and_consumer_spans(
        self, provider: TracerProvider, spans: Spans
    ) -> None:
        """One publish: a PRODUCER span ``publish <type>`` and, for each handler, a
        CONSUMER span ``process <type>`` with the messaging and pubsub attributes."""
        event = Ordered("o-7")
        async with EventBus() as bus:
            bus.subscribe(Ordered, name="ship")(_noop)
            instrument(bus, tracer_provider=provider)
            await bus.publish_async(event)
        publish = spans.one(f"publish {ORDERED}")
        process = spans.one(f"process {ORDERED}")
        assert publish.kind is SpanKind.PRODUCER
        assert process.kind is SpanKind.CONSUMER
        assert dict(publish.attributes or {}) == {
            "messaging.system": "pubsub",
            "messaging.operation.name": "publish",
            "messaging.operation.type": "send",
            "messaging.destination.name": ORDERED,
            "messaging.message.id": str(event.id),
        }
        assert dict(process.attributes or {}) == {
            "messaging.system": "pubsub",
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": ORDERED,
            "messaging.message.id": str(event.id),
            "pubsub.handler": "ship",
            "pubsub.attempt": 1,
            "pubsub.outcome": "ok",
        }
        assert process.status.status_code is StatusCode.UNSET
        assert parent_id(process) == span_id(publish)
        assert trace_id(process) == trace_id(publish)

    async def test_stored_publish_names_seq_and_group(
        self, provider: TracerProvider, spans: Spans
    ) -> None:
        """On a store the spans carry the sequence number, and the consumer span the
        group; the stored traceparent is the producer span's context."""
        store = MemoryEventStore()
        async with EventBus(store, group="billing") as bus:
            bus.subscribe(Ordered, name="ship")(_noop)
            instrument(bus, tracer_provider=provider)
            await bus.publish_async(Ordered())
        publish = spans.one(f"publish {ORDERED}")
        process = spans.one(f"process {ORDERED}")
        assert (publish.attributes or {})["pubsub.seq"] == 1
        attrs = process.attributes or {}
        assert attrs["messaging.consumer.group.name"] == "billing"
        assert (attrs["pubsub.seq"], attrs["pubsub.source"], attrs["pubsub.redelivery"]) == (
            1,
            "live",
            False,
        )
        (record,) = [r async for r in store.read()]
        version, trace, span, _flags = record.headers["traceparent"].split("-")
        assert version == "00"
        assert int(trace, 16) == trace_id(publish)
        assert int(span, 16) == span_id(publish)
        assert parent_id(process) == span_id(publish)

    async def test_tracestate_is_stored_and_carried_on(
        self, provider: TracerProvider, spans: Spans
    ) -> None:
        """Published inside a trace that has a tracestate: the stored headers carry it
        beside the traceparent, and the worker's consumer span keeps it."""
        store = MemoryEventStore()
        remote = SpanContext(
            trace_id=0x0AF7651916CD43DD8448EB211C80319C,
            span_id=0xB7AD6B7169203331,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
            trace_state=TraceState([("vendor", "v1")]),
        )
        async with EventBus(store, consume=False) as producer:
            instrument(producer, tracer_provider=provider)
            with use_span(NonRecordingSpan(remote)):
                await producer.publish_async(Ordered())
        (record,) = [r async for r in store.read()]
        assert record.headers["tracestate"] == "vendor=v1"
        assert record.headers["traceparent"].split("-")[1] == f"{remote.trace_id:032x}"
        worker = EventBus(store)
        worker.subscribe(Ordered, name="ship")(_noop)
        instrument(worker, tracer_provider=provider)
        async with worker:
            await worker.drain()
        process = spans.one(f"process {ORDERED}")
        assert process.context is not None
        assert process.context.trace_state == TraceState([("vendor", "v1")])
        assert parent_id(spans.one(f"publish {ORDERED}")) == remote.span_id

    async def test_without_an_sdk_nothing_is_stored(self) -> None:
        """With a no-op tracer provider (no SDK configured) no header is stored."""
        store = MemoryEventStore()
        async with EventBus(store, consume=False) as bus:
            instrument(bus, tracer_provider=NoOpTracerProvider())
            await bus.publish_async(Ordered())
        (record,) = [r async for r in store.read()]
        assert dict(record.headers) == {}

    async def test_a_duplicate_publish_says_so(
        self, provider: TracerProvider, spans: Spans
    ) -> None:
        """Publishing a stored id again: a publish span marked as a duplicate."""
        event = Ordered()
        async with EventBus(MemoryEventStore(), consume=False) as bus:
            instrument(bus, tracer_provider=provider)
            await bus.publish_async(event)
            await bus.publish_async(event)
        first, again = spans.named(f"publish {ORDERED}")
        assert "pubsub.duplicate" not in (first.attributes or {})
        assert (again.attributes or {})["pubsub.duplicate"] is True
        assert (again.attributes or {})["pubsub.seq"] == 1


class TestErrors:
    async def test_a_failure_is_recorded_on_its_span(
        self, provider: TracerProvider, spans: Spans
    ) -> None:
        """A handler that raises: the exception event, error.type, status ERROR, outcome
        failed; the producer span is not an error (the publish itself succeeded)."""
        async with EventBus() as bus:

            @bus.subscribe(Ordered, name="boom")
            async def boom(event: Ordered) -> None:
                raise LookupError("no such order")

            instrument(bus, tracer_provider=provider)
            result = await bus.publish_async(Ordered())
        assert result.outcomes[0].status is OutcomeStatus.FAILED
        process = spans.one(f"process {ORDERED}")
        attrs = process.attributes or {}
        assert attrs["pubsub.outcome"] == "failed"
        assert attrs["error.type"] == "builtins.LookupError"
        assert process.status.status_code is StatusCode.ERROR
        assert process.status.description == "LookupError: no such order"
        (exc_event,) = process.events
        assert exc_event.name == "exception"
        assert (exc_event.attributes or {})["exception.message"] == "no such order"
        assert spans.one(f"publish {ORDERED}").status.status_code is StatusCode.UNSET

    async def test_raise_on_error_still_ends_the_spans(
        self, provider: TracerProvider, spans: Spans
    ) -> None:
        """raise_on_error raises after both spans ended (neither is left open)."""
        async with EventBus() as bus:
            bus.subscribe(Ordered, name="boom")(_fail)
            instrument(bus, tracer_provider=provider)
            with pytest.raises(ExceptionGroup):
                await bus.publish_async(Ordered(), raise_on_error=True)
        assert [s.name for s in spans.all] == [f"process {ORDERED}", f"publish {ORDERED}"]

    async def test_each_attempt_is_a_span(self, provider: TracerProvider, spans: Spans) -> None:
        """A handler that succeeds on its third attempt: three sibling spans numbered
        1, 2, 3, the first two ``retry`` with their error, the last ``ok``."""
        calls: list[int] = []
        async with EventBus(clock=FakeClock(), rng=ScriptedRandom([0.0])) as bus:

            @bus.subscribe(Ordered, name="flaky", retry=RetryPolicy(max_attempts=5, base=0.1))
            async def flaky(event: Ordered) -> None:
                calls.append(1)
                if len(calls) < 3:
                    raise ConnectionError(f"try {len(calls)}")

            instrument(bus, tracer_provider=provider)
            await bus.publish_async(Ordered())
        attempts = spans.of_handler("flaky")
        publish = spans.one(f"publish {ORDERED}")
        got = [
            ((s.attributes or {})["pubsub.attempt"], (s.attributes or {})["pubsub.outcome"])
            for s in attempts
        ]
        assert got == [(1, "retry"), (2, "retry"), (3, "ok")]
        assert [s.status.status_code for s in attempts] == [
            StatusCode.ERROR,
            StatusCode.ERROR,
            StatusCode.UNSET,
        ]
        assert {parent_id(s) for s in attempts} == {span_id(publish)}

    async def test_a_timeout_is_recorded(self, provider: TracerProvider, spans: Spans) -> None:
        """An attempt that times out (no retry): outcome timed_out, a TimeoutError."""
        clock = FakeClock()
        async with EventBus(clock=clock) as bus:

            @bus.subscribe(Ordered, name="slow", timeout=1.0)
            async def slow(event: Ordered) -> None:
                await clock.sleep(10)

            instrument(bus, tracer_provider=provider)
            await bus.publish_async(Ordered())
        (span,) = spans.of_handler("slow")
        assert (span.attributes or {})["pubsub.outcome"] == "timed_out"
        assert (span.attributes or {})["error.type"] == "builtins.TimeoutError"


class TestNesting:
    @pytest.mark.parametrize(
        "kind", [pytest.param("async", id="async"), pytest.param("thread", id="sync-thread")]
    )
    async def test_handler_spans_nest_under_their_consumer_span(
        self, provider: TracerProvider, spans: Spans, tracer: Tracer, kind: str
    ) -> None:
        """A span the handler starts is a child of its consumer span (for a sync
        handler too, in the executor's thread)."""
        threads: list[bool] = []

        def sync_work(event: Ordered) -> None:
            threads.append(threading.current_thread() is threading.main_thread())
            with tracer.start_as_current_span("charge card"):
                pass

        async def async_work(event: Ordered) -> None:
            with tracer.start_as_current_span("charge card"):
                pass

        async with EventBus() as bus:
            bus.subscribe(Ordered, name="charge")(async_work if kind == "async" else sync_work)
            instrument(bus, tracer_provider=provider)
            await bus.publish_async(Ordered())
        own = spans.one("charge card")
        process = spans.one(f"process {ORDERED}")
        assert parent_id(own) == span_id(process)
        assert trace_id(own) == trace_id(process)
        if kind == "thread":
            assert threads == [False]

    async def test_inline_sync_handler_nests_too(
        self, provider: TracerProvider, spans: Spans, tracer: Tracer
    ) -> None:
        """A sync handler marked inline (called on the loop) nests the same way."""

        def inline_work(event: Ordered) -> None:
            with tracer.start_as_current_span("count"):
                pass

        async with EventBus() as bus:
            bus.subscribe(Ordered, name="count", inline=True)(inline_work)
            instrument(bus, tracer_provider=provider)
            await bus.publish_async(Ordered())
        assert parent_id(spans.one("count")) == span_id(spans.one(f"process {ORDERED}"))

    async def test_several_handlers_each_get_their_own_span(
        self, provider: TracerProvider, spans: Spans, tracer: Tracer
    ) -> None:
        """Three handlers of one event (async, suspending async, sync in a thread): a
        consumer span each, all children of the publish span, and each handler's own
        span under its own consumer span."""

        def make(name: str, *, suspend: bool) -> Any:
            async def handler(event: Ordered) -> None:
                if suspend:
                    await _yield()
                with tracer.start_as_current_span(f"inside {name}"):
                    if suspend:
                        await _yield()

            return handler

        def sync_handler(event: Ordered) -> None:
            with tracer.start_as_current_span("inside c"):
                pass

        async with EventBus() as bus:
            bus.subscribe(Ordered, name="a")(make("a", suspend=False))
            bus.subscribe(Ordered, name="b")(make("b", suspend=True))
            bus.subscribe(Ordered, name="c")(sync_handler)
            instrument(bus, tracer_provider=provider)
            await bus.publish_async(Ordered())
        publish = spans.one(f"publish {ORDERED}")
        for name in ("a", "b", "c"):
            (process,) = spans.of_handler(name)
            assert parent_id(process) == span_id(publish)
            assert parent_id(spans.one(f"inside {name}")) == span_id(process)
        assert len({span_id(s) for s in spans.named(f"process {ORDERED}")}) == 3

    async def test_a_follow_up_is_published_inside_the_consumer_span(
        self, provider: TracerProvider, spans: Spans
    ) -> None:
        """A follow-up event published by a handler: its publish span is a child of
        that handler's consumer span, and its own consumers follow in the same trace."""
        async with EventBus() as bus:

            @bus.subscribe(Ordered, name="ship")
            async def ship(event: Ordered, ctx: HandlerContext[Ordered]) -> None:
                await ctx.publish(Shipped(event.order_id))

            bus.subscribe(Shipped, name="notify")(_noop)
            instrument(bus, tracer_provider=provider)
            await bus.publish_async(Ordered())
        (ship_span,) = spans.of_handler("ship")
        follow_up = spans.one("publish tests.otel.Shipped")
        (notify_span,) = spans.of_handler("notify")
        assert parent_id(follow_up) == span_id(ship_span)
        assert parent_id(notify_span) == span_id(follow_up)
        assert len({trace_id(s) for s in spans.all}) == 1


async def _noop(event: Ordered) -> None:
    return None


async def _fail(event: Ordered) -> None:
    raise ValueError("nope")


async def _yield() -> None:
    await asyncio.sleep(0)
