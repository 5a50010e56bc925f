"""Routing: subscriptions, handlers and routers.

A ``Subscription[E, R]`` ties a handler for events of type ``E`` (and its subclasses),
returning ``R``, to a name and a policy. ``Handler[E, R]`` is generic so that mypy
rejects a handler subscribed to an event type it cannot accept and infers what its
outcomes carry. A ``Router`` is the declarative set of subscriptions a module exposes;
buses include routers.

Handler names are what the DLQ, metrics and ``--handler`` refer to, so they are stable
across processes. The default name is ``module.qualname`` of the callable (of the
wrapped function for a ``functools.partial``, of the class for a callable object); a
module run as a script (``__main__``) is named by its file's stem, as ``pubsub run
file.py`` names it. The bus resolves collisions (see ``EventBus.include``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeAlias, TypedDict, TypeVar, Unpack, overload

from .errors import SubscriptionError
from .events import Event
from .policies import BreakerPolicy, HandlerPolicy, RetryPolicy
from .results import PublishResult

__all__ = [
    "Handler",
    "HandlerContext",
    "Router",
    "SubscribeOptions",
    "Subscriber",
    "Subscription",
    "handler_name",
    "make_policy",
    "subscriber",
    "takes_context",
]

E = TypeVar("E", bound=Event)
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

Handler: TypeAlias = (
    Callable[[E], Awaitable[R]]
    | Callable[[E], R]
    | Callable[[E, "HandlerContext[E]"], Awaitable[R]]
    | Callable[[E, "HandlerContext[E]"], R]
)
"""An async or sync callable taking one event of type ``E`` (and, optionally, a
``HandlerContext`` as a second argument) and returning ``R``."""


class SubscribeOptions(TypedDict, total=False):
    """The keywords of ``subscribe``/``add``: ``name`` (default: see the module
    docstring), ``timeout`` (seconds per attempt), ``max_concurrency``, ``retry`` (a
    RetryPolicy, or the number of attempts), ``breaker``, ``inline`` (run a sync
    handler on the loop)."""

    name: str | None
    timeout: float | None
    max_concurrency: int | None
    retry: RetryPolicy | int | None
    breaker: BreakerPolicy | None
    inline: bool


class _Publisher(Protocol):
    async def publish_async(
        self, event: Event, *, raise_on_error: bool | None = None
    ) -> PublishResult: ...


class HandlerContext(Generic[E]):
    """What a handler receives as its second argument when it takes one
    (``async def ship(event: OrderPlaced, ctx: HandlerContext[OrderPlaced])``): the
    event, the attempt number (1-based), whether this delivery may be a repeat (a
    redelivery after a crash, a replay, a re-drive), and ``publish`` for follow-up
    events on the bus that is dispatching this one. A follow-up made inside the
    handler records this event as its cause and inherits its correlation id; on a bus
    with a store it is appended durably (and dispatched) before ``publish`` returns."""

    __slots__ = ("_bus", "attempt", "event", "redelivery")

    def __init__(self, bus: _Publisher, event: E, attempt: int, redelivery: bool) -> None:
        self._bus = bus
        self.event = event
        self.attempt = attempt
        self.redelivery = redelivery

    async def publish(self, event: Event, *, raise_on_error: bool | None = None) -> PublishResult:
        """Publish a follow-up event on the dispatching bus."""
        return await self._bus.publish_async(event, raise_on_error=raise_on_error)

    def __repr__(self) -> str:
        return (
            f"HandlerContext(event={type(self.event).__name__}, attempt={self.attempt}, "
            f"redelivery={self.redelivery})"
        )


def _module_name(module: str) -> str:
    """The stable name of a module: a script run as ``__main__`` is named by its
    file's stem (or, under ``python -m``, by its real name)."""
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name)
    file = getattr(main, "__file__", None)
    return Path(file).stem if file else module


