"""Dispatch: running the handlers of one event, each under its policy.

The bus turns every subscription into a ``Runner`` (its handler, policy, breaker,
semaphore and metrics) and, per concrete event type, into a ``Route`` (the runners that
match, found through ``__mro__``). ``Route.dispatch`` is the one way an event reaches its
handlers, for a live publish, a catch-up, a replay and a re-drive alike:

* a route with one handler awaits it inline, in the caller's task, exactly as a plain
  ``await handler(event)`` would;
* a route with several gives each handler a task of its own (an eager task on Python
  3.12+, so a handler that never suspends costs no turn of the loop) and waits for all.

A handler runs in one task for its whole life, so ``asyncio.timeout``,
``current_task()``, task groups and cancellation inside it behave as asyncio says. One
handler's failure, timeout or cancellation never stops or cancels a sibling or the
caller: every outcome is collected, in subscription order.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from datetime import UTC, datetime
from time import perf_counter
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .clock import Clock, RandomSource, ThreadAwareClock
from .errors import BreakerOpenError
from .events import DispatchContext, Event, _dispatch
from .instrument import AttemptOutcome, HandlerSpan, Instrumentation
from .metrics import EventTypeRecorder, HandlerRecorder, _Pair, _TypeCount
from .policies import CircuitBreaker, HandlerPolicy
from .results import Failure, HandlerOutcome, ManyResult, OutcomeStatus

if TYPE_CHECKING:
    from .routing import _Publisher
import itertools

from .routing import HandlerContext, Subscription, is_async_handler, takes_context
from .store import DeadLetterReason

__all__ = ["InstrumentedRunner", "Middleware", "Route", "Runner"]

E = TypeVar("E", bound=Event)
R = TypeVar("R")

_OK = OutcomeStatus.OK
_EAGER = sys.version_info >= (3, 12)
_FAILED: Any = object()  # a placeholder among the values of run_plain
_new = object.__new__
_Task: Any = asyncio.Task
_set_dispatch = _dispatch.set
_reset_dispatch = _dispatch.reset


class Runner(Generic[E, R]):
    """One subscription made runnable on one bus: ``run`` invokes the handler under its
    policy and always returns an outcome (an Exception never escapes)."""

    __slots__ = (
        "breaker",
        "bus",
        "clock",
        "context",
        "executor",
        "fn",
        "is_async",
        "name",
        "plain",
        "policy",
        "rng",
        "semaphore",
        "subscription",
        "track_thread",
    )

    def __init__(
        self,
        subscription: Subscription[E, R],
        *,
        clock: Clock,
        rng: RandomSource,
        executor: Callable[[], Executor],
        breaker: CircuitBreaker | None,
        bus: _Publisher,
    ) -> None:
        policy: HandlerPolicy = subscription.policy
        self.bus = bus
        # A handler with a second parameter is given a HandlerContext there.
        self.context = takes_context(subscription.handler)
        self.subscription = subscription
        self.name = subscription.name
        self.fn: Callable[..., Any] = subscription.handler
        self.policy = policy
        self.is_async = is_async_handler(subscription.handler)
        self.clock = clock
        # A clock that wants to know of executor work (a fake clock must not jump then).
        self.track_thread = clock.track if isinstance(clock, ThreadAwareClock) else None
        self.rng = rng
        self.executor = executor
        self.breaker = breaker
        self.semaphore = (
            asyncio.Semaphore(policy.max_concurrency) if policy.max_concurrency else None
        )
        # An async (or inline sync) handler with no policy around it: one call, no loop.
        self.plain = (
            not self.context
            and (self.is_async or policy.inline)
            and policy.timeout is None
            and self.semaphore is None
            and policy.retry.max_attempts == 1
            and breaker is None
        )

    async def run(self, event: E, rec: HandlerRecorder) -> HandlerOutcome[R]:
        """Invoke the handler under its policy; the outcome carries its return value."""
        if self.plain:
            t0 = perf_counter()
            try:
                value = await self.fn(event) if self.is_async else self.fn(event)
            except Exception as exc:
                return self.give_up(
                    rec, exc, OutcomeStatus.FAILED, DeadLetterReason.EXHAUSTED, 1, t0, None
                )
            duration = perf_counter() - t0
            rec.succeeded(duration)
            return HandlerOutcome(self.name, _OK, 1, duration, value=value)
        return await self._run_with_policy(event, rec)

    async def _call(self, event: E) -> Any:
        args: tuple[Any, ...] = (event, self._context(event)) if self.context else (event,)
        if self.is_async:
            return await self.fn(*args)
        if self.policy.inline:
            return self.fn(*args)
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        work = loop.run_in_executor(self.executor(), ctx.run, self.fn, *args)
        if self.track_thread is not None:
            self.track_thread(work)
        return await work

    def _context(self, event: E) -> HandlerContext[E]:
        current = _dispatch.get()
        if isinstance(current, DispatchContext):
            return HandlerContext(self.bus, event, current.attempt, current.redelivery)
        return HandlerContext(self.bus, event, 1, False)

    async def _attempt(self, event: E) -> Any:
        timeout = self.policy.timeout
        if self.semaphore is None:
            if timeout is None:
                return await self._call(event)
            async with self.clock.timeout(timeout):
                return await self._call(event)
        async with self.semaphore:
            if timeout is None:
                return await self._call(event)
            async with self.clock.timeout(timeout):
                return await self._call(event)

    async def _run_with_policy(self, event: E, rec: HandlerRecorder) -> HandlerOutcome[R]:
        retry = self.policy.retry
        breaker = self.breaker
        t0 = perf_counter()
        first_failure: datetime | None = None
        attempt = 0
        parent = _dispatch.get()
        again = isinstance(parent, DispatchContext) and parent.redelivery
        while True:
            attempt += 1
            if breaker is not None and not breaker.allow():
                return self.give_up(
                    rec,
                    BreakerOpenError(self.name),
                    OutcomeStatus.REJECTED,
                    DeadLetterReason.BREAKER_OPEN,
                    attempt - 1,
                    t0,
                    first_failure,
                )
            # Later attempts say their number to the handler (current_dispatch()).
            token = _dispatch.set(DispatchContext(event, attempt, again)) if attempt > 1 else None
            try:
                value = await self._attempt(event)
            except Exception as exc:
                timed_out = isinstance(exc, TimeoutError) and self.policy.timeout is not None
                if breaker is not None:
                    breaker.record_failure()
                if first_failure is None:
                    first_failure = datetime.now(UTC)
                retryable = retry.retry_timeouts if timed_out else retry.retryable(exc)
                if attempt < retry.max_attempts and retryable:
                    rec.retried()
                    await self.clock.sleep(retry.backoff(attempt, self.rng))
                    continue
                if timed_out:
                    status, reason = OutcomeStatus.TIMED_OUT, DeadLetterReason.TIMEOUT
                elif not retryable and attempt < retry.max_attempts:
                    status, reason = OutcomeStatus.FAILED, DeadLetterReason.NOT_RETRYABLE
                else:
                    status, reason = OutcomeStatus.FAILED, DeadLetterReason.EXHAUSTED
                return self.give_up(rec, exc, status, reason, attempt, t0, first_failure)
            else:
                if breaker is not None:
                    breaker.record_success()
                duration = perf_counter() - t0
                rec.succeeded(duration)
                return HandlerOutcome(self.name, _OK, attempt, duration, value=value)
            finally:
                if token is not None:
                    _dispatch.reset(token)

    def give_up(
        self,
        rec: HandlerRecorder,
        exc: Exception,
        status: OutcomeStatus,
        reason: DeadLetterReason,
        attempts: int,
        t0: float,
        first_failure: datetime | None,
    ) -> Failure:
        """Record and return the handler's final failure on this event."""
        duration = perf_counter() - t0
        now = datetime.now(UTC)
        rec.failed(duration, status)
        rec.dead_lettered()
        return Failure(
            self.name, status, attempts, duration, exc, reason, first_failure or now, now
        )


