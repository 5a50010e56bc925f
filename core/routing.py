"""Routing: subscriptions, handlers and routers.

A ``Subscription[E]`` ties a handler for events of type ``E`` (and its subclasses) to
a name and a policy. ``Handler[E]`` is generic so that mypy rejects a handler
subscribed to an event type it cannot accept. A ``Router`` is the declarative set of
subscriptions a module exposes; buses include routers.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from .errors import SubscriptionError
from .events import Event
from .policies import BreakerPolicy, HandlerPolicy, RetryPolicy

__all__ = ["Handler", "Router", "Subscription", "handler_name", "make_policy"]

E = TypeVar("E", bound=Event)
F = TypeVar("F", bound=Callable[..., Any])

Handler: TypeAlias = Callable[[E], Awaitable[object]] | Callable[[E], object]
"""An async or sync callable taking one event of type ``E``."""


def handler_name(handler: Callable[..., object]) -> str:
    """The default name of a handler: ``module.qualname`` (for objects, of their class)."""
    target: Any = handler
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = type(handler)
    module = getattr(target, "__module__", None) or "?"
    qualname = getattr(target, "__qualname__", None) or repr(handler)
    return f"{module}.{qualname}"


_ASYNCIO_MARK = getattr(asyncio.coroutines, "_is_coroutine", None)


def coroutine_function(fn: F) -> F:
    """Mark ``fn``, a plain function that returns a coroutine, as a coroutine function
    (``inspect.markcoroutinefunction`` on 3.12+, asyncio's marker on 3.11)."""
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:
        marked: F = mark(fn)
        return marked
    setattr(fn, "_is_coroutine", _ASYNCIO_MARK)  # noqa: B010 - what 3.11's asyncio reads
    return fn


def _is_coroutine_function(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or (
        _ASYNCIO_MARK is not None and getattr(fn, "_is_coroutine", None) is _ASYNCIO_MARK
    )


def is_async_handler(handler: Callable[..., object]) -> bool:
    if _is_coroutine_function(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - objects with async __call__
    return call is not None and _is_coroutine_function(call)


def make_policy(
    *,
    timeout: float | None = None,
    max_concurrency: int | None = None,
    retry: RetryPolicy | int | None = None,
    breaker: BreakerPolicy | None = None,
    inline: bool = False,
) -> HandlerPolicy:
    """A HandlerPolicy from subscribe()'s keywords; ``retry=3`` means RetryPolicy(3)."""
    if isinstance(retry, int):
        retry = RetryPolicy(max_attempts=retry)
    if retry is None:
        return HandlerPolicy(
            timeout=timeout, max_concurrency=max_concurrency, breaker=breaker, inline=inline
        )
    return HandlerPolicy(
        timeout=timeout,
        max_concurrency=max_concurrency,
        retry=retry,
        breaker=breaker,
        inline=inline,
    )


@dataclass(frozen=True, slots=True)
class Subscription(Generic[E]):
    """One handler subscribed to ``event_type`` (and its subclasses)."""

    event_type: type[E]
    handler: Handler[E]
    name: str
    policy: HandlerPolicy

    @property
    def is_async(self) -> bool:
        return is_async_handler(self.handler)


class Router:
    """A set of subscriptions to hand to a bus (``bus.include(router)``).

    ``pubsub run handlers.py`` takes every module-level Router of the file.
    """

    def __init__(self, *, name: str | None = None) -> None:
        self.name = name
        self._subscriptions: list[Subscription[Any]] = []

    @property
    def subscriptions(self) -> list[Subscription[Any]]:
        return list(self._subscriptions)

    def add(
        self,
        event_type: type[E],
        handler: Handler[E],
        *,
        name: str | None = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        retry: RetryPolicy | int | None = None,
        breaker: BreakerPolicy | None = None,
        inline: bool = False,
    ) -> Subscription[E]:
        """Subscribe ``handler`` to ``event_type``; returns the subscription."""
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise SubscriptionError(
                f"cannot subscribe to {event_type!r}: subscribe to an Event subclass"
            )
        if not callable(handler):
            raise SubscriptionError(f"cannot subscribe {handler!r}: a handler must be callable")
        sub = Subscription(
            event_type,
            handler,
            name or handler_name(handler),
            make_policy(
                timeout=timeout,
                max_concurrency=max_concurrency,
                retry=retry,
                breaker=breaker,
                inline=inline,
            ),
        )
        if any(s.name == sub.name for s in self._subscriptions):
            raise SubscriptionError(
                f"a handler named {sub.name!r} is already subscribed: pass name='...' to "
                "tell them apart"
            )
        self._subscriptions.append(sub)
        return sub

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
        """Decorator form of ``add``: ``@router.subscribe(OrderPlaced, retry=3)``."""

        def decorate(handler: Handler[E]) -> Handler[E]:
            self.add(
                event_type,
                handler,
                name=name,
                timeout=timeout,
                max_concurrency=max_concurrency,
                retry=retry,
                breaker=breaker,
                inline=inline,
            )
            return handler

        return decorate

    def __repr__(self) -> str:
        return f"Router(name={self.name!r}, subscriptions={len(self._subscriptions)})"
