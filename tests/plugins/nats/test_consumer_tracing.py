"""OpenTelemetry through JetStream: the trace context a traced producer stores with an
event (``Pubsub-H-traceparent``) reaches the worker's consumer span, which continues
the producer's trace, on both server versions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from nats_servers import NatsServer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core import EventBus
from core.events import Event
from plugins.nats import JetStreamEventStore
from plugins.otel import instrument

BOUND = 30  # seconds: a safety net against a hang, never a timed assertion


@dataclass(frozen=True, slots=True)
class Shipped(Event, type_name="nats.tracing.Shipped"):
    order: str


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield tp
    finally:
        tp.shutdown()


@pytest.fixture
async def store(nats_server: NatsServer, namespace: str) -> AsyncIterator[JetStreamEventStore]:
    opened = await asyncio.wait_for(
        JetStreamEventStore.open(f"{nats_server.url}?ns={namespace}"), BOUND
    )
    try:
        yield opened
    finally:
        await opened.aclose()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def test_the_workers_span_continues_the_producers_trace(
    store: JetStreamEventStore, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with EventBus(store, consume=False) as producer:
        instrument(producer, tracer_provider=provider)
        await producer.publish_async(Shipped("o-1"))
    (record,) = [r async for r in store.read()]
    assert "traceparent" in record.headers

    seen = asyncio.Event()

    async def ship(event: Shipped) -> None:
        seen.set()

    worker = EventBus(store, group="shipping")
    worker.subscribe(Shipped, name="ship")(ship)
    instrument(worker, tracer_provider=provider)
    async with worker:
        stop = asyncio.Event()
        follow = asyncio.ensure_future(worker.follow(stop, poll_interval=0.05))
        await asyncio.wait_for(seen.wait(), BOUND)
        stop.set()
        await asyncio.wait_for(follow, BOUND)

    (publish,) = named(exporter, "publish nats.tracing.Shipped")
    (process,) = named(exporter, "process nats.tracing.Shipped")
    assert publish.context is not None
    assert process.context is not None
    assert process.parent is not None
    assert process.context.trace_id == publish.context.trace_id
    assert process.parent.span_id == publish.context.span_id
    assert (process.attributes or {})["messaging.consumer.group.name"] == "shipping"
