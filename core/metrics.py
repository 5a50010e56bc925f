"""Metrics: counts and durations per event type and per handler.

The bus asks its ``MetricsCollector`` once per (handler, event type) for a
``HandlerRecorder`` and keeps it in its routing cache, so recording an outcome on the hot
path is one method call, with no label lookup. ``InMemoryMetrics`` keeps one small
record per pair and merges them when ``snapshot()`` is read; durations keep count, sum,
max and a bounded ring of recent samples for p50/p99.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .policies import BreakerState
from .results import OutcomeStatus

__all__ = [
    "TRUSTED_COLLECTORS",
    "EventTypeRecorder",
    "GuardedRecorder",
    "HandlerRecorder",
    "InMemoryMetrics",
    "MetricsCollector",
    "NullMetrics",
]

_RING = 1024  # recent samples kept per (handler, event type)


@runtime_checkable
class HandlerRecorder(Protocol):
    """Records one handler's invocations for one event type."""

    def succeeded(self, duration: float) -> None: ...

    def failed(self, duration: float, status: OutcomeStatus) -> None: ...

    def retried(self) -> None: ...

    def dead_lettered(self) -> None: ...


@runtime_checkable
class EventTypeRecorder(Protocol):
    def published(self) -> None: ...


@runtime_checkable
class MetricsCollector(Protocol):
    """Where the bus reports what happens. Implementations must be cheap: recorders are
    called on every invocation."""

    def for_event_type(self, event_type: str) -> EventTypeRecorder: ...

    def for_handler(self, handler: str, event_type: str) -> HandlerRecorder: ...

    def breaker_changed(self, handler: str, state: BreakerState) -> None: ...

    def snapshot(self) -> dict[str, Any]:
        """A plain dict (JSON-compatible) of everything recorded so far."""
        ...


class _Hits(Protocol):
    @property
    def hits(self) -> int: ...


class _TypeCount:
    """Publishes of one event type: those counted one by one, plus the ``hits`` of the
    bus routes that count their own (the inline publish path counts once per publish,
    for the bus's statistics and this count alike)."""

    __slots__ = ("_counted", "sources")

    def __init__(self) -> None:
        self._counted = 0
        self.sources: list[_Hits] = []

    @property
    def count(self) -> int:
        return self._counted + sum(source.hits for source in self.sources)

    def published(self) -> None:
        self._counted += 1

    def retire(self, source: _Hits) -> None:
        """``source`` stops counting: keep what it counted."""
        self.sources.remove(source)
        self._counted += source.hits


class _Pair:
    """Counts and durations of one handler on one event type.

    Durations are appended to ``recent`` (one C call on the publish path); ``fold``
    moves all but the last ``_RING`` of them into the running count, sum and max, so the
    list stays bounded. Every reading (``n``, ``total``, ``max``, ``samples``) sees the
    folded totals plus what is still in the list: nothing is delayed."""

    __slots__ = (
        "_max",
        "_n",
        "_total",
        "dead_letters",
        "failed_n",
        "recent",
        "rejected",
        "retries",
        "timed_out",
    )

    def __init__(self) -> None:
        self.failed_n = 0
        self.timed_out = 0
        self.rejected = 0
        self.retries = 0
        self.dead_letters = 0
        self._n = 0  # outcomes folded out of ``recent``
        self._total = 0.0
        self._max = 0.0
        self.recent: list[float] = []  # the newest durations, oldest first

    def fold(self) -> None:
        """Fold all but the newest ``_RING`` durations into the totals."""
        recent = self.recent
        if len(recent) > _RING:
            old = recent[:-_RING]
            del recent[:-_RING]
            self._n += len(old)
            self._total += sum(old)
            self._max = max(self._max, max(old))

    @property
    def n(self) -> int:
        return self._n + len(self.recent)

    @property
    def total(self) -> float:
        return self._total + sum(self.recent)

    @property
    def max(self) -> float:
        return max(self._max, max(self.recent, default=0.0))

    @property
    def samples(self) -> list[float]:
        return self.recent[-_RING:]

    @property
    def succeeded_n(self) -> int:
        return self.n - self.failed_n - self.timed_out - self.rejected

    def succeeded(self, duration: float) -> None:
        recent = self.recent
        recent.append(duration)
        if len(recent) >= 2 * _RING:
            self.fold()

    def failed(self, duration: float, status: OutcomeStatus) -> None:
        if status is OutcomeStatus.TIMED_OUT:
            self.timed_out += 1
        elif status is OutcomeStatus.REJECTED:
            self.rejected += 1
        else:
            self.failed_n += 1
        self.succeeded(duration)

    def retried(self) -> None:
        self.retries += 1

    def dead_lettered(self) -> None:
        self.dead_letters += 1


