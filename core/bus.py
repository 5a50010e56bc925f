"""Bus: the asynchronous event bus: subscriptions, routes, middleware, hooks, publish,
drain and close.

Without a store, ``publish_async`` dispatches at once and returns every handler's
outcome. With a store, it first appends the event durably (the store groups concurrent
appends into one commit), then hands it to the bus's consumer (``core.consumer``), which
dispatches it and moves the group's checkpoint. A store that owns delivery
(``core.consumer.OwnsDelivery``, a broker's durable consumer shared by many workers)
opens the consumer itself; then ``publish_async`` appends and returns at once (no
outcomes): the group's workers, in this process or in others, dispatch the event.
Dispatch itself is ``core.dispatch``;
replay and dead-letter re-drive are ``core.replay``. A bus owns all of its state: two
buses in one process share nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Collection, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import perf_counter
from typing import Any, Literal, TypeVar, Unpack
from uuid import uuid4

from .clock import Clock, RandomSource, system_clock, system_random
from .consumer import Consumer, ConsumerOptions, Delivered, LogConsumer, OwnsDelivery
from .devmode import check_event, check_signature
from .dispatch import InstrumentedRunner, Middleware, Route, Runner
from .dlq import MIDDLEWARE_HANDLER, for_failure
from .errors import BusClosedError, SubscriptionError, SyncPublishInLoopError
from .events import (
    DispatchContext,
    Event,
    EventRegistry,
    _dispatch,
    default_registry,
)
from .hooks import PublishDetails, PublishHook
from .instrument import Delivery, DeliveryScope, Instrumentation
from .memory import MemoryDeadLetterQueue
from .metrics import (
    TRUSTED_COLLECTORS,
    EventTypeRecorder,
    GuardedRecorder,
    HandlerRecorder,
    InMemoryMetrics,
    MetricsCollector,
    NullMetrics,
)
from .policies import BreakerState, CircuitBreaker
from .replay import HandlerTally, RedriveResult, ReplayReport, redrive, replay
from .results import (
    Failure,
    HandlerOutcome,
    ManyResult,
    OneResult,
    OutcomeStatus,
    PublishResult,
)
from .routing import Router, SubscribeOptions, Subscriber, Subscription, subscriber
from .store import (
    NO_HEADERS,
    DeadLetter,
    DeadLetterQueue,
    DeadLetterReason,
    EventStore,
    StoredEvent,
)

__all__ = ["BusStatistics", "EventBus", "HandlerTally", "RedriveResult", "ReplayReport"]

E = TypeVar("E", bound=Event)
R = TypeVar("R")

log = logging.getLogger("pubsub")
# A library's loggers get no handler but this one (the logging HOWTO's advice): what
# pubsub logs is shown where the application configured logging (the CLI does), and
# never through logging's last-resort stderr handler of an unconfigured script.
log.addHandler(logging.NullHandler())

# The delivery context of the event inside the middleware chain, for the route at its
# end (middleware sees only the event).
_context: contextvars.ContextVar[Event | DispatchContext | None] = contextvars.ContextVar(
    "pubsub_delivery", default=None
)
_OK = OutcomeStatus.OK
_new = object.__new__
_set_dispatch = _dispatch.set
_reset_dispatch = _dispatch.reset
_CANCELLED = OutcomeStatus.CANCELLED


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
    signatures), ``clock``/``rng`` (for policies), ``lease_ttl``, ``max_in_flight``
    (events past the committed checkpoint, at most: the bound on redeliveries after a
    crash), ``close_timeout`` (how long ``aclose`` waits for in-flight work by default,
    also when a failed or cancelled start closes the bus).
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
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be > 0 seconds, got {lease_ttl!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
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

        self._subs: list[Subscription[Any, Any]] = []
        self._runners: dict[str, Runner[Any, Any]] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._routes: dict[type, Route] = {}
        self._middleware: list[Middleware] = []
        self._failed_middleware: set[int] = set()
        self._chain: Callable[[Event], Awaitable[list[HandlerOutcome[Any]]]] | None = None
        self._hooks: list[PublishHook] = []
        self._instrument: Instrumentation | None = None

        self._counters = _Counters()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._active = 0
        self._awaiting = 0  # durable publishes waiting on this bus's own consumer
        self._idle: asyncio.Event | None = None
        self._closed = False
        self._started = False
        self._consumer: Consumer | None = None
        self._owned = False  # the store owns delivery: publish appends, workers dispatch
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        self._start_lock: asyncio.Lock | None = None
        self._plain = False
        self._update_plain()

    # -- subscriptions ---------------------------------------------------------------

    @property
    def store(self) -> EventStore | None:
        return self._store

    @property
    def subscriptions(self) -> list[Subscription[Any, Any]]:
        return list(self._subs)

    def subscribe(self, event_type: type[E], **options: Unpack[SubscribeOptions]) -> Subscriber[E]:
        """Decorator: ``@bus.subscribe(OrderPlaced, timeout=5, retry=3)``."""
        return subscriber(self._add, event_type, options)

    def _add(self, event_type: type[E], handler: Any, **options: Unpack[SubscribeOptions]) -> None:
        router = Router()
        router.add(event_type, handler, **options)
        self.include(router)

    def include(self, router: Router) -> None:
        """Add every subscription of ``router`` (as it is now) to this bus.

        One callable subscribed to several event types is one handler (one name, one
        policy, called once per event even when the event matches several of its
        types). Two different callables with the same default name (closures from one
        factory, bound methods of two instances, partials of one function): on a bus
        without a store the later ones are named ``name#2``, ``name#3`` in
        subscription order; on a bus with a store, where dead letters keep the name
        across processes, they are refused until given ``name=...``. Two different
        callables given the same explicit name are always refused."""
        pending = list(self._subs)
        added: list[Subscription[Any, Any]] = []
        for sub in router.subscriptions:
            sub = self._resolve_name(sub, pending)
            if self._dev:
                check_signature(sub)
            pending.append(sub)
            added.append(sub)
        for sub in added:
            self._subs.append(sub)
            if sub.name not in self._runners:
                self._runners[sub.name] = self._make_runner(sub)
        self._forget_routes()

    def _resolve_name(
        self, sub: Subscription[Any, Any], known: list[Subscription[Any, Any]]
    ) -> Subscription[Any, Any]:
        same = [s for s in known if s.name == sub.name]
        if not same:
            return sub
        if all(s.handler is sub.handler or s.handler == sub.handler for s in same):
            first = same[0]
            if any(s.event_type is sub.event_type for s in same):
                raise SubscriptionError(
                    f"handler {sub.name!r} is already subscribed to {sub.event_type.__qualname__}"
                )
            if first.policy != sub.policy:
                raise SubscriptionError(
                    f"handler {sub.name!r} is subscribed to {first.event_type.__qualname__} "
                    f"and {sub.event_type.__qualname__} with different policies: pass "
                    "name='...' to one of them to make it a handler of its own"
                )
            return Subscription(sub.event_type, first.handler, sub.name, sub.policy, sub.named)
        if sub.named or self._store is not None:
            why = (
                "names must be unique"
                if sub.named
                else "dead letters on a durable store refer to handlers by name"
            )
            raise SubscriptionError(
                f"two different handlers are named {sub.name!r} ({why}): pass "
                "name='...' to subscribe to tell them apart"
            )
        n = 2
        while any(s.name == f"{sub.name}#{n}" for s in known):
            n += 1
        return Subscription(sub.event_type, sub.handler, f"{sub.name}#{n}", sub.policy, False)

    def _forget_routes(self) -> None:
        """Drop the routing cache (subscriptions or metrics changed); what the routes
        counted moves into the bus's counters."""
        for route in self._routes.values():
            self._counters.published += route.hits
            self._counters.ok += route.hits * len(route.names)
            route.retire()
        self._routes.clear()

    def unsubscribe(self, handler: str | Callable[..., object]) -> None:
        """Remove a subscription by name or by handler (every event type it was
        subscribed to); SubscriptionError if absent."""
        keep = [
            s
            for s in self._subs
            if not (s.name == handler if isinstance(handler, str) else s.handler is handler)
        ]
        if len(keep) == len(self._subs):
            raise SubscriptionError(f"no subscription {handler!r} on this bus")
        names = {s.name for s in keep}
        for name in list(self._runners):
            if name not in names:
                del self._runners[name]
                self._breakers.pop(name, None)
        self._subs = keep
        self._forget_routes()

    def handlers_for(self, event_type: type[Event]) -> list[str]:
        """Names of the handlers an event of ``event_type`` would be dispatched to."""
        return list(self._route(event_type).names)

    def breaker_state(self, handler: str) -> BreakerState | None:
        breaker = self._breakers.get(handler)
        return breaker.state if breaker else None

    def _make_runner(self, sub: Subscription[Any, Any]) -> Runner[Any, Any]:
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
            bus=self,
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
            matched: dict[str, tuple[Runner[Any, Any], HandlerRecorder]] = {}
            instrument = self._instrument
            for s in self._subs:
                if s.event_type in mro and s.name not in matched:
                    runner = self._runners[s.name]
                    if instrument is not None:
                        runner = InstrumentedRunner(runner, instrument, self._instrument_failed)
                    matched[s.name] = (runner, self._recorder(s.name, type_name))
            route = Route(tuple(matched.values()), self._type_recorder(type_name), self._tasks)
            self._routes[cls] = route
        return route

    # -- middleware and hooks ------------------------------------------------------------

    def add_middleware(self, middleware: Middleware) -> None:
        """Wrap dispatch: ``async def mw(event, call_next) -> list[HandlerOutcome]``.
        The first added is the outermost. Return without calling ``call_next`` to
        short-circuit. A middleware that raises fails that event (a ``<middleware>``
        outcome and dead letter) and stays installed; its first failure is logged."""
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
        """Call ``hook(details)`` (a ``PublishDetails``) for every event before its
        dispatch. A hook that raises is reported (logged and counted) and removed."""
        self._hooks.append(hook)
        self._update_plain()
        return hook

    def _update_plain(self) -> None:
        """Can publish take the short way (nothing between it and the route)?"""
        self._plain = not (
            self._closed
            or self._dev
            or self._hooks
            or self._middleware
            or self._store is not None
            or self._instrument is not None
        )

    # -- instrumentation (core.instrument) -------------------------------------------

    @property
    def instrumentation(self) -> Instrumentation | None:
        """The bus's instrumentation (``instrument``), or None."""
        return self._instrument

    def instrument(self, instrumentation: Instrumentation | None) -> None:
        """Trace this bus with ``instrumentation`` (``plugins.otel.instrument(bus)`` makes
        and installs the OpenTelemetry one); None removes it. Every publish, stored
        delivery and handler attempt from now on is a span of it (see
        ``core.instrument``). An instrumentation that raises is reported and removed."""
        self._instrument = instrumentation
        self._update_plain()
        self._forget_routes()  # the routes' runners are made again, instrumented or not

    def _instrument_failed(self, instrumentation: Instrumentation, exc: Exception) -> None:
        """``instrumentation`` raised: reported once and removed (if it is still this
        bus's); the work it was observing goes on without it."""
        if self._instrument is instrumentation:
            self._internal_error(f"instrumentation {_describe(instrumentation)} (now removed)", exc)
            self.instrument(None)

    def _open_delivery(
        self, instrumentation: Instrumentation, delivery: Delivery
    ) -> DeliveryScope | None:
        try:
            return instrumentation.deliver(delivery)
        except Exception as exc:
            self._instrument_failed(instrumentation, exc)
            return None

    def _close_delivery(self, instrumentation: Instrumentation, scope: DeliveryScope) -> None:
        try:
            scope.end()
        except Exception as exc:
            self._instrument_failed(instrumentation, exc)

    async def _publish_instrumented(
        self, instrumentation: Instrumentation, event: Event, raise_on_error: bool | None
    ) -> PublishResult:
        """A publish inside the instrumentation's producer span: the span's headers are
        stored with the event; the span is current while this process dispatches it."""
        try:
            span = instrumentation.publish(event, durable=self._store is not None)
            headers = span.headers
        except Exception as exc:
            self._instrument_failed(instrumentation, exc)
            return await self.publish_async(event, raise_on_error=raise_on_error)
        result: PublishResult | None = None
        error: BaseException | None = None
        try:
            if self._store is not None:
                result = await self._publish_durable(event, False, headers or None)
            else:
                result = await self._publish_local(event, False)
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                span.end(
                    seq=None if result is None else result.seq,
                    duplicate=result is not None and result.duplicate,
                    error=error,
                )
            except Exception as exc:
                self._instrument_failed(instrumentation, exc)
        assert result is not None
        if not result.ok and (raise_on_error if raise_on_error is not None else self._raise):
            result.raise_for_errors()
        return result

    def _compose(self) -> Callable[[Event], Awaitable[list[HandlerOutcome[Any]]]]:
        async def innermost(event: Event) -> list[HandlerOutcome[Any]]:
            route = self._routes.get(event.__class__) or self._route(event.__class__)
            route.published()
            return await route.dispatch(event, _context.get() or event)

        chain: Callable[[Event], Awaitable[list[HandlerOutcome[Any]]]] = innermost
        for mw in reversed(self._middleware):
            chain = self._bind(mw, chain)
        self._chain = chain
        return chain

    def _bind(
        self, mw: Middleware, call_next: Callable[[Event], Awaitable[list[HandlerOutcome[Any]]]]
    ) -> Callable[[Event], Awaitable[list[HandlerOutcome[Any]]]]:
        async def step(event: Event) -> list[HandlerOutcome[Any]]:
            try:
                return list(await mw(event, call_next))
            except _MiddlewareFailed:
                raise
            except Exception as exc:
                if id(mw) not in self._failed_middleware:
                    self._failed_middleware.add(id(mw))
                    self._internal_error(f"middleware {_describe(mw)}", exc, event)
                raise _MiddlewareFailed(exc) from exc

        return step

    def _internal_error(self, where: str, exc: BaseException, event: Event | None = None) -> None:
        """Background or observer failure: counted, and one warning line in the log
        (the exception rides along as the record's ``pubsub_error``, with the group and
        the event when known; the traceback is logged at debug level)."""
        self._counters.internal_errors.append((where, exc))
        log.warning(
            "pubsub: %s raised %s: %s",
            where,
            type(exc).__name__,
            exc,
            extra={
                "pubsub_error": exc,
                "pubsub_where": where,
                "group": self.group,
                "event_id": None if event is None else event.id,
                "event_type": None if event is None else event.event_type,
            },
        )
        log.debug("pubsub: %s traceback", where, exc_info=exc)

    def _run_hooks(self, details: PublishDetails) -> None:
        for hook in list(self._hooks):
            try:
                hook(details)
            except Exception as exc:
                self._internal_error(
                    f"on_publish hook {_describe(hook)} (now removed)", exc, details.event
                )
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
        self._internal_error(f"metrics collector {self.metrics!r} (now disabled)", exc)
        self.metrics = NullMetrics()
        self._forget_routes()

    # -- publishing ----------------------------------------------------------------------

    async def publish_async(
        self, event: Event, *, raise_on_error: bool | None = None
    ) -> PublishResult:
        """Publish ``event``: append it durably when the bus has a store, then dispatch
        it to every matching handler concurrently. Returns every handler's outcome
        (with what it returned); with ``raise_on_error`` a failure raises DispatchError
        (after all handlers ran)."""
        if self._plain:
            # Nothing between publish and the handlers.
            route = self._routes.get(event.__class__) or self._route(event.__class__)
            inline = route.inline
            if inline is None:
                inline = route.inline_sync
                if inline is None:
                    return await self._publish_route(route, event, raise_on_error)
                # One plain sync handler marked inline: called right here.
                fn, record, fold = inline
                self._active += 1
                token = _set_dispatch(event)
                t0 = perf_counter()
                try:
                    value = fn(event)
                except Exception as exc:
                    return await self._inline_failed(route, event, exc, t0, raise_on_error)
                finally:
                    _reset_dispatch(token)
                    self._active -= 1
                return self._inline_done(route, event, t0, value, record, fold)
            # One plain handler (no policy): awaited right here, in the caller's task,
            # as `await handler(event)` would be; what Runner.run does, without the
            # layers.
            fn, record, fold = inline
            self._active += 1
            token = _set_dispatch(event)
            t0 = perf_counter()
            try:
                value = await fn(event)
            except Exception as exc:
                return await self._inline_failed(route, event, exc, t0, raise_on_error)
            finally:
                _reset_dispatch(token)
                self._active -= 1  # drain() looks again rather than being told
            duration = perf_counter() - t0
            record(duration)
            # One count for the bus's statistics and the type's publishes (and, every
            # 1024, the recorder folds its recent durations into its totals).
            hits = route.hits = route.hits + 1
            if not hits & 1023 and fold is not None:
                fold()
            result = _new(OneResult)
            result.event = event
            result._route = route
            result._duration = duration
            result._value = value
            return result
        if self._closed:
            raise BusClosedError()
        if self._dev:
            check_event(event, encodes=self._store is None)
        if self._instrument is not None:
            return await self._publish_instrumented(self._instrument, event, raise_on_error)
        if self._store is not None:
            return await self._publish_durable(event, raise_on_error)
        return await self._publish_local(event, raise_on_error)

    async def _publish_local(self, event: Event, raise_on_error: bool | None) -> PublishResult:
        """Publish without a store through the general path: hooks, middleware, every
        handler under its policy."""
        if self._hooks:
            self._run_hooks(PublishDetails(event, None, None, "live"))
        self._active += 1
        try:
            outcomes = await self._dispatch(event, event)
        finally:
            self._active -= 1
            if not self._active and self._idle is not None:
                self._idle.set()
        self._counters.published += 1
        return await self._settle(event, outcomes, raise_on_error)

    def _inline_done(
        self,
        route: Route,
        event: Event,
        t0: float,
        value: object,
        record: Callable[[float], object],
        fold: Callable[[], None] | None,
    ) -> OneResult:
        """The end of an inline sync publish that succeeded."""
        duration = perf_counter() - t0
        record(duration)
        hits = route.hits = route.hits + 1
        if not hits & 1023 and fold is not None:
            fold()
        return OneResult(event, route, duration, value)

    async def _inline_failed(
        self,
        route: Route,
        event: Event,
        exc: Exception,
        t0: float,
        raise_on_error: bool | None,
    ) -> PublishResult:
        """The inline handler raised: its failure, counted and dead-lettered (still in
        the dispatch context, as the handler was)."""
        failure = route.single_failed(exc, t0)
        route.published()
        self._counters.published += 1
        return await self._settle(event, [failure], raise_on_error)

    async def _publish_route(
        self, route: Route, event: Event, raise_on_error: bool | None
    ) -> PublishResult:
        self._active += 1
        try:
            if route.plain is not None:
                done = await route.run_plain(event, event)
                if isinstance(done, ManyResult):  # every handler succeeded (in hits)
                    return done
                outcomes = done
            else:
                outcomes = await route.dispatch(event, event)
        finally:
            self._active -= 1
            if not self._active and self._idle is not None:
                self._idle.set()
        route.published()
        self._counters.published += 1
        for outcome in outcomes:
            if outcome.status is not _OK:
                return await self._settle(event, outcomes, raise_on_error)
        self._counters.ok += len(outcomes)
        return PublishResult(event, outcomes)

    async def _settle(
        self,
        event: Event,
        outcomes: list[HandlerOutcome[Any]],
        raise_on_error: bool | None,
    ) -> PublishResult:
        """Count a store-less publish's outcomes, dead-letter its failures, raise if
        asked."""
        result = PublishResult(event, outcomes)
        letters = self._tally(event, outcomes, None, "live")
        if letters:
            await self.dead_letters.add_dead_letters(letters)
        if not result.ok and (raise_on_error if raise_on_error is not None else self._raise):
            result.raise_for_errors()
        return result

    async def _dispatch(
        self, event: Event, context: Event | DispatchContext
    ) -> list[HandlerOutcome[Any]]:
        """Middleware, then the route: what every delivery of an event goes through."""
        if not self._middleware:
            route = self._routes.get(event.__class__) or self._route(event.__class__)
            route.published()
            return await route.dispatch(event, context)
        chain = self._chain or self._compose()
        token = _context.set(context)
        try:
            return await chain(event)
        except _MiddlewareFailed as failed:
            now = datetime.now(UTC)
            return [
                Failure(
                    MIDDLEWARE_HANDLER,
                    OutcomeStatus.FAILED,
                    1,
                    0.0,
                    failed.error,
                    DeadLetterReason.EXHAUSTED,
                    now,
                    now,
                )
            ]
        finally:
            _context.reset(token)

    def _tally(
        self,
        event: Event,
        outcomes: list[HandlerOutcome[Any]],
        seq: int | None,
        source: str,
        group: str | None = None,
    ) -> list[DeadLetter]:
        """Count outcomes; the dead letters of the failures."""
        counters = self._counters
        letters: list[DeadLetter] = []
        for o in outcomes:
            if o.status is _OK:
                counters.ok += 1
            else:
                counters.failed += 1
                if isinstance(o, Failure):
                    counters.dead_lettered += 1
                    letters.append(for_failure(o, event, seq=seq, group=group, source=source))
        return letters

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

    async def _publish_durable(
        self,
        event: Event,
        raise_on_error: bool | None,
        headers: Mapping[str, str] | None = None,
    ) -> PublishResult:
        assert self._store is not None
        if self._consume and not self._started:
            await self.start()
        consumer = self._consumer
        if headers is None:
            (appended,) = await self._store.append((event,))
        else:
            (appended,) = await self._store.append((event,), headers=(headers,))
        if appended.duplicate:
            return PublishResult(event, (), appended.seq, duplicate=True)
        self._counters.published += 1
        if appended.seq > self._counters.last_seq:
            self._counters.last_seq = appended.seq
        if consumer is None or self._owned or consumer.lost is not None:
            # A producer, a store that owns delivery, or a consumer that lost its
            # group: the group's live consumer (or one of its workers) dispatches it.
            if self._hooks:
                self._run_hooks(PublishDetails(event, appended.seq, None, "live"))
            return PublishResult(event, (), appended.seq)
        # Counted for drain() while the consumer admits and dispatches it; the dispatch
        # itself (deliver) counts the event again, so statistics subtract this count.
        self._active += 1
        self._awaiting += 1
        try:
            outcomes = await consumer.dispatch_appended(appended.seq, event)
        finally:
            self._active -= 1
            self._awaiting -= 1
            if not self._active and self._idle is not None:
                self._idle.set()
        result = PublishResult(event, outcomes, appended.seq)
        if not result.ok and (raise_on_error if raise_on_error is not None else self._raise):
            result.raise_for_errors()
        return result

    # The Dispatcher protocol (core.consumer): what the consumer asks of its bus.

    async def deliver(
        self,
        seq: int,
        event: Event,
        *,
        redelivery: bool,
        source: str,
        headers: Mapping[str, str] = NO_HEADERS,
    ) -> Delivered:
        """Dispatch a stored event as this group's consumer (middleware included);
        ``headers`` are what was stored with it (for the instrumentation)."""
        if self._hooks:
            self._run_hooks(PublishDetails(event, seq, self.group, source, redelivery))
        context: Event | DispatchContext = DispatchContext(event, 1, True) if redelivery else event
        instrument = self._instrument
        scope = (
            None
            if instrument is None
            else self._open_delivery(
                instrument, Delivery(event, headers, seq, self.group, source, redelivery)
            )
        )
        self._active += 1
        try:
            outcomes = await self._dispatch(event, context)
        finally:
            self._active -= 1
            if not self._active and self._idle is not None:
                self._idle.set()
            if scope is not None and instrument is not None:
                self._close_delivery(instrument, scope)
        letters = self._tally(event, outcomes, seq, source, self.group)
        finished = not any(o.status is _CANCELLED for o in outcomes)
        return Delivered(outcomes, letters, finished)

    def undeliverable(self, letter: DeadLetter) -> None:
        counters = self._counters
        counters.dead_lettered += 1
        counters.undecodable += 1

    def report(self, where: str, exc: BaseException) -> None:
        self._internal_error(where, exc)

    @property
    def consumer(self) -> Consumer | None:
        """This bus's consumer of its group, once started (None without a store, for a
        producer, or before ``start``)."""
        return self._consumer

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
            store: object = self._store
            if self._consume and isinstance(store, OwnsDelivery):
                consumer: Consumer = store.open_consumer(self, self._consumer_options())
                await consumer.start()
                self._consumer = consumer
                self._owned = True
            elif self._consume:
                assert self._store is not None
                consumer = LogConsumer(
                    self._store,
                    self,
                    group=self.group,
                    holder=self.holder,
                    registry=self.registry,
                    clock=self._clock,
                    tasks=self._tasks,
                    lease_ttl=self.lease_ttl,
                    max_in_flight=self._max_in_flight,
                    commit_interval=self._commit_interval,
                )
                await consumer.start()
                self._consumer = consumer
            self._started = True
        if self._consumer is not None:
            try:
                await self._consumer.catch_up()
            except BaseException:
                # A consumer that cannot start must not keep the group locked.
                await self.aclose()
                raise

    def _consumer_options(self) -> ConsumerOptions:
        return ConsumerOptions(
            group=self.group,
            holder=self.holder,
            registry=self.registry,
            clock=self._clock,
            tasks=self._tasks,
            rng=self._rng,
            max_in_flight=self._max_in_flight,
            lease_ttl=self.lease_ttl,
            commit_interval=self._commit_interval,
            policies={name: runner.policy for name, runner in self._runners.items()},
            handlers_for=self.handlers_for,
        )

    async def catch_up(self) -> int:
        """Dispatch every stored event this consumer has not seen yet (at least once
        after a crash); returns how many were dispatched. Raises GroupLockedError
        once this bus lost its lease to another consumer."""
        if not self._consume:
            return 0
        if not self._started:
            await self.start()
            return 0
        if self._consumer is None:
            return 0
        count = await self._consumer.catch_up()
        self._counters.last_seq = max(self._counters.last_seq, self._consumer.last_seq)
        return count

    async def follow(self, stop: asyncio.Event, *, poll_interval: float = 0.2) -> None:
        """Dispatch events appended by other processes until ``stop`` is set."""
        if not self._started:
            await self.start()
        if self._owned and self._consumer is not None:
            await self._consumer.follow(stop, poll_interval=poll_interval)
            return
        while not stop.is_set():
            await self.catch_up()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_interval)

    # -- lifecycle -------------------------------------------------------------------

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until no publish or dispatch is in flight; False if ``timeout`` passed."""
        if not self._active and not self._tasks:
            return True  # idle: also with timeout=0, which wait_for would time out
        deadline = None if timeout is None else perf_counter() + timeout

        async def settled() -> None:
            while self._active or self._tasks:
                if self._tasks:
                    await asyncio.wait(set(self._tasks))
                    continue
                self._idle = asyncio.Event()
                # Inline publishes do not set the event (it would cost every publish):
                # look again every few milliseconds.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), 0.005)

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
        try:
            if self._consumer is not None:
                await self._consumer.aclose()
        finally:
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
        consumer = self._consumer
        last_seq = c.last_seq if consumer is None else max(c.last_seq, consumer.last_seq)
        routes = self._routes.values()  # what the lean paths counted on their routes
        hits = sum(route.hits for route in routes)
        ok = sum(route.hits * len(route.names) for route in routes)
        return BusStatistics(
            published=c.published + hits,
            handled_ok=c.ok + ok,
            handled_failed=c.failed,
            dead_lettered=c.dead_lettered,
            in_flight=self._active - self._awaiting,
            last_seq=last_seq,
            checkpoint=consumer.checkpoint if consumer is not None else 0,
            internal_errors=len(c.internal_errors),
            undecodable=c.undecodable,
        )

    @property
    def internal_errors(self) -> list[tuple[str, BaseException]]:
        """Errors raised by hooks, middleware, metrics or background work (last 100)."""
        return list(self._counters.internal_errors)

    # -- replay and re-drive (core.replay) ------------------------------------------

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
        return await replay(self, records, handlers=handlers, rate=rate, progress=progress)

    async def redrive(self, entry_id: int) -> RedriveResult:
        """Dispatch a dead letter's event to its handler only; on success resolve the
        entry (compare-and-set: exactly once across processes)."""
        return await redrive(self, entry_id)


class _MiddlewareFailed(Exception):
    """Carries a middleware's exception out through the chain (to one outcome)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _describe(obj: object) -> str:
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    module = getattr(obj, "__module__", None)
    return f"{module}.{name}" if module else str(name)
