"""OpenTelemetry tracing for a bus (extra ``otel``: opentelemetry-api), loaded only when
asked for.

``instrument(bus)`` traces a bus with spans that follow OpenTelemetry's messaging
semantic conventions (``publish <type>`` and ``process <type>``, see ``tracing``) and
stores the W3C trace context with every durable event, so that a worker in another
process continues the producer's trace. The SDK, its exporters and sampling are the
application's own to configure (in its handlers module, or with
``opentelemetry-instrument``): without an SDK the API's spans are no-ops. Importing this
package does not import OpenTelemetry; a missing extra is a one-line PluginLoadError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import PluginLoadError

if TYPE_CHECKING:
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import TracerProvider

    from core.bus import EventBus

    from .tracing import OpenTelemetryInstrumentation

__all__ = ["MISSING_EXTRA", "instrument", "instrumentation"]

MISSING_EXTRA = (
    "OpenTelemetry tracing needs the otel extra (opentelemetry-api): "
    "pip install 'pubsub-workbench[otel]'"
)


def instrumentation(
    *,
    tracer_provider: TracerProvider | None = None,
    propagator: TextMapPropagator | None = None,
) -> OpenTelemetryInstrumentation:
    """An OpenTelemetry instrumentation for ``bus.instrument``. ``tracer_provider``
    defaults to the global one (``opentelemetry.trace.set_tracer_provider``, also when
    it is set later); ``propagator`` to the global text-map propagator (W3C trace
    context and baggage unless configured otherwise). PluginLoadError when the otel
    extra is not installed."""
    try:
        from .tracing import OpenTelemetryInstrumentation
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "opentelemetry":
            raise
        raise PluginLoadError("otel", MISSING_EXTRA) from None
    return OpenTelemetryInstrumentation(tracer_provider=tracer_provider, propagator=propagator)


def instrument(
    bus: EventBus,
    *,
    tracer_provider: TracerProvider | None = None,
    propagator: TextMapPropagator | None = None,
) -> OpenTelemetryInstrumentation:
    """Trace ``bus`` with OpenTelemetry (see ``instrumentation``); returns the
    instrumentation installed. ``bus.instrument(None)`` removes it."""
    made = instrumentation(tracer_provider=tracer_provider, propagator=propagator)
    bus.instrument(made)
    return made
