"""Projections: handler objects whose state is saved at a log position and restored from
a snapshot plus the tail of the log (MemoryEventStore)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from core import EventBus, MemoryEventStore, Projection, PubSubError, StoreError
from core.events import Event
from core.projections import create_snapshots, projections_of, restore_snapshots


@dataclass(frozen=True, slots=True)
class Item(Event, type_name="tests.core.projections.Item"):
    amount: int


class Total:
    """A read model: the sum of item amounts."""

    def __init__(self) -> None:
        self.total = 0
        self.events = 0

    async def __call__(self, event: Item) -> None:
        self.total += event.amount
        self.events += 1

    def snapshot(self) -> dict[str, Any]:
        return {"total": self.total}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.total = state["total"]


async def fill(store: MemoryEventStore, amounts: list[int], projection: Total) -> EventBus:
    bus = EventBus(store)
    bus.subscribe(Item, name="total")(projection)
    for amount in amounts:
        await bus.publish_async(Item(amount))
    return bus


class TestSnapshots:
    def test_total_is_a_projection(self) -> None:
        """An object with snapshot() and restore() satisfies the Projection protocol."""
        assert isinstance(Total(), Projection)

    async def test_snapshot_then_restore_replays_only_the_tail(self) -> None:
        """Restoring loads the snapshot and replays only later events; no checkpoint moves."""
        store = MemoryEventStore()
        live = Total()
        bus = await fill(store, [1, 2, 3], live)
        (snap,) = await create_snapshots(bus)
        for amount in (10, 20):
            await bus.publish_async(Item(amount))
        await bus.aclose()
        assert (snap.name, snap.seq, dict(snap.state)) == ("total", 3, {"total": 6})

        rebuilt = Total()
        reader = EventBus(store, consume=False)
        reader.subscribe(Item, name="total")(rebuilt)
        checkpoint = await store.load_checkpoint("default")
        report = await restore_snapshots(reader)
        await reader.aclose()
        assert rebuilt.total == live.total == 36
        assert rebuilt.events == 2
        assert report.replayed == 2
        assert [s.id for s in report.snapshots] == [snap.id]
        assert await store.last_seq() == 5
        assert await store.load_checkpoint("default") == checkpoint

    async def test_restore_a_chosen_snapshot(self) -> None:
        """A snapshot id restores that snapshot, not the latest one."""
        store = MemoryEventStore()
        bus = await fill(store, [1], Total())
        (first,) = await create_snapshots(bus)
        await bus.publish_async(Item(5))
        await create_snapshots(bus)
        await bus.aclose()
        rebuilt = Total()
        reader = EventBus(store, consume=False)
        reader.subscribe(Item, name="total")(rebuilt)
        report = await restore_snapshots(reader, snapshot_id=first.id)
        await reader.aclose()
        assert (rebuilt.total, report.replayed) == (6, 1)

    async def test_without_a_snapshot_replays_everything(self) -> None:
        """A projection with no snapshot is rebuilt from the start of the log."""
        store = MemoryEventStore()
        await (await fill(store, [4, 5], Total())).aclose()
        rebuilt = Total()
        reader = EventBus(store, consume=False)
        reader.subscribe(Item, name="total")(rebuilt)
        report = await restore_snapshots(reader)
        await reader.aclose()
        assert (rebuilt.total, report.replayed, report.snapshots) == (9, 2, [])

    async def test_projections_of_finds_only_projections(self) -> None:
        """Plain handlers are not projections."""
        async with EventBus() as bus:
            bus.subscribe(Item, name="total")(Total())
            bus.subscribe(Item, name="plain")(lambda e: None)
            assert list(projections_of(bus)) == ["total"]


class TestErrors:
    async def test_snapshots_need_a_store(self) -> None:
        """Without a store, snapshots raise StoreError."""
        async with EventBus() as bus:
            bus.subscribe(Item, name="total")(Total())
            with pytest.raises(StoreError, match="need a store"):
                await create_snapshots(bus)

    async def test_snapshots_need_a_projection(self) -> None:
        """Without a projection loaded, snapshots raise PubSubError."""
        async with EventBus(MemoryEventStore()) as bus:
            with pytest.raises(PubSubError, match="no projection"):
                await create_snapshots(bus)

    async def test_unknown_snapshot_id(self) -> None:
        """Restoring a snapshot id that does not exist raises PubSubError."""
        reader = EventBus(MemoryEventStore(), consume=False)
        reader.subscribe(Item, name="total")(Total())
        with pytest.raises(PubSubError, match="no snapshot with id 9"):
            await restore_snapshots(reader, snapshot_id=9)
        await reader.aclose()
