"""Wiring: the bus a command runs — the opened store plus the routers (and the
subscriptions and middleware of ready-made buses) that the TARGETs contributed."""

from __future__ import annotations

from typing import Any

from core.bus import EventBus
from core.errors import PluginLoadError
from core.routing import Router, Subscription
from core.store import EventStore

from .targets import LoadedTargets

__all__ = ["adopt_bus", "build_bus", "include_new"]


def include_new(bus: EventBus, subs: list[Subscription[Any, Any]], name: str) -> None:
    """Include ``subs``, skipping each one the bus already has: the same subscription
    (same name, handler object, event type and policy) reached twice, as when a module
    holds both a Router and an EventBus that includes it, or a TARGET is given twice.
    Another handler under a name already taken is still a SubscriptionError."""
    present = bus.subscriptions
    fresh = [sub for sub in subs if not any(_same(sub, had) for had in present)]
    if fresh:
        bus.include(Router.of(fresh, name=name))


def _same(a: Subscription[Any, Any], b: Subscription[Any, Any]) -> bool:
    return (
        a.name == b.name
        and a.handler is b.handler
        and a.event_type is b.event_type
        and a.policy == b.policy
    )


def build_bus(
    loaded: LoadedTargets,
    store: EventStore,
    *,
    group: str,
    consume: bool = True,
    **options: Any,
) -> EventBus:
    """A bus on ``store`` with every loaded router. A TARGET that exposes its own
    EventBus contributes its subscriptions and its middleware (its own store, if any, is
    not used: the command line's ``--db``/``--store`` is). What is reached twice (a
    router, a bus, one of their subscriptions, middleware or hooks) is taken once."""
    if loaded.empty:
        raise PluginLoadError("TARGET", "no routers were loaded: pass a handlers file or module")
    bus = EventBus(store, group=group, consume=consume, **options)
    for _, router in loaded.routers:
        include_new(bus, router.subscriptions, repr(router))
    seen: list[EventBus] = []
    for _, source in loaded.buses:
        if any(source is other for other in seen):
            continue
        seen.append(source)
        adopt_bus(bus, source)
    return bus


def adopt_bus(bus: EventBus, source: EventBus) -> None:
    """Give ``bus`` what a ready-made ``source`` bus holds: its subscriptions, its
    middleware and its hooks, each only if ``bus`` does not have it yet."""
    include_new(bus, source.subscriptions, f"from {source!r}")
    for mw in source.middleware:
        if not any(mw is had for had in bus.middleware):
            bus.add_middleware(mw)
    for hook in source.hooks:
        if not any(hook is had for had in bus.hooks):
            bus.on_publish(hook)
