"""Tracing: a worker and a publisher traced with OpenTelemetry, the publisher's trace
continued by the worker in another process. Needs the otel extra and the SDK::

    pip install 'pubsub-workbench[otel]' opentelemetry-sdk
    pubsub publish tracing.OrderPaid --data '{"order_id": "A-1"}' --app examples/tracing.py --tracing
    pubsub run examples/tracing.py --once --tracing

Configuring the SDK is the application's part, done here as a handlers module does it:
every finished span is printed as one JSON line on stderr. In production, export with
``BatchSpanProcessor(OTLPSpanExporter())`` instead (package
opentelemetry-exporter-otlp), or leave this out and run the command under
``opentelemetry-instrument``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from core import Event, Router


def one_line(span: ReadableSpan) -> str:
    return span.to_json(indent=None) + "\n"


provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
provider.add_span_processor(
    SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr, formatter=one_line))
)
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("shop")


@dataclass(frozen=True, slots=True)
class OrderPaid(Event, type_name="tracing.OrderPaid"):
    order_id: str


router = Router()


@router.subscribe(OrderPaid)
async def send_receipt(event: OrderPaid) -> None:
    # A span of the handler's own: a child of its "process tracing.OrderPaid" span.
    with tracer.start_as_current_span("render receipt") as span:
        span.set_attribute("shop.order_id", event.order_id)
