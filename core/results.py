"""Results: what a publish reports, handler by handler.

``publish_async`` never hides a failure: the ``PublishResult`` lists every matching
handler's ``HandlerOutcome`` (ok, failed, timed out, refused by an open breaker), with
attempts and duration. ``raise_for_errors()`` turns the failures into a DispatchError.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence

from .errors import DispatchError
from .events import Event

__all__ = ["HandlerOutcome", "OutcomeStatus", "PublishResult"]


class OutcomeStatus(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    REJECTED = "rejected"  # the handler's circuit breaker was open
    CANCELLED = "cancelled"  # the bus was closed with the handler still running


class HandlerOutcome:
    """One handler's result for one event. ``error`` is the final exception (None when
    ok); ``dead_lettered`` tells whether a DLQ entry was made."""

    __slots__ = ("attempts", "dead_lettered", "duration", "error", "handler", "status")

    def __init__(
        self,
        handler: str,
        status: OutcomeStatus,
        attempts: int,
        duration: float,
        error: Exception | None = None,
        dead_lettered: bool = False,
    ) -> None:
        self.handler = handler
        self.status = status
        self.attempts = attempts
        self.duration = duration
        self.error = error
        self.dead_lettered = dead_lettered

    @property
    def ok(self) -> bool:
        return self.status is OutcomeStatus.OK

    def __repr__(self) -> str:
        err = f", error={self.error!r}" if self.error is not None else ""
        return (
            f"HandlerOutcome({self.handler!r}, {self.status.value}, attempts={self.attempts}, "
            f"duration={self.duration * 1e3:.3f}ms{err})"
        )


class PublishResult:
    """What happened to one published event. ``seq`` is its log position (None without a
    store); ``duplicate`` means the store already had this event id, so nothing was
    appended or dispatched; ``outcomes`` holds one entry per matching handler."""

    __slots__ = ("_outcomes", "duplicate", "event", "seq")

    def __init__(
        self,
        event: Event,
        outcomes: Sequence[HandlerOutcome],
        seq: int | None = None,
        duplicate: bool = False,
    ) -> None:
        self.event = event
        self._outcomes = outcomes
        self.seq = seq
        self.duplicate = duplicate

    @property
    def outcomes(self) -> Sequence[HandlerOutcome]:
        return self._outcomes

    @property
    def ok(self) -> bool:
        """True when every handler succeeded (also when none matched)."""
        return all(o.status is OutcomeStatus.OK for o in self.outcomes)

    @property
    def failures(self) -> list[HandlerOutcome]:
        return [o for o in self.outcomes if o.status is not OutcomeStatus.OK]

    def __iter__(self) -> Iterator[HandlerOutcome]:
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


class _CompletedResult(PublishResult):
    """The result of a hot-path publish where every handler succeeded: it keeps the
    handler names and durations and builds the ``HandlerOutcome`` objects only when
    ``outcomes`` is first read. Most publishers never read them, and building one
    object per handler per event was a third of the cost of a one-handler publish."""

    __slots__ = ("_durations", "_names")
    # Class-level values shadow the base's slots: this result never has a sequence
    # number (no store on the hot path) and is never a duplicate.
    seq = None
    duplicate = False

    def __init__(self, event: Event, names: tuple[str, ...], durations: Sequence[float]) -> None:
        self.event = event
        self._names = names
        self._durations = durations
        self._outcomes = ()

    @property
    def outcomes(self) -> Sequence[HandlerOutcome]:
        if not self._outcomes and self._names:
            ok = OutcomeStatus.OK
            self._outcomes = tuple(
                HandlerOutcome(name, ok, 1, duration)
                for name, duration in zip(self._names, self._durations, strict=True)
            )
        return self._outcomes

    @property
    def ok(self) -> bool:
        return True

    @property
    def failures(self) -> list[HandlerOutcome]:
        return []

    def __len__(self) -> int:
        return len(self._names)
