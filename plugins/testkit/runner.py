"""Runner: the handlers of a module, run against a list of events, in a test.

``run_handlers("handlers.py", events)`` loads its target as ``pubsub run`` does (a file
path, a dotted module, either with ``:attribute``; every module-level Router and the
subscriptions, middleware and hooks of every module-level EventBus), includes it in a
bus, publishes the events one after another and returns each ``PublishResult``. Without
a ``bus``, the run gets a bus of its own on a fake clock (retries and timeouts take no
real time), on ``store`` if one is given, closed at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeAlias, cast

from core.bus import EventBus
from core.clock import Clock, RandomSource
from core.events import Event
from core.results import PublishResult
from core.routing import Router
from core.store import EventStore
from core.testing import FakeClock, ScriptedRandom

__all__ = ["MakeBus", "RunHandlers", "Target", "include_targets", "run_handlers"]

Target: TypeAlias = str | os.PathLike[str] | Router | EventBus | ModuleType
"""What ``run_handlers`` accepts: a ``pubsub run`` TARGET (a path or a dotted module,
with an optional ``:attribute``), or the Router, EventBus or module itself."""


class RunHandlers(Protocol):
    """The ``pubsub_run`` fixture: ``run_handlers`` on the test's ``pubsub_bus`` (or on
    the ``bus`` given)."""

    async def __call__(
        self,
        target: Target | Sequence[Target],
        events: Iterable[Event],
        *,
        bus: EventBus | None = None,
        app_dir: Path | None = None,
        raise_on_error: bool | None = None,
    ) -> list[PublishResult]: ...


class MakeBus(Protocol):
    """The ``pubsub_make_bus`` fixture: a started bus on the test's fake clock and
    scripted randomness, with any other EventBus option; closed after the test."""

    async def __call__(self, store: EventStore | None = None, **options: Any) -> EventBus: ...


def _load(targets: Sequence[Target], app_dir: Path | None) -> tuple[list[Router], list[EventBus]]:
    # The command line's own TARGET loader: it imports only core (never typer or rich).
    from pubsub_cli.targets import load_targets

    routers: list[Router] = []
    buses: list[EventBus] = []
    specs: list[str] = []
    for target in targets:
        if isinstance(target, Router):
            routers.append(target)
        elif isinstance(target, EventBus):
            buses.append(target)
        elif isinstance(target, ModuleType):
            specs.append(target.__name__)
        elif isinstance(target, str | os.PathLike):
            specs.append(os.fspath(target))
        else:
            raise TypeError(
                f"cannot run handlers from {target!r}: pass a handlers file, a dotted "
                "module name, a Router, an EventBus or a module"
            )
    if specs:
        loaded = load_targets(specs, app_dir=app_dir)
        routers += [router for _, router in loaded.routers]
        buses += [bus for _, bus in loaded.buses]
    return routers, buses


def include_targets(
    bus: EventBus, target: Target | Sequence[Target], *, app_dir: Path | None = None
) -> None:
    """Give ``bus`` the subscriptions (and, of a target's EventBus, the middleware and
    hooks) that ``target`` holds, as ``pubsub run`` would."""
    # The command line's own wiring: it imports only core (never typer or rich).
    from pubsub_cli.wiring import adopt_bus, include_new

    targets = list(target) if isinstance(target, list | tuple) else [cast(Target, target)]
    routers, buses = _load(targets, app_dir)
    for router in routers:
        include_new(bus, router.subscriptions, "run_handlers")
    for source in buses:
        if source is not bus:
            adopt_bus(bus, source)


async def run_handlers(
    target: Target | Sequence[Target],
    events: Iterable[Event],
    *,
    bus: EventBus | None = None,
    store: EventStore | None = None,
    clock: Clock | None = None,
    rng: RandomSource | None = None,
    app_dir: Path | None = None,
    raise_on_error: bool | None = None,
) -> list[PublishResult]:
    """Publish ``events`` in order to the handlers of ``target`` and return what each
    publish reported. On ``bus`` when given (it stays open); otherwise on a new bus
    (on ``store`` if given, else without one; ``clock`` defaults to a FakeClock that
    autojumps, ``rng`` to a ScriptedRandom that pins jitter to the top of its range),
    closed before returning. A handler's failure is an outcome in its result, unless
    ``raise_on_error`` asks for a DispatchError."""
    if bus is not None and (store is not None or clock is not None or rng is not None):
        raise TypeError("run_handlers: pass either bus= or store=/clock=/rng=, not both")
    own = bus is None
    if bus is None:
        bus = EventBus(
            store,
            clock=clock if clock is not None else FakeClock(),
            rng=rng if rng is not None else ScriptedRandom(),
        )
    try:
        include_targets(bus, target, app_dir=app_dir)
        return [await bus.publish_async(e, raise_on_error=raise_on_error) for e in events]
    finally:
        if own:
            await bus.aclose()
