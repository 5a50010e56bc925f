"""Types of the optional C extension core._speedups (see core/_speedups.c)."""

from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any, final

from .dispatch import Route
from .events import DispatchContext, Event
from .results import PublishResult, _CompletedResult

@final
class Publisher:
    """The one-handler publish path of an EventBus."""

    @property
    def completed(self) -> int: ...
    enabled: bool
    def __init__(
        self,
        routes: dict[type, Route],
        var: ContextVar[Event | DispatchContext | None],
        result_type: type[_CompletedResult],
        active: Callable[[int], None],
        failed: Callable[
            [Route, Event, Exception, float, bool | None], Coroutine[Any, Any, PublishResult]
        ],
        general: Callable[[Event, bool | None], Coroutine[Any, Any, PublishResult]],
    ) -> None: ...
    def __call__(
        self, event: Event, raise_on_error: bool | None, /
    ) -> Coroutine[Any, Any, PublishResult]: ...

@final
class Call(Coroutine[Any, Any, PublishResult]):
    """A one-handler publish in progress: await it."""

    def send(self, value: Any, /) -> Any: ...
    def throw(self, typ: Any, val: Any = ..., tb: Any = ..., /) -> Any: ...
    def close(self) -> None: ...
    def __await__(self) -> Any: ...

RING: int

class TypeCount:
    """Publishes of one event type."""

    count: int
    def published(self) -> None: ...

class Durations:
    """Counts and durations of one handler on one event type."""

    n: int
    failed_n: int
    timed_out: int
    rejected: int
    retries: int
    dead_letters: int
    total: float
    max: float
    @property
    def samples(self) -> list[float]: ...
    def succeeded(self, duration: float, /) -> None: ...
