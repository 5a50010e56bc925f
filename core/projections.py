"""Projections: handler objects whose state can be saved at a log position and
restored later, so that a read model is rebuilt from a snapshot plus the tail of the
log instead of from the whole history.

A projection is a subscribed handler object with ``snapshot() -> dict`` and
``restore(state) -> None``. Its snapshots are named after its subscription.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import PubSubError, StoreError
from .store import Snapshot

if TYPE_CHECKING:
    from .bus import EventBus

__all__ = ["Projection", "RestoreReport", "create_snapshots", "projections_of", "restore_snapshots"]


@runtime_checkable
class Projection(Protocol):
    """State built from events that can be saved and restored."""

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """The snapshots loaded and how many later events were replayed on top of them."""

    snapshots: list[Snapshot]
    replayed: int


def projections_of(bus: EventBus) -> dict[str, Projection]:
    """The bus's subscribed handlers that are projections, by subscription name."""
    found: dict[str, Projection] = {}
    for sub in bus.subscriptions:
        handler: object = sub.handler
        owner = getattr(handler, "__self__", handler)  # a bound method's object
        if isinstance(owner, Projection):
            found[sub.name] = owner
    return found


def _need_store(bus: EventBus) -> Any:
    if bus.store is None:
        raise StoreError("snapshots need a store: open the bus with a store")
    return bus.store


async def create_snapshots(bus: EventBus) -> list[Snapshot]:
    """Catch the bus up, then save every projection's state at the last dispatched seq."""
    store = _need_store(bus)
    projections = projections_of(bus)
    if not projections:
        raise PubSubError("no projection is loaded: a projection has snapshot() and restore()")
    await bus.catch_up()
    await bus.drain()
    seq = await store.last_seq()
    return [await store.save_snapshot(name, seq, p.snapshot()) for name, p in projections.items()]


async def restore_snapshots(bus: EventBus, *, snapshot_id: int | None = None) -> RestoreReport:
    """Load the chosen (default: each projection's latest) snapshot, then replay only the
    events after it to the projections. Moves no checkpoint, appends nothing."""
    store = _need_store(bus)
    projections = projections_of(bus)
    if not projections:
        raise PubSubError("no projection is loaded: a projection has snapshot() and restore()")
    chosen: list[Snapshot] = []
    if snapshot_id is not None:
        snap = await store.load_snapshot(snapshot_id)
        if snap is None:
            raise PubSubError(f"no snapshot with id {snapshot_id}: see 'pubsub snapshot list'")
        if snap.name not in projections:
            raise PubSubError(
                f"snapshot {snapshot_id} belongs to {snap.name!r}, which is not loaded"
            )
        chosen.append(snap)
    else:
        for name in projections:
            latest = await store.latest_snapshot(name)
            if latest is not None:
                chosen.append(latest)
    restored = {s.name for s in chosen}
    for snap in chosen:
        projections[snap.name].restore(snap.state)
    replayed = 0
    # Projections without a snapshot start from the beginning of the log.
    starts = dict.fromkeys(projections, 0)
    for snap in chosen:
        starts[snap.name] = snap.seq
    for start in sorted(set(starts.values())):
        names = [n for n, s in starts.items() if s == start and (n in restored or start == 0)]
        report = await bus.replay(store.read(from_seq=start + 1), handlers=names)
        replayed += report.events
    return RestoreReport(chosen, replayed)
