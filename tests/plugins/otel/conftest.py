"""Fixtures of the OpenTelemetry tests: an SDK tracer provider of the test's own, passed
to the instrumentation explicitly (the global provider is never set in this process),
exporting finished spans to memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer
from otel_helpers import Spans


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
def spans(exporter: InMemorySpanExporter) -> Spans:
    return Spans(exporter)


@pytest.fixture
def tracer(provider: TracerProvider) -> Tracer:
    """The tracer a handler uses for spans of its own."""
    return provider.get_tracer("tests.handlers")
