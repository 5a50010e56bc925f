"""Pytest plugin: fixtures for testing pubsub handlers, loaded through the ``pytest11``
entry point ``pubsub`` (disable it with ``-p no:pubsub``).

Every fixture is named ``pubsub_*`` and nothing here runs unless a test asks for one of
them: no autouse fixture, no option, no hook. Importing this module imports pytest (and
pytest-asyncio when it is installed) only; the bus, the SQLite store and the test kit
are imported by the fixture that needs them.

* ``pubsub_clock``: a ``FakeClock`` that jumps to the next deadline as soon as the
  event loop is idle, so a retry with backoff or a handler timeout takes no real time
  and moves the clock by exactly its delay (``pubsub_clock.monotonic()``,
  ``pubsub_clock.sleeps``).
* ``pubsub_rng``: a ``ScriptedRandom`` that pins backoff jitter to the top of its range:
  the n-th retry waits exactly ``min(cap, base * multiplier ** (n - 1))``.
* ``pubsub_bus``: an ``EventBus`` on that clock and randomness, without a store; closed
  after the test.
* ``pubsub_recorder``: a ``Recorder`` attached to ``pubsub_bus``.
* ``pubsub_run``: ``run_handlers`` on ``pubsub_bus``: ``await pubsub_run("handlers.py",
  [event, ...])`` returns each event's ``PublishResult``.
* ``pubsub_store``: a SQLite event store in a temporary folder of its own; closed after
  the test. The store works on a thread the fake clock cannot see, so a test that uses
  it makes ``pubsub_clock`` wait 50 ms of real idleness before it jumps
  (``autojump_threshold``).
* ``pubsub_sqlite_bus``: an ``EventBus`` consuming ``pubsub_store``, started and closed.
* ``pubsub_make_bus``: ``await pubsub_make_bus(store=None, **options)``, more buses on the
  same clock, each closed after the test.

The async fixtures are pytest-asyncio fixtures: they work in its ``strict`` and ``auto``
modes alike (in strict mode mark the tests ``@pytest.mark.asyncio``) and follow its
``asyncio_default_fixture_loop_scope``. Without pytest-asyncio they fail with a line
saying so; the sync fixtures and ``plugins.testkit`` work without it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterable

    from core.bus import EventBus
    from core.events import Event
    from core.results import PublishResult
    from core.store import EventStore
    from core.testing import FakeClock, ScriptedRandom
    from plugins.sqlite import SQLiteEventStore
    from plugins.testkit import MakeBus, Recorder, RunHandlers, Target

__all__ = [
    "SQLITE_AUTOJUMP_THRESHOLD",
    "pubsub_bus",
    "pubsub_clock",
    "pubsub_make_bus",
    "pubsub_recorder",
    "pubsub_rng",
    "pubsub_run",
    "pubsub_sqlite_bus",
    "pubsub_store",
]

SQLITE_AUTOJUMP_THRESHOLD = 0.05
"""Real seconds of idleness the fake clock waits for before it jumps, in a test that
uses the SQLite store (whose work on its own thread the clock cannot see)."""

CLOSE_TIMEOUT = 5.0  # real seconds a fixture's bus waits for unfinished handlers

F = TypeVar("F", bound=Callable[..., Any])


def _async_fixture(fn: F) -> F:
    """``pytest_asyncio.fixture(fn)``; without pytest-asyncio, a fixture that fails
    saying what to install."""
    try:
        from pytest_asyncio import fixture
    except ImportError:
        name = fn.__name__

        def missing() -> None:
            pytest.fail(
                f"{name} is an async fixture of pubsub's pytest plugin and needs "
                "pytest-asyncio: pip install pytest-asyncio",
                pytrace=False,
            )

        missing.__name__ = name
        missing.__doc__ = fn.__doc__
        return pytest.fixture(name=name)(missing)  # type: ignore[return-value]
    return cast(F, fixture(fn))


@pytest.fixture
def pubsub_clock() -> FakeClock:
    """A FakeClock that jumps to the next deadline whenever the event loop is idle."""
    from core.testing import FakeClock

    return FakeClock()


@pytest.fixture
def pubsub_rng() -> ScriptedRandom:
    """Backoff jitter pinned to the top of its range (exact retry delays)."""
    from core.testing import ScriptedRandom

    return ScriptedRandom([1.0])


@_async_fixture
async def pubsub_bus(
    pubsub_clock: FakeClock, pubsub_rng: ScriptedRandom
) -> AsyncIterator[EventBus]:
    """An EventBus without a store on ``pubsub_clock`` and ``pubsub_rng``; closed after
    the test."""
    from core.bus import EventBus

    async with EventBus(clock=pubsub_clock, rng=pubsub_rng, close_timeout=CLOSE_TIMEOUT) as bus:
        yield bus


@pytest.fixture
def pubsub_recorder(pubsub_bus: EventBus) -> Recorder:
    """A Recorder attached to ``pubsub_bus``: ``received(...)``, ``published(...)``."""
    from plugins.testkit import Recorder

    return Recorder().attach(pubsub_bus)


@pytest.fixture
def pubsub_run(pubsub_bus: EventBus) -> RunHandlers:
    """``await pubsub_run(target, events)``: the handlers of ``target`` (a ``pubsub run``
    TARGET, a Router, a module) on ``pubsub_bus``, one PublishResult per event."""
    from plugins.testkit import run_handlers

    async def run(
        target: Target | Sequence[Target],
        events: Iterable[Event],
        *,
        bus: EventBus | None = None,
        app_dir: Path | None = None,
        raise_on_error: bool | None = None,
    ) -> list[PublishResult]:
        return await run_handlers(
            target,
            events,
            bus=bus if bus is not None else pubsub_bus,
            app_dir=app_dir,
            raise_on_error=raise_on_error,
        )

    return run


@_async_fixture
async def pubsub_store(
    tmp_path_factory: pytest.TempPathFactory, pubsub_clock: FakeClock
) -> AsyncIterator[SQLiteEventStore]:
    """A SQLite event store in a temporary folder of its own; closed after the test."""
    from plugins.sqlite import open_sqlite_store

    pubsub_clock.autojump_threshold = max(
        pubsub_clock.autojump_threshold, SQLITE_AUTOJUMP_THRESHOLD
    )
    path = tmp_path_factory.mktemp("pubsub") / "events.db"
    store = await open_sqlite_store(f"sqlite:///{path}")
    try:
        yield store
    finally:
        await store.aclose()


@_async_fixture
async def pubsub_sqlite_bus(
    pubsub_store: SQLiteEventStore, pubsub_clock: FakeClock, pubsub_rng: ScriptedRandom
) -> AsyncIterator[EventBus]:
    """An EventBus consuming ``pubsub_store`` (group ``default``), started; closed after
    the test (before the store)."""
    from core.bus import EventBus

    bus = EventBus(pubsub_store, clock=pubsub_clock, rng=pubsub_rng, close_timeout=CLOSE_TIMEOUT)
    async with bus:
        yield bus


@_async_fixture
async def pubsub_make_bus(
    pubsub_clock: FakeClock, pubsub_rng: ScriptedRandom
) -> AsyncIterator[MakeBus]:
    """``await pubsub_make_bus(store=None, **options)``: a started EventBus on the test's
    clock and randomness with any other option (``raise_on_error=True``, ``group=``...);
    every bus made is closed after the test, the last made first."""
    from core.bus import EventBus

    made: list[EventBus] = []

    async def make(store: EventStore | None = None, **options: Any) -> EventBus:
        options.setdefault("clock", pubsub_clock)
        options.setdefault("rng", pubsub_rng)
        options.setdefault("close_timeout", CLOSE_TIMEOUT)
        bus = EventBus(store, **options)
        made.append(bus)
        await bus.start()
        return bus

    try:
        yield make
    finally:
        for bus in reversed(made):
            await bus.aclose()
