"""Bus: the asynchronous event bus — subscriptions, publishing, the durable consumer
loop, replay and dead-letter re-drive.

Without a store, ``publish_async`` dispatches at once and returns every handler's
outcome. With a store, it first appends the event durably (the store groups concurrent
appends into one commit), then dispatches, and the bus moves its consumer group's
checkpoint as a low-water mark together with the dead letters of the events it passes.
A bus owns all of its state: two buses in one process share nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import os
import socket
import traceback
import typing
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Collection, Coroutine, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import perf_counter
from typing import Any, Literal, TypeVar
from uuid import UUID, uuid4

import orjson

from ._native import speedups
from .clock import Clock, RandomSource, system_clock, system_random
from .codec import encode
from .dispatch import Failure, Middleware, Route, Runner, run_plain_route, run_route
from .errors import (
    BusClosedError,
    ChecksumMismatchError,
    EventDecodeError,
    EventError,
    GroupLockedError,
    SubscriptionError,
    SyncPublishInLoopError,
)
from .events import (
    DispatchContext,
    Event,
    EventRegistry,
    _dispatch,
    default_registry,
    is_frozen_dataclass,
)
from .memory import MemoryDeadLetterQueue
from .metrics import (
    NULL_RECORDER,
    TRUSTED_COLLECTORS,
    EventTypeRecorder,
    GuardedRecorder,
    HandlerRecorder,
    InMemoryMetrics,
    MetricsCollector,
)
from .policies import BreakerPolicy, BreakerState, CircuitBreaker, RetryPolicy
from .progress import GroupProgress
from .results import HandlerOutcome, OutcomeStatus, PublishResult, _CompletedResult
from .routing import Handler, Router, Subscription, coroutine_function
from .store import DeadLetter, DeadLetterQueue, DeadLetterReason, EventStore, Lease, StoredEvent

__all__ = [
    "BusStatistics",
    "EventBus",
    "HandlerTally",
    "PublishHook",
    "RedriveResult",
    "ReplayReport",
]

E = TypeVar("E", bound=Event)
PublishHook = Callable[[Event], object]
"""Called with every event before dispatch (the seam for tracing); must not block."""

log = logging.getLogger("pubsub")
_OK = OutcomeStatus.OK

if typing.TYPE_CHECKING:
    from ._speedups import Publisher as _speedups_Publisher


_speedups = speedups  # read when a bus is built (tests swap it for None)

DECODE_HANDLER = "<decode>"
MIDDLEWARE_HANDLER = "<middleware>"


@dataclass(frozen=True, slots=True)
class BusStatistics:
    """A bus's counters at one moment."""

    published: int
    handled_ok: int
    handled_failed: int
    dead_lettered: int
    in_flight: int
    last_seq: int
    checkpoint: int
    internal_errors: int
    undecodable: int = 0
    """Stored records this consumer could not decode (each dead-lettered under
    ``<decode>``; counted in ``dead_lettered`` too)."""


