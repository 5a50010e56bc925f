"""What the OpenTelemetry tests share: their event classes and a view of the finished
spans of one test."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core import Event


@dataclass(frozen=True, slots=True)
class Ordered(Event, type_name="tests.otel.Ordered"):
    order_id: str = "o-1"


@dataclass(frozen=True, slots=True)
class Shipped(Event, type_name="tests.otel.Shipped"):
    order_id: str = "o-1"


class Spans:
    """The finished spans of one test, by name."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    @property
    def all(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, [s.name for s in self.all]
        return found[0]

    def of_handler(self, handler: str) -> list[ReadableSpan]:
        """The consumer spans of ``handler``, in the order they ended."""
        return [s for s in self.all if (s.attributes or {}).get("pubsub.handler") == handler]


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id
