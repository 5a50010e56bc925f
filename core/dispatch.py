"""Dispatch: running the handlers of one event, each under its policy.

The bus turns every subscription into a ``Runner`` (its handler, policy, breaker,
semaphore and metrics) and, per concrete event type, into a ``Route`` (the runners that
match, found through ``__mro__``). ``run_route`` starts every matching handler eagerly in
the publisher's task: a handler that finishes without suspending costs one coroutine and
no task; only a handler that really suspends is handed to a task of its own. One
handler's failure never stops or cancels its siblings: every outcome is collected.
"""

from __future__ import annotations

import asyncio
import contextvars
import traceback
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import Executor
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

from .clock import Clock, RandomSource
from .events import DispatchContext, Event, _dispatch
from .metrics import EventTypeRecorder, HandlerRecorder
from .policies import CircuitBreaker, HandlerPolicy
from .results import HandlerOutcome, OutcomeStatus
from .routing import Subscription, is_async_handler
from .store import DeadLetter, DeadLetterReason

__all__ = ["BreakerOpenError", "Failure", "Route", "Runner", "run_plain_route", "run_route"]

_OK = OutcomeStatus.OK


class BreakerOpenError(Exception):
    """The outcome error of a call refused by an open circuit breaker."""

    def __init__(self, handler: str) -> None:
        self.handler = handler
        super().__init__(f"circuit breaker of {handler!r} is open: the call was refused")


class Failure(HandlerOutcome):
    """A failed outcome with what a dead letter needs."""

    __slots__ = ("first_failure_at", "last_failure_at", "reason", "tb")

    def __init__(
        self,
        handler: str,
        status: OutcomeStatus,
        attempts: int,
        duration: float,
        error: Exception,
        reason: DeadLetterReason,
        first_failure_at: datetime,
        last_failure_at: datetime,
    ) -> None:
        super().__init__(handler, status, attempts, duration, error, dead_lettered=True)
        self.reason = reason
        self.first_failure_at = first_failure_at
        self.last_failure_at = last_failure_at
        self.tb = "".join(traceback.format_exception(error))

    def dead_letter(
        self, event: Event, *, seq: int | None, group: str | None, source: str
    ) -> DeadLetter:
        error = self.error
        assert error is not None
        try:
            payload = event.to_dict()
        except Exception:  # an unencodable event still gets its dead letter
            payload = {"repr": repr(event)}
        return DeadLetter(
            event_id=event.id,
            event_type=event.event_type,
            handler=self.handler,
            reason=self.reason,
            error_type=f"{type(error).__module__}.{type(error).__qualname__}",
            message=str(error),
            traceback=self.tb,
            attempts=self.attempts,
            first_failure_at=self.first_failure_at,
            last_failure_at=self.last_failure_at,
            payload=payload,
            seq=seq,
            group=group,
            source=source,
        )


class Runner:
    """One subscription made runnable on one bus."""

    __slots__ = (
        "breaker",
        "clock",
        "executor",
        "fn",
        "is_async",
        "name",
        "plain",
        "policy",
        "rng",
        "semaphore",
        "subscription",
    )

    def __init__(
        self,
        subscription: Subscription[Any],
        *,
        clock: Clock,
        rng: RandomSource,
        executor: Callable[[], Executor],
        breaker: CircuitBreaker | None,
    ) -> None:
        policy: HandlerPolicy = subscription.policy
        self.subscription = subscription
        self.name = subscription.name
        self.fn: Callable[[Any], Any] = subscription.handler
        self.policy = policy
        self.is_async = is_async_handler(subscription.handler)
        self.clock = clock
        self.rng = rng
        self.executor = executor
        self.breaker = breaker
        self.semaphore = (
            asyncio.Semaphore(policy.max_concurrency) if policy.max_concurrency else None
        )
        # The fast path: an async (or inline sync) handler with nothing around it.
        self.plain = (
            (self.is_async or policy.inline)
            and policy.timeout is None
            and self.semaphore is None
            and policy.retry.max_attempts == 1
            and breaker is None
        )

    async def _call(self, event: Event) -> None:
        if self.is_async:
            await self.fn(event)
        elif self.policy.inline:
            self.fn(event)
        else:
            loop = asyncio.get_running_loop()
            ctx = contextvars.copy_context()
            await loop.run_in_executor(self.executor(), ctx.run, self.fn, event)

    async def _attempt(self, event: Event) -> None:
        timeout = self.policy.timeout
        if self.semaphore is not None:
            async with self.semaphore:
                if timeout is None:
                    await self._call(event)
                else:
                    async with asyncio.timeout(timeout):
                        await self._call(event)
        elif timeout is None:
            await self._call(event)
        else:
            async with asyncio.timeout(timeout):
                await self._call(event)

    async def run(self, event: Event, rec: HandlerRecorder) -> HandlerOutcome:
        """Invoke the handler under its policy; never raises an Exception."""
        if self.plain:
            t0 = perf_counter()
            try:
                if self.is_async:
                    await self.fn(event)
                else:
                    self.fn(event)
            except Exception as exc:
                return self.failed_once(rec, exc, t0)
            return self.succeeded_once(rec, t0)
        return await self._run_with_policy(event, rec)

    def succeeded_once(self, rec: HandlerRecorder, t0: float) -> HandlerOutcome:
        """Record and return the success of a plain handler's single attempt."""
        duration = perf_counter() - t0
        rec.succeeded(duration)
        return HandlerOutcome(self.name, _OK, 1, duration)

    def failed_once(self, rec: HandlerRecorder, exc: Exception, t0: float) -> Failure:
        """Record and return the failure of a plain handler's single attempt."""
        return self.give_up(rec, exc, OutcomeStatus.FAILED, DeadLetterReason.EXHAUSTED, 1, t0, None)

    async def _run_with_policy(self, event: Event, rec: HandlerRecorder) -> HandlerOutcome:
        retry = self.policy.retry
        breaker = self.breaker
        t0 = perf_counter()
        first_failure: datetime | None = None
        attempt = 0
        while True:
            attempt += 1
            if breaker is not None and not breaker.allow():
                return self.give_up(
                    rec,
                    BreakerOpenError(self.name),
                    OutcomeStatus.REJECTED,
                    DeadLetterReason.BREAKER_OPEN,
                    attempt - 1 if attempt > 1 else 0,
                    t0,
                    first_failure,
                )
            # The first attempt runs in the dispatcher's context; later ones (always
            # after a suspension, so in this handler's own task) say their number.
            token = None
            if attempt > 1:
                parent = _dispatch.get()
                again = isinstance(parent, DispatchContext) and parent.redelivery
                token = _dispatch.set(DispatchContext(event, attempt, again))
            try:
                await self._attempt(event)
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
                return HandlerOutcome(self.name, _OK, attempt, duration)
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
        duration = perf_counter() - t0
        now = datetime.now(UTC)
        rec.failed(duration, status)
        rec.dead_lettered()
        return Failure(
            self.name, status, attempts, duration, exc, reason, first_failure or now, now
        )


