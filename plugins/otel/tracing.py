"""Tracing: the OpenTelemetry ``Instrumentation`` of a bus (``core.instrument``), on
opentelemetry-api only.

Spans follow the messaging semantic conventions:

* ``publish <type>`` (kind PRODUCER) for each publish: ``messaging.system`` ``pubsub``,
  ``messaging.operation.name`` ``publish`` (type ``send``),
  ``messaging.destination.name`` the event type, ``messaging.message.id`` the event id,
  ``messaging.message.conversation_id`` its correlation id; ``pubsub.seq`` once
  appended (``pubsub.duplicate`` when the id was already stored). Before a durable
  append its context is injected (W3C ``traceparent``/``tracestate`` by default) into the
  headers stored with the event.
* ``process <type>`` (kind CONSUMER) for each attempt of each handler: the same
  messaging attributes with ``messaging.operation.name`` ``process``, plus
  ``messaging.consumer.group.name`` (the group of a worker's delivery),
  ``pubsub.handler``, ``pubsub.attempt``, ``pubsub.outcome`` (``ok``, ``retry``,
  ``failed``, ``timed_out``, ``cancelled``), ``pubsub.seq``, ``pubsub.source`` and
  ``pubsub.redelivery``. A failed attempt records the exception, sets ``error.type`` and
  the status ERROR. A retry is a new span (its own attempt number), a sibling of the
  first, as a redelivered message gets a new process span in the conventions.

Parents: in the publishing process a consumer span is a child of the publish span (it
is current while the bus dispatches). A worker's delivery extracts the context stored
with the event, so its consumer spans are children of the producer's span, in the
producer's trace, whichever process published. A replay or a dead-letter re-drive is
not the original delivery: its consumer spans belong to the trace current where the
replay runs (a new one, usually) and carry a span link to the stored context instead.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from contextvars import Token
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from core.instrument import AttemptOutcome, Delivery
from core.store import AppendResult

if TYPE_CHECKING:
    from core.events import Event
    from core.store import Appender

__all__ = ["SYSTEM", "OpenTelemetryInstrumentation"]

SYSTEM = "pubsub"  # messaging.system
_NOT_THE_ORIGINAL = frozenset({"replay", "redrive"})  # sources that link, never parent


def _version() -> str | None:
    try:
        return metadata.version("pubsub-workbench")
    except metadata.PackageNotFoundError:  # run from a source tree
        return None


@dataclass(frozen=True, slots=True)
class _Delivering:
    """The delivery whose handlers are running in this context (a context variable: it
    reaches the handlers' tasks and executor threads as the current span does)."""

    group: str | None
    seq: int | None
    source: str
    redelivery: bool
    links: Sequence[Link]


_delivering: contextvars.ContextVar[_Delivering | None] = contextvars.ContextVar(
    "pubsub_otel_delivery", default=None
)


def _message(event: Event, operation: str, kind: str) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "messaging.system": SYSTEM,
        "messaging.operation.name": operation,
        "messaging.operation.type": kind,
        "messaging.destination.name": event.event_type,
        "messaging.message.id": str(event.id),
    }
    if event.correlation_id is not None:
        attributes["messaging.message.conversation_id"] = str(event.correlation_id)
    return attributes


def _failed(span: Span, error: BaseException) -> None:
    """Record ``error`` on ``span`` as the conventions ask: an exception event,
    ``error.type`` and the status ERROR."""
    kind = type(error)
    span.record_exception(error)
    span.set_attribute("error.type", f"{kind.__module__}.{kind.__qualname__}")
    span.set_status(Status(StatusCode.ERROR, f"{kind.__name__}: {error}"))


class _PublishSpan:
    """``core.instrument.PublishSpan``: the producer span, current until ``end``."""

    __slots__ = ("_span", "_token", "headers")

    def __init__(
        self, span: Span, token: Token[otel_context.Context], headers: Mapping[str, str] | None
    ) -> None:
        self._span = span
        self._token = token
        self.headers = headers

    def end(self, *, seq: int | None, duplicate: bool, error: BaseException | None) -> None:
        span = self._span
        try:
            if seq is not None:
                span.set_attribute("pubsub.seq", seq)
            if duplicate:
                span.set_attribute("pubsub.duplicate", True)
            if error is not None:
                _failed(span, error)
            span.end()
        finally:
            otel_context.detach(self._token)


