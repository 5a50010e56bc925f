"""Development mode: the checks a bus with ``dev_mode=True`` makes that a production
bus skips for speed. An event must be a frozen dataclass deriving from ``Event`` that a
store could encode; a handler must take the event as its one positional parameter (and
optionally a ``HandlerContext`` as a second), annotated with a type the subscribed
event type fits.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from .codec import encode
from .errors import EventDecodeError, SubscriptionError
from .events import Event, is_frozen_dataclass
from .routing import Subscription

__all__ = ["check_event", "check_signature"]


def check_event(event: object, *, encodes: bool = True) -> None:
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


def check_signature(sub: Subscription[Any, Any]) -> None:
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
    if len(params) not in (1, 2) or extra_required:
        raise SubscriptionError(
            f"handler {sub.name!r} must take the event as its one positional parameter "
            f"(and optionally a HandlerContext as a second one); its signature is {sig}"
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