class InstrumentedRunner(Runner[E, R]):
    """A runner of an instrumented bus: the same handler, policy, breaker and semaphore
    (shared with the runner it is made from), with each attempt inside the
    instrumentation's handler span. The span begins before the attempt's semaphore and
    timeout, so it is current in the handler's task (and copied into the executor thread
    of a sync handler), and it ends with the attempt's outcome. It never takes the plain
    path: every call goes through the policy loop, which numbers the attempts."""

    __slots__ = ("instrument", "on_error")

    def __init__(
        self,
        runner: Runner[E, R],
        instrument: Instrumentation,
        on_error: Callable[[Instrumentation, Exception], None],
    ) -> None:
        for name in Runner.__slots__:
            setattr(self, name, getattr(runner, name))
        self.plain = False
        self.instrument = instrument
        self.on_error = on_error  # reports the failure and removes the instrumentation

    async def _attempt(self, event: E) -> Any:
        current = _dispatch.get()
        attempt = current.attempt if isinstance(current, DispatchContext) else 1
        instrument = self.instrument
        try:
            span = instrument.handle(event, self.name, attempt)
        except Exception as exc:
            self.on_error(instrument, exc)
            return await Runner._attempt(self, event)
        try:
            value = await Runner._attempt(self, event)
        except Exception as exc:
            self._end(span, self._verdict(exc, attempt), exc)
            raise
        except BaseException as exc:  # CancelledError (KeyboardInterrupt: ends it too)
            self._end(span, AttemptOutcome.CANCELLED, exc)
            raise
        self._end(span, AttemptOutcome.OK, None)
        return value

    def _verdict(self, exc: Exception, attempt: int) -> AttemptOutcome:
        """What ``_run_with_policy`` does with this failure, told in advance."""
        retry = self.policy.retry
        timed_out = isinstance(exc, TimeoutError) and self.policy.timeout is not None
        retryable = retry.retry_timeouts if timed_out else retry.retryable(exc)
        if attempt < retry.max_attempts and retryable:
            return AttemptOutcome.RETRY
        return AttemptOutcome.TIMED_OUT if timed_out else AttemptOutcome.FAILED

    def _end(self, span: HandlerSpan, outcome: AttemptOutcome, error: BaseException | None) -> None:
        try:
            span.end(outcome, error)
        except Exception as exc:
            self.on_error(self.instrument, exc)


