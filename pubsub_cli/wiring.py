"""Wiring: the bus a command runs — the opened store plus the routers (and the
subscriptions and middleware of ready-made buses) that the TARGETs contributed."""

from __future__ import annotations

from typing import Any

from core.bus import EventBus
from core.errors import PluginLoadError
from core.routing import Router
from core.store import EventStore

from .targets import LoadedTargets

__all__ = ["build_bus"]


def _router_of(bus: EventBus) -> Router:
    """A Router carrying a ready-made bus's subscriptions, policies included."""
    router = Router(name=f"from {bus!r}")
    for sub in bus.subscriptions:
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
    not used: the command line's ``--db``/``--store`` is)."""
    if loaded.empty:
        raise PluginLoadError("TARGET", "no routers were loaded: pass a handlers file or module")
    bus = EventBus(store, group=group, consume=consume, **options)
    for _, router in loaded.routers:
        bus.include(router)
    for _, source in loaded.buses:
        bus.include(_router_of(source))
        for mw in source.middleware:
            bus.add_middleware(mw)
        for hook in source.hooks:
            bus.on_publish(hook)
    return bus
