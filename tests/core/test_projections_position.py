"""Projections: a snapshot records the position its state reflects — the last event the
projections processed — not the end of the log read afterwards, which may already hold
an event appended by another process after the catch-up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from core import EventBus, MemoryEventStore
from core.events import Event
from core.projections import create_snapshots, restore_snapshots
from core.store import StoredEvent


@dataclass(frozen=True, slots=True)
class Amount(Event, type_name="tests.core.projections_position.Amount"):
    value: int


class Sum:
    """A read model: the sum of the amounts it has seen."""

    def __init__(self) -> None:
        self.total = 0

    async def __call__(self, event: Amount) -> None:
        self.total += event.value

    def snapshot(self) -> dict[str, Any]:
        return {"total": self.total}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.total = state["total"]


class LateAppendStore(MemoryEventStore):
    """A store where another writer appends ``late`` just after a read of the log has
    reached its end (the race between a catch-up and the next look at the log)."""

    late: Event | None = None

    async def read(self, **options: Any) -> AsyncIterator[StoredEvent]:
        async for record in super().read(**options):
            yield record
        late, self.late = self.late, None
        if late is not None:
            await self.append((late,))


def bus_with_sum(store: MemoryEventStore, *, consume: bool = True) -> tuple[EventBus, Sum]:
    projection = Sum()
    bus = EventBus(store, consume=consume)
    bus.subscribe(Amount, name="sum")(projection)
    return bus, projection


async def restored_total(store: MemoryEventStore) -> int:
    reader, projection = bus_with_sum(store, consume=False)
    await restore_snapshots(reader)
    await reader.aclose()
    return projection.total


class TestSnapshotPosition:
    async def test_consumer_snapshot_excludes_an_event_appended_after_catch_up(self) -> None:
        """A consuming bus records the last seq it dispatched; the late event is
        replayed by the next restore, so nothing is lost."""
        store = LateAppendStore()
        bus, live = bus_with_sum(store)
        for value in (1, 2, 3):
            await bus.publish_async(Amount(value))
        store.late = Amount(100)
        (snap,) = await create_snapshots(bus)
        await bus.aclose()
        assert await store.last_seq() == 4
        assert (snap.seq, dict(snap.state)) == (3, {"total": 6})
        assert live.total == 6
        assert await restored_total(store) == 106

    async def test_rebuilt_snapshot_excludes_an_event_appended_after_the_restore(self) -> None:
        """On a replay-only bus (what ``pubsub snapshot create`` uses) the position is
        where the restore stopped."""
        store = LateAppendStore()
        writer = EventBus(store, consume=False)
        for value in (1, 2, 3):
            await writer.publish_async(Amount(value))
        await writer.aclose()
        reader, _ = bus_with_sum(store, consume=False)
        store.late = Amount(100)
        report = await restore_snapshots(reader)
        (snap,) = await create_snapshots(reader, restored=report)
        await reader.aclose()
        assert (report.replayed, report.seq) == (3, 3)
        assert await store.last_seq() == 4
        assert (snap.seq, dict(snap.state)) == (3, {"total": 6})
        assert await restored_total(store) == 106

    async def test_restore_stops_where_it_began(self) -> None:
        """An event appended while a restore replays is not half-included: the report's
        seq says which events the state holds."""
        store = LateAppendStore()
        writer = EventBus(store, consume=False)
        await writer.publish_async(Amount(5))
        await writer.aclose()
        reader, projection = bus_with_sum(store, consume=False)
        store.late = Amount(7)
        report = await restore_snapshots(reader)
        await reader.aclose()
        assert (report.seq, report.replayed, projection.total) == (1, 1, 5)
