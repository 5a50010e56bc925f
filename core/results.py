"""Results: what a publish reports, handler by handler.

``publish_async`` never hides a failure: the ``PublishResult`` lists every matching
handler's ``HandlerOutcome`` (ok, failed, timed out, refused by an open breaker), with
attempts and duration. ``raise_for_errors()`` turns the failures into a DispatchError.
"""

from __future__ import annotations

import enum
import traceback
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .errors import DispatchError

if TYPE_CHECKING:
    from .events import Event
    from .store import DeadLetterReason

__all__ = [
    "Failure",
    "HandlerOutcome",
    "ManyResult",
    "OneResult",
    "OutcomeStatus",
    "PublishResult",
]


R = TypeVar("R")


class OutcomeStatus(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    REJECTED = "rejected"  # the handler's circuit breaker was open
    CANCELLED = "cancelled"  # the bus was closed with the handler still running


class HandlerOutcome(Generic[R]):
    """One handler's result for one event. ``value`` is what the handler returned (the
    very object; None when it failed); ``error`` is the final exception (None when ok);
    ``dead_lettered`` tells whether a DLQ entry was made."""

    __slots__ = ("attempts", "dead_lettered", "duration", "error", "handler", "status", "value")

    def __init__(
        self,
        handler: str,
        status: OutcomeStatus,
        attempts: int,
        duration: float,
        error: Exception | None = None,
        dead_lettered: bool = False,
        value: R | None = None,
    ) -> None:
        self.handler = handler
        self.status = status
        self.attempts = attempts
        self.duration = duration
        self.error = error
        self.dead_lettered = dead_lettered
        self.value = value

    @property
    def ok(self) -> bool:
        return self.status is OutcomeStatus.OK

    def __repr__(self) -> str:
        err = f", error={self.error!r}" if self.error is not None else ""
        val = f", value={self.value!r}" if self.value is not None else ""
        return (
            f"HandlerOutcome({self.handler!r}, {self.status.value}, attempts={self.attempts}, "
            f"duration={self.duration * 1e3:.3f}ms{val}{err})"
        )


class Failure(HandlerOutcome[Any]):
    """A handler's final failure, with what its dead letter needs (``core.dlq`` builds
    the letter). The traceback is formatted when the failure happens, while the
    exception's frames are still what they were."""

    __slots__ = ("first_failure_at", "last_failure_at", "reason", "tb")

    def __init__(
        self,
        handler: str,
        status: OutcomeStatus,
        attempts: int,
        duration: float,
        error: Exception,
        reason: DeadLetterReason,
        first_failure_at: datetime,
        last_failure_at: datetime,
    ) -> None:
        super().__init__(handler, status, attempts, duration, error, dead_lettered=True)
        self.reason = reason
        self.first_failure_at = first_failure_at
        self.last_failure_at = last_failure_at
        self.tb = "".join(traceback.format_exception(error))


class PublishResult:
    """What happened to one published event. ``seq`` is its log position (None without a
    store, or when a producer-only bus appended it); ``duplicate`` means the store
    already had this event id, so nothing was appended or dispatched; ``outcomes`` holds
    one entry per matching handler, in subscription order."""

    __slots__ = ("duplicate", "event", "outcomes", "seq")

    def __init__(
        self,
        event: Event,
        outcomes: Sequence[HandlerOutcome[Any]],
        seq: int | None = None,
        duplicate: bool = False,
    ) -> None:
        self.event = event
        self.outcomes = outcomes
        self.seq = seq
        self.duplicate = duplicate

    @property
    def ok(self) -> bool:
        """True when every handler succeeded (also when none matched)."""
        return all(o.status is OutcomeStatus.OK for o in self.outcomes)

    @property
    def failures(self) -> list[HandlerOutcome[Any]]:
        return [o for o in self.outcomes if o.status is not OutcomeStatus.OK]

    @property
    def values(self) -> dict[str, Any]:
        """What each handler that succeeded returned, by handler name."""
        return {o.handler: o.value for o in self.outcomes if o.status is OutcomeStatus.OK}

    def __iter__(self) -> Iterator[HandlerOutcome[Any]]:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)

    def raise_for_errors(self) -> None:
        """Raise a DispatchError carrying every failed handler's exception, if any."""
        failed = self.failures
        if not failed:
            return
        excs = [o.error if o.error is not None else RuntimeError(o.status.value) for o in failed]
        names = ", ".join(o.handler for o in failed)
        raise DispatchError(
            f"{len(failed)} of {len(self.outcomes)} handler(s) failed for "
            f"{self.event.event_type} {self.event.id}: {names}",
            excs,
            self.outcomes,
        )

    def __repr__(self) -> str:
        return (
            f"PublishResult({self.event.event_type}, seq={self.seq}, ok={self.ok}, "
            f"outcomes={list(self.outcomes)!r})"
        )


class _Named(Protocol):
    @property
    def names(self) -> tuple[str, ...]: ...


class _AllOk(PublishResult):
    """A publish whose every handler succeeded on a lean path: the HandlerOutcome
    objects are built from what the subclass keeps only when ``outcomes`` is first read
    (most publishers never read them). The bus fills bare instances (no __init__ call
    on its hot path)."""

    __slots__ = ("_outcomes", "_route")
    seq = None  # class-level: never stored, never a duplicate
    duplicate = False
    _outcomes: tuple[HandlerOutcome[Any], ...]
    _route: _Named

    def _build(self) -> tuple[HandlerOutcome[Any], ...]:
        raise NotImplementedError

    @property
    def outcomes(self) -> Sequence[HandlerOutcome[Any]]:  # type: ignore[override]
        try:
            return self._outcomes
        except AttributeError:  # first read
            self._outcomes = self._build()
            return self._outcomes

    @property
    def ok(self) -> bool:
        return True


class OneResult(_AllOk):
    """One handler succeeded inline: its name (the route's), duration and value."""

    __slots__ = ("_duration", "_value")

    def __init__(self, event: Event, route: _Named, duration: float, value: object) -> None:
        self.event = event
        self._route = route
        self._duration = duration
        self._value = value

    def _build(self) -> tuple[HandlerOutcome[Any], ...]:
        name = self._route.names[0]
        return (HandlerOutcome(name, OutcomeStatus.OK, 1, self._duration, value=self._value),)

    def __len__(self) -> int:
        return 1


class ManyResult(_AllOk):
    """Several plain handlers all succeeded: their durations and values, in order."""

    __slots__ = ("_durations", "_values")

    def __init__(
        self, event: Event, route: _Named, durations: list[float], values: list[Any]
    ) -> None:
        self.event = event
        self._route = route
        self._durations = durations
        self._values = values

    def _build(self) -> tuple[HandlerOutcome[Any], ...]:
        ok = OutcomeStatus.OK
        return tuple(
            HandlerOutcome(name, ok, 1, duration, value=value)
            for name, duration, value in zip(
                self._route.names, self._durations, self._values, strict=True
            )
        )

    def __len__(self) -> int:
        return len(self._values)
