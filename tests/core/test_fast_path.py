"""The one-handler publish path: a bus with no store, middleware, hooks or dev mode
publishing an event whose route is exactly one plain async handler.

``publish_async`` returns the C extension's ``Call`` there (core/_speedups.c) and a
coroutine of ``EventBus._publish`` otherwise; every test runs on both ("c" and
"python") and pins the same contract: the result, laziness, asyncio integration,
causality, suspension, cancellation, failures, the coroutine protocol, and, for the C
object, which buses take it and that it leaks nothing.

The "c" parameter errors (it never skips, and its expected failures do not pass for
it) when core._speedups cannot be imported, unless PUBSUB_PURE_PYTHON is set, which
turns the C path off for the whole run. Known bugs are strict xfails naming the code
at fault; each runs on both paths, so the path that is right keeps passing.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import gc
import inspect
import itertools
import os
import subprocess
import sys
import textwrap
import threading
import warnings
import weakref
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

import core.bus
from core import (
    BreakerPolicy,
    BusClosedError,
    DeadLetter,
    DeadLetterReason,
    DispatchError,
    Event,
    EventBus,
    MemoryDeadLetterQueue,
    MemoryEventStore,
    OutcomeStatus,
    PublishResult,
    current_dispatch,
)
from core.routing import coroutine_function, is_async_handler


@dataclass(frozen=True, slots=True)
class Ping(Event, type_name="tests.core.fast_path.Ping"):
    n: int = 0


@dataclass(frozen=True, slots=True)
class SubPing(Ping, type_name="tests.core.fast_path.SubPing"):
    pass


@dataclass(frozen=True, slots=True)
class FollowUp(Event, type_name="tests.core.fast_path.FollowUp"):
    n: int = 0


@dataclass(frozen=True, slots=True)
class Grandchild(Event, type_name="tests.core.fast_path.Grandchild"):
    pass


class Boom(BaseException):
    """Not an Exception: never a handler failure, always the awaiting task's."""


PING = "tests.core.fast_path.Ping"
REPO = Path(__file__).resolve().parents[2]


# -- the two paths ---------------------------------------------------------------------


def _pure_python_requested() -> bool:
    """What core.bus._load_speedups reads: any value but "" and "0" turns C off."""
    return os.environ.get("PUBSUB_PURE_PYTHON", "") not in ("", "0")


class SpeedupsNotBuiltError(Exception):
    """The "c" tests cannot run: an error, never a skip (nor an expected failure)."""


def _c_call_type() -> type:
    if _pure_python_requested():
        pytest.skip("PUBSUB_PURE_PYTHON is set: the C path is off in this run")
    try:
        from core import _speedups
    except ImportError as exc:
        raise SpeedupsNotBuiltError(
            f"core._speedups is not importable ({exc}): build it with "
            "`pip install -e '.[dev]'`, or set PUBSUB_PURE_PYTHON=1 to test without it"
        ) from exc
    if core.bus._speedups is not _speedups:
        raise SpeedupsNotBuiltError("core.bus did not load core._speedups")
    return _speedups.Call


@dataclass
class PublishPath:
    """The path under test: builds buses and starts publishes on it."""

    name: str
    call_type: type | None  # core._speedups.Call on "c", None on "python"

    @property
    def is_c(self) -> bool:
        return self.call_type is not None

    @property
    def call(self) -> type:
        """core._speedups.Call (on the "c" path only)."""
        assert self.call_type is not None
        return self.call_type

    def one(
        self,
        handler: Callable[[Any], Any],
        event_type: type[Event] = Ping,
        *,
        name: str = "h",
        **options: Any,
    ) -> EventBus:
        """A bus with ``handler`` as the only (plain) subscriber of ``event_type``."""
        bus = EventBus(**options)
        bus.subscribe(event_type, name=name)(handler)
        return bus

    def publish(
        self, bus: EventBus, event: Event, **kwargs: Any
    ) -> Coroutine[Any, Any, PublishResult]:
        """``bus.publish_async(event)``, checked to be on this path. The route is built
        first (the first publish of a type builds it, in Python, by design); on "c" the
        returned object must be a core._speedups.Call, on "python" a coroutine."""
        bus.handlers_for(type(event))
        awaitable = bus.publish_async(event, **kwargs)
        if self.call_type is not None:
            assert type(awaitable) is self.call_type, f"not the C path: {awaitable!r}"
        else:
            assert inspect.iscoroutine(awaitable), f"not a coroutine: {awaitable!r}"
        return awaitable