class Route:
    """The runners that match one concrete event type, with their recorders."""

    __slots__ = (
        "all_async",
        "every_plain",
        "fast",
        "names",
        "plain",
        "published",
        "runners",
        "single",
        "type_recorder",
    )

    def __init__(
        self,
        runners: tuple[tuple[Runner, HandlerRecorder], ...],
        type_recorder: EventTypeRecorder,
    ) -> None:
        self.runners = runners
        self.single = runners[0] if len(runners) == 1 else None
        # The single runner when it can be awaited directly by publish (no policy).
        self.plain = self.single if self.single is not None and self.single[0].plain else None
        # No handler with a policy: publish and replay run them with run_plain_route.
        self.every_plain = all(runner.plain for runner, _ in runners)
        self.all_async = self.every_plain and all(runner.is_async for runner, _ in runners)
        self.names = tuple(runner.name for runner, _ in runners)
        self.type_recorder = type_recorder
        self.published = type_recorder.published
        # What the C publish path (core._speedups) needs for a single plain handler:
        # (handler, type recorder, handler recorder, names, is_async).
        self.fast = (
            (self.plain[0].fn, type_recorder, self.plain[1], self.names, self.plain[0].is_async)
            if self.plain is not None
            else None
        )


class _Resume:
    """Drives a coroutine that already ran up to its first suspension: re-yields the
    future it was waiting on to the task running us, then keeps forwarding sends and
    throws (cancellation included) until the coroutine returns."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Any, yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, HandlerOutcome]:
        coro, yielded = self.coro, self.yielded
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    outcome: HandlerOutcome = stop.value
                    return outcome
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    outcome = stop.value
                    return outcome


async def _continue(coro: Any, yielded: Any) -> HandlerOutcome:
    return await _Resume(coro, yielded)


async def _outcome_of(task: asyncio.Task[HandlerOutcome], name: str) -> HandlerOutcome:
    """The outcome of a handler's task; CANCELLED when the bus cancelled that task
    (aclose past its timeout) while the publisher itself was not cancelled."""
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if task.cancelled() and (current is None or not current.cancelling()):
            return HandlerOutcome(name, OutcomeStatus.CANCELLED, 1, 0.0)
        raise


async def _finish_plain(
    runner: Runner, rec: HandlerRecorder, coro: Any, yielded: Any, t0: float
) -> HandlerOutcome:
    """The rest of a plain handler that suspended during its eager start."""
    try:
        await _Resume(coro, yielded)
    except Exception as exc:
        return runner.failed_once(rec, exc, t0)
    return runner.succeeded_once(rec, t0)


def _start_plain(
    runner: Runner, rec: HandlerRecorder, event: Event, tasks: set[asyncio.Task[Any]], t0: float
) -> HandlerOutcome | asyncio.Task[HandlerOutcome] | None:
    """Start one plain handler eagerly: None when it finished (ok), its failure, or
    the task that finishes it when it suspended."""
    try:
        if not runner.is_async:  # an inline sync handler
            runner.fn(event)
            return None
        coro = runner.fn(event)
        yielded = coro.send(None)
    except StopIteration:
        return None
    except Exception as exc:
        return runner.failed_once(rec, exc, t0)
    return _spawn(runner, rec, coro, yielded, t0, tasks)


def _spawn(
    runner: Runner,
    rec: HandlerRecorder,
    coro: Any,
    yielded: Any,
    t0: float,
    tasks: set[asyncio.Task[Any]],
) -> asyncio.Task[HandlerOutcome]:
    """Give a plain handler that suspended a task of its own to finish in."""
    task = asyncio.get_running_loop().create_task(_finish_plain(runner, rec, coro, yielded, t0))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


async def _plain_outcomes(
    route: Route,
    event: Event,
    tasks: set[asyncio.Task[Any]],
    durations: list[float],
    first: HandlerOutcome | asyncio.Task[HandlerOutcome],
) -> list[HandlerOutcome]:
    """The rest of a plain route after its first exception to the rule: handler
    ``len(durations)`` failed (``first`` is its outcome) or suspended (``first`` is its
    task). Runs the remaining handlers, waits for the suspended ones and returns every
    outcome in subscription order."""
    start = len(durations)
    items = [first]
    t = perf_counter()
    for runner, rec in route.runners[start + 1 :]:
        item = _start_plain(runner, rec, event, tasks, t)
        now = perf_counter()
        if item is None:
            rec.succeeded(now - t)
            item = HandlerOutcome(runner.name, _OK, 1, now - t)
        items.append(item)
        t = now
    outcomes = [
        HandlerOutcome(name, _OK, 1, d) for name, d in zip(route.names, durations, strict=False)
    ]
    for index, item in enumerate(items, start):
        if isinstance(item, asyncio.Task):
            item = await _outcome_of(item, route.names[index])
        outcomes.append(item)
    return outcomes


async def run_plain_route(
    route: Route, event: Event, tasks: set[asyncio.Task[Any]]
) -> tuple[list[float], list[HandlerOutcome] | None]:
    """``run_route`` for a route whose handlers are all plain (async, or sync marked
    inline; no policy), called with the dispatch context already set. Each handler is
    started eagerly in the caller's task (no ``Runner.run`` layer); one clock reading
    ends a handler's duration and starts the next one's. Returns the durations and None
    when every handler finished without suspending or failing (the common case, whose
    outcomes the caller builds lazily); otherwise every outcome, in subscription order,
    once the suspended handlers finished."""
    durations: list[float] = []
    t = perf_counter()
    if route.all_async:
        # The lean loop for async handlers: on success nothing but the clock, the
        # recorder and the duration; the first failure or suspension hands the rest
        # of the route to _plain_outcomes.
        for runner, rec in route.runners:
            try:
                coro = runner.fn(event)
                yielded = coro.send(None)
            except StopIteration:
                now = perf_counter()
                rec.succeeded(now - t)
                durations.append(now - t)
                t = now
                continue
            except Exception as exc:
                first: Any = runner.failed_once(rec, exc, t)
            else:
                first = _spawn(runner, rec, coro, yielded, t, tasks)
            return durations, await _plain_outcomes(route, event, tasks, durations, first)
        return durations, None
    for runner, rec in route.runners:
        item = _start_plain(runner, rec, event, tasks, t)
        if item is not None:
            return durations, await _plain_outcomes(route, event, tasks, durations, item)
        now = perf_counter()
        rec.succeeded(now - t)
        durations.append(now - t)
        t = now
    return durations, None


async def run_route(
    route: Route,
    event: Event,
    context: Event | DispatchContext,
    tasks: set[asyncio.Task[Any]],
) -> list[HandlerOutcome]:
    """Run every runner of ``route`` on ``event`` concurrently; one outcome each, in
    subscription order. Suspended handlers' tasks are added to ``tasks`` while they run
    (so that the bus can wait for or cancel them)."""
    token = _dispatch.set(context)
    single = route.single
    if single is not None:
        try:
            return [await single[0].run(event, single[1])]
        finally:
            _dispatch.reset(token)
    outcomes: list[Any] = []
    waiting: list[tuple[int, asyncio.Task[HandlerOutcome]]] = []
    try:
        for index, (runner, rec) in enumerate(route.runners):
            coro = runner.run(event, rec)
            try:
                yielded = coro.send(None)
            except StopIteration as stop:
                outcomes.append(stop.value)
                continue
            task = asyncio.get_running_loop().create_task(_continue(coro, yielded))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            waiting.append((index, task))
            outcomes.append(None)
    finally:
        _dispatch.reset(token)
    for index, task in waiting:
        outcomes[index] = await _outcome_of(task, route.names[index])
    return outcomes


Middleware = Callable[
    [Event, Callable[[Event], Awaitable[list[HandlerOutcome]]]],
    Awaitable[list[HandlerOutcome]],
]
