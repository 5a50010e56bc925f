"""Policies: how hard a handler is tried — retries with backoff, the circuit breaker,
timeouts and concurrency limits.

``RetryPolicy`` and ``BreakerPolicy`` are frozen descriptions; each subscription gets
its own ``CircuitBreaker`` built from its policy. Backoff is capped exponential with full
jitter: the n-th retry waits ``uniform(0, min(cap, base * multiplier ** (n - 1)))``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from .clock import Clock, RandomSource, system_clock

__all__ = [
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "HandlerPolicy",
    "RetryPolicy",
]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and when to try a handler again.

    ``max_attempts`` counts the first call (1 = no retry). An exception is retried when
    it is an instance of ``retry_on`` and not of ``never_retry``; a timeout is retried
    when ``retry_timeouts`` is true.
    """

    max_attempts: int = 3
    base: float = 0.1
    multiplier: float = 2.0
    cap: float = 10.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    never_retry: tuple[type[BaseException], ...] = ()
    retry_timeouts: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        if self.base < 0 or self.cap < 0 or self.multiplier < 1:
            raise ValueError("backoff needs base >= 0, cap >= 0 and multiplier >= 1")

    def retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, self.retry_on) and not isinstance(exc, self.never_retry)

    def backoff(self, retry: int, rng: RandomSource) -> float:
        """Delay before retry number ``retry`` (1 = the first retry), with full jitter."""
        ceiling = min(self.cap, self.base * self.multiplier ** (retry - 1))
        return rng.uniform(0.0, ceiling)


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """Open after ``failure_threshold`` consecutive failures; after ``reset_timeout``
    seconds admit ``half_open_max_calls`` probes; close on a successful probe, reopen on
    a failed one."""

    failure_threshold: int = 5
    reset_timeout: float = 30.0
    half_open_max_calls: int = 1

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.half_open_max_calls < 1:
            raise ValueError("failure_threshold and half_open_max_calls must be >= 1")


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """One handler's breaker. ``allow()`` before a call, then ``record_success()`` or
    ``record_failure()``. Time comes from the injected clock (monotonic)."""

    __slots__ = (
        "_clock",
        "_failures",
        "_on_change",
        "_opened_at",
        "_probes",
        "_state",
        "policy",
    )

    def __init__(
        self,
        policy: BreakerPolicy,
        clock: Clock = system_clock,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0
        self._on_change = on_change

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose cool-down passed reads half-open)."""
        if (
            self._state is BreakerState.OPEN
            and self._clock.monotonic() - self._opened_at >= self.policy.reset_timeout
        ):
            self._set(BreakerState.HALF_OPEN)
            self._probes = 0
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def _set(self, state: BreakerState) -> None:
        self._state = state
        if self._on_change is not None:
            self._on_change(state)

    def allow(self) -> bool:
        """May a call go through now? In half-open state, only the allowed probes."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probes < self.policy.half_open_max_calls:
            self._probes += 1
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED and self._failures >= self.policy.failure_threshold
        ):
            self._opened_at = self._clock.monotonic()
            self._set(BreakerState.OPEN)


@dataclass(frozen=True, slots=True)
class HandlerPolicy:
    """Everything that shapes one subscription's invocations. ``inline`` runs a sync
    handler on the event loop instead of the executor (only for handlers known to be
    fast: it blocks the loop while it runs)."""

    timeout: float | None = None
    max_concurrency: int | None = None
    retry: RetryPolicy = field(default=NO_RETRY)
    breaker: BreakerPolicy | None = None
    inline: bool = False

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout!r}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency!r}")