@pytest.fixture(params=["c", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> PublishPath:
    if request.param == "c":
        return PublishPath("c", _c_call_type())
    # EventBus.__init__ reads the module global: buses built from here on are pure Python.
    monkeypatch.setattr(core.bus, "_speedups", None)
    return PublishPath("python", None)


@pytest.fixture
def c_path() -> PublishPath:
    return PublishPath("c", _c_call_type())


def bug(
    reason: str, raises: tuple[type[BaseException], ...] = (AssertionError, pytest.fail.Exception)
) -> pytest.MarkDecorator:
    """A known bug: the test must fail, and only the way it describes (so that, for
    one, a missing extension is not taken for the expected failure)."""
    return pytest.mark.xfail(strict=True, reason=reason, raises=raises)


def on(*, c: Any = (), python: Any = ()) -> pytest.MarkDecorator:
    """Both paths, with marks (an xfail) on one of them."""
    return pytest.mark.parametrize(
        "path",
        [pytest.param("c", marks=c), pytest.param("python", marks=python)],
        indirect=True,
    )


async def _turns(n: int = 5) -> None:
    """Let every ready callback run ``n`` times (no timing involved)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def _nothing(event: Event) -> None:
    pass


def _recording(path: PublishPath, **options: Any) -> tuple[EventBus, list[Event]]:
    """A bus whose only handler records the events it receives, in the returned list."""
    received: list[Event] = []

    async def recording(event: Ping) -> None:
        received.append(event)

    return path.one(recording, **options), received


def _gated(
    path: PublishPath, log: list[str] | None = None, **options: Any
) -> tuple[EventBus, asyncio.Event]:
    """A bus whose only handler waits until the returned gate is set (and appends
    "finally" to ``log`` however it ends, when given one)."""
    gate = asyncio.Event()

    async def waiting(event: Ping) -> None:
        try:
            await gate.wait()
        finally:
            if log is not None:
                log.append("finally")

    return path.one(waiting, **options), gate


def _drop(box: list[Any]) -> None:
    """Drop the only reference to what ``box`` holds and collect."""
    box.clear()
    gc.collect()


class DiscardingDeadLetters(MemoryDeadLetterQueue):
    """Counts dead letters without keeping them (for the leak tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.added = 0

    async def add_dead_letters(self, entries: Sequence[DeadLetter]) -> list[int]:
        self.added += len(entries)
        return list(range(len(entries)))


class GatedDeadLetters(MemoryDeadLetterQueue):
    """A dead-letter queue whose write waits for ``gate`` (a slow external store)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def add_dead_letters(self, entries: Sequence[DeadLetter]) -> list[int]:
        self.entered.set()
        await self.gate.wait()
        return await super().add_dead_letters(entries)


# -- 1. the result -----------------------------------------------------------------------


class TestResult:
    async def test_ok_result(self, path: PublishPath) -> None:
        """One ok handler: an ok PublishResult for the event, one OK outcome, no seq."""
        received: list[Ping] = []

        async def only(event: Ping) -> None:
            received.append(event)

        bus = path.one(only, name="only")
        event = Ping(1)
        result = await path.publish(bus, event)
        assert received == [event]
        assert isinstance(result, PublishResult)
        assert result.ok
        assert result.event is event
        assert result.seq is None
        assert not result.duplicate
        assert len(result) == 1
        assert result.failures == []
        (outcome,) = result.outcomes
        assert (outcome.handler, outcome.status, outcome.attempts) == ("only", OutcomeStatus.OK, 1)
        assert outcome.error is None
        assert isinstance(outcome.duration, float)
        assert outcome.duration >= 0
        assert result.outcomes is result.outcomes  # built once
        assert list(result) == [outcome]
        assert "only" in repr(result)
        stats = bus.statistics()
        assert (stats.published, stats.handled_ok, stats.handled_failed) == (1, 1, 0)
        assert (stats.dead_lettered, stats.in_flight) == (0, 0)
        snap = bus.metrics.snapshot()
        assert snap["event_types"][PING]["published"] == 1
        handler = snap["handlers"]["only"]
        assert (handler["succeeded"], handler["failed"], handler["dead_lettered"]) == (1, 0, 0)
        assert handler["duration"]["count"] == 1
        assert handler["duration"]["max"] == outcome.duration
        await bus.aclose()

    async def test_every_publish_is_counted(self, path: PublishPath) -> None:
        """Statistics and metrics count each publish once, handler ok each time."""
        bus = path.one(_nothing)
        for n in range(5):
            assert (await path.publish(bus, Ping(n))).ok
        stats = bus.statistics()
        assert (stats.published, stats.handled_ok, stats.handled_failed) == (5, 5, 0)
        snap = bus.metrics.snapshot()
        assert snap["event_types"][PING]["published"] == 5
        assert snap["handlers"]["h"]["succeeded"] == 5
        assert snap["handlers"]["h"]["duration"]["count"] == 5
        await bus.aclose()

    async def test_a_subtype_event_takes_the_same_path(self, path: PublishPath) -> None:
        """An event of a subclass of the subscribed type is routed to the handler too."""
        bus, received = _recording(path)
        event = SubPing(3)
        result = await path.publish(bus, event)
        assert result.ok
        assert received == [event]
        assert result.event is event
        await bus.aclose()

    def test_sync_publish_outside_a_loop(self, path: PublishPath) -> None:
        """bus.publish (no running loop) runs the publish to completion."""
        received: list[Ping] = []

        async def only(event: Ping) -> None:
            await asyncio.sleep(0)
            received.append(event)

        bus = path.one(only)
        bus.handlers_for(Ping)
        event = Ping()
        result = bus.publish(event)
        assert result.ok
        assert result.event is event
        assert received == [event]
        bus.close()

    def test_asyncio_run(self, path: PublishPath) -> None:
        """asyncio.run() accepts the publish as its main coroutine."""
        received: list[Ping] = []

        async def only(event: Ping) -> None:
            await asyncio.sleep(0)
            received.append(event)

        bus = path.one(only)
        event = Ping()
        result = asyncio.run(path.publish(bus, event))
        assert result.ok
        assert received == [event]


# -- 2. laziness -------------------------------------------------------------------------


class TestLaziness:
    async def test_nothing_runs_until_awaited(self, path: PublishPath) -> None:
        """Calling publish_async only makes the awaitable: no handler, no counts."""
        bus, ran = _recording(path)
        event = Ping()
        pending = path.publish(bus, event)
        await _turns()
        assert ran == []
        assert bus.statistics().published == 0
        assert bus.metrics.snapshot()["event_types"].get(PING, {}).get("published", 0) == 0
        assert current_dispatch() is None
        result = await pending
        assert ran == [event]
        assert result.ok
        await bus.aclose()

    async def test_close_unstarted_runs_nothing_and_warns_nothing(self, path: PublishPath) -> None:
        """close() on an unstarted publish abandons it silently."""
        bus, ran = _recording(path)
        pending = path.publish(bus, Ping())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pending.close()
            pending.close()  # twice is fine
            del pending
            gc.collect()
        assert [w for w in caught if "never awaited" in str(w.message)] == []
        assert ran == []
        assert bus.statistics().published == 0
        await bus.aclose()

    async def test_dropping_an_unstarted_publish_warns(self, path: PublishPath) -> None:
        """An unstarted publish that is dropped warns like a never-awaited coroutine."""
        bus, ran = _recording(path)
        box = [path.publish(bus, Ping())]
        with pytest.warns(RuntimeWarning, match="was never awaited"):
            _drop(box)
        assert ran == []
        await bus.aclose()

    async def test_the_warning_names_publish_async(self, path: PublishPath) -> None:
        """The never-awaited warning names what the user called: publish_async."""
        bus = path.one(_nothing)
        box = [path.publish(bus, Ping())]
        with pytest.warns(
            RuntimeWarning, match=r"coroutine 'EventBus\.publish_async' was never awaited"
        ):
            _drop(box)
        await bus.aclose()

    async def test_a_publish_started_after_aclose_raises(self, path: PublishPath) -> None:
        """The bus is read when the publish starts: made before aclose(), awaited after,
        it raises BusClosedError and the handler never runs (a coroutine is lazy)."""
        bus, ran = _recording(path)
        pending = path.publish(bus, Ping())
        await bus.aclose()
        with pytest.raises(BusClosedError):
            await pending
        assert ran == []

    @pytest.mark.parametrize("change", ["subscribe", "unsubscribe", "middleware", "hook"])
    async def test_the_bus_is_read_when_the_publish_starts(
        self, path: PublishPath, change: str
    ) -> None:
        """Changes to the bus between publish_async() and the first await apply."""
        ran: list[str] = []

        async def only(event: Ping) -> None:
            ran.append("h")

        async def other(event: Ping) -> None:
            ran.append("other")

        async def mw(event: Event, call_next: Any) -> Any:
            ran.append("mw")
            return await call_next(event)

        bus = path.one(only)
        pending = path.publish(bus, Ping())
        if change == "subscribe":
            bus.subscribe(Ping, name="other")(other)
            expected = ["h", "other"]
        elif change == "unsubscribe":
            bus.unsubscribe("h")
            expected = []
        elif change == "middleware":
            bus.add_middleware(mw)
            expected = ["mw", "h"]
        else:
            bus.on_publish(lambda event: ran.append("hook"))
            expected = ["hook", "h"]
        await pending
        assert ran == expected
        await bus.aclose()


# -- 3. asyncio integration --------------------------------------------------------------


class TestAsyncioIntegration:
    async def test_it_is_a_coroutine(self, path: PublishPath) -> None:
        """asyncio and collections.abc take the publish for a coroutine."""
        bus = path.one(_nothing)
        pending = path.publish(bus, Ping())
        try:
            assert asyncio.iscoroutine(pending)
            assert isinstance(pending, collections.abc.Coroutine)
            assert isinstance(pending, collections.abc.Awaitable)
            assert inspect.isawaitable(pending)
        finally:
            pending.close()
        await bus.aclose()

    async def test_publish_async_is_a_coroutine_function(self, path: PublishPath) -> None:
        """publish_async is marked as a coroutine function (bound or not)."""
        bus = EventBus()
        assert is_async_handler(bus.publish_async)
        assert is_async_handler(EventBus.publish_async)
        if sys.version_info >= (3, 12):  # inspect.markcoroutinefunction
            assert inspect.iscoroutinefunction(bus.publish_async)
        else:  # 3.11: only asyncio's marker exists (inspect cannot be told)
            assert asyncio.iscoroutinefunction(bus.publish_async)
        await bus.aclose()

    async def test_create_task_ensure_future_and_wait_for(self, path: PublishPath) -> None:
        """Tasks made by create_task, ensure_future, wait_for and a TaskGroup run the
        publish."""
        received: list[int] = []

        async def only(event: Ping) -> None:
            if event.n % 2:
                await asyncio.sleep(0)
            received.append(event.n)

        bus = path.one(only)
        events = [Ping(n) for n in range(7)]
        tasks = [
            asyncio.create_task(path.publish(bus, events[0])),
            asyncio.create_task(path.publish(bus, events[1])),
            asyncio.ensure_future(path.publish(bus, events[2])),
            asyncio.ensure_future(path.publish(bus, events[3])),
        ]
        results = [await t for t in tasks]
        results.append(await asyncio.wait_for(path.publish(bus, events[4]), timeout=10))
        results.append(await asyncio.wait_for(path.publish(bus, events[5]), timeout=10))
        async with asyncio.TaskGroup() as group:
            grouped = group.create_task(path.publish(bus, events[6]))
        results.append(grouped.result())
        assert all(r.ok for r in results)
        assert [r.event for r in results] == events
        assert sorted(received) == list(range(7))
        assert bus.statistics().published == 7
        await bus.aclose()

    async def test_gather_of_many(self, path: PublishPath) -> None:
        """gather of 200 publishes, half of them suspended together: all delivered."""
        gate = asyncio.Event()
        received: list[int] = []

        async def only(event: Ping) -> None:
            if event.n % 2:
                await gate.wait()
            received.append(event.n)

        bus = path.one(only)
        events = [Ping(n) for n in range(200)]
        gathered = asyncio.ensure_future(asyncio.gather(*(path.publish(bus, e) for e in events)))
        await _turns()
        assert sorted(received) == list(range(0, 200, 2))
        assert bus.statistics().in_flight == 100
        gate.set()
        results = await gathered
        assert [r.event for r in results] == events
        assert all(r.ok and len(r) == 1 for r in results)
        assert sorted(received) == list(range(200))
        stats = bus.statistics()
        assert (stats.published, stats.handled_ok, stats.in_flight) == (200, 200, 0)
        await bus.aclose()

    async def test_a_task_running_it_can_be_inspected(self, path: PublishPath) -> None:
        """repr(), get_coro() and get_stack() of a task running a suspended publish."""
        bus, gate = _gated(path)
        pending = path.publish(bus, Ping())
        task = asyncio.ensure_future(pending)
        await _turns()
        assert task.get_coro() is pending
        assert "publish" in repr(task)
        assert isinstance(task.get_stack(), list)
        gate.set()
        assert (await task).ok
        assert "publish" in repr(task)
        await bus.aclose()

    async def test_a_handler_returning_another_awaitable(self, path: PublishPath) -> None:
        """A handler marked async that returns a Future (not a coroutine) is awaited
        through its __await__, suspension and result included."""
        futures: list[asyncio.Future[None]] = []

        @coroutine_function
        def via_future(event: Ping) -> asyncio.Future[None]:
            future = asyncio.get_running_loop().create_future()
            futures.append(future)
            return future

        bus = path.one(via_future)
        publishing = asyncio.ensure_future(path.publish(bus, Ping()))
        await _turns()
        assert bus.statistics().in_flight == 1
        futures[0].set_result(None)
        assert (await publishing).ok
        failing = asyncio.ensure_future(path.publish(bus, Ping()))
        await _turns()
        futures[1].set_exception(ValueError("via the future"))
        result = await failing
        assert [type(o.error) for o in result.failures] == [ValueError]
        assert bus.statistics().in_flight == 0
        await bus.aclose()

    async def test_nested_publishes(self, path: PublishPath) -> None:
        """A chain of 100 publishes, each awaited inside the previous one's handler."""
        chain: list[Ping] = []
        bus = EventBus()

        async def deeper(event: Ping) -> None:
            chain.append(event)
            if event.n < 100:
                if event.n % 10 == 0:
                    await asyncio.sleep(0)
                assert (await path.publish(bus, Ping(event.n + 1))).ok

        bus.subscribe(Ping, name="h")(deeper)
        assert (await path.publish(bus, Ping(0))).ok
        assert [e.n for e in chain] == list(range(101))
        assert all(
            child.causation_id == parent.id and child.correlation_id == chain[0].id
            for parent, child in itertools.pairwise(chain)
        )
        stats = bus.statistics()
        assert (stats.published, stats.handled_ok, stats.in_flight) == (101, 101, 0)
        assert current_dispatch() is None
        await bus.aclose()

    async def test_a_bus_bridged_into_another(self, path: PublishPath) -> None:
        """One bus's publish_async subscribed on another forwards every event; it is an
        async handler, awaited on the loop (not run in the executor)."""
        gate = asyncio.Event()
        got: list[tuple[Event, int, Event | None]] = []

        async def sink(event: Ping) -> None:
            await gate.wait()
            ctx = current_dispatch()
            got.append((event, threading.get_ident(), ctx.event if ctx else None))

        downstream = path.one(sink, name="sink")
        downstream.handlers_for(Ping)
        upstream = path.one(downstream.publish_async, name="bridge")
        (sub,) = upstream.subscriptions
        assert sub.is_async
        event = Ping(7)
        forwarding = asyncio.ensure_future(path.publish(upstream, event))
        await _turns()
        assert upstream.statistics().in_flight == 1
        assert downstream.statistics().in_flight == 1
        gate.set()
        result = await forwarding
        assert result.ok
        assert [(o.handler, o.status) for o in result] == [("bridge", OutcomeStatus.OK)]
        assert got == [(event, threading.get_ident(), event)]
        assert downstream.statistics().published == 1
        assert downstream.statistics().handled_ok == 1
        assert upstream.statistics().in_flight == downstream.statistics().in_flight == 0
        assert current_dispatch() is None
        await upstream.aclose()
        await downstream.aclose()


# -- 4. causality ------------------------------------------------------------------------


class TestCausality:
    async def test_follow_ups_record_cause_and_correlation(self, path: PublishPath) -> None:
        """A handler's follow-up is caused by the handled event and inherits its
        correlation (the root's id when the root has none)."""
        seen: list[Event] = []
        bus = EventBus()

        async def on_ping(event: Ping) -> None:
            ctx = current_dispatch()
            assert ctx is not None
            assert ctx.event is event
            assert (ctx.attempt, ctx.redelivery) == (1, False)
            await asyncio.sleep(0)  # the context survives a suspension
            child = FollowUp(event.n)
            seen.append(child)
            await path.publish(bus, child)
            ctx = current_dispatch()
            assert ctx is not None
            assert ctx.event is event

        async def on_follow_up(event: FollowUp) -> None:
            ctx = current_dispatch()
            assert ctx is not None
            assert ctx.event is event
            grandchild = Grandchild()
            seen.append(grandchild)

        bus.subscribe(Ping, name="ping")(on_ping)
        bus.subscribe(FollowUp, name="follow_up")(on_follow_up)

        root = Ping(1)
        assert (await path.publish(bus, root)).ok
        child, grandchild = seen
        assert (child.causation_id, child.correlation_id) == (root.id, root.id)
        assert (grandchild.causation_id, grandchild.correlation_id) == (child.id, root.id)

        seen.clear()
        correlation = UUID(int=7)
        root = Ping(2, correlation_id=correlation)
        assert (await path.publish(bus, root)).ok
        child, grandchild = seen
        assert (child.causation_id, child.correlation_id) == (root.id, correlation)
        assert (grandchild.causation_id, grandchild.correlation_id) == (child.id, correlation)
        assert current_dispatch() is None
        assert FollowUp().causation_id is None
        await bus.aclose()

    @pytest.mark.parametrize("suspend", [False, True], ids=["at-once", "suspended"])
    async def test_context_is_reset_after_the_publish(
        self, path: PublishPath, suspend: bool
    ) -> None:
        """current_dispatch() is the event inside the handler and None after."""
        inside: list[Event | None] = []

        async def only(event: Ping) -> None:
            if suspend:
                await asyncio.sleep(0)
            ctx = current_dispatch()
            inside.append(ctx.event if ctx else None)

        bus = path.one(only)
        event = Ping()
        await path.publish(bus, event)
        assert inside == [event]
        assert current_dispatch() is None
        await bus.aclose()

    @pytest.mark.parametrize("suspend", [False, True], ids=["at-once", "suspended"])
    async def test_context_is_reset_after_a_failure(self, path: PublishPath, suspend: bool) -> None:
        """A failed handler leaves no dispatch context behind (also with raise_on_error)."""

        async def failing(event: Ping) -> None:
            if suspend:
                await asyncio.sleep(0)
            raise ValueError("bad")

        bus = path.one(failing)
        assert not (await path.publish(bus, Ping())).ok
        assert current_dispatch() is None
        with pytest.raises(DispatchError):
            await path.publish(bus, Ping(), raise_on_error=True)
        assert current_dispatch() is None
        await bus.aclose()

    async def test_fire_and_forget_tasks_keep_the_cause(self, path: PublishPath) -> None:
        """Tasks created inside the handler run after it returned and still link their
        events to the handled one: an event made later in the task, and a publish of an
        event made in the handler."""
        gate = asyncio.Event()
        spawned: list[asyncio.Task[Any]] = []
        made: list[Event] = []
        handled: list[tuple[FollowUp, Event | None, bool]] = []
        parent_done = False
        bus = EventBus()

        async def later() -> None:
            await gate.wait()
            child = FollowUp(1)
            made.append(child)
            await path.publish(bus, child)

        async def on_ping(event: Ping) -> None:
            spawned.append(asyncio.create_task(later()))
            child = FollowUp(2)
            made.append(child)
            spawned.append(asyncio.create_task(path.publish(bus, child)))

        async def on_follow_up(event: FollowUp) -> None:
            ctx = current_dispatch()
            handled.append((event, ctx.event if ctx else None, parent_done))
            made.append(Grandchild())

        bus.subscribe(Ping, name="ping")(on_ping)
        bus.subscribe(FollowUp, name="follow_up")(on_follow_up)
        bus.handlers_for(FollowUp)
        root = Ping()
        assert (await path.publish(bus, root)).ok
        parent_done = True
        assert current_dispatch() is None
        await _turns()
        gate.set()
        results = await asyncio.gather(*spawned)
        assert all(r is None or r.ok for r in results)
        by_n = {e.n: e for e, _, _ in handled}
        assert sorted(by_n) == [1, 2]
        assert all(ctx is e and after for e, ctx, after in handled)
        for child in by_n.values():
            assert (child.causation_id, child.correlation_id) == (root.id, root.id)
        grandchildren = [e for e in made if isinstance(e, Grandchild)]
        assert {g.causation_id for g in grandchildren} == {c.id for c in by_n.values()}
        assert all(g.correlation_id == root.id for g in grandchildren)
        assert current_dispatch() is None
        await bus.aclose()


# -- 5. suspension -----------------------------------------------------------------------


class TestSuspension:
    async def test_in_flight_and_drain(self, path: PublishPath) -> None:
        """While the handler is suspended the publish is in flight and drain waits for
        it; then in flight is 0 and the result is ok with the whole duration."""
        gate = asyncio.Event()
        entered = asyncio.Event()

        async def slow(event: Ping) -> None:
            entered.set()
            await gate.wait()

        bus = path.one(slow)
        publishing = asyncio.ensure_future(path.publish(bus, Ping()))
        await entered.wait()
        assert bus.statistics().in_flight == 1
        assert current_dispatch() is None  # the test's own context is untouched
        draining = asyncio.ensure_future(bus.drain())
        await _turns(10)
        assert not draining.done()
        assert not publishing.done()
        gate.set()
        assert await draining is True
        assert publishing.done()
        result = publishing.result()
        assert result.ok
        (outcome,) = result.outcomes
        assert outcome.status is OutcomeStatus.OK
        assert outcome.duration >= 0
        stats = bus.statistics()
        assert (stats.in_flight, stats.published, stats.handled_ok) == (0, 1, 1)
        assert bus.metrics.snapshot()["handlers"]["h"]["duration"]["max"] == outcome.duration
        await bus.aclose()

    async def test_aclose_waits_for_a_suspended_publish(self, path: PublishPath) -> None:
        """aclose() returns only after the suspended handler finished."""
        gate = asyncio.Event()
        finished: list[int] = []

        async def slow(event: Ping) -> None:
            await gate.wait()
            finished.append(event.n)

        bus = path.one(slow)
        publishing = asyncio.ensure_future(path.publish(bus, Ping(4)))
        await _turns()
        closing = asyncio.ensure_future(bus.aclose())
        await _turns(10)
        assert not closing.done()
        gate.set()
        await closing
        assert finished == [4]
        assert (await publishing).ok

    async def test_a_running_handler_is_in_flight(self, path: PublishPath) -> None:
        """The handler itself sees its publish in flight, before and after suspending."""
        seen: list[int] = []

        async def only(event: Ping) -> None:
            seen.append(bus.statistics().in_flight)
            await asyncio.sleep(0)
            seen.append(bus.statistics().in_flight)

        bus = path.one(only)
        await path.publish(bus, Ping())
        assert seen == [1, 1]
        assert bus.statistics().in_flight == 0
        await bus.aclose()

    @pytest.mark.parametrize("suspend", [False, True], ids=["at-once", "suspended"])
    async def test_drain_waits_for_the_dead_letter(self, path: PublishPath, suspend: bool) -> None:
        """A failed publish stays in flight until its dead letter is written."""
        dead_letters = GatedDeadLetters()

        async def failing(event: Ping) -> None:
            if suspend:
                await asyncio.sleep(0)
            raise ValueError("bad")

        bus = path.one(failing, dead_letters=dead_letters)
        publishing = asyncio.ensure_future(path.publish(bus, Ping()))
        await dead_letters.entered.wait()
        in_flight = bus.statistics().in_flight
        draining = asyncio.ensure_future(bus.drain())
        await _turns(10)
        drained_early = draining.done()
        dead_letters.gate.set()
        await publishing
        await draining
        assert (in_flight, drained_early) == (1, False)
        await bus.aclose()


# -- 6. cancellation ---------------------------------------------------------------------


class TestCancellation:
    async def test_cancel_a_suspended_publish(self, path: PublishPath) -> None:
        """Cancelling the task: the handler sees CancelledError, the task is cancelled,
        nothing is in flight, no failure or dead letter, the task's context is reset."""
        gate = asyncio.Event()
        entered = asyncio.Event()
        handler_saw: list[BaseException] = []
        after: list[Any] = []

        async def slow(event: Ping) -> None:
            entered.set()
            try:
                await gate.wait()
            except BaseException as exc:
                handler_saw.append(exc)
                raise

        bus = path.one(slow)

        async def publisher() -> None:
            try:
                await path.publish(bus, Ping())
            finally:
                after.append(current_dispatch())

        task = asyncio.ensure_future(publisher())
        await entered.wait()
        assert bus.statistics().in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert len(handler_saw) == 1
        assert isinstance(handler_saw[0], asyncio.CancelledError)
        assert after == [None]
        assert current_dispatch() is None
        stats = bus.statistics()
        assert (stats.in_flight, stats.handled_ok, stats.handled_failed) == (0, 0, 0)
        assert stats.dead_lettered == 0
        assert await bus.dead_letters.count_dead_letters() == 0
        assert await bus.drain(timeout=1) is True  # returns at once when idle
        await bus.aclose()

    async def test_cancel_while_the_dead_letter_is_written(self, path: PublishPath) -> None:
        """Cancelled while its failure is being dead-lettered: the task is cancelled,
        nothing stays in flight, the context is reset."""
        dead_letters = GatedDeadLetters()
        after: list[Any] = []
        bus = path.one(_failing(False, ValueError("bad")), dead_letters=dead_letters)

        async def publisher() -> None:
            try:
                await path.publish(bus, Ping())
            finally:
                after.append(current_dispatch())

        task = asyncio.ensure_future(publisher())
        await dead_letters.entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert after == [None]
        assert bus.statistics().in_flight == 0
        assert await bus.dead_letters.count_dead_letters() == 0
        await bus.aclose()

    async def test_cancel_before_it_started(self, path: PublishPath) -> None:
        """A task cancelled before its first step never runs the handler and warns
        nothing."""
        bus, ran = _recording(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            task = asyncio.ensure_future(path.publish(bus, Ping()))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            del task
            gc.collect()
        assert [w for w in caught if "never awaited" in str(w.message)] == []
        assert ran == []
        assert bus.statistics().in_flight == 0
        await bus.aclose()


# -- 7. failures -------------------------------------------------------------------------


def _failing(suspend: bool, error: BaseException) -> Callable[[Ping], Any]:
    async def failing(event: Ping) -> None:
        if suspend:
            await asyncio.sleep(0)
        raise error

    return failing


SUSPEND = pytest.mark.parametrize("suspend", [False, True], ids=["at-once", "suspended"])


class TestFailures:
    @SUSPEND
    async def test_failure_is_reported_and_dead_lettered(
        self, path: PublishPath, suspend: bool
    ) -> None:
        """A raising handler: a failed result with its exception, a dead letter with
        every fact, and the counts of a failure."""
        error = ValueError("bad ping")
        bus = path.one(_failing(suspend, error), name="failing")
        event = Ping(9)
        result = await path.publish(bus, event)
        assert isinstance(result, PublishResult)
        assert not result.ok
        assert result.event is event
        assert result.seq is None
        assert len(result) == 1
        (outcome,) = result.outcomes
        assert (outcome.handler, outcome.status, outcome.attempts) == (
            "failing",
            OutcomeStatus.FAILED,
            1,
        )
        assert outcome.error is error
        assert outcome.dead_lettered
        assert outcome.duration >= 0  # t0 from C, end from time.perf_counter: one clock
        assert result.failures == [outcome]
        (letter,) = await bus.dead_letters.list_dead_letters()
        assert (letter.event_id, letter.event_type, letter.handler) == (event.id, PING, "failing")
        assert letter.reason is DeadLetterReason.EXHAUSTED
        assert letter.error_type == "builtins.ValueError"
        assert letter.message == "bad ping"
        assert "ValueError: bad ping" in letter.traceback
        assert letter.attempts == 1
        assert letter.payload == event.to_dict()
        assert (letter.seq, letter.group, letter.source) == (None, None, "live")
        stats = bus.statistics()
        assert (stats.published, stats.handled_ok, stats.handled_failed) == (1, 0, 1)
        assert (stats.dead_lettered, stats.in_flight) == (1, 0)
        snap = bus.metrics.snapshot()
        assert snap["event_types"][PING]["published"] == 1
        assert snap["handlers"]["failing"]["failed"] == 1
        assert snap["handlers"]["failing"]["dead_lettered"] == 1
        await bus.aclose()

    @SUSPEND
    @pytest.mark.parametrize("where", ["call", "bus"])
    async def test_raise_on_error(self, path: PublishPath, suspend: bool, where: str) -> None:
        """raise_on_error (per call or per bus) raises a DispatchError carrying the
        handler's exception, after the dead letter is written."""
        error = KeyError("missing")
        bus = path.one(_failing(suspend, error), raise_on_error=where == "bus")
        kwargs = {"raise_on_error": True} if where == "call" else {}
        with pytest.raises(DispatchError) as info:
            await path.publish(bus, Ping(), **kwargs)
        assert isinstance(info.value, ExceptionGroup)
        assert list(info.value.exceptions) == [error]
        assert [(o.handler, o.status) for o in info.value.outcomes] == [("h", OutcomeStatus.FAILED)]
        assert await bus.dead_letters.count_dead_letters() == 1
        stats = bus.statistics()
        assert (stats.handled_failed, stats.in_flight) == (1, 0)
        await bus.aclose()

    async def test_per_call_false_overrides_the_bus(self, path: PublishPath) -> None:
        """raise_on_error=False on the call wins over the bus's True."""
        bus = path.one(_failing(False, ValueError("x")), raise_on_error=True)
        result = await path.publish(bus, Ping(), raise_on_error=False)
        assert not result.ok
        await bus.aclose()

    async def test_a_handler_returning_a_non_awaitable_fails(self, path: PublishPath) -> None:
        """A handler marked async that returns something not awaitable is a failure
        (TypeError), like any other."""

        @coroutine_function
        def not_really_async(event: Ping) -> Any:
            return None

        bus = path.one(not_really_async)
        result = await path.publish(bus, Ping())
        (outcome,) = result.outcomes
        assert outcome.status is OutcomeStatus.FAILED
        assert isinstance(outcome.error, TypeError)
        assert "await" in str(outcome.error)
        assert await bus.dead_letters.count_dead_letters() == 1
        assert current_dispatch() is None
        await bus.aclose()

    async def test_ok_after_failures(self, path: PublishPath) -> None:
        """A failure does not disturb the next publishes on the same route."""

        async def sometimes(event: Ping) -> None:
            if event.n % 3 == 0:
                raise ValueError(event.n)
            if event.n % 3 == 1:
                await asyncio.sleep(0)

        bus = path.one(sometimes)
        results = [await path.publish(bus, Ping(n)) for n in range(9)]
        assert [r.ok for r in results] == [n % 3 != 0 for n in range(9)]
        stats = bus.statistics()
        assert (stats.published, stats.handled_ok, stats.handled_failed) == (9, 6, 3)
        assert await bus.dead_letters.count_dead_letters() == 3
        await bus.aclose()


# -- 8. a BaseException that is not an Exception ----------------------------------------


class TestBaseException:
    @SUSPEND
    async def test_it_propagates_unchanged(self, path: PublishPath, suspend: bool) -> None:
        """Boom (a BaseException) leaves the await as it was raised: not a handler
        failure, nothing in flight, no dead letter, no dispatch context left."""
        boom = Boom("stop")
        bus = path.one(_failing(suspend, boom))
        with pytest.raises(Boom) as info:
            await path.publish(bus, Ping())
        assert info.value is boom
        assert current_dispatch() is None
        stats = bus.statistics()
        assert (stats.in_flight, stats.handled_ok, stats.handled_failed) == (0, 0, 0)
        assert stats.dead_lettered == 0
        assert await bus.dead_letters.count_dead_letters() == 0
        await bus.aclose()


# -- 9. the coroutine protocol -----------------------------------------------------------


class TestCoroutineProtocol:
    async def test_first_send_of_a_value_is_a_type_error(self, path: PublishPath) -> None:
        """send(1) before start raises TypeError and leaves the publish unstarted."""
        bus, ran = _recording(path)
        pending = path.publish(bus, Ping())
        with pytest.raises(TypeError, match="non-None value"):
            pending.send(1)
        assert ran == []
        assert (await pending).ok  # still startable
        assert len(ran) == 1
        await bus.aclose()

    async def test_send_none_completes_with_stop_iteration(self, path: PublishPath) -> None:
        """send(None) into a publish whose handler does not suspend raises
        StopIteration carrying the PublishResult; the context is reset."""
        bus = path.one(_nothing)
        event = Ping()
        pending = path.publish(bus, event)
        with pytest.raises(StopIteration) as info:
            pending.send(None)
        result = info.value.value
        assert isinstance(result, PublishResult)
        assert result.ok
        assert result.event is event
        assert current_dispatch() is None
        with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
            pending.send(None)
        pending.close()  # a no-op once finished
        await bus.aclose()

    async def test_awaiting_a_finished_publish_again(self, path: PublishPath) -> None:
        """A finished publish cannot be awaited again."""
        bus = path.one(_nothing)
        pending = path.publish(bus, Ping())
        assert (await pending).ok
        with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
            await pending
        assert bus.statistics().published == 1
        await bus.aclose()

    async def test_throw_into_an_unstarted_publish(self, path: PublishPath) -> None:
        """throw() before start raises the exception; the handler never runs; the
        publish is finished (no warning when dropped, no reuse)."""
        bus, ran = _recording(path)
        pending = path.publish(bus, Ping())
        error = ValueError("x")
        with pytest.raises(ValueError) as info:
            pending.throw(error)
        assert info.value is error
        assert ran == []
        with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
            await pending
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del pending
            gc.collect()
        assert [w for w in caught if "never awaited" in str(w.message)] == []
        assert bus.statistics().published == 0
        await bus.aclose()

    async def test_throw_into_a_suspended_publish_that_recovers(self, path: PublishPath) -> None:
        """throw() into a suspended handler delivers the exception there; a handler
        that catches it and returns completes the publish ok (StopIteration)."""
        gate = asyncio.Event()
        caught: list[BaseException] = []

        async def patient(event: Ping) -> None:
            try:
                await gate.wait()
            except ValueError as exc:
                caught.append(exc)

        bus = path.one(patient)
        event = Ping()
        pending = path.publish(bus, event)
        yielded = pending.send(None)
        assert isinstance(yielded, asyncio.Future)
        assert bus.statistics().in_flight == 1
        ctx = current_dispatch()  # driven by hand: the handler runs in this context
        assert ctx is not None
        assert ctx.event is event
        error = ValueError("wake up")
        with pytest.raises(StopIteration) as info:
            pending.throw(error)
        assert caught == [error]
        result = info.value.value
        assert isinstance(result, PublishResult)
        assert result.ok
        assert result.event is event
        assert bus.statistics().in_flight == 0
        assert bus.statistics().handled_ok == 1
        assert current_dispatch() is None
        yielded.cancel()  # nobody waits for the gate's future any more
        await bus.aclose()

    async def test_throw_into_a_suspended_publish_that_fails(self, path: PublishPath) -> None:
        """An exception thrown into a suspended handler that does not catch it is that
        handler's failure: a failed result, a dead letter."""
        bus, _ = _gated(path)
        pending = path.publish(bus, Ping())
        yielded = pending.send(None)
        error = ValueError("thrown")
        with pytest.raises(StopIteration) as info:
            pending.throw(error)
        result = info.value.value
        assert isinstance(result, PublishResult)
        assert not result.ok
        assert [o.error for o in result.failures] == [error]
        assert await bus.dead_letters.count_dead_letters() == 1
        assert bus.statistics().in_flight == 0
        assert current_dispatch() is None
        yielded.cancel()
        await bus.aclose()

    async def test_close_a_suspended_publish(self, path: PublishPath) -> None:
        """close() on a suspended publish runs the handler's finally, leaves in flight
        and resets the context; it is then finished."""
        gate = asyncio.Event()
        log: list[str] = []

        async def slow(event: Ping) -> None:
            try:
                await gate.wait()
            except GeneratorExit:
                log.append("exit")
                raise
            finally:
                log.append("finally")

        bus = path.one(slow)
        pending = path.publish(bus, Ping())
        yielded = pending.send(None)
        assert bus.statistics().in_flight == 1
        pending.close()
        assert log == ["exit", "finally"]
        assert bus.statistics().in_flight == 0
        assert current_dispatch() is None
        pending.close()  # idempotent
        with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
            pending.send(None)
        stats = bus.statistics()
        assert (stats.handled_ok, stats.handled_failed, stats.dead_lettered) == (0, 0, 0)
        yielded.cancel()
        await bus.aclose()

    async def test_a_dropped_suspended_publish_is_closed(self, path: PublishPath) -> None:
        """A suspended publish that is garbage-collected closes its handler and leaves
        the in-flight count."""
        log: list[str] = []
        bus, _ = _gated(path, log)
        pending = path.publish(bus, Ping())
        yielded = pending.send(None)
        assert bus.statistics().in_flight == 1
        del pending
        gc.collect()
        assert log == ["finally"]
        assert bus.statistics().in_flight == 0
        assert current_dispatch() is None
        yielded.cancel()
        await bus.aclose()

    async def test_closed_from_another_context(self, path: PublishPath) -> None:
        """A suspended publish driven in a copy of the context and closed from this one
        still closes its handler and leaves the in-flight count."""
        log: list[str] = []
        bus, _ = _gated(path, log)
        pending = path.publish(bus, Ping())
        ctx = contextvars.copy_context()
        yielded = ctx.run(pending.send, None)
        yielded.cancel()
        assert bus.statistics().in_flight == 1
        assert current_dispatch() is None
        try:
            pending.close()
        finally:
            in_flight = bus.statistics().in_flight
            bus._active = 0  # whatever happened, let aclose() finish
        assert log == ["finally"]
        assert in_flight == 0
        assert await bus.drain(timeout=1) is True  # returns at once when idle
        await bus.aclose()

    async def test_a_second_await_of_a_running_publish_is_refused(self, path: PublishPath) -> None:
        """Awaiting a publish that another task is awaiting raises RuntimeError at once."""
        bus, gate = _gated(path)
        pending = path.publish(bus, Ping())
        first = asyncio.ensure_future(pending)
        await _turns()

        async def await_again() -> PublishResult:
            return await pending

        second = asyncio.ensure_future(await_again())
        await _turns()
        second_done_early = second.done()
        gate.set()
        results = await asyncio.gather(first, second, return_exceptions=True)
        assert isinstance(results[0], PublishResult)
        assert results[0].ok
        assert isinstance(results[1], RuntimeError)
        assert second_done_early
        assert "being awaited already" in str(results[1])
        await bus.aclose()

    def test_a_handler_awaiting_its_own_publish(self, path: PublishPath) -> None:
        """A handler awaiting its own publish gets an error (ValueError 'coroutine
        already executing', a handler failure), not a crash. Run in a subprocess."""
        script = textwrap.dedent(
            """
            import asyncio
            from dataclasses import dataclass
            from core import Event, EventBus

            @dataclass(frozen=True, slots=True)
            class Loop(Event, type_name="tests.core.fast_path.Loop"):
                pass

            async def main() -> None:
                bus = EventBus()
                own = []

                async def handler(event: Loop) -> None:
                    await own[0]

                bus.subscribe(Loop, name="h")(handler)
                bus.handlers_for(Loop)
                own.append(bus.publish_async(Loop()))
                print(type(own[0]).__name__)
                result = await own[0]
                (outcome,) = result.outcomes
                print(outcome.status.value, type(outcome.error).__name__)
                print(bus.statistics().in_flight)

            asyncio.run(main())
            """
        )
        env = dict(os.environ)
        env.pop("PUBSUB_PURE_PYTHON", None)
        if not path.is_c:
            env["PUBSUB_PURE_PYTHON"] = "1"
        proc = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
        kind, outcome, in_flight = proc.stdout.split("\n")[:3]
        assert kind == ("Call" if path.is_c else "coroutine")
        assert outcome == "failed ValueError"
        assert in_flight == "0"


# -- 10. which publishes take the C path -------------------------------------------------


def _general_bus(case: str) -> EventBus:
    """A bus (with one plain async handler "h" where it makes sense) whose publishes of
    Ping the C path does not cover."""

    async def mw(event: Event, call_next: Any) -> Any:
        return await call_next(event)

    bus = EventBus(dev_mode=case == "dev-mode")
    if case in ("middleware", "hook", "dev-mode"):
        bus.subscribe(Ping, name="h")(_nothing)
    if case == "middleware":
        bus.add_middleware(mw)
    elif case == "hook":
        bus.on_publish(lambda event: None)
    elif case == "timeout":
        bus.subscribe(Ping, name="h", timeout=1)(_nothing)
    elif case == "retry":
        bus.subscribe(Ping, name="h", retry=2)(_nothing)
    elif case == "max-concurrency":
        bus.subscribe(Ping, name="h", max_concurrency=2)(_nothing)
    elif case == "breaker":
        bus.subscribe(Ping, name="h", breaker=BreakerPolicy(failure_threshold=3))(_nothing)
    elif case == "two-handlers":
        bus.subscribe(Ping, name="a")(_nothing)
        bus.subscribe(Ping, name="b")(_nothing)
    elif case == "inline-sync":
        bus.subscribe(Ping, name="h", inline=True)(lambda event: None)
    elif case == "sync-in-executor":
        bus.subscribe(Ping, name="h")(lambda event: None)
    return bus


NOT_PLAIN = ["middleware", "hook", "dev-mode"]  # the bus is not plain: no Call at all
GENERAL_ROUTES = [  # a plain bus, but not a single plain handler: a Call runs _publish
    "timeout",
    "retry",
    "max-concurrency",
    "breaker",
    "two-handlers",
    "sync-in-executor",
    "no-handler",
]


class TestWhichPath:
    async def test_publish_after_aclose_raises(self, path: PublishPath) -> None:
        """A closed bus refuses publishes on both paths."""
        bus, ran = _recording(path)
        await path.publish(bus, Ping())
        await bus.aclose()
        with pytest.raises(BusClosedError):
            await bus.publish_async(Ping())
        assert len(ran) == 1

    @pytest.mark.parametrize("case", NOT_PLAIN)
    async def test_a_bus_that_is_not_plain_returns_a_coroutine(
        self, c_path: PublishPath, case: str
    ) -> None:
        """Middleware, hooks or dev mode: publish_async is the Python coroutine."""
        bus = _general_bus(case)
        bus.handlers_for(Ping)
        pending = bus.publish_async(Ping())
        assert not isinstance(pending, c_path.call)
        assert inspect.iscoroutine(pending)
        assert (await pending).ok
        await bus.aclose()

    @pytest.mark.parametrize("case", GENERAL_ROUTES)
    async def test_other_routes_run_the_general_path_from_a_call(
        self, c_path: PublishPath, case: str
    ) -> None:
        """On a plain bus every publish is a Call; one whose route is not a single
        plain handler runs the general path inside it, with the same result."""
        bus = _general_bus(case)
        bus.handlers_for(Ping)
        pending = bus.publish_async(Ping())
        assert isinstance(pending, c_path.call)
        result = await pending
        assert result.ok
        assert len(result) == {"two-handlers": 2, "no-handler": 0}.get(case, 1)
        assert bus.statistics().published == 1
        await bus.aclose()

    async def test_an_inline_sync_handler_takes_the_c_path(self, path: PublishPath) -> None:
        """A sync handler with inline=True runs in the publisher, in the dispatch context,
        and is recorded like an async one."""
        seen: list[Any] = []

        def inline(event: Ping) -> None:
            ctx = current_dispatch()
            seen.append(ctx.event if ctx is not None else None)

        bus = EventBus()
        bus.subscribe(Ping, name="h", inline=True)(inline)
        event = Ping(3)
        result = await path.publish(bus, event)
        assert result.ok
        assert [o.handler for o in result.outcomes] == ["h"]
        assert seen == [event]
        assert current_dispatch() is None
        snapshot = bus.metrics.snapshot()
        assert snapshot["handlers"]["h"]["succeeded"] == 1
        assert snapshot["event_types"][Ping.event_type]["published"] == 1

        def failing(event: Ping) -> None:
            raise ValueError("inline failure")

        bus.subscribe(SubPing, name="bad", inline=True)(failing)
        failed = await path.publish(bus, SubPing())
        assert not failed.ok
        assert isinstance(failed.failures[0].error, ValueError)
        assert len(await bus.dead_letters.list_dead_letters()) == 1
        await bus.aclose()

    async def test_a_store_takes_the_general_path(self, c_path: PublishPath) -> None:
        """A bus with a store appends first: never the C path."""
        async with EventBus(MemoryEventStore()) as bus:
            bus.subscribe(Ping, name="h")(_nothing)
            bus.handlers_for(Ping)
            pending = bus.publish_async(Ping())
            assert not isinstance(pending, c_path.call)
            result = await pending
            assert result.ok
            assert result.seq == 1

    async def test_the_first_publish_of_a_type_builds_its_route(self, c_path: PublishPath) -> None:
        """Without a cached route the Call runs the general path (which caches it); the
        next publish of that type runs the handler from C."""
        calls: list[str] = []

        async def handler(event: Ping) -> None:
            calls.append("ran")

        bus = c_path.one(handler)
        first = bus.publish_async(Ping())
        assert isinstance(first, c_path.call)
        assert (await first).ok
        assert (await c_path.publish(bus, Ping())).ok
        assert calls == ["ran", "ran"]
        assert bus.statistics().published == 2
        await bus.aclose()

    async def test_the_c_path_comes_back(self, c_path: PublishPath) -> None:
        """Removing the middleware, or the second handler, brings the C path back."""

        async def mw(event: Event, call_next: Any) -> Any:
            return await call_next(event)

        bus = c_path.one(_nothing)
        bus.add_middleware(mw)
        bus.handlers_for(Ping)
        pending = bus.publish_async(Ping())
        assert inspect.iscoroutine(pending)
        assert (await pending).ok
        bus.remove_middleware(mw)
        assert (await c_path.publish(bus, Ping())).ok
        bus.subscribe(Ping, name="second")(_nothing)
        assert len(await bus.publish_async(Ping())) == 2
        bus.unsubscribe("second")
        assert len(await c_path.publish(bus, Ping())) == 1
        assert bus.statistics().published == 4
        await bus.aclose()


# -- 11. no leak -------------------------------------------------------------------------


async def _suspending(event: Ping) -> None:
    await asyncio.sleep(0)


async def _raising(event: Ping) -> None:
    raise ValueError(event.n)  # a new exception each time (a reused one grows its traceback)


async def _raising_later(event: Ping) -> None:
    await asyncio.sleep(0)
    raise ValueError(event.n)


class TestNoLeak:
    @pytest.mark.parametrize(
        ("handler", "count"),
        [
            pytest.param(_nothing, 20_000, id="ok"),
            pytest.param(_suspending, 2_000, id="suspended"),
            pytest.param(_raising, 2_000, id="failed"),
            pytest.param(_raising_later, 2_000, id="failed-suspended"),
        ],
    )
    async def test_object_count_is_stable(
        self, c_path: PublishPath, handler: Callable[[Ping], Any], count: int
    ) -> None:
        """Thousands of C publishes leave no objects behind."""
        dead_letters = DiscardingDeadLetters()
        bus = c_path.one(handler, dead_letters=dead_letters)
        event = Ping()
        await c_path.publish(bus, event)
        publish = bus.publish_async
        for _ in range(500):  # warm up (caches, free lists, the metrics ring)
            await publish(event)
        gc.collect()
        before = len(gc.get_objects())
        for _ in range(count):
            await publish(event)
        gc.collect()
        grown = len(gc.get_objects()) - before
        assert grown < 200, f"{grown} objects more after {count} publishes"
        stats = bus.statistics()
        assert (stats.published, stats.in_flight) == (count + 501, 0)
        if handler in (_raising, _raising_later):
            assert dead_letters.added == count + 501
        await bus.aclose()

    @pytest.mark.parametrize(
        "how",
        [
            "ok",
            "suspended",
            "failed",
            "failed-suspended",
            "raise-on-error",
            "base-exception",
            "unstarted-closed",
            "thrown-unstarted",
            "suspended-closed",
            "cancelled",
        ],
    )
    async def test_the_event_is_released(self, c_path: PublishPath, how: str) -> None:
        """Once a publish is over and its result dropped, the Call holds no reference
        to the event."""
        gate = asyncio.Event()

        async def handler(event: Ping) -> None:
            if how in ("suspended", "failed-suspended", "suspended-closed", "cancelled"):
                await (
                    gate.wait() if how in ("suspended-closed", "cancelled") else asyncio.sleep(0)
                )
            if how.startswith("failed") or how == "raise-on-error":
                raise ValueError("x")
            if how == "base-exception":
                raise Boom()

        bus = c_path.one(handler, dead_letters=DiscardingDeadLetters())
        event = Ping()
        bus.handlers_for(Ping)
        gc.collect()
        baseline = sys.getrefcount(event)
        pending = c_path.publish(bus, event, raise_on_error=how == "raise-on-error")
        assert sys.getrefcount(event) > baseline  # the Call holds it
        if how == "unstarted-closed":
            pending.close()
        elif how == "thrown-unstarted":
            with pytest.raises(KeyError):
                pending.throw(KeyError("k"))
        elif how == "suspended-closed":
            pending.send(None).cancel()
            pending.close()
        elif how == "cancelled":
            task = asyncio.ensure_future(pending)
            await _turns()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            del task
        elif how in ("raise-on-error", "base-exception"):
            # try/except, not pytest.raises: its ExceptionInfo keeps the traceback
            # (whose frames hold the event) alive past the block.
            expected = DispatchError if how == "raise-on-error" else Boom
            try:
                await pending
            except expected:
                pass
            else:
                pytest.fail(f"no {expected.__name__}")
        else:
            result = await pending
            assert result.event is event
            del result
        assert bus.statistics().in_flight == 0
        gc.collect()
        held = sys.getrefcount(event)
        del pending
        gc.collect()
        assert sys.getrefcount(event) == held  # the finished Call held no reference
        if how != "cancelled":  # asyncio keeps the CancelledError (and its frames) a while
            assert held == baseline
        await bus.aclose()


# -- 12. found in the second review: both paths alike ------------------------------------


class TestSecondReview:
    @pytest.mark.parametrize("suspend", [False, True], ids=["at-once", "suspended"])
    async def test_the_failure_is_being_handled_while_dead_lettering(
        self, path: PublishPath, suspend: bool
    ) -> None:
        """The DispatchError chains to the handler's exception, and the dead-letter
        queue sees it as the exception being handled (as inside ``except``)."""
        seen: list[BaseException | None] = []

        class Watching(MemoryDeadLetterQueue):
            async def add_dead_letters(self, entries: Any) -> Any:
                seen.append(sys.exc_info()[1])
                return await super().add_dead_letters(entries)

        class Broken(Exception):
            pass

        async def broken(event: Ping) -> None:
            if suspend:
                await asyncio.sleep(0)
            raise Broken("x")

        bus = path.one(broken, dead_letters=Watching())
        with pytest.raises(DispatchError) as info:
            await path.publish(bus, Ping(), raise_on_error=True)
        assert isinstance(info.value.__context__, Broken)
        assert len(seen) == 1
        assert isinstance(seen[0], Broken)
        assert sys.exc_info()[1] is None
        await bus.aclose()

    async def test_yield_from_its_await_iterator(self, path: PublishPath) -> None:
        """A custom awaitable that delegates with ``yield from x.__await__()`` works."""

        class Wrapper:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def __await__(self) -> Any:
                return (yield from self.inner.__await__())

        async def suspending(event: Ping) -> None:
            await asyncio.sleep(0)

        bus = path.one(suspending)
        result = await Wrapper(path.publish(bus, Ping()))
        assert result.ok
        await bus.aclose()

    async def test_a_handler_returning_a_coroutine_awaited_elsewhere_fails(
        self, path: PublishPath
    ) -> None:
        """As ``await`` would: RuntimeError at once, a failure of the handler; the
        other awaiter keeps its coroutine."""
        gate = asyncio.Event()

        async def shared() -> int:
            await gate.wait()
            return 1

        co = shared()
        other = asyncio.ensure_future(co)
        await _turns(1)

        @coroutine_function
        def handler(event: Ping) -> Any:
            return co

        bus = path.one(handler)
        result = await path.publish(bus, Ping())
        assert not result.ok
        error = result.failures[0].error
        assert isinstance(error, RuntimeError)
        assert "awaited already" in str(error)
        gate.set()
        assert await other == 1
        await bus.aclose()

    async def test_throw_without_arguments_changes_nothing(self, path: PublishPath) -> None:
        """``throw()`` with no exception is a TypeError and the publish goes on."""
        bus, gate = _gated(path)
        pending = path.publish(bus, Ping())
        with pytest.raises(TypeError):
            pending.throw()  # type: ignore[call-arg]
        task = asyncio.ensure_future(pending)
        await _turns()
        with pytest.raises(TypeError):
            pending.throw()  # type: ignore[call-arg]
        gate.set()
        assert (await task).ok
        stats = bus.statistics()
        assert (stats.handled_failed, stats.in_flight) == (0, 0)
        await bus.aclose()

    async def test_close_when_the_cleanup_raises_is_a_failure(self, path: PublishPath) -> None:
        """Closing a suspended publish whose handler raises from its cleanup records
        that as the handler's failure (dead letter), and close() returns."""
        gate = asyncio.Event()

        async def messy(event: Ping) -> None:
            try:
                await gate.wait()
            finally:
                raise KeyError("cleanup")

        bus = path.one(messy)
        pending = path.publish(bus, Ping())
        yielded = pending.send(None)
        assert pending.close() is None
        yielded.cancel()
        stats = bus.statistics()
        assert (stats.handled_failed, stats.dead_lettered, stats.in_flight) == (1, 1, 0)
        letters = await bus.dead_letters.list_dead_letters()
        assert [letter.error_type for letter in letters] == ["builtins.KeyError"]
        await bus.aclose()

    async def test_finished_in_another_context_still_succeeds(self, path: PublishPath) -> None:
        """Started in a copy of the context and finished in this one: the reset of the
        context variable cannot apply, and the publish still completes ok."""
        fut = asyncio.get_running_loop().create_future()

        async def waiting(event: Ping) -> None:
            await fut

        bus = path.one(waiting)
        pending = path.publish(bus, Ping())
        contextvars.copy_context().run(pending.send, None)
        fut.set_result(None)
        with pytest.raises(StopIteration) as info:
            pending.send(None)
        assert info.value.value.ok
        stats = bus.statistics()
        assert (stats.handled_ok, stats.in_flight) == (1, 0)
        await bus.aclose()

    async def test_a_publish_can_be_weakly_referenced(self, path: PublishPath) -> None:
        bus = path.one(_nothing)
        pending = path.publish(bus, Ping())
        ref = weakref.ref(pending)
        assert ref() is pending
        await pending
        del pending
        gc.collect()
        assert ref() is None
        await bus.aclose()
