"""A handlers module as a traced application writes it: it configures the
OpenTelemetry SDK (the user's part) and, for the tests, writes every finished span of
this process to the JSON file named by ``TRACED_SPANS`` when the process exits.

Loaded by ``pubsub publish --app`` and ``pubsub run`` in child processes only: it sets
the process's global tracer provider.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from core import Event, Router


class JsonFileExporter(SpanExporter):
    """Keeps finished spans; writes them as one JSON list at shutdown (process exit)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spans: list[dict[str, object]] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for s in spans:
            assert s.context is not None
            self.spans.append(
                {
                    "name": s.name,
                    "kind": s.kind.name,
                    "trace_id": f"{s.context.trace_id:032x}",
                    "span_id": f"{s.context.span_id:016x}",
                    "parent_id": None if s.parent is None else f"{s.parent.span_id:016x}",
                    "attributes": dict(s.attributes or {}),
                    "links": [f"{link.context.span_id:016x}" for link in s.links],
                    "status": s.status.status_code.name,
                }
            )
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.path.write_bytes(orjson.dumps(self.spans))


provider = TracerProvider()  # shuts down (and so writes the file) at exit
provider.add_span_processor(SimpleSpanProcessor(JsonFileExporter(Path(os.environ["TRACED_SPANS"]))))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer(__name__)


@dataclass(frozen=True, slots=True)
class OrderPlaced(Event, type_name="traced.OrderPlaced"):
    order_id: str


router = Router()


@router.subscribe(OrderPlaced, name="ship")
async def ship(event: OrderPlaced) -> None:
    with tracer.start_as_current_span("ship order"):
        pass


@router.subscribe(OrderPlaced, name="invoice")
def invoice(event: OrderPlaced) -> None:
    with tracer.start_as_current_span("write invoice"):
        pass
