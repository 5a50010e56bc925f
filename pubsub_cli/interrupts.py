"""Interrupts: Ctrl-C (SIGINT) and SIGTERM during a command's work, turned into an
``Interrupted`` that the command reports in one line before it exits 130 or 143.

Two ways to meet a signal:

* ``cancel_on_signal`` stops the work (replay, bench, dlq retry): the work is cancelled
  at its next await, its cleanup runs, and ``Interrupted`` says which signal came. The
  command knows how far it got and says so.
* ``finish_despite_signal`` lets the work end (an append that must be all or nothing):
  the first signal is only recorded and announced; a second one calls ``force``.

A signal that arrives before the handlers are in place (while the store opens) reaches
the command as ``KeyboardInterrupt`` (asyncio's own SIGINT handling) or ends the process
(SIGTERM's default): ``interrupted_by`` turns the first into ``Interrupted`` as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn, TypeVar

__all__ = [
    "SIGNALS",
    "Interrupted",
    "SignalCheckpoints",
    "cancel_on_signal",
    "finish_despite_signal",
    "interrupted_by",
    "terminate_raises",
]

T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """The command's work was stopped by SIGINT or SIGTERM; ``exit_code`` is the shell's
    convention for it (130, 143)."""

    def __init__(self, sig: signal.Signals) -> None:
        self.signal = sig
        self.exit_code = 128 + int(sig)
        super().__init__(sig.name)


@contextlib.contextmanager
def interrupted_by() -> Iterator[None]:
    """Within this block a ``KeyboardInterrupt`` is ``Interrupted(SIGINT)``."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(signal.SIGINT) from None


@contextlib.contextmanager
def terminate_raises() -> Iterator[None]:
    """Within this block (synchronous code, no event loop) SIGTERM raises
    ``Interrupted(SIGTERM)`` as SIGINT raises ``KeyboardInterrupt``, instead of ending
    the process where it stands."""

    def on_term(signum: int, frame: object) -> None:
        raise Interrupted(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _handlers(on_signal: Callable[[signal.Signals], None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)


async def cancel_on_signal(work: Awaitable[T]) -> T:
    """The result of ``work``; the first SIGINT or SIGTERM cancels it, waits for it to
    unwind and raises ``Interrupted``. A second signal while it unwinds is ignored: the
    cleanup is what keeps the store consistent."""
    task = asyncio.ensure_future(work)
    got: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if not got:
            got.append(sig)
            task.cancel()

    with _handlers(on_signal):
        try:
            return await task
        except asyncio.CancelledError:
            if not got:
                raise
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we were cancelled ourselves, too
    raise Interrupted(got[0])


async def finish_despite_signal(
    work: Awaitable[T],
    *,
    announce: Callable[[signal.Signals], None],
    force: Callable[[signal.Signals], NoReturn],
) -> tuple[T, signal.Signals | None]:
    """Run ``work`` to its end even when a signal comes: the first SIGINT/SIGTERM calls
    ``announce`` and is returned with the result; a second one calls ``force`` (which
    ends the process)."""
    got: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if got:
            force(sig)
        got.append(sig)
        announce(sig)

    with _handlers(on_signal):
        result = await work
    return result, (got[0] if got else None)


class SignalCheckpoints:
    """SIGINT/SIGTERM for work that may never give the event loop control (an in-memory
    benchmark whose awaits never suspend), where a loop signal handler would never run.

    Plain signal handlers run between bytecodes whatever the loop does: the first signal
    is recorded, ``check()`` (called by the work at its own safe points, such as a
    progress callback) raises ``Interrupted``, and the task running ``guard(work)`` is
    cancelled for work that does suspend. A second signal raises ``KeyboardInterrupt``
    where the program stands. Use it as a context manager around ``asyncio.run``."""

    def __init__(self) -> None:
        self.got: signal.Signals | None = None
        self._task: asyncio.Task[Any] | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> SignalCheckpoints:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.got is not None:
            raise KeyboardInterrupt
        self.got = signal.Signals(signum)
        task = self._task
        if task is not None and not task.done():
            task.get_loop().call_soon_threadsafe(task.cancel)

    def check(self) -> None:
        """Raise ``Interrupted`` once a signal came."""
        if self.got is not None:
            raise Interrupted(self.got)

    async def guard(self, work: Awaitable[T]) -> T:
        """The result of ``work``; ``Interrupted`` once a signal came."""
        self._task = asyncio.current_task()
        try:
            if self.got is not None:  # before the work began: it never starts
                if inspect.iscoroutine(work):
                    work.close()
                raise Interrupted(self.got)
            return await work
        except asyncio.CancelledError:
            if self.got is None:
                raise
            raise Interrupted(self.got) from None
        finally:
            self._task = None
