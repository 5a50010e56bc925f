"""Flaky: a handler that fails a given number of times, then behaves.

``fail_times(n)`` wraps a handler so that its first ``n`` calls raise (``exc``) and the
later ones call the handler. With the fake clock of the pytest plugin, a retry test is
then exact: the outcome's ``attempts`` is ``n + 1`` and the clock moved by exactly the
backoff of ``n`` retries.

    @router.subscribe(OrderPlaced, retry=RetryPolicy(max_attempts=3, base=1.0))
    @fail_times(2, exc=ConnectionError)
    async def charge(event: OrderPlaced) -> None: ...

The wrapper keeps the handler's name (what dead letters and ``Recorder.received`` refer
to), its signature (a handler taking a ``HandlerContext`` still gets one) and its kind:
an async handler stays async, a sync one stays sync (and runs in the bus's threads).
A wrapper counts calls for as long as it lives: one made at module level (as above) goes
on counting from one test to the next, so wrap inside the test, call ``reset()``, or use
``per_event=True`` (each event fails its first ``n`` calls).
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from core.routing import is_async_handler

__all__ = ["FailTimes", "InjectedFailure", "fail_times"]

H = TypeVar("H", bound=Callable[..., Any])


class InjectedFailure(RuntimeError):
    """What a ``fail_times`` wrapper raises by default (retried by every default
    RetryPolicy, as any Exception is)."""


class FailTimes:
    """A decorator that makes the handlers it wraps fail ``failures`` times first: in
    all (the first calls, whatever the event) or, with ``per_event``, for each event
    (the first calls with each event id). ``calls`` counts every call, ``failed`` the
    ones that raised."""

    def __init__(
        self,
        failures: int,
        *,
        exc: type[BaseException] | BaseException = InjectedFailure,
        per_event: bool = False,
    ) -> None:
        if failures < 0:
            raise ValueError(f"failures must be >= 0, got {failures!r}")
        if not (isinstance(exc, BaseException) or issubclass(exc, BaseException)):
            raise TypeError(f"exc must be an exception class or instance, got {exc!r}")
        self.failures = failures
        self.exc = exc
        self.per_event = per_event
        self.calls = 0
        self.failed = 0
        self._seen: dict[object, int] = {}
        self._lock = threading.Lock()  # sync handlers are called from the bus's threads

    def reset(self) -> None:
        """Start again: the next ``failures`` calls fail (a wrapper made at module level
        keeps its count from one test to the next until reset)."""
        with self._lock:
            self.calls = 0
            self.failed = 0
            self._seen.clear()

    def _fail_now(self, event: object) -> int:
        """Count a call; the failure's number (1-based) when this call must fail, else 0."""
        with self._lock:
            self.calls += 1
            if self.per_event:
                key = getattr(event, "id", id(event))
                n = self._seen[key] = self._seen.get(key, 0) + 1
            else:
                n = self.calls
            if n > self.failures:
                return 0
            self.failed += 1
            return n

    def _error(self, n: int) -> BaseException:
        if isinstance(self.exc, BaseException):
            return self.exc
        return self.exc(f"fail_times: injected failure {n} of {self.failures}")

    def __call__(self, handler: H) -> H:
        """Wrap ``handler`` (a function, bound method, partial or callable object)."""
        if not callable(handler):
            raise TypeError(f"fail_times wraps a handler, got {handler!r}")
        if is_async_handler(handler):

            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                n = self._fail_now(args[0] if args else None)
                if n:
                    raise self._error(n)
                return await handler(*args, **kwargs)

            wrapper: Callable[..., Any] = async_wrapper
        else:

            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                n = self._fail_now(args[0] if args else None)
                if n:
                    raise self._error(n)
                return handler(*args, **kwargs)

            wrapper = sync_wrapper
        functools.update_wrapper(wrapper, handler)
        # The default handler name is module.qualname of the function, of a partial's
        # function, of a callable object's class: the wrapper is named the same way.
        target: Any = handler
        while isinstance(target, functools.partial):
            target = target.func
        if not (inspect.isfunction(target) or inspect.ismethod(target)):
            target = type(target)
        wrapper.__module__ = target.__module__
        wrapper.__qualname__ = target.__qualname__
        return wrapper  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"FailTimes({self.failures}, exc={self.exc!r}, per_event={self.per_event}, "
            f"calls={self.calls}, failed={self.failed})"
        )


def fail_times(
    failures: int,
    *,
    exc: type[BaseException] | BaseException = InjectedFailure,
    per_event: bool = False,
) -> FailTimes:
    """A decorator making a handler raise ``exc`` on its first ``failures`` calls (for
    each event with ``per_event``), then call through. ``exc`` is an exception class
    (raised with a message naming the failure) or an instance (raised as is)."""
    return FailTimes(failures, exc=exc, per_event=per_event)