def _start(coro: Coroutine[Any, Any, HandlerOutcome[Any]]) -> asyncio.Task[HandlerOutcome[Any]]:
    """A task of its own for one handler: eager on 3.12+ (it runs to its first
    suspension right here, in a task that is already its own), plain on 3.11."""
    loop = asyncio.get_running_loop()
    if _EAGER:
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    return loop.create_task(coro)


def _value(task: asyncio.Task[Any]) -> Any:
    """A finished handler task's return value, or _FAILED if it failed or was cancelled."""
    if task.cancelled() or task.exception() is not None:
        return _FAILED
    return task.result()


def _and_published(
    record: Callable[[float], object], type_recorder: EventTypeRecorder
) -> Callable[[float], None]:
    """``record`` that also counts the publish in a type recorder other than the
    built-in one (which adds the route's ``hits`` instead): the lean paths call one
    recorder per handler, and this one for a single handler of the route."""
    published = type_recorder.published

    def both(duration: float) -> None:
        record(duration)
        published()

    return both


class Route:
    """The runners that match one concrete event type, with their recorders, and the
    one way to dispatch an event to them."""

    __slots__ = (
        "counter",
        "counts_hits",
        "hits",
        "inline",
        "inline_sync",
        "names",
        "plain",
        "published",
        "runners",
        "single",
        "tasks",
        "type_recorder",
    )

    def __init__(
        self,
        runners: tuple[tuple[Runner[Any, Any], HandlerRecorder], ...],
        type_recorder: EventTypeRecorder,
        tasks: set[asyncio.Task[Any]],
    ) -> None:
        self.runners = runners
        self.single = runners[0] if len(runners) == 1 else None
        self.names = tuple(runner.name for runner, _ in runners)
        # A single plain async handler, for the bus to await inline:
        # (handler, record a duration, fold the recorder or None).
        # ``inline_sync`` is the same for a single plain sync handler marked inline.
        self.inline: tuple[Callable[..., Any], Callable[[float], object], Any] | None = None
        self.inline_sync: tuple[Callable[..., Any], Callable[[float], object], Any] | None
        self.inline_sync = None
        if self.single is not None and self.single[0].plain:
            runner, rec = self.single
            fast: tuple[Callable[..., Any], Callable[[float], object], Any]
            if isinstance(rec, _Pair):  # the built-in recorder: one list append
                fast = (runner.fn, rec.recent.append, rec.fold)
            elif isinstance(type_recorder, _TypeCount):
                fast = (runner.fn, rec.succeeded, None)
            else:  # another collector's type recorder is told of each publish
                fast = (runner.fn, _and_published(rec.succeeded, type_recorder), None)
            if runner.is_async:
                self.inline = fast
            else:
                self.inline_sync = fast
        # Several plain async handlers: (handler, record a duration, fold or None) each,
        # for ``run_plain`` (no Runner.run layer, no outcome objects when all succeed).
        self.plain: tuple[tuple[Callable[..., Any], Callable[[float], object], Any], ...] | None
        self.plain = None
        if len(runners) > 1 and all(r.plain and r.is_async for r, _ in runners):
            plain: list[tuple[Callable[..., Any], Callable[[float], object], Any]] = [
                (r.fn, rec.recent.append, rec.fold)
                if isinstance(rec, _Pair)
                else (r.fn, rec.succeeded, None)
                for r, rec in runners
            ]
            if not isinstance(type_recorder, _TypeCount):  # told once per publish
                fn, record, fold = plain[0]
                plain[0] = (fn, _and_published(record, type_recorder), fold)
            self.plain = tuple(plain)
        # Inline publishes that succeeded: the bus's statistics add them, and so does
        # the built-in type counter (one increment counts for both).
        self.hits = 0
        self.counter = type_recorder if isinstance(type_recorder, _TypeCount) else None
        self.counts_hits = (
            self.inline is not None or self.inline_sync is not None or self.plain is not None
        )
        if self.counts_hits and self.counter is not None:
            self.counter.sources.append(self)
        self.type_recorder = type_recorder
        self.published = type_recorder.published
        # The bus's set of running handler tasks (aclose cancels what is left of them).
        self.tasks = tasks

    def retire(self) -> None:
        """The bus drops this route: the type counter keeps what it counted."""
        if self.counts_hits and self.counter is not None:
            self.counter.retire(self)

    def single_failed(self, exc: Exception, t0: float) -> Failure:
        """The failure of the single plain handler's one attempt (started at ``t0``)."""
        assert self.single is not None
        runner, rec = self.single
        return runner.give_up(
            rec, exc, OutcomeStatus.FAILED, DeadLetterReason.EXHAUSTED, 1, t0, None
        )

    def only(self, names: frozenset[str]) -> Route:
        """This route restricted to the handlers named in ``names``."""
        keep = tuple(r for r in self.runners if r[0].name in names)
        return Route(keep, self.type_recorder, self.tasks)

    async def dispatch(
        self, event: Event, context: Event | DispatchContext
    ) -> list[HandlerOutcome[Any]]:
        """Run every handler of the route on ``event`` (``context`` is what
        ``current_dispatch()`` tells them); one outcome each, in subscription order."""
        token = _dispatch.set(context)
        single = self.single
        if single is not None:
            try:
                return [await single[0].run(event, single[1])]
            finally:
                _dispatch.reset(token)
        try:
            # Each task copies the context as it is now, the dispatch variable included.
            started = [_start(runner.run(event, rec)) for runner, rec in self.runners]
        finally:
            _dispatch.reset(token)
        return await self._collect(started)

    async def run_plain(
        self, event: Event, context: Event | DispatchContext
    ) -> ManyResult | list[HandlerOutcome[Any]]:
        """``dispatch`` for a route of plain async handlers (no policy): each handler in
        a task of its own, its duration read around its eager start (or when its task
        finishes, if it suspended). Returns a lazy ManyResult when every handler
        succeeded, else every outcome."""
        plain = self.plain
        assert plain is not None
        loop = asyncio.get_running_loop()
        token = _set_dispatch(context)
        marks = [perf_counter()]
        mark = marks.append
        started: list[asyncio.Task[Any]] = []
        start = started.append
        try:
            if _EAGER:
                for fn, _, _ in plain:
                    start(_Task(fn(event), loop=loop, eager_start=True))
                    mark(perf_counter())
            else:
                for fn, _, _ in plain:
                    start(loop.create_task(fn(event)))
                    mark(perf_counter())
        finally:
            _reset_dispatch(token)
        values: list[Any] = []
        ends: dict[int, float] | None = None
        for index, task in enumerate(started):
            try:
                values.append(task.result())
            except asyncio.InvalidStateError:  # it suspended: wait for the rest
                ends = await self._finish(started, index, marks)
                values = [_value(task) for task in started]
                break
            except BaseException:  # failed or cancelled: every outcome, the slow way
                values.append(_FAILED)
        if _FAILED in values:
            return self._plain_outcomes(started, marks, ends)
        if ends is None:
            durations = [b - a for a, b in itertools.pairwise(marks)]
        else:
            durations = [
                ends.get(id(task), marks[i + 1]) - marks[i] for i, task in enumerate(started)
            ]
        for (_, record, _), duration in zip(plain, durations, strict=True):
            record(duration)
        hits = self.hits = self.hits + 1
        if not hits & 1023:
            for _, _, fold in plain:
                if fold is not None:
                    fold()
        result = _new(ManyResult)
        result.event = event
        result._route = self
        result._durations = durations
        result._values = values
        return result

    async def _finish(
        self, started: list[asyncio.Task[Any]], index: int, marks: list[float]
    ) -> dict[int, float]:
        """Wait for the handlers from ``index`` on, noting when each one ends."""
        ends: dict[int, float] = {}
        pending = [task for task in started[index:] if not task.done()]
        for task in pending:
            task.add_done_callback(lambda t: ends.__setitem__(id(t), perf_counter()))
        await self._wait(pending)
        return ends

    async def _wait(self, pending: list[asyncio.Task[Any]]) -> None:
        """Wait for the handlers' tasks that are still running (the bus's ``tasks`` hold
        them meanwhile, so that aclose can cancel them)."""
        if not pending:
            return
        tasks = self.tasks
        tasks.update(pending)
        caller = asyncio.current_task()
        try:
            for task in pending:  # one after another: cheaper than asyncio.wait
                if task.done():
                    continue
                try:
                    await task
                except asyncio.CancelledError:
                    if caller is not None and caller.cancelling():
                        raise  # the caller is cancelled (below)
                    # else: that handler's task was cancelled (aclose): its outcome
                except BaseException:
                    pass
        except asyncio.CancelledError:
            # The caller is cancelled: its handlers go with it, as an inline one would.
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)
            raise
        finally:
            tasks.difference_update(pending)

    def _plain_outcomes(
        self,
        started: list[asyncio.Task[Any]],
        marks: list[float],
        ends: dict[int, float] | None,
    ) -> list[HandlerOutcome[Any]]:
        """Every outcome of a ``run_plain`` that had a failure, a cancellation or a
        suspension, in subscription order (recorded in the metrics here)."""
        outcomes: list[HandlerOutcome[Any]] = []
        for i, ((runner, rec), task) in enumerate(zip(self.runners, started, strict=True)):
            start = marks[i]
            end = ends.get(id(task), marks[i + 1]) if ends else marks[i + 1]
            duration = max(0.0, end - start)
            if task.cancelled():
                outcomes.append(HandlerOutcome(runner.name, OutcomeStatus.CANCELLED, 1, duration))
                continue
            exc = task.exception()
            if exc is None:
                rec.succeeded(duration)
                outcomes.append(HandlerOutcome(runner.name, _OK, 1, duration, value=task.result()))
            elif isinstance(exc, Exception):
                failure = runner.give_up(
                    rec, exc, OutcomeStatus.FAILED, DeadLetterReason.EXHAUSTED, 1, 0.0, None
                )
                failure.duration = duration
                outcomes.append(failure)
            else:
                raise exc  # KeyboardInterrupt, SystemExit: not ours to keep
        return outcomes

    async def _collect(
        self, started: list[asyncio.Task[HandlerOutcome[Any]]]
    ) -> list[HandlerOutcome[Any]]:
        await self._wait([task for task in started if not task.done()])
        outcomes: list[HandlerOutcome[Any]] = []
        for name, task in zip(self.names, started, strict=True):
            if task.cancelled():
                # Cancelled by the bus (aclose past its timeout), not by a timeout.
                outcomes.append(HandlerOutcome(name, OutcomeStatus.CANCELLED, 1, 0.0))
            else:
                outcomes.append(task.result())
        return outcomes


Middleware = Callable[
    [Event, Callable[[Event], Awaitable[list[HandlerOutcome[Any]]]]],
    Awaitable[list[HandlerOutcome[Any]]],
]