def _percentile(sorted_samples: list[float], q: float) -> float:
    if not sorted_samples:
        return 0.0
    index = min(len(sorted_samples) - 1, max(0, round(q * (len(sorted_samples) - 1))))
    return sorted_samples[index]


def _summary(pairs: list[_Pair]) -> dict[str, Any]:
    samples = sorted(s for p in pairs for s in p.samples)
    n = sum(p.n for p in pairs)
    total = sum(p.total for p in pairs)
    return {
        "succeeded": sum(p.succeeded_n for p in pairs),
        "failed": sum(p.failed_n for p in pairs),
        "timed_out": sum(p.timed_out for p in pairs),
        "rejected": sum(p.rejected for p in pairs),
        "retried": sum(p.retries for p in pairs),
        "dead_lettered": sum(p.dead_letters for p in pairs),
        "duration": {
            "count": n,
            "sum": total,
            "max": max((p.max for p in pairs), default=0.0),
            "mean": total / n if n else 0.0,
            "p50": _percentile(samples, 0.50),
            "p99": _percentile(samples, 0.99),
        },
    }


class InMemoryMetrics:
    """The default collector: everything in process memory, read with ``snapshot()``."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._types: dict[str, _TypeCount] = {}
        self._breakers: dict[str, BreakerState] = {}
        self._transitions: dict[str, int] = {}

    def for_event_type(self, event_type: str) -> EventTypeRecorder:
        rec = self._types.get(event_type)
        if rec is None:
            rec = self._types[event_type] = _TypeCount()
        return rec

    def for_handler(self, handler: str, event_type: str) -> HandlerRecorder:
        key = (handler, event_type)
        rec = self._pairs.get(key)
        if rec is None:
            rec = self._pairs[key] = _Pair()
        return rec

    def breaker_changed(self, handler: str, state: BreakerState) -> None:
        self._breakers[handler] = state
        self._transitions[handler] = self._transitions.get(handler, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        by_handler: dict[str, list[_Pair]] = {}
        by_type: dict[str, list[_Pair]] = {}
        for (handler, event_type), pair in self._pairs.items():
            by_handler.setdefault(handler, []).append(pair)
            by_type.setdefault(event_type, []).append(pair)
        types = {}
        for name in sorted(set(self._types) | set(by_type)):
            entry = _summary(by_type.get(name, []))
            counter = self._types.get(name)
            entry["published"] = counter.count if counter else 0
            types[name] = entry
        handlers = {}
        for name in sorted(by_handler):
            entry = _summary(by_handler[name])
            state = self._breakers.get(name)
            entry["breaker"] = state.value if state else None
            entry["breaker_transitions"] = self._transitions.get(name, 0)
            handlers[name] = entry
        return {"event_types": types, "handlers": handlers}


class _NullRecorder:
    __slots__ = ()

    def published(self) -> None:
        return None

    def succeeded(self, duration: float) -> None:
        return None

    def failed(self, duration: float, status: OutcomeStatus) -> None:
        return None

    def retried(self) -> None:
        return None

    def dead_lettered(self) -> None:
        return None


_NULL = NULL_RECORDER = _NullRecorder()  # records nothing


class NullMetrics:
    """Records nothing; what a bus falls back to when its collector raised."""

    def for_event_type(self, event_type: str) -> EventTypeRecorder:
        return _NULL

    def for_handler(self, handler: str, event_type: str) -> HandlerRecorder:
        return _NULL

    def breaker_changed(self, handler: str, state: BreakerState) -> None:
        return None

    def snapshot(self) -> dict[str, Any]:
        return {"event_types": {}, "handlers": {}}


class GuardedRecorder:
    """Wraps the recorders of a user's collector (the built-in ones are not wrapped):
    a recorder that raises is reported through ``on_error`` and never reaches the
    publisher or the handler's outcome."""

    __slots__ = ("_on_error", "_rec")

    def __init__(
        self, rec: HandlerRecorder | EventTypeRecorder, on_error: Callable[[Exception], None]
    ) -> None:
        self._rec: Any = rec
        self._on_error = on_error

    def _call(self, name: str, *args: Any) -> None:
        try:
            getattr(self._rec, name)(*args)
        except Exception as exc:
            self._on_error(exc)

    def published(self) -> None:
        self._call("published")

    def succeeded(self, duration: float) -> None:
        self._call("succeeded", duration)

    def failed(self, duration: float, status: OutcomeStatus) -> None:
        self._call("failed", duration, status)

    def retried(self) -> None:
        self._call("retried")

    def dead_lettered(self) -> None:
        self._call("dead_lettered")


TRUSTED_COLLECTORS = (InMemoryMetrics, NullMetrics)  # exact types whose recorders never raise
