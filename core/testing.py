"""Testing: a fake clock and scripted randomness for exact, instant policy tests.

``FakeClock`` stands in for the bus's clock (``EventBus(clock=...)``): ``monotonic()``
returns a number that moves only when told, ``sleep(d)`` waits for the fake time to
reach its deadline, and ``timeout(d)`` cancels the task when the fake time passes ``d``
(the handler timeouts of the bus use it). With ``autojump`` (the default) the clock
jumps to the next deadline as soon as every task is waiting, as trio's ``MockClock``
does: a test of a 30-second timeout or of five retries with backoff takes no real time
and the delays are exact (``clock.sleeps``). With ``autojump=False`` time moves only by
``advance()``. A sync handler running in the bus's executor keeps the clock from
jumping until it returns (the bus tells the clock of it: ``track``), so its timeout is
measured in fake time too; work on threads the bus does not run (a database's, say)
needs ``autojump_threshold``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

__all__ = ["FakeClock", "ScriptedRandom"]

_SPINS = 20  # loop turns with nothing due before the clock counts the loop as idle


class FakeClock:
    """A monotonic clock that moves only when told, or when everything waits on it."""

    def __init__(
        self, start: float = 0.0, *, autojump: bool = True, autojump_threshold: float = 0.0
    ) -> None:
        self._now = start
        self.autojump = autojump
        # Real seconds the loop must stay idle before a jump (for tests whose tasks
        # also wait on threads, a database say, that the clock cannot see).
        self.autojump_threshold = autojump_threshold
        self.sleeps: list[float] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._ids = itertools.count()
        self._jumper: asyncio.Task[None] | None = None
        self._changes = 0  # bumped whenever a timer is added or fires
        self._threads = 0  # tracked work running on threads (no jump meanwhile)

    def monotonic(self) -> float:
        return self._now

    @property
    def next_deadline(self) -> float | None:
        """The earliest pending deadline, None when nothing waits on this clock."""
        self._prune()
        return self._timers[0][0] if self._timers else None

    def advance(self, seconds: float) -> None:
        """Move time forward and fire every timer whose deadline passed, in order."""
        if seconds < 0:
            raise ValueError("time never goes backwards")
        self._now += seconds
        while True:
            self._prune()
            if not self._timers or self._timers[0][0] > self._now:
                return
            _, _ident, fire = heapq.heappop(self._timers)
            self._changes += 1
            fire()

    def _prune(self) -> None:
        while self._timers and self._timers[0][1] in self._cancelled:
            self._cancelled.discard(heapq.heappop(self._timers)[1])

    def call_at(self, deadline: float, fire: Callable[[], None]) -> int:
        """Call ``fire()`` once the time reaches ``deadline``; returns an id to cancel."""
        ident = next(self._ids)
        heapq.heappush(self._timers, (deadline, ident, fire))
        self._changes += 1
        self._wake_jumper()
        return ident

    def cancel(self, ident: int) -> None:
        """Forget the timer ``ident`` (a no-op if it already fired)."""
        if any(t[1] == ident for t in self._timers):
            self._cancelled.add(ident)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)  # still a suspension point, as a real sleep is
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        ident = self.call_at(self._now + seconds, wake)
        try:
            await fut
        finally:
            self.cancel(ident)

    def timeout(self, seconds: float) -> _FakeTimeout:
        return _FakeTimeout(self, seconds)

    def track(self, work: asyncio.Future[Any]) -> None:
        """No jump while ``work`` (running on a thread) is not done."""
        if work.done():
            return
        self._threads += 1
        work.add_done_callback(self._thread_done)

    def _thread_done(self, _work: asyncio.Future[Any]) -> None:
        self._threads -= 1
        self._changes += 1  # the loop is busy again with what the thread returned

    def _wake_jumper(self) -> None:
        if not self.autojump or (self._jumper is not None and not self._jumper.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._jumper = loop.create_task(self._jump())

    async def _jump(self) -> None:
        """While timers are pending: once the loop has had nothing else to do for a
        while, move to the next deadline."""
        while self.autojump and self.next_deadline is not None:
            seen = self._changes
            for _ in range(_SPINS):
                await asyncio.sleep(0)
            if self.autojump_threshold > 0:
                await asyncio.sleep(self.autojump_threshold)
            if seen != self._changes:
                continue  # something happened: not idle yet
            if self._threads:
                # Work on a thread is running: the loop waits for it, not for time.
                await asyncio.sleep(0.001)
                continue
            deadline = self.next_deadline
            if deadline is not None:
                self.advance(max(0.0, deadline - self._now))


class _FakeTimeout:
    """``asyncio.timeout`` driven by a FakeClock: asyncio's own Timeout does the
    cancelling and turns it into TimeoutError; the clock says when."""

    __slots__ = ("_clock", "_ident", "_scope", "_seconds")

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds
        self._scope: asyncio.Timeout | None = None
        self._ident: int | None = None

    async def __aenter__(self) -> _FakeTimeout:
        scope = self._scope = asyncio.timeout(None)
        await scope.__aenter__()
        loop = asyncio.get_running_loop()

        def expire() -> None:
            if scope.expired() is False and scope.when() is None:
                scope.reschedule(loop.time())

        self._ident = self._clock.call_at(self._clock.monotonic() + self._seconds, expire)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._scope is not None
        assert self._ident is not None
        self._clock.cancel(self._ident)
        await self._scope.__aexit__(exc_type, exc, tb)


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
