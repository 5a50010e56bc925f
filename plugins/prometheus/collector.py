"""Collector: the bus's metrics as Prometheus counters, histograms and gauges.

``PrometheusMetrics`` is a ``MetricsCollector`` (the ``prometheus`` entry point of the
``pubsub.metrics`` group). Every instance has a ``CollectorRegistry`` of its own, never
the process-wide default one, so two buses (or two tests) in one process never share or
clash over a time series. prometheus-client is imported when a collector is made, not
when this module is: loading the entry point costs nothing without the extra. The
recorders keep plain numbers on the event loop (no lock, no label lookup per call); the
registry turns them into metric families only when it is scraped.

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
import itertools
import logging
from bisect import bisect_left
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


class _Publishes:
    """Publishes of one event type (the recorder the bus keeps for it)."""

    __slots__ = ("n", "type")

    def __init__(self, event_type: str) -> None:
        self.type = event_type
        self.n = 0

    def published(self) -> None:
        self.n += 1


class _Calls:
    """One handler on one event type (the recorder the bus keeps for the pair): plain
    counts and histogram buckets, bumped on the event loop and turned into metric
    families only when scraped. A duration lands in the first bucket whose bound is at
    or above it (``bisect_left``), the last one being +Inf."""

    __slots__ = (
        "_bounds",
        "buckets",
        "dead",
        "failed_n",
        "handler",
        "ok",
        "rejected",
        "retries",
        "timed_out",
        "total",
        "type",
    )

    def __init__(self, handler: str, event_type: str, bounds: tuple[float, ...]) -> None:
        self.handler = handler
        self.type = event_type
        self._bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.ok = self.failed_n = self.timed_out = self.rejected = 0
        self.retries = self.dead = 0

    def succeeded(self, duration: float) -> None:
        self.ok += 1
        self.buckets[bisect_left(self._bounds, duration)] += 1
        self.total += duration

    def failed(self, duration: float, status: OutcomeStatus) -> None:
        if status is OutcomeStatus.TIMED_OUT:
            self.timed_out += 1
        elif status is OutcomeStatus.REJECTED:
            self.rejected += 1
        else:
            self.failed_n += 1
        self.buckets[bisect_left(self._bounds, duration)] += 1
        self.total += duration

    def retried(self) -> None:
        self.retries += 1

    def dead_lettered(self) -> None:
        self.dead += 1


@dataclass(frozen=True, slots=True)
class WorkerReading:
    """The worker gauges at one moment, read on the event loop."""

    group: str
    in_flight: int
    last_seq: int
    dead_letters_open: int
    undecodable: int
    groups: tuple[GroupInfo, ...]


class _Exposition:
    """The registry's view of a PrometheusMetrics: its counts as metric families, made
    when scraped (on the HTTP server's thread). It copies what the loop keeps (a dict's
    values, a list of bucket counts: each copy one step under the GIL) and never calls
    into the bus or the store."""

    def __init__(self, owner: PrometheusMetrics) -> None:
        from prometheus_client import utils
        from prometheus_client.metrics_core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        go_string: Callable[[float], str] = utils.floatToGoString  # as prometheus-client writes le

        self._owner = owner
        self._counter = CounterMetricFamily
        self._gauge = GaugeMetricFamily
        self._histogram = HistogramMetricFamily
        self._bounds = [go_string(b) for b in owner.buckets] + ["+Inf"]

    def describe(self) -> list[Metric]:
        return list(self._families(empty=True))

    def collect(self) -> Iterator[Metric]:
        return self._families(empty=False)

    def _families(self, *, empty: bool) -> Iterator[Metric]:
        owner = self._owner
        counter, gauge = self._counter, self._gauge
        types = () if empty else tuple(owner._types.values())
        pairs = () if empty else tuple(owner._pairs.values())
        published = counter(
            "pubsub_events_published",
            "Events dispatched by the bus, per event type",
            labels=["type"],
        )
        for t in types:
            published.add_metric([t.type], t.n)
        yield published
        calls = counter(
            "pubsub_handler_calls",
            "Finished handler calls by outcome: ok, failed, timed_out (last attempt timed "
            "out), rejected (circuit breaker open)",
            labels=["handler", "type", "outcome"],
        )
        duration = self._histogram(
            "pubsub_handler_duration_seconds",
            "Duration of handler calls (retries and backoff included), any outcome",
            labels=["handler", "type"],
        )
        retries = counter(
            "pubsub_handler_retries",
            "Failed handler attempts that were tried again",
            labels=["handler", "type"],
        )
        dead = counter(
            "pubsub_dead_letters",
            "Handler calls that gave up and left a dead letter",
            labels=["handler", "type"],
        )
        for c in pairs:
            names = [c.handler, c.type]
            for outcome, n in (
                ("ok", c.ok),
                ("failed", c.failed_n),
                ("timed_out", c.timed_out),
                ("rejected", c.rejected),
            ):
                calls.add_metric([*names, outcome], n)
            cumulative = list(itertools.accumulate(list(c.buckets)))
            duration.add_metric(names, list(zip(self._bounds, cumulative, strict=True)), c.total)
            retries.add_metric(names, c.retries)
            dead.add_metric(names, c.dead)
        yield from (calls, duration, retries, dead)
        state = gauge(
            "pubsub_breaker_state",
            "Circuit breaker state per handler: 0 closed, 1 half-open, 2 open",
            labels=["handler"],
        )
        transitions = counter(
            "pubsub_breaker_transitions",
            "Circuit breaker transitions per handler, by the state entered",
            labels=["handler", "state"],
        )
        if not empty:
            for handler, breaker in sorted(owner._breakers.copy().items()):
                state.add_metric([handler], BREAKER_VALUES[breaker])
            for (handler, entered), n in sorted(owner._transitions.copy().items()):
                transitions.add_metric([handler, entered], n)
        yield from (state, transitions)
        yield from self._worker(None if empty else owner._reading)

    def _worker(self, r: WorkerReading | None) -> Iterator[Metric]:
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
    """A ``MetricsCollector`` for Prometheus, with a ``CollectorRegistry`` of its own
    (``registry``; pass one to share it with other collectors of yours). ``buckets``
    are the duration histogram's upper bounds in seconds (+Inf is added).

    Recording is plain Python on the bus's event loop (a collector serves the buses of
    one loop, as the in-memory one does); the registry turns the counts into metric
    families when scraped, from any thread."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        client = _client()
        bounds = tuple(sorted(float(b) for b in buckets if b != float("inf")))
        if not bounds:
            raise ValueError("buckets needs at least one finite upper bound")
        self.buckets = bounds
        self._types: dict[str, _Publishes] = {}
        self._pairs: dict[tuple[str, str], _Calls] = {}
        self._breakers: dict[str, BreakerState] = {}
        self._transitions: dict[tuple[str, str], int] = {}
        self._reading: WorkerReading | None = None
        self.registry: CollectorRegistry = (
            registry if registry is not None else client.CollectorRegistry()
        )
        self.registry.register(_Exposition(self))

    # -- the MetricsCollector protocol --------------------------------------------------

    def for_event_type(self, event_type: str) -> EventTypeRecorder:
        rec = self._types.get(event_type)
        if rec is None:
            rec = self._types[event_type] = _Publishes(event_type)
        return rec

    def for_handler(self, handler: str, event_type: str) -> HandlerRecorder:
        key = (handler, event_type)
        rec = self._pairs.get(key)
        if rec is None:
            rec = self._pairs[key] = _Calls(handler, event_type, self.buckets)
        return rec

    def breaker_changed(self, handler: str, state: BreakerState) -> None:
        self._breakers[handler] = state
        key = (handler, state.value)
        self._transitions[key] = self._transitions.get(key, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """Everything recorded, in the shape of the in-memory collector's snapshot (per
        event type and per handler; durations as count and sum), plus ``worker``: the
        last worker reading or None."""
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

        for c in self._pairs.values():
            for row in (entry(handlers, c.handler), entry(types, c.type)):
                row["succeeded"] += c.ok
                row["failed"] += c.failed_n
                row["timed_out"] += c.timed_out
                row["rejected"] += c.rejected
                row["retried"] += c.retries
                row["dead_lettered"] += c.dead
                row["duration"]["count"] += sum(c.buckets)
                row["duration"]["sum"] += c.total
        for name, row in handlers.items():
            state = self._breakers.get(name)
            row["breaker"] = state.value if state else None
        for t in self._types.values():
            entry(types, t.type)["published"] = t.n
        for row in types.values():
            row.setdefault("published", 0)
        reading = self._reading
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
        return self._reading

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
        self._reading = reading
        for name in dict.fromkeys(sub.name for sub in bus.subscriptions):
            state = bus.breaker_state(name)
            if state is not None:
                self._breakers[name] = state
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
