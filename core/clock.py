"""Clock: the time and randomness every policy reads, injectable for exact tests.

Policies never call ``time`` or ``random`` directly: they take a ``Clock`` (monotonic
time, sleeping, and the deadline of a handler's timeout) and a ``RandomSource``
(jitter). ``core.testing.FakeClock`` replaces the clock in tests, so timeout, retry,
backoff and breaker tests take no real time and assert exact delays.
"""

from __future__ import annotations

import asyncio
import random
import time
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, runtime_checkable

__all__ = ["Clock", "RandomSource", "SystemClock", "ThreadAwareClock", "system_clock"]


@runtime_checkable
class Clock(Protocol):
    """Monotonic time in seconds and a way to wait."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """A scope that cancels the current task ``seconds`` from now on this clock and
        then raises TimeoutError, as ``asyncio.timeout`` does on the loop's clock."""
        ...


@runtime_checkable
class ThreadAwareClock(Protocol):
    """A clock that wants to know of work running on a thread (a sync handler in the
    executor): a fake clock must not count the loop as idle, and jump to a deadline,
    while such work is still running. The bus tells it of each such call."""

    def track(self, work: asyncio.Future[Any]) -> None:
        """``work`` runs on a thread until it is done."""
        ...


@runtime_checkable
class RandomSource(Protocol):
    """Where jitter comes from; ``random.Random`` fits."""

    def uniform(self, a: float, b: float) -> float: ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(seconds)


system_clock = SystemClock()
system_random: RandomSource = random.Random()
