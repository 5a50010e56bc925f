"""Collector: the bus's metrics as Prometheus counters, histograms and gauges.

``PrometheusMetrics`` is a ``MetricsCollector`` (the ``prometheus`` entry point of the
``pubsub.metrics`` group). Every instance has a ``CollectorRegistry`` of its own, never
the process-wide default one, so two buses (or two tests) in one process never share or
clash over a time series. prometheus-client is imported when a collector is made, not
when this module is: loading the entry point costs nothing without the extra.

What the bus records as it dispatches (labels are event type and handler names, which a
program declares, never ids, so the number of series stays bounded):

- ``pubsub_events_published_total{type}``: events dispatched by the bus, per type;
- ``pubsub_handler_calls_total{handler,type,outcome}``: finished handler calls, with
  ``outcome`` one of ``ok``, ``failed``, ``timed_out`` (its last attempt timed out),
  ``rejected`` (refused by its open circuit breaker);
- ``pubsub_handler_duration_seconds{handler,type}``: a histogram of those calls'
  durations, retries and backoff included;
- ``pubsub_handler_retries_total{handler,type}``: attempts that failed and were tried
  again (a timed-out attempt that was retried is counted here);
- ``pubsub_dead_letters_total{handler,type}``: calls that left a dead letter;
- ``pubsub_breaker_state{handler}`` (0 closed, 1 half-open, 2 open) and
  ``pubsub_breaker_transitions_total{handler,state}``: circuit breakers.

What a worker adds (``watch(bus)``, read on the event loop every second; a scrape, which
runs on the HTTP server's thread, only reads the last reading and never touches the
store):

- ``pubsub_log_last_seq``: the highest sequence number in the log;
- ``pubsub_consumer_checkpoint{group}``, ``pubsub_consumer_lag{group}``: each group's
  committed checkpoint and how many events it is behind the log's end;
- ``pubsub_in_flight{group}``: events this worker is dispatching;
- ``pubsub_dead_letters_open``: open entries in the dead-letter queue;
- ``pubsub_undecodable_events_total{group}``: stored events this worker could not decode.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from core.errors import PluginLoadError
from core.metrics import EventTypeRecorder, HandlerRecorder
from core.policies import BreakerState
from core.results import OutcomeStatus
from core.store import GroupInfo

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from core.bus import EventBus

    from .address import ListenAddress
    from .server import MetricsServer

__all__ = ["BREAKER_VALUES", "DURATION_BUCKETS", "PrometheusMetrics", "WorkerReading"]

log = logging.getLogger("pubsub.prometheus")

# Seconds. In-process handlers often take microseconds, so the buckets start far lower
# than prometheus-client's defaults (which are made for HTTP requests); +Inf is added.
DURATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

_OUTCOMES = ("ok", "failed", "timed_out", "rejected")


def _client() -> ModuleType:
    try:
        import prometheus_client
    except ImportError as exc:
        raise PluginLoadError(
            "metrics plugin 'prometheus'",
            "needs prometheus-client, which is not installed: "
            "pip install 'pubsub-workbench[prometheus]'",
        ) from exc
    return prometheus_client


class _TypeRecorder:
    """Publishes of one event type: one counter child, bound once."""

    __slots__ = ("_inc",)

    def __init__(self, inc: Callable[[], None]) -> None:
        self._inc = inc

    def published(self) -> None:
        self._inc()


class _HandlerRecorder:
    """One handler on one event type: its label children, bound once, so a call costs
    no label lookup."""

    __slots__ = ("_dead", "_failed", "_observe", "_ok", "_rejected", "_retried", "_timed_out")

    def __init__(self, calls: Any, duration: Any, retries: Any, dead: Any) -> None:
        self._ok = calls["ok"].inc
        self._failed = calls["failed"].inc
        self._timed_out = calls["timed_out"].inc
        self._rejected = calls["rejected"].inc
        self._observe = duration.observe
        self._retried = retries.inc
        self._dead = dead.inc

    def succeeded(self, duration: float) -> None:
        self._ok()
        self._observe(duration)

    def failed(self, duration: float, status: OutcomeStatus) -> None:
        if status is OutcomeStatus.TIMED_OUT:
            self._timed_out()
        elif status is OutcomeStatus.REJECTED:
            self._rejected()
        else:
            self._failed()
        self._observe(duration)

    def retried(self) -> None:
        self._retried()

    def dead_lettered(self) -> None:
        self._dead()


@dataclass(frozen=True, slots=True)
class WorkerReading:
    """The worker gauges at one moment, read on the event loop."""

    group: str
    in_flight: int
    last_seq: int
    dead_letters_open: int
    undecodable: int
    groups: tuple[GroupInfo, ...]


class _WorkerGauges:
    """A registry collector that turns the last ``WorkerReading`` into metric families
    when scraped (it only reads an attribute the loop replaces as a whole)."""

    def __init__(self) -> None:
        from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

        self._gauge = GaugeMetricFamily
        self._counter = CounterMetricFamily
        self.reading: WorkerReading | None = None

    def describe(self) -> list[Metric]:
        return list(self._families(None))

    def collect(self) -> Iterator[Metric]:
        return self._families(self.reading)

    def _families(self, r: WorkerReading | None) -> Iterator[Metric]:
        gauge, counter = self._gauge, self._counter
        last = gauge("pubsub_log_last_seq", "Highest sequence number in the event log")
        checkpoint = gauge(
            "pubsub_consumer_checkpoint",
            "Committed checkpoint of each consumer group (last sequence number it finished)",
            labels=["group"],
        )
        lag = gauge(
            "pubsub_consumer_lag",
            "Events of the log past each consumer group's committed checkpoint",
            labels=["group"],
        )
        in_flight = gauge(
            "pubsub_in_flight", "Events this worker is dispatching now", labels=["group"]
        )
        dlq = gauge("pubsub_dead_letters_open", "Open entries in the dead-letter queue")
        undecodable = counter(
            "pubsub_undecodable_events",
            "Stored events this worker could not decode (each one a dead letter of <decode>)",
            labels=["group"],
        )
        if r is not None:
            last.add_metric([], r.last_seq)
            for info in r.groups:
                checkpoint.add_metric([info.group], info.checkpoint)
                lag.add_metric([info.group], info.lag)
            in_flight.add_metric([r.group], r.in_flight)
            dlq.add_metric([], r.dead_letters_open)
            undecodable.add_metric([r.group], r.undecodable)
        yield from (last, checkpoint, lag, in_flight, dlq, undecodable)


class PrometheusMetrics:
    """A ``MetricsCollector`` on prometheus-client, with a registry of its own
    (``registry``; pass one to share it with other collectors of yours).
    ``buckets`` are the duration histogram's upper bounds in seconds."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        client = _client()
        self._client = client
        self.registry: CollectorRegistry = (
            registry if registry is not None else client.CollectorRegistry()
        )
        reg = self.registry
        self._published = client.Counter(
            "pubsub_events_published",
            "Events dispatched by the bus, per event type",
            ["type"],
            registry=reg,
        )
        self._calls = client.Counter(
            "pubsub_handler_calls",
            "Finished handler calls by outcome: ok, failed, timed_out (last attempt timed "
            "out), rejected (circuit breaker open)",
            ["handler", "type", "outcome"],
            registry=reg,
        )
        self._duration = client.Histogram(
            "pubsub_handler_duration_seconds",
            "Duration of handler calls (retries and backoff included), any outcome",
            ["handler", "type"],
            buckets=tuple(buckets),
            registry=reg,
        )
        self._retries = client.Counter(
            "pubsub_handler_retries",
            "Failed handler attempts that were tried again",
            ["handler", "type"],
            registry=reg,
        )
        self._dead = client.Counter(
            "pubsub_dead_letters",
            "Handler calls that gave up and left a dead letter",
            ["handler", "type"],
            registry=reg,
        )
        self._breaker = client.Gauge(
            "pubsub_breaker_state",
            "Circuit breaker state per handler: 0 closed, 1 half-open, 2 open",
            ["handler"],
            registry=reg,
        )
        self._transitions = client.Counter(
            "pubsub_breaker_transitions",
            "Circuit breaker transitions per handler, by the state entered",
            ["handler", "state"],
            registry=reg,
        )
        self._worker = _WorkerGauges()
        reg.register(self._worker)
        self._types: dict[str, _TypeRecorder] = {}
        self._handlers: dict[tuple[str, str], _HandlerRecorder] = {}
        self._breakers: dict[str, BreakerState] = {}

    # -- the MetricsCollector protocol --------------------------------------------------

    def for_event_type(self, event_type: str) -> EventTypeRecorder:
        rec = self._types.get(event_type)
        if rec is None:
            rec = self._types[event_type] = _TypeRecorder(self._published.labels(event_type).inc)
        return rec

    def for_handler(self, handler: str, event_type: str) -> HandlerRecorder:
        key = (handler, event_type)
        rec = self._handlers.get(key)
        if rec is None:
            calls = {o: self._calls.labels(handler, event_type, o) for o in _OUTCOMES}
            rec = self._handlers[key] = _HandlerRecorder(
                calls,
                self._duration.labels(handler, event_type),
                self._retries.labels(handler, event_type),
                self._dead.labels(handler, event_type),
            )
        return rec

    def breaker_changed(self, handler: str, state: BreakerState) -> None:
        self._breakers[handler] = state
        self._breaker.labels(handler).set(BREAKER_VALUES[state])
        self._transitions.labels(handler, state.value).inc()

    def snapshot(self) -> dict[str, Any]:
        """What the registry holds, in the shape of the in-memory collector's snapshot
        (per event type and per handler; durations as count and sum), plus ``worker``:
        the last worker reading or None."""
        handlers: dict[str, dict[str, Any]] = {}
        types: dict[str, dict[str, Any]] = {}

        def entry(table: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
            found = table.get(name)
            if found is None:
                found = table[name] = {
                    "succeeded": 0,
                    "failed": 0,
                    "timed_out": 0,
                    "rejected": 0,
                    "retried": 0,
                    "dead_lettered": 0,
                    "duration": {"count": 0, "sum": 0.0},
                }
            return found

        keys = {
            "pubsub_handler_calls_total": None,
            "pubsub_handler_retries_total": "retried",
            "pubsub_dead_letters_total": "dead_lettered",
        }
        for family in self.registry.collect():
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "pubsub_events_published_total":
                    entry(types, labels["type"])["published"] = int(sample.value)
                elif sample.name in keys:
                    key = keys[sample.name] or _outcome_key(labels["outcome"])
                    for table, name in ((handlers, labels["handler"]), (types, labels["type"])):
                        entry(table, name)[key] += int(sample.value)
                elif sample.name in (
                    "pubsub_handler_duration_seconds_count",
                    "pubsub_handler_duration_seconds_sum",
                ):
                    part = sample.name.rsplit("_", 1)[1]
                    for table, name in ((handlers, labels["handler"]), (types, labels["type"])):
                        entry(table, name)["duration"][part] += sample.value
        for name, rec in handlers.items():
            state = self._breakers.get(name)
            rec["breaker"] = state.value if state else None
        for rec in types.values():
            rec.setdefault("published", 0)
        for rec in (*handlers.values(), *types.values()):
            rec["duration"]["count"] = int(rec["duration"]["count"])
        reading = self._worker.reading
        worker = None
        if reading is not None:
            worker = {
                "group": reading.group,
                "in_flight": reading.in_flight,
                "last_seq": reading.last_seq,
                "dead_letters_open": reading.dead_letters_open,
                "undecodable": reading.undecodable,
                "groups": {
                    g.group: {"checkpoint": g.checkpoint, "lag": g.lag} for g in reading.groups
                },
            }
        return {
            "event_types": dict(sorted(types.items())),
            "handlers": dict(sorted(handlers.items())),
            "worker": worker,
        }

    # -- the worker gauges ----------------------------------------------------------------

    @property
    def reading(self) -> WorkerReading | None:
        """The worker gauges' last reading (None before the first ``refresh``)."""
        return self._worker.reading

    async def refresh(self, bus: EventBus) -> WorkerReading:
        """Read the worker gauges of ``bus`` (on its event loop: the store is asked
        here, never by a scrape) and the states of its circuit breakers."""
        stats = bus.statistics()
        store = bus.store
        last = stats.last_seq
        groups: list[GroupInfo] = []
        if store is not None:
            last = max(last, await store.last_seq())
            groups = list(await store.groups())
        open_letters = await bus.dead_letters.count_dead_letters()
        if bus.consumer is not None and not any(g.group == bus.group for g in groups):
            # Not committed yet: the store does not know the group so far.
            groups.append(GroupInfo(bus.group, stats.checkpoint, max(last - stats.checkpoint, 0)))
        reading = WorkerReading(
            group=bus.group,
            in_flight=stats.in_flight,
            last_seq=last,
            dead_letters_open=open_letters,
            undecodable=stats.undecodable,
            groups=tuple(sorted(groups, key=lambda g: g.group)),
        )
        self._worker.reading = reading
        for name in dict.fromkeys(sub.name for sub in bus.subscriptions):
            state = bus.breaker_state(name)
            if state is not None:
                self._breaker.labels(name).set(BREAKER_VALUES[state])
        return reading

    async def watch(self, bus: EventBus, *, every: float = 1.0) -> None:
        """``refresh`` now and every ``every`` seconds until cancelled. A reading that
        fails (the store is busy or gone) keeps the last one and logs a warning; the
        worker's own store errors are reported by the worker."""
        while True:
            try:
                await self.refresh(bus)
            except Exception as exc:
                log.warning(
                    "pubsub: metrics refresh raised %s: %s",
                    type(exc).__name__,
                    exc,
                    extra={"pubsub_error": exc, "pubsub_where": "metrics refresh"},
                )
            await asyncio.sleep(every)

    # -- serving ---------------------------------------------------------------------------

    def serve(self, address: ListenAddress) -> MetricsServer:
        """Serve this collector's registry at ``http://address/metrics`` on a thread of
        its own until the returned server is closed; MetricsServerError (one line: the
        address and the reason) when it cannot listen there."""
        from .server import MetricsServer

        return MetricsServer(self.registry, address)


def _outcome_key(outcome: str) -> str:
    return "succeeded" if outcome == "ok" else outcome