def handler_name(handler: Callable[..., object]) -> str:
    """The default name of a handler: ``module.qualname`` of the function (of the
    wrapped function for a partial, of the class for a callable object)."""
    target: Any = handler
    while isinstance(target, functools.partial):
        target = target.func
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = type(target)
    module = _module_name(getattr(target, "__module__", None) or "?")
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
    while isinstance(handler, functools.partial):
        handler = handler.func
    if _is_coroutine_function(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - objects with async __call__
    return call is not None and _is_coroutine_function(call)


def takes_context(handler: Callable[..., object]) -> bool:
    """Does ``handler`` take a second required positional parameter (where the bus
    passes a ``HandlerContext``)?"""
    try:
        sig = inspect.signature(handler)
    except (TypeError, ValueError):
        return False
    required = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(required) >= 2


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
class Subscription(Generic[E, R]):
    """One handler subscribed to ``event_type`` (and its subclasses). ``named`` tells
    whether the name was given (``name=``) rather than derived from the handler."""

    event_type: type[E]
    handler: Handler[E, R]
    name: str
    policy: HandlerPolicy
    named: bool = False

    @property
    def is_async(self) -> bool:
        return is_async_handler(self.handler)


class Subscriber(Protocol[E]):
    """What ``subscribe(EventType)`` returns: a decorator that subscribes a handler of
    ``EventType`` and gives it back unchanged (mypy rejects a handler of another type)."""

    @overload
    def __call__(self, handler: Callable[[E], Awaitable[R]], /) -> Callable[[E], Awaitable[R]]: ...

    @overload
    def __call__(self, handler: Callable[[E], R], /) -> Callable[[E], R]: ...

    @overload
    def __call__(
        self, handler: Callable[[E, HandlerContext[E]], Awaitable[R]], /
    ) -> Callable[[E, HandlerContext[E]], Awaitable[R]]: ...

    @overload
    def __call__(
        self, handler: Callable[[E, HandlerContext[E]], R], /
    ) -> Callable[[E, HandlerContext[E]], R]: ...


class _Decorator(Generic[E]):
    __slots__ = ("_add", "_event_type", "_options")

    def __init__(
        self, add: Callable[..., object], event_type: type[E], options: SubscribeOptions
    ) -> None:
        self._add = add
        self._event_type = event_type
        self._options = options

    def __call__(self, handler: Any, /) -> Any:
        self._add(self._event_type, handler, **self._options)
        return handler


def subscriber(
    add: Callable[..., object], event_type: type[E], options: SubscribeOptions
) -> Subscriber[E]:
    """The decorator of ``subscribe``: calls ``add(event_type, handler, **options)``."""
    decorator: Subscriber[E] = _Decorator(add, event_type, options)
    return decorator


class Router:
    """A set of subscriptions to hand to a bus (``bus.include(router)``).

    ``pubsub run handlers.py`` takes every module-level Router of the file.
    """

    def __init__(self, *, name: str | None = None) -> None:
        self.name = name
        self._subscriptions: list[Subscription[Any, Any]] = []

    @property
    def subscriptions(self) -> list[Subscription[Any, Any]]:
        return list(self._subscriptions)

    @classmethod
    def of(
        cls, subscriptions: Iterable[Subscription[Any, Any]], *, name: str | None = None
    ) -> Router:
        """A Router carrying these subscriptions again: same handlers, names and
        policies (to hand a bus's subscriptions to another bus)."""
        router = cls(name=name)
        for sub in subscriptions:
            p = sub.policy
            router.add(
                sub.event_type,
                sub.handler,
                name=sub.name,
                timeout=p.timeout,
                max_concurrency=p.max_concurrency,
                retry=p.retry,
                breaker=p.breaker,
                inline=p.inline,
            )
        return router

    @overload
    def add(
        self,
        event_type: type[E],
        handler: Callable[[E], Awaitable[R]],
        /,
        **options: Unpack[SubscribeOptions],
    ) -> Subscription[E, R]: ...

    @overload
    def add(
        self, event_type: type[E], handler: Callable[[E], R], /, **options: Unpack[SubscribeOptions]
    ) -> Subscription[E, R]: ...

    @overload
    def add(
        self,
        event_type: type[E],
        handler: Callable[[E, HandlerContext[E]], Awaitable[R]],
        /,
        **options: Unpack[SubscribeOptions],
    ) -> Subscription[E, R]: ...

    @overload
    def add(
        self,
        event_type: type[E],
        handler: Callable[[E, HandlerContext[E]], R],
        /,
        **options: Unpack[SubscribeOptions],
    ) -> Subscription[E, R]: ...

    def add(
        self, event_type: type[E], handler: Any, /, **options: Unpack[SubscribeOptions]
    ) -> Subscription[E, Any]:
        """Subscribe ``handler`` to ``event_type``; returns the subscription. The same
        callable may be subscribed to several event types (one handler, one name, one
        policy); two different callables with one name are told apart by the bus that
        includes them (see ``EventBus.include``)."""
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise SubscriptionError(
                f"cannot subscribe to {event_type!r}: subscribe to an Event subclass"
            )
        if not callable(handler):
            raise SubscriptionError(f"cannot subscribe {handler!r}: a handler must be callable")
        name = options.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise SubscriptionError(f"handler name must be a non-empty string, got {name!r}")
        sub: Subscription[E, Any] = Subscription(
            event_type,
            handler,
            name or handler_name(handler),
            make_policy(
                timeout=options.get("timeout"),
                max_concurrency=options.get("max_concurrency"),
                retry=options.get("retry"),
                breaker=options.get("breaker"),
                inline=options.get("inline", False),
            ),
            named=name is not None,
        )
        for known in self._subscriptions:
            if known.name != sub.name:
                continue
            if known.handler is not sub.handler and known.named and sub.named:
                raise SubscriptionError(
                    f"two different handlers are both named {sub.name!r}: give each "
                    "its own name='...'"
                )
            if known.handler is sub.handler and known.event_type is sub.event_type:
                raise SubscriptionError(
                    f"handler {sub.name!r} is already subscribed to {event_type.__qualname__}"
                )
        self._subscriptions.append(sub)
        return sub

    def subscribe(self, event_type: type[E], **options: Unpack[SubscribeOptions]) -> Subscriber[E]:
        """Decorator form of ``add``: ``@router.subscribe(OrderPlaced, retry=3)``."""
        return subscriber(self.add, event_type, options)

    def __repr__(self) -> str:
        return f"Router(name={self.name!r}, subscriptions={len(self._subscriptions)})"
