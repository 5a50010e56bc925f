"""Hooks: the seam for tracing and other observers of a bus.

A hook is any callable that takes one ``PublishDetails``; ``bus.on_publish(hook)``
calls it for every event before the event reaches its handlers (after the durable
append, so the details carry the sequence number). A details object is built only when
a hook is installed: a bus without hooks pays nothing. A hook that raises is reported
once (logged and counted in ``bus.internal_errors``) and removed: an observer must never
stop dispatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .events import Event

__all__ = ["PublishDetails", "PublishHook"]


@dataclass(frozen=True, slots=True)
class PublishDetails:
    """One event on its way to the handlers. ``seq`` is its log position (None without
    a store); ``group`` the consumer group dispatching it (None without a store);
    ``source`` says why it is dispatched (``live``, ``catch-up``)."""

    event: Event
    seq: int | None
    group: str | None
    source: str
    redelivery: bool = False


class PublishHook(Protocol):
    """Called with every event's details before dispatch; must not block."""

    def __call__(self, details: PublishDetails, /) -> object: ...
