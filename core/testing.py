"""Testing: a fake clock and scripted randomness for exact, instant policy tests.

``FakeClock`` stands in for the bus's clock: ``monotonic()`` returns a number you move
with ``advance()``, and ``sleep(d)`` records ``d`` and, with ``autojump`` (the default),
moves time forward by ``d`` at once instead of waiting. Retry and breaker tests then
assert the exact delays (``clock.sleeps``) and take no real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

__all__ = ["FakeClock", "ScriptedRandom"]


class FakeClock:
    """A monotonic clock that moves only when told (or when someone sleeps)."""

    def __init__(self, start: float = 0.0, *, autojump: bool = True) -> None:
        self._now = start
        self.autojump = autojump
        self.sleeps: list[float] = []
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward and wake the sleepers whose deadline passed."""
        if seconds < 0:
            raise ValueError("time never goes backwards")
        self._now += seconds
        due = [(t, f) for t, f in self._waiters if t <= self._now]
        self._waiters = [(t, f) for t, f in self._waiters if t > self._now]
        for _, fut in due:
            if not fut.done():
                fut.set_result(None)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.autojump:
            self.advance(max(0.0, seconds))
            await asyncio.sleep(0)  # still a suspension point, as a real sleep is
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._now + seconds, fut))
        await fut


class ScriptedRandom:
    """A RandomSource that returns ``low + fraction * (high - low)`` for each fraction
    of a script (cycled), so jittered delays are exact in tests."""

    def __init__(self, fractions: Iterable[float] = (1.0,)) -> None:
        self._fractions = list(fractions) or [1.0]
        self._i = 0
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        f = self._fractions[self._i % len(self._fractions)]
        self._i += 1
        return a + f * (b - a)