class _DeliveryScope:
    """``core.instrument.DeliveryScope``: the stored context (or nothing) made current,
    and the delivery's facts for its handlers' spans."""

    __slots__ = ("_context_token", "_delivering_token")

    def __init__(
        self,
        context_token: Token[otel_context.Context] | None,
        delivering_token: Token[_Delivering | None],
    ) -> None:
        self._context_token = context_token
        self._delivering_token = delivering_token

    def end(self) -> None:
        _delivering.reset(self._delivering_token)
        if self._context_token is not None:
            otel_context.detach(self._context_token)


class _HandlerSpan:
    """``core.instrument.HandlerSpan``: the consumer span of one attempt, current while
    the handler runs."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span, token: Token[otel_context.Context]) -> None:
        self._span = span
        self._token = token

    def end(self, outcome: AttemptOutcome, error: BaseException | None) -> None:
        span = self._span
        try:
            span.set_attribute("pubsub.outcome", str(outcome))
            if error is not None and outcome is not AttemptOutcome.CANCELLED:
                _failed(span, error)
            span.end()
        finally:
            otel_context.detach(self._token)


class OpenTelemetryInstrumentation:
    """Spans of a bus on OpenTelemetry (see the module docstring). ``tracer_provider``
    defaults to the global provider and ``propagator`` to the global text-map
    propagator, both looked up when used, so an SDK configured after this is made is
    the one that records."""

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        self._tracer = trace.get_tracer("pubsub", _version(), tracer_provider=tracer_provider)
        self._propagator = propagator

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _textmap(self) -> TextMapPropagator:
        return self._propagator or propagate.get_global_textmap()

    # -- core.instrument.Instrumentation ---------------------------------------------

    def publish(self, event: Event, *, durable: bool) -> _PublishSpan:
        span = self._start_publish(event)
        context = trace.set_span_in_context(span)
        headers = self._inject(context) if durable else None
        return _PublishSpan(span, otel_context.attach(context), headers)

    def deliver(self, delivery: Delivery) -> _DeliveryScope:
        links: Sequence[Link] = ()
        token = None
        if delivery.headers:
            # What was stored, alone: not mixed with whatever is current here.
            stored = self._textmap().extract(delivery.headers, context=otel_context.Context())
            original = trace.get_current_span(stored).get_span_context()
            if original.is_valid:
                if delivery.source in _NOT_THE_ORIGINAL:
                    links = (Link(original, {"pubsub.link": "original publish"}),)
                else:  # the stored trace (and baggage) continues here
                    token = otel_context.attach(stored)
        facts = _Delivering(
            delivery.group, delivery.seq, delivery.source, delivery.redelivery, links
        )
        return _DeliveryScope(token, _delivering.set(facts))

    def handle(self, event: Event, handler: str, attempt: int) -> _HandlerSpan:
        attributes = _message(event, "process", "process")
        attributes["pubsub.handler"] = handler
        attributes["pubsub.attempt"] = attempt
        facts = _delivering.get()
        links: Sequence[Link] = ()
        if facts is not None:
            if facts.group is not None:
                attributes["messaging.consumer.group.name"] = facts.group
            if facts.seq is not None:
                attributes["pubsub.seq"] = facts.seq
            attributes["pubsub.source"] = facts.source
            attributes["pubsub.redelivery"] = facts.redelivery
            links = facts.links
        span = self._tracer.start_span(
            f"process {event.event_type}",
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
            record_exception=False,
            set_status_on_exception=False,
        )
        return _HandlerSpan(span, otel_context.attach(trace.set_span_in_context(span)))

    # -- publishing without a bus (``pubsub publish --tracing``) ---------------------

    async def append(self, store: Appender, events: Sequence[Event]) -> list[AppendResult]:
        """``store.append(events)`` with a producer span per event (siblings under the
        current span, none made current), each event's trace context stored with it."""
        spans = [self._start_publish(event) for event in events]
        headers = [self._inject(trace.set_span_in_context(span)) for span in spans]
        try:
            results = await store.append(events, headers=headers)
        except BaseException as exc:
            for span in spans:
                _failed(span, exc)
                span.end()
            raise
        for span, result in zip(spans, results, strict=True):
            span.set_attribute("pubsub.seq", result.seq)
            if result.duplicate:
                span.set_attribute("pubsub.duplicate", True)
            span.end()
        return results

    # -- helpers -----------------------------------------------------------------------

    def _start_publish(self, event: Event) -> Span:
        return self._tracer.start_span(
            f"publish {event.event_type}",
            kind=SpanKind.PRODUCER,
            attributes=_message(event, "publish", "send"),
            record_exception=False,
            set_status_on_exception=False,
        )

    def _inject(self, context: otel_context.Context) -> Mapping[str, str] | None:
        carrier: dict[str, str] = {}
        self._textmap().inject(carrier, context=context)
        return carrier or None