@dataclass(frozen=True, slots=True)
class HandlerTally:
    ok: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay did: events dispatched, per-handler results, speed."""

    events: int
    decode_errors: int
    per_handler: dict[str, HandlerTally]
    duration: float
    rate: float
    dead_letters: int = 0
    first_seq: int | None = None
    last_seq: int | None = None


@dataclass(frozen=True, slots=True)
class RedriveResult:
    """What re-driving one dead letter did."""

    entry_id: int
    resolved: bool
    already_resolved: bool = False
    outcome: HandlerOutcome | None = None
    error: str | None = None


@dataclass(slots=True)
class _Counters:
    published: int = 0
    ok: int = 0
    failed: int = 0
    dead_lettered: int = 0
    last_seq: int = 0
    undecodable: int = 0
    internal_errors: deque[tuple[str, BaseException]] = field(
        default_factory=lambda: deque(maxlen=100)
    )


class EventBus:
    """An asynchronous publish/subscribe bus.

    Keyword options: ``store`` (an EventStore: publish appends durably, the bus consumes
    as ``group``), ``consume=False`` for a producer that only appends, ``raise_on_error``
    (raise a DispatchError from publish when a handler failed), ``max_workers`` (threads
    for sync handlers), ``metrics``, ``dev_mode`` (validate events and handler
    signatures), ``clock``/``rng`` (for policies), ``middleware``, ``lease_ttl``,
    ``close_timeout`` (how long ``aclose`` waits for in-flight work by default, also
    when a failed or cancelled start closes the bus).
    """

    def __init__(
        self,
        store: EventStore | None = None,
        *,
        group: str = "default",
        consume: bool = True,
        raise_on_error: bool = False,
        max_workers: int | None = None,
        executor: Executor | None = None,
        metrics: MetricsCollector | None = None,
        dev_mode: bool = False,
        clock: Clock = system_clock,
        rng: RandomSource = system_random,
        registry: EventRegistry = default_registry,
        dead_letters: DeadLetterQueue | None = None,
        holder: str | None = None,
        lease_ttl: float = 15.0,
        max_in_flight: int = 256,
        commit_interval: float = 0.05,
        close_timeout: float | None = 30.0,
    ) -> None:
        self._store = store
        self.group = group
        self._consume = consume and store is not None
        self._raise = raise_on_error
        self._max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._executor = executor
        self._own_executor = executor is None
        self.metrics: MetricsCollector = metrics if metrics is not None else InMemoryMetrics()
        self._dev = dev_mode
        self._clock = clock
        self._rng = rng
        self.registry = registry
        self.dead_letters: DeadLetterQueue = dead_letters or store or MemoryDeadLetterQueue()
        # Unique per bus: two buses of one process are two consumers (they share nothing).
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
        self.lease_ttl = lease_ttl
        self._max_in_flight = max_in_flight
        self._commit_interval = commit_interval
        self._close_timeout = close_timeout

        self._subs: list[Subscription[Any]] = []
        self._runners: dict[str, Runner] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._routes: dict[type, Route] = {}
        self._middleware: list[Middleware] = []
        self._chain: Callable[[Event], Awaitable[list[HandlerOutcome]]] | None = None
        self._hooks: list[PublishHook] = []

        self._counters = _Counters()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._active = 0
        self._idle: asyncio.Event | None = None
        self._closed = False
        self._started = False
        self._lease: Lease | None = None
        self._progress: GroupProgress | None = None
        self._commit_wakeup: asyncio.Event | None = None
        self._committer: asyncio.Task[None] | None = None
        self._commit_lock: asyncio.Lock | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._follow_pos = 0
        self._lost: GroupLockedError | None = None
        self._window: asyncio.Semaphore | None = None
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        self._start_lock: asyncio.Lock | None = None
        self._plain = False
        # The C one-handler path (core._speedups), when it is built; _fast_call is it
        # while the bus is plain (see _update_plain), else None.
        self._fast = (
            None
            if _speedups is None
            else _speedups.Publisher(
                self._routes,
                _dispatch,
                _CompletedResult,
                self._fast_active,
                self._fast_failed,
                self._publish,
            )
        )
        self._fast_call: _speedups_Publisher | None = None
        if self._fast is None:
            # Without the C path, publish_async is _publish itself (an async def): no
            # wrapper frame in front of the Python hot path.
            self.__dict__["publish_async"] = self._publish
        self._update_plain()

    # -- subscriptions ---------------------------------------------------------------

    @property
    def store(self) -> EventStore | None:
        return self._store

    @property
    def subscriptions(self) -> list[Subscription[Any]]:
        return list(self._subs)

    def subscribe(
        self,
        event_type: type[E],
        *,
        name: str | None = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        retry: RetryPolicy | int | None = None,
        breaker: BreakerPolicy | None = None,
        inline: bool = False,
    ) -> Callable[[Handler[E]], Handler[E]]:
        """Decorator: ``@bus.subscribe(OrderPlaced, timeout=5, retry=3)``."""

        def decorate(handler: Handler[E]) -> Handler[E]:
            router = Router()
            router.add(
                event_type,
                handler,
                name=name,
                timeout=timeout,
                max_concurrency=max_concurrency,
                retry=retry,
                breaker=breaker,
                inline=inline,
            )
            self.include(router)
            return handler

        return decorate

    def include(self, router: Router) -> None:
        """Add every subscription of ``router`` (as it is now) to this bus."""
        subs = router.subscriptions
        names = {s.name for s in self._subs}
        for sub in subs:
            if sub.name in names:
                raise SubscriptionError(
                    f"a handler named {sub.name!r} is already subscribed on this bus: pass "
                    "name='...' to tell them apart"
                )
            names.add(sub.name)
            if self._dev:
                _check_signature(sub)
        for sub in subs:
            self._subs.append(sub)
            self._runners[sub.name] = self._make_runner(sub)
        self._routes.clear()

    def unsubscribe(self, handler: str | Callable[..., object]) -> None:
        """Remove a subscription by name or by handler; SubscriptionError if absent."""
        keep = [
            s
            for s in self._subs
            if not (s.name == handler if isinstance(handler, str) else s.handler is handler)
        ]
        if len(keep) == len(self._subs):
            raise SubscriptionError(f"no subscription {handler!r} on this bus")
        for sub in self._subs:
            if sub not in keep:
                self._runners.pop(sub.name, None)
                self._breakers.pop(sub.name, None)
        self._subs = keep
        self._routes.clear()

    def handlers_for(self, event_type: type[Event]) -> list[str]:
        """Names of the handlers an event of ``event_type`` would be dispatched to."""
        return [runner.name for runner, _ in self._route(event_type).runners]

    def breaker_state(self, handler: str) -> BreakerState | None:
        breaker = self._breakers.get(handler)
        return breaker.state if breaker else None

    def _make_runner(self, sub: Subscription[Any]) -> Runner:
        breaker = None
        if sub.policy.breaker is not None:
            name = sub.name
            breaker = CircuitBreaker(
                sub.policy.breaker,
                self._clock,
                on_change=lambda state: self._breaker_changed(name, state),
            )
            self._breakers[name] = breaker
        return Runner(
            sub,
            clock=self._clock,
            rng=self._rng,
            executor=self._get_executor,
            breaker=breaker,
        )

    def _get_executor(self) -> Executor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._max_workers, thread_name_prefix="pubsub-sync"
            )
        return self._executor

    def _route(self, cls: type) -> Route:
        route = self._routes.get(cls)
        if route is None:
            type_name = getattr(cls, "event_type", cls.__qualname__)
            mro = cls.__mro__
            matched = tuple(
                (self._runners[s.name], self._recorder(s.name, type_name))
                for s in self._subs
                if s.event_type in mro
            )
            route = self._routes[cls] = Route(matched, self._type_recorder(type_name))
        return route

    # -- middleware and hooks ------------------------------------------------------------

    def add_middleware(self, middleware: Middleware) -> None:
        """Wrap dispatch: ``async def mw(event, call_next) -> list[HandlerOutcome]``.
        The first added is the outermost. Return without calling ``call_next`` to
        short-circuit."""
        self._middleware.append(middleware)
        self._chain = None
        self._update_plain()

    def remove_middleware(self, middleware: Middleware) -> None:
        self._middleware.remove(middleware)
        self._chain = None
        self._update_plain()

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The middleware, outermost first (read-only: use add/remove_middleware)."""
        return tuple(self._middleware)

    @property
    def hooks(self) -> tuple[PublishHook, ...]:
        """The ``on_publish`` hooks, in registration order (read-only)."""
        return tuple(self._hooks)

    def on_publish(self, hook: PublishHook) -> PublishHook:
        """Call ``hook(event)`` with every event before dispatch. A hook that raises is
        reported (logged and counted) and removed."""
        self._hooks.append(hook)
        self._update_plain()
        return hook

    def _update_plain(self) -> None:
        """Can publish take the hot path (nothing but handlers between it and them)?"""
        self._plain = not (
            self._closed or self._dev or self._hooks or self._middleware or self._store is not None
        )
        if self._fast is not None:
            # A publish created before a change but started after it goes the general
            # way, as a coroutine of the Python path would.
            self._fast.enabled = self._plain
            self._fast_call = self._fast if self._plain else None

    def _compose(self) -> Callable[[Event], Awaitable[list[HandlerOutcome]]]:
        async def innermost(event: Event) -> list[HandlerOutcome]:
            return await self._dispatch(event, event)

        chain: Callable[[Event], Awaitable[list[HandlerOutcome]]] = innermost
        for mw in reversed(self._middleware):
            chain = _bind(mw, chain)
        self._chain = chain
        return chain

    def _guard(self, where: str, fn: Callable[..., object], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._internal_error(where, exc)

    def _internal_error(self, where: str, exc: BaseException) -> None:
        self._counters.internal_errors.append((where, exc))
        log.error("pubsub: %s raised %r", where, exc, exc_info=exc)

    def _run_hooks(self, event: Event) -> None:
        for hook in list(self._hooks):
            try:
                hook(event)
            except Exception as exc:
                self._internal_error(f"on_publish hook {hook!r} (now removed)", exc)
                self._hooks.remove(hook)
                self._update_plain()

    def _recorder(self, handler: str, event_type: str) -> HandlerRecorder:
        try:
            rec = self.metrics.for_handler(handler, event_type)
        except Exception as exc:
            self._disable_metrics(exc)
            return self.metrics.for_handler(handler, event_type)
        return rec if type(self.metrics) in TRUSTED_COLLECTORS else self._guarded(rec)

    def _type_recorder(self, event_type: str) -> EventTypeRecorder:
        try:
            rec = self.metrics.for_event_type(event_type)
        except Exception as exc:
            self._disable_metrics(exc)
            return self.metrics.for_event_type(event_type)
        return rec if type(self.metrics) in TRUSTED_COLLECTORS else self._guarded(rec)

    def _guarded(self, rec: HandlerRecorder | EventTypeRecorder) -> GuardedRecorder:
        collector = self.metrics

        def on_error(exc: Exception) -> None:
            if self.metrics is collector:  # report and disable once
                self._disable_metrics(exc)

        return GuardedRecorder(rec, on_error)

    def _breaker_changed(self, handler: str, state: BreakerState) -> None:
        try:
            self.metrics.breaker_changed(handler, state)
        except Exception as exc:
            self._disable_metrics(exc)

    def _disable_metrics(self, exc: Exception) -> None:
        from .metrics import NullMetrics

        self._internal_error(f"metrics collector {self.metrics!r} (now disabled)", exc)
        self.metrics = NullMetrics()
        self._routes.clear()

    # -- publishing ----------------------------------------------------------------------

    @coroutine_function
    def publish_async(
        self, event: Event, *, raise_on_error: bool | None = None
    ) -> Coroutine[Any, Any, PublishResult]:
        """Publish ``event``: append it durably when the bus has a store, then dispatch
        it to every matching handler concurrently. Returns every handler's outcome;
        with ``raise_on_error`` a failure raises DispatchError (after all handlers ran).

        Await it like the async method it is. It returns a coroutine; with the C
        extension, on a bus without store, middleware or hooks, an object that behaves
        like one (core._speedups.Call), which runs a single plain handler from C."""
        fast = self._fast_call
        if fast is not None:
            return fast(event, raise_on_error)
        return self._publish(event, raise_on_error)

    def _fast_active(self, delta: int) -> None:
        """The C path's in-flight count: +1 when its handler suspends, -1 when done."""
        self._active += delta
        if not self._active and self._idle is not None:
            self._idle.set()

    async def _fast_failed(
        self,
        route: Route,
        event: Event,
        exc: Exception,
        t0: float,
        raise_on_error: bool | None,
    ) -> PublishResult:
        """The C path's failure: the handler raised ``exc`` (it started at ``t0``)."""
        assert route.plain is not None
        runner, rec = route.plain
        failure = runner.failed_once(rec, exc, t0)
        return await self._finish_unlogged(event, [failure], raise_on_error)

    async def _publish(self, event: Event, raise_on_error: bool | None = None) -> PublishResult:
        """What ``publish_async`` runs (see there)."""
        if self._plain:
            # The hot path: no store, no middleware, no hooks. One plain async handler
            # is awaited right here: no extra coroutine, task or gather.
            route = self._routes.get(event.__class__) or self._route(event.__class__)
            one = route.plain
            if one is not None:
                runner, rec = one
                route.published()
                self._active += 1
                token = _dispatch.set(event)
                t0 = perf_counter()
                try:
                    if runner.is_async:
                        await runner.fn(event)
                    else:  # an inline sync handler
                        runner.fn(event)
                    duration = perf_counter() - t0
                except Exception as exc:
                    failure = runner.failed_once(rec, exc, t0)
                    return await self._finish_unlogged(event, [failure], raise_on_error)
                finally:
                    self._active -= 1
                    if self._idle is not None and not self._active:
                        self._idle.set()
                    _reset_dispatch(token)
                rec.succeeded(duration)
                self._counters.published += 1
                self._counters.ok += 1
                return _CompletedResult(event, route.names, (duration,))
            if route.every_plain:
                return await self._publish_plain_many(event, route, raise_on_error)
            return await self._finish_unlogged(
                event, await self._dispatch_tracked(event, None), raise_on_error
            )
        if self._closed:
            raise BusClosedError()
        if self._dev:
            _check_event(event, encodes=self._store is None)
        if self._hooks:
            self._run_hooks(event)
        if self._store is not None:
            return await self._publish_durable(event, raise_on_error)
        chain = self._chain or (self._compose() if self._middleware else None)
        return await self._finish_unlogged(
            event, await self._dispatch_tracked(event, chain), raise_on_error
        )

    # Its coroutines are what publish_async returns: a "never awaited" warning and a
    # task's repr name publish_async, as they did when it was an async def.
    _publish.__name__ = "publish_async"
    _publish.__qualname__ = "EventBus.publish_async"

    async def _publish_plain_many(
        self, event: Event, route: Route, raise_on_error: bool | None
    ) -> PublishResult:
        """The hot path for several plain async handlers (see ``run_plain_route``)."""
        route.published()
        self._active += 1
        token = _dispatch.set(event)
        try:
            durations, outcomes = await run_plain_route(route, event, self._tasks)
        finally:
            self._active -= 1
            if self._idle is not None and not self._active:
                self._idle.set()
            _reset_dispatch(token)
        if outcomes is None:
            self._counters.published += 1
            self._counters.ok += len(durations)
            return _CompletedResult(event, route.names, durations)
        return await self._finish_unlogged(event, outcomes, raise_on_error)

    async def _dispatch_tracked(
        self, event: Event, chain: Callable[[Event], Awaitable[list[HandlerOutcome]]] | None
    ) -> list[HandlerOutcome]:
        self._active += 1
        try:
            if chain is None:
                return await self._dispatch(event, event)
            return await self._through_middleware(chain, event)
        finally:
            self._active -= 1
            if self._active == 0 and self._idle is not None:
                self._idle.set()

    async def _finish_unlogged(
        self, event: Event, outcomes: list[HandlerOutcome], raise_on_error: bool | None
    ) -> PublishResult:
        """Count a store-less publish, dead-letter its failures, raise if asked."""
        self._counters.published += 1
        result = PublishResult(event, outcomes)
        if not self._tally(outcomes):
            letters = [
                o.dead_letter(event, seq=None, group=None, source="live")
                for o in outcomes
                if isinstance(o, Failure)
            ]
            if letters:
                await self.dead_letters.add_dead_letters(letters)
            if raise_on_error if raise_on_error is not None else self._raise:
                result.raise_for_errors()
        return result

    async def _dispatch(
        self, event: Event, context: Event | DispatchContext
    ) -> list[HandlerOutcome]:
        route = self._routes.get(type(event)) or self._route(type(event))
        route.published()
        if not route.runners:
            return []
        return await run_route(route, event, context, self._tasks)

    async def _through_middleware(
        self, chain: Callable[[Event], Awaitable[list[HandlerOutcome]]], event: Event
    ) -> list[HandlerOutcome]:
        try:
            return list(await chain(event))
        except Exception as exc:
            self._internal_error("middleware", exc)
            now = datetime.now(UTC)
            return [
                Failure(
                    MIDDLEWARE_HANDLER,
                    OutcomeStatus.FAILED,
                    1,
                    0.0,
                    exc,
                    DeadLetterReason.EXHAUSTED,
                    now,
                    now,
                )
            ]

    def _tally(self, outcomes: Sequence[HandlerOutcome]) -> bool:
        """Count outcomes; True when all were ok."""
        ok = True
        counters = self._counters
        for o in outcomes:
            if o.status is OutcomeStatus.OK:
                counters.ok += 1
            else:
                counters.failed += 1
                ok = False
                if o.dead_lettered:
                    counters.dead_lettered += 1
        return ok

    def publish(self, event: Event, *, raise_on_error: bool | None = None) -> PublishResult:
        """Synchronous publish for scripts. Inside a running event loop, use
        ``await bus.publish_async(event)``: this raises SyncPublishInLoopError there."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise SyncPublishInLoopError()
        if self._sync_loop is None:
            self._sync_loop = asyncio.new_event_loop()
        return self._sync_loop.run_until_complete(
            self.publish_async(event, raise_on_error=raise_on_error)
        )

    def close(self) -> None:
        """Synchronous counterpart of ``aclose()`` for buses used through ``publish``."""
        if self._sync_loop is None:
            self._sync_loop = asyncio.new_event_loop()
        try:
            self._sync_loop.run_until_complete(self.aclose())
        finally:
            self._sync_loop.close()
            self._sync_loop = None

    # -- the durable path ------------------------------------------------------------

    async def _publish_durable(self, event: Event, raise_on_error: bool | None) -> PublishResult:
        assert self._store is not None
        if self._consume and not self._started:
            await self.start()
        (appended,) = await self._store.append((event,))
        if appended.duplicate:
            return PublishResult(event, (), appended.seq, duplicate=True)
        self._counters.published += 1
        if appended.seq > self._counters.last_seq:
            self._counters.last_seq = appended.seq
        if not self._consume:
            return PublishResult(event, (), appended.seq)
        outcomes = await self._dispatch_seq(appended.seq, event, event, "live")
        result = PublishResult(event, outcomes, appended.seq)
        if not result.ok and (raise_on_error if raise_on_error is not None else self._raise):
            result.raise_for_errors()
        return result

    async def _dispatch_seq(
        self, seq: int, event: Event, context: Event | DispatchContext, source: str
    ) -> list[HandlerOutcome]:
        """Dispatch a stored event as this group's consumer and record its progress."""
        progress = self._progress
        assert progress is not None
        progress.start(seq)
        self._active += 1
        letters: list[DeadLetter] = []
        done = False
        try:
            chain = self._chain or (self._compose() if self._middleware else None)
            if chain is None:
                outcomes = await self._dispatch(event, context)
            else:
                outcomes = await self._through_middleware(chain, event)
            if not self._tally(outcomes):
                letters = [
                    o.dead_letter(event, seq=seq, group=self.group, source=source)
                    for o in outcomes
                    if isinstance(o, Failure)
                ]
            # A handler cancelled by aclose did not finish: the event stays below the
            # checkpoint so that the next consumer delivers it again.
            done = not any(o.status is OutcomeStatus.CANCELLED for o in outcomes)
            return outcomes
        finally:
            self._active -= 1
            # A dispatch cut short (cancelled by aclose) stays unfinished, so the
            # checkpoint never passes it and the next consumer delivers it again.
            if done and (progress.finish(seq, letters) or letters):
                self._schedule_commit()
            if self._active == 0 and self._idle is not None:
                self._idle.set()

    def _schedule_commit(self) -> None:
        if self._commit_wakeup is not None:
            self._commit_wakeup.set()

    async def _commit_loop(self) -> None:
        assert self._commit_wakeup is not None
        while True:
            await self._commit_wakeup.wait()
            self._commit_wakeup.clear()
            try:
                await self._commit()
            except Exception as exc:  # reported; the next wake-up tries again
                self._internal_error("checkpoint commit", exc)
            await asyncio.sleep(self._commit_interval)

    async def _commit(self) -> None:
        progress = self._progress
        if progress is None or self._store is None or not progress.dirty or self._lost:
            return
        assert self._commit_lock is not None  # made with the progress, in start()
        # One commit at a time, and aclose waits for the one in flight instead of
        # cancelling it: a commit cancelled after the store wrote it would put its
        # dead letters back and the next commit would write them a second time.
        async with self._commit_lock:
            mark = progress.mark
            letters = progress.take_letters()
            try:
                await self._store.commit_progress(self.group, mark, letters)
            except Exception:
                progress.requeue(mark, letters)
                raise
            progress.committed = max(progress.committed, mark)

    async def start(self) -> None:
        """Become the live consumer of the group (with a store): take the lease, then
        dispatch every stored event past the group's checkpoint. Called by
        ``async with``; publishing with a store calls it on first use."""
        if self._closed:
            raise BusClosedError()
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            if self._consume:
                assert self._store is not None
                self._lease = await self._acquire_lease()
                enable = getattr(self._store, "enable_wal_checkpoints", None)
                if enable is not None:
                    await enable()
                checkpoint = await self._store.load_checkpoint(self.group)
                self._progress = GroupProgress(checkpoint)
                self._follow_pos = checkpoint
                self._window = asyncio.Semaphore(self._max_in_flight)
                self._commit_wakeup = asyncio.Event()
                self._commit_lock = asyncio.Lock()
                self._committer = asyncio.get_running_loop().create_task(self._commit_loop())
                self._heartbeat = asyncio.get_running_loop().create_task(self._renew_lease())
            self._started = True
        if self._consume:
            try:
                await self.catch_up()
            except BaseException:
                # A consumer that cannot start must not keep the group locked.
                await self.aclose()
                raise

    async def _acquire_lease(self) -> Lease:
        """Take the group's lease. Cancelled while the store is taking it, the lease
        is released as soon as the store has it, instead of being left to expire."""
        assert self._store is not None
        store = self._store
        taking = asyncio.ensure_future(store.acquire_lease(self.group, self.holder, self.lease_ttl))
        try:
            return await asyncio.shield(taking)
        except asyncio.CancelledError:

            def release(done: asyncio.Future[Lease]) -> None:
                if not done.cancelled() and done.exception() is None:
                    orphan = asyncio.ensure_future(store.release_lease(done.result()))
                    self._tasks.add(orphan)
                    orphan.add_done_callback(self._tasks.discard)

            taking.add_done_callback(release)
            self._tasks.add(taking)  # drain and aclose wait for it (and the release)
            taking.add_done_callback(self._tasks.discard)
            raise

    async def _renew_lease(self) -> None:
        while self._lease is not None:
            await asyncio.sleep(self.lease_ttl / 3)
            await self._heartbeat_once()

    async def _heartbeat_once(self) -> None:
        """Renew the lease. When another consumer holds it (ours expired: this process
        stalled past the TTL), this bus stops consuming at once: two live consumers of
        one group would both move its checkpoint."""
        if self._lease is None or self._store is None:
            return
        try:
            self._lease = await self._store.renew_lease(self._lease, self.lease_ttl)
        except GroupLockedError as exc:
            self._lose_lease(exc)
        except Exception as exc:  # reported; the next beat tries again before expiry
            self._internal_error("lease heartbeat", exc)

    def _lose_lease(self, exc: GroupLockedError) -> None:
        self._internal_error(
            f"lease of group {self.group!r} lost: this bus stopped consuming "
            "(its unfinished events are delivered again by the new holder)",
            exc,
        )
        self._lease = None
        self._lost = exc
        self._consume = False  # publish still appends; the new holder dispatches
        for task in list(self._tasks):
            task.cancel()

    async def catch_up(self) -> int:
        """Dispatch every stored event this consumer has not seen yet (at least once
        after a crash); returns how many were dispatched. Raises GroupLockedError
        once this bus lost its lease to another consumer."""
        if self._lost is not None:
            raise self._lost
        if not self._consume:
            return 0
        if not self._started:
            await self.start()
            return 0
        assert self._store is not None
        assert self._progress is not None
        count = 0
        while True:
            try:
                async for record in self._store.read(from_seq=self._follow_pos + 1):
                    self._passed(record.seq)
                    if self._progress.seen(record.seq):
                        continue
                    await self._dispatch_record_windowed(record)
                    count += 1
                return count
            except ChecksumMismatchError as exc:
                if exc.seq <= self._follow_pos:
                    raise  # not past what we read: do not loop on it
                # A corrupt record is a dead letter like an undecodable one; the read
                # goes on after it (the rest of the log is intact).
                self._passed(exc.seq)
                if not self._progress.seen(exc.seq):
                    self._progress.start(exc.seq)
                    self._progress.finish(exc.seq, [_corrupt_letter(exc, self.group)])
                    self._counters.dead_lettered += 1
                    self._counters.undecodable += 1
                    self._schedule_commit()
                    count += 1

    def _passed(self, seq: int) -> None:
        """Catch-up read past ``seq``."""
        self._follow_pos = max(self._follow_pos, seq)
        if seq > self._counters.last_seq:
            self._counters.last_seq = seq

    async def _dispatch_record_windowed(self, record: StoredEvent) -> None:
        assert self._window is not None
        assert self._progress is not None
        await self._window.acquire()
        self._progress.start(record.seq)  # before the task runs: follow must not redo it
        task = asyncio.get_running_loop().create_task(self._dispatch_record(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._window.release() if self._window else None)

    async def _dispatch_record(self, record: StoredEvent) -> None:
        try:
            event = record.decode(self.registry)
        except EventError as exc:
            assert self._progress is not None
            self._progress.finish(record.seq, [_decode_letter(record, exc, self.group, "live")])
            self._counters.dead_lettered += 1
            self._counters.undecodable += 1
            self._schedule_commit()
            return
        await self._dispatch_seq(record.seq, event, event, "live")

    async def follow(self, stop: asyncio.Event, *, poll_interval: float = 0.2) -> None:
        """Dispatch events appended by other processes until ``stop`` is set."""
        if not self._started:
            await self.start()
        while not stop.is_set():
            await self.catch_up()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_interval)

    # -- lifecycle -------------------------------------------------------------------

    def _in_flight(self) -> int:
        """Publishes in flight: those counted in ``_active``, and C-path handlers that
        are running and have not suspended (they join ``_active`` when they do)."""
        return self._active + (self._fast.executing if self._fast is not None else 0)

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until no publish or dispatch is in flight; False if ``timeout`` passed."""
        if not self._in_flight() and not self._tasks:
            return True  # idle: also with timeout=0, which wait_for would time out
        deadline = None if timeout is None else perf_counter() + timeout

        async def settled() -> None:
            while self._in_flight() or self._tasks:
                if self._tasks:
                    await asyncio.wait(set(self._tasks))
                    continue
                self._idle = asyncio.Event()
                await self._idle.wait()

        try:
            if deadline is None:
                await settled()
            else:
                await asyncio.wait_for(settled(), max(0.0, deadline - perf_counter()))
        except TimeoutError:
            return False
        return True

    async def aclose(self, *, timeout: float | Literal["default"] | None = "default") -> None:
        """Stop accepting events, wait for in-flight work (up to ``timeout``; by default
        the bus's ``close_timeout``), commit the checkpoint, release the lease and shut
        the executor down."""
        if timeout == "default":
            timeout = self._close_timeout
        if self._closed:
            return
        self._closed = True
        self._update_plain()
        drained = await self.drain(timeout)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._committer is not None and self._commit_lock is not None:
            async with self._commit_lock:  # never cut a commit in half
                self._committer.cancel()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for helper in (self._committer, self._heartbeat):
            if helper is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
        try:
            await self._commit()
        finally:
            if self._lease is not None and self._store is not None:
                try:
                    await self._store.release_lease(self._lease)
                finally:
                    self._lease = None
            if self._executor is not None and self._own_executor:
                self._executor.shutdown(wait=drained, cancel_futures=not drained)
                self._executor = None

    async def __aenter__(self) -> EventBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> BusStatistics:
        c = self._counters
        progress = self._progress
        fast = self._fast.completed if self._fast is not None else 0
        return BusStatistics(
            published=c.published + fast,
            handled_ok=c.ok + fast,
            handled_failed=c.failed,
            dead_lettered=c.dead_lettered,
            in_flight=self._in_flight(),
            last_seq=c.last_seq,
            checkpoint=progress.committed if progress else 0,
            internal_errors=len(c.internal_errors),
            undecodable=c.undecodable,
        )

    @property
    def internal_errors(self) -> list[tuple[str, BaseException]]:
        """Errors raised by hooks, middleware, metrics or background work (last 100)."""
        return list(self._counters.internal_errors)

    # -- replay and re-drive ---------------------------------------------------------

    async def replay(
        self,
        records: AsyncIterable[StoredEvent],
        *,
        handlers: Collection[str] | None = None,
        rate: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ReplayReport:
        """Re-dispatch stored events in order to the chosen handlers (all by default).
        Never moves a checkpoint and never appends; failures are dead-lettered with
        ``source="replay"``. ``progress(n)`` is called every 256 events and at the end."""
        if handlers is not None:
            unknown = sorted(set(handlers) - set(self._runners))
            if unknown:
                raise SubscriptionError(
                    f"no handler named {', '.join(map(repr, unknown))}; loaded: "
                    f"{', '.join(sorted(self._runners)) or 'none'}"
                )
        wanted = None if handlers is None else frozenset(handlers)
        routes: dict[type, Route] = {}
        ok: dict[str, int] = {}
        clean: dict[Route, int] = {}  # events whose every handler on that route was ok
        failed: dict[str, int] = {}
        letters: list[DeadLetter] = []
        events = decode_errors = dead = 0
        first_seq = last_seq = None
        t0 = perf_counter()
        for_seconds = None if not rate else 1.0 / rate
        async for record in records:
            if first_seq is None:
                first_seq = record.seq
            last_seq = record.seq
            try:
                event = record.decode(self.registry)
            except EventError as exc:
                decode_errors += 1
                letters.append(_decode_letter(record, exc, None, "replay"))
            else:
                route = routes.get(type(event))
                if route is None:
                    full = self._route(type(event))
                    route = routes[type(event)] = (
                        full
                        if wanted is None
                        else Route(
                            tuple(r for r in full.runners if r[0].name in wanted),
                            full.type_recorder,
                        )
                    )
                if route.runners:
                    outcomes = await self._replay_one(route, event)
                    if outcomes is None:  # all ok: the common case, counted per route
                        clean[route] = clean.get(route, 0) + 1
                        outcomes = ()
                    for o in outcomes:
                        if o.status is OutcomeStatus.OK:
                            ok[o.handler] = ok.get(o.handler, 0) + 1
                        else:
                            failed[o.handler] = failed.get(o.handler, 0) + 1
                            if isinstance(o, Failure):
                                letters.append(
                                    o.dead_letter(
                                        event, seq=record.seq, group=None, source="replay"
                                    )
                                )
            events += 1
            if len(letters) >= 100:
                dead += len(await self.dead_letters.add_dead_letters(letters))
                letters = []
            if progress is not None and not events & 255:  # every 256 events: cheap
                progress(events)
            if for_seconds is not None:
                lag = t0 + events * for_seconds - perf_counter()
                if lag > 0:
                    await self._clock.sleep(lag)
        if letters:
            dead += len(await self.dead_letters.add_dead_letters(letters))
        if progress is not None and events & 255:
            progress(events)
        for route, n in clean.items():
            for name in route.names:
                ok[name] = ok.get(name, 0) + n
        duration = perf_counter() - t0
        names = self._runners if wanted is None else wanted
        per_handler = {
            name: HandlerTally(ok.get(name, 0), failed.get(name, 0)) for name in sorted(names)
        }
        return ReplayReport(
            events=events,
            decode_errors=decode_errors,
            per_handler=per_handler,
            duration=duration,
            rate=events / duration if duration > 0 else 0.0,
            dead_letters=dead,
            first_seq=first_seq,
            last_seq=last_seq,
        )

    async def _replay_one(self, route: Route, event: Event) -> Sequence[HandlerOutcome] | None:
        """Dispatch one replayed event (a redelivery); None when every handler was ok."""
        context = DispatchContext(event, 1, True)
        if not route.every_plain:
            outcomes = await run_route(route, event, context, self._tasks)
            return None if all(o.status is _OK for o in outcomes) else outcomes
        token = _dispatch.set(context)
        try:
            return (await run_plain_route(route, event, self._tasks))[1]
        finally:
            _reset_dispatch(token)

    async def redrive(self, entry_id: int) -> RedriveResult:
        """Dispatch a dead letter's event to its handler only; on success resolve the
        entry (compare-and-set: exactly once across processes)."""
        entry = await self.dead_letters.get_dead_letter(entry_id)
        if entry.resolved_at is not None or entry.status.value == "resolved":
            return RedriveResult(entry_id, resolved=False, already_resolved=True)
        try:
            event = await self._event_of(entry)
        except EventError as exc:
            await self._redrive_failed(entry_id, exc)
            return RedriveResult(entry_id, resolved=False, error=str(exc))
        if entry.handler in (DECODE_HANDLER, MIDDLEWARE_HANDLER):
            outcomes = await self._dispatch(event, DispatchContext(event, 1, True))
        else:
            runner = self._runners.get(entry.handler)
            if runner is None:
                raise SubscriptionError(
                    f"dead letter {entry_id} belongs to handler {entry.handler!r}, which is not "
                    "loaded: pass the app that defines it"
                )
            route = Route(((runner, self._recorder(runner.name, event.event_type)),), NULL_RECORDER)
            outcomes = await run_route(route, event, DispatchContext(event, 1, True), self._tasks)
        failures = [o for o in outcomes if o.status is not OutcomeStatus.OK]
        outcome = outcomes[0] if len(outcomes) == 1 else None
        if failures:
            error = failures[0].error or RuntimeError(failures[0].status.value)
            await self._redrive_failed(entry_id, error)
            return RedriveResult(entry_id, resolved=False, outcome=outcome, error=str(error))
        won = await self.dead_letters.resolve_dead_letter(
            entry_id, f"redriven by {self.holder}", datetime.now(UTC)
        )
        return RedriveResult(entry_id, resolved=won, already_resolved=not won, outcome=outcome)

    async def _event_of(self, entry: DeadLetter) -> Event:
        if entry.seq is not None and self._store is not None:
            record = await self._store.get(entry.seq)
            if record is not None:
                return record.decode(self.registry)
        from .codec import decode

        return decode(entry.event_type, entry.payload, registry=self.registry)

    async def _redrive_failed(self, entry_id: int, error: BaseException) -> None:
        await self.dead_letters.record_dead_letter_failure(
            entry_id,
            error_type=f"{type(error).__module__}.{type(error).__qualname__}",
            message=str(error),
            traceback="".join(traceback.format_exception(error)),
            at=datetime.now(UTC),
        )


def _reset_dispatch(token: contextvars.Token[Event | DispatchContext | None]) -> None:
    """Reset the dispatch context variable after a handler, unless the publish is being
    closed from another context (by the garbage collector, say): that reset cannot
    apply, and closing must still finish (the C path does the same)."""
    try:  # noqa: SIM105 - contextlib.suppress costs more than the reset on this path
        _dispatch.reset(token)
    except ValueError:
        pass


def _bind(
    mw: Middleware, call_next: Callable[[Event], Awaitable[list[HandlerOutcome]]]
) -> Callable[[Event], Awaitable[list[HandlerOutcome]]]:
    async def step(event: Event) -> list[HandlerOutcome]:
        return list(await mw(event, call_next))

    return step


def _decode_letter(
    record: StoredEvent, exc: BaseException, group: str | None, source: str
) -> DeadLetter:
    """The dead letter of a stored event that could not be decoded."""
    try:
        payload = orjson.loads(record.payload)
        if not isinstance(payload, dict):
            payload = {"raw": payload}
    except Exception:
        payload = {"raw": record.payload.decode("utf-8", "replace")}
    return _undeliverable(
        record.event_id, record.type_name, record.seq, exc, payload, group, source
    )


def _corrupt_letter(exc: ChecksumMismatchError, group: str | None) -> DeadLetter:
    """The dead letter of a record whose payload failed its checksum: its id and
    payload cannot be trusted, so the entry names the sequence number (nil id)."""
    return _undeliverable(UUID(int=0), exc.type_name, exc.seq, exc, {}, group, "live")


def _undeliverable(
    event_id: UUID,
    event_type: str,
    seq: int,
    exc: BaseException,
    payload: dict[str, Any],
    group: str | None,
    source: str,
) -> DeadLetter:
    now = datetime.now(UTC)
    return DeadLetter(
        event_id=event_id,
        event_type=event_type,
        handler=DECODE_HANDLER,
        reason=DeadLetterReason.DECODE_ERROR,
        error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
        attempts=1,
        first_failure_at=now,
        last_failure_at=now,
        payload=payload,
        seq=seq,
        group=group,
        source=source,
    )


def _check_event(event: object, *, encodes: bool = True) -> None:
    if not isinstance(event, Event):
        raise EventDecodeError(
            type(event).__qualname__, None, "is not an Event: subclass core.Event"
        )
    if not is_frozen_dataclass(event):
        raise EventDecodeError(
            type(event).event_type,
            None,
            "is not a frozen dataclass: decorate it with @dataclass(frozen=True, slots=True)",
        )
    # What a store would refuse (NaN, infinity, integers beyond 64 bits, unpaired
    # surrogates) is refused in development mode without a store too (with one, the
    # append encodes it anyway).
    if encodes:
        encode(event)


def _check_signature(sub: Subscription[Any]) -> None:
    handler = sub.handler
    target = handler if inspect.isfunction(handler) or inspect.ismethod(handler) else None
    if target is None:
        target = getattr(handler, "__call__", None)  # noqa: B004
    if target is None:
        raise SubscriptionError(f"handler {sub.name!r} is not callable")
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError) as exc:
        raise SubscriptionError(f"handler {sub.name!r}: cannot read its signature: {exc}") from None
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    extra_required = [
        p for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY and p.default is p.empty
    ]
    if len(params) != 1 or extra_required:
        raise SubscriptionError(
            f"handler {sub.name!r} must take exactly one positional parameter (the event); "
            f"its signature is {sig}"
        )
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        hints = {}
    annotation = hints.get(params[0].name)
    if isinstance(annotation, type) and not issubclass(sub.event_type, annotation):
        raise SubscriptionError(
            f"handler {sub.name!r} takes {annotation.__qualname__} but is subscribed to "
            f"{sub.event_type.__qualname__}, which is not a {annotation.__qualname__}"
        )
