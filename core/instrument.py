"""Instrument: the seam for tracing a bus (``plugins.otel`` implements it for
OpenTelemetry), free when unused.

``bus.instrument(instrumentation)`` hands a bus an ``Instrumentation``. From then on the
bus tells it three things, each as a span that begins (and becomes the current one in
the calling context) and later ends:

* ``publish``: an event is being published. Its span begins before the durable append
  and gives the ``headers`` to store with the event (a trace context, so that a worker in
  another process continues the trace); it is current while the event is dispatched in
  this process, so the handlers' spans descend from it.
* ``deliver``: a stored event is on its way to the handlers (a worker's catch-up or
  follow, a replay, a dead-letter re-drive), with the headers stored with it; what it
  makes current is what the handlers' spans descend from (or link to: a replay is not
  the original delivery).
* ``handle``: one attempt of one handler. Its span is current while the handler runs
  (also in the executor thread of a sync handler), so spans the handler makes are its
  children; it ends with the attempt's outcome and error.

A bus without an instrumentation pays nothing for this: the handlers' runners are
replaced by instrumented ones only when routes are compiled for an instrumented bus,
and such a bus leaves the inline fast path of ``publish_async``. An instrumentation that
raises is reported (``bus.internal_errors``) and removed from the bus, as a failing hook
is; the event's dispatch goes on without it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from .events import Event

__all__ = [
    "AttemptOutcome",
    "Delivery",
    "DeliveryScope",
    "HandlerSpan",
    "Instrumentation",
    "PublishSpan",
]


class AttemptOutcome(enum.StrEnum):
    """How one attempt of a handler ended."""

    OK = "ok"
    RETRY = "retry"  # it raised or timed out, and its retry policy allows another attempt
    FAILED = "failed"  # it raised: the handler gives up on the event
    TIMED_OUT = "timed_out"  # its last allowed attempt timed out
    CANCELLED = "cancelled"  # cancelled from outside (the bus closing, the caller cancelled)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A stored event on its way to the handlers. ``headers`` are what was stored with
    it; ``group`` the consumer group delivering it (None for a replay); ``source`` says
    why it is delivered (``live`` for a worker's catch-up and follow, ``replay``,
    ``redrive``); ``redelivery`` whether the handlers may have seen it before."""

    event: Event
    headers: Mapping[str, str]
    seq: int | None
    group: str | None
    source: str
    redelivery: bool = False


class PublishSpan(Protocol):
    """The span of one publish, begun by ``Instrumentation.publish``."""

    @property
    def headers(self) -> Mapping[str, str] | None:
        """What to store with the event (None: nothing)."""
        ...

    def end(self, *, seq: int | None, duplicate: bool, error: BaseException | None) -> None:
        """The publish is over: appended at ``seq`` (None without a store), or refused as
        a ``duplicate`` of a stored id, or failed with ``error`` (the append failed, the
        bus was closed, the publisher was cancelled). Handler failures are not the
        publish's: their spans carry them."""
        ...


class DeliveryScope(Protocol):
    """What ``Instrumentation.deliver`` made current for the handlers of one delivery."""

    def end(self) -> None:
        """The delivery is over (every handler finished)."""
        ...


class HandlerSpan(Protocol):
    """The span of one attempt of one handler, begun by ``Instrumentation.handle``."""

    def end(self, outcome: AttemptOutcome, error: BaseException | None) -> None:
        """The attempt ended with ``outcome`` (``error`` is what it raised, if it did)."""
        ...


class Instrumentation(Protocol):
    """What a bus tells a tracer (see the module docstring). Each method begins a span
    that is current in the calling context until its ``end``, which the bus calls in
    the same task. None of them may block."""

    def publish(self, event: Event, *, durable: bool) -> PublishSpan:
        """``event`` is being published (``durable``: appended to a store first)."""
        ...

    def deliver(self, delivery: Delivery) -> DeliveryScope:
        """A stored event is about to be dispatched to its handlers."""
        ...

    def handle(self, event: Event, handler: str, attempt: int) -> HandlerSpan:
        """Attempt number ``attempt`` (1-based) of ``handler`` on ``event`` begins."""
        ...
