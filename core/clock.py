"""Clock: the time and randomness every policy reads, injectable for exact tests.

Policies never call ``time`` or ``random`` directly: they take a ``Clock`` (monotonic
time and sleeping) and a ``RandomSource`` (jitter). ``core.testing.FakeClock`` replaces
both in tests, so retry, backoff and breaker tests take milliseconds and assert exact
delays.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "RandomSource", "SystemClock", "system_clock"]


@runtime_checkable
class Clock(Protocol):
    """Monotonic time in seconds and a way to wait."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


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


system_clock = SystemClock()
system_random: RandomSource = random.Random()
