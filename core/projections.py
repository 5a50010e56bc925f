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
    """The snapshots loaded, how many later events were replayed on top of them, and
    ``seq``: the log position the restored projections now reflect (every event up to
    it, none after it)."""

    snapshots: list[Snapshot]
    replayed: int
    seq: int = 0


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


async def create_snapshots(
    bus: EventBus, *, restored: RestoreReport | None = None
) -> list[Snapshot]:
    """Save every projection's state at the last sequence number it has processed.

    Without ``restored`` the bus catches up as its group's consumer and the position is
    the last sequence the bus dispatched. On a bus that does not consume, projections
    hold what ``restore_snapshots`` replayed into them: pass its report. Never the end
    of the log as read now: an event appended after the catch-up is not in the state,
    and a restore from this snapshot must still replay it."""
    store = _need_store(bus)
    projections = projections_of(bus)
    if not projections:
        raise PubSubError("no projection is loaded: a projection has snapshot() and restore()")
    if restored is not None:
        seq = restored.seq
    else:
        await bus.catch_up()
        await bus.drain()
        seq = bus.statistics().last_seq
    return [await store.save_snapshot(name, seq, p.snapshot()) for name, p in projections.items()]


async def restore_snapshots(bus: EventBus, *, snapshot_id: int | None = None) -> RestoreReport:
    """Load the chosen (default: each projection's latest) snapshot, then replay only the
    events after it, up to the end of the log as it was when the restore began, to the
    projections. Moves no checkpoint, appends nothing."""
    store = _need_store(bus)
    projections = projections_of(bus)
    if not projections:
        raise PubSubError("no projection is loaded: a projection has snapshot() and restore()")
    end = await store.last_seq()
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
        report = await bus.replay(store.read(from_seq=start + 1, to_seq=end), handlers=names)
        replayed += report.events
    return RestoreReport(chosen, replayed, end)
