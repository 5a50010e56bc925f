"""OpenTelemetry context through the log, in one process with two buses on one SQLite
file: a worker's consumer spans continue the producer's trace (their parent is the
producer span); a replay and a dead-letter re-drive start their own trace and link to the
original instead; an event stored without a trace context starts a new trace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from otel_helpers import Ordered, Spans, parent_id, span_id, trace_id

from core import EventBus
from core.store import EventStore
from plugins.otel import instrument
from plugins.sqlite import open_sqlite_store

ORDERED = "tests.otel.Ordered"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    opened = await open_sqlite_store(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        yield opened
    finally:
        await opened.aclose()


async def produce(store: EventStore, provider: TracerProvider | None, n: int = 1) -> None:
    """Publish ``n`` events from a producer bus (it does not consume)."""
    async with EventBus(store, consume=False) as producer:
        if provider is not None:
            instrument(producer, tracer_provider=provider)
        for i in range(n):
            await producer.publish_async(Ordered(f"o-{i}"))


class TestWorker:
    async def test_consumer_spans_continue_the_producer_trace(
        self, store: EventStore, provider: TracerProvider, spans: Spans, tracer: Tracer
    ) -> None:
        """The worker's consumer span has the producer's trace id and the producer
        span as its parent; the handler's own span is under the consumer span."""
        await produce(store, provider)

        async def ship(event: Ordered) -> None:
            with tracer.start_as_current_span("ship it"):
                pass

        worker = EventBus(store, group="shipping")
        worker.subscribe(Ordered, name="ship")(ship)
        instrument(worker, tracer_provider=provider)
        async with worker:
            await worker.drain()
        publish = spans.one(f"publish {ORDERED}")
        process = spans.one(f"process {ORDERED}")
        assert trace_id(process) == trace_id(publish)
        assert parent_id(process) == span_id(publish)
        assert parent_id(spans.one("ship it")) == span_id(process)
        attrs = process.attributes or {}
        assert attrs["messaging.consumer.group.name"] == "shipping"
        assert attrs["pubsub.source"] == "live"
        assert not process.links

    async def test_several_events_keep_their_own_traces(
        self, store: EventStore, provider: TracerProvider, spans: Spans
    ) -> None:
        """Three events published apart: each consumer span under its own producer."""
        await produce(store, provider, n=3)
        worker = EventBus(store)
        worker.subscribe(Ordered, name="ship")(_noop)
        instrument(worker, tracer_provider=provider)
        async with worker:
            await worker.drain()
        producers = {
            (s.attributes or {})["messaging.message.id"]: s
            for s in spans.named(f"publish {ORDERED}")
        }
        consumers = spans.named(f"process {ORDERED}")
        assert len(consumers) == 3
        assert len({trace_id(s) for s in consumers}) == 3
        for process in consumers:
            publish = producers[(process.attributes or {})["messaging.message.id"]]
            assert parent_id(process) == span_id(publish)

    async def test_an_untraced_event_starts_a_new_trace(
        self, store: EventStore, provider: TracerProvider, spans: Spans
    ) -> None:
        """An event published without tracing (no context stored): a root span."""
        await produce(store, None)
        worker = EventBus(store)
        worker.subscribe(Ordered, name="ship")(_noop)
        instrument(worker, tracer_provider=provider)
        async with worker:
            await worker.drain()
        process = spans.one(f"process {ORDERED}")
        assert process.parent is None
        assert not process.links


class TestNotTheOriginal:
    async def test_replay_links_to_the_original(
        self, store: EventStore, provider: TracerProvider, spans: Spans
    ) -> None:
        """A replayed event's consumer span is in a trace of its own, without a parent,
        with a link to the producer span (and says it is a replay)."""
        await produce(store, provider)
        bus = EventBus(store, consume=False)
        bus.subscribe(Ordered, name="ship")(_noop)
        instrument(bus, tracer_provider=provider)
        async with bus:
            report = await bus.replay(store.read())
        assert report.events == 1
        publish = spans.one(f"publish {ORDERED}")
        process = spans.one(f"process {ORDERED}")
        assert process.parent is None
        assert trace_id(process) != trace_id(publish)
        (link,) = process.links
        assert link.context.trace_id == trace_id(publish)
        assert link.context.span_id == span_id(publish)
        attrs = process.attributes or {}
        assert (attrs["pubsub.source"], attrs["pubsub.redelivery"]) == ("replay", True)
        assert "messaging.consumer.group.name" not in attrs

    async def test_replay_inside_a_span_of_the_caller_nests_there(
        self, store: EventStore, provider: TracerProvider, spans: Spans, tracer: Tracer
    ) -> None:
        """A replay run inside a span of the caller's: the consumer spans are its
        children (the caller's trace), still linking to the original."""
        await produce(store, provider)
        bus = EventBus(store, consume=False)
        bus.subscribe(Ordered, name="ship")(_noop)
        instrument(bus, tracer_provider=provider)
        async with bus:
            with tracer.start_as_current_span("nightly rebuild"):
                await bus.replay(store.read())
        rebuild = spans.one("nightly rebuild")
        process = spans.one(f"process {ORDERED}")
        assert parent_id(process) == span_id(rebuild)
        (link,) = process.links
        assert link.context.span_id == span_id(spans.one(f"publish {ORDERED}"))

    async def test_redrive_links_to_the_original(
        self, store: EventStore, provider: TracerProvider, spans: Spans
    ) -> None:
        """A dead letter re-driven: the re-drive's consumer span links to the producer
        span and is not its child."""
        await produce(store, provider)
        calls: list[int] = []

        async def flaky(event: Ordered) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("down")

        worker = EventBus(store, group="g")
        worker.subscribe(Ordered, name="flaky")(flaky)
        instrument(worker, tracer_provider=provider)
        async with worker:
            await worker.drain()
        (letter,) = await store.list_dead_letters()
        assert letter.id is not None
        fixer = EventBus(store, consume=False)
        fixer.subscribe(Ordered, name="flaky")(flaky)
        instrument(fixer, tracer_provider=provider)
        async with fixer:
            result = await fixer.redrive(letter.id)
        assert result.resolved
        publish = spans.one(f"publish {ORDERED}")
        live, redriven = spans.of_handler("flaky")
        assert parent_id(live) == span_id(publish)
        assert (live.attributes or {})["pubsub.outcome"] == "failed"
        assert redriven.parent is None
        assert trace_id(redriven) != trace_id(publish)
        (link,) = redriven.links
        assert link.context.span_id == span_id(publish)
        attrs = redriven.attributes or {}
        assert (attrs["pubsub.source"], attrs["pubsub.outcome"]) == ("redrive", "ok")
        assert attrs["messaging.consumer.group.name"] == "g"


async def _noop(event: Ordered) -> None:
    return None
