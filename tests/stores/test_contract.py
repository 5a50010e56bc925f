"""Store contract: the promises of core.store.EventStore, checked against every store."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from store_events import ExpressOrderPlaced, OrderPlaced, OrderShipped, WallClock, failure_time

from core.codec import encode
from core.entrypoints import open_store
from core.errors import DeadLetterNotFoundError, GroupLockedError, UnknownStoreSchemeError
from core.events import default_registry
from core.store import (
    DeadLetter,
    DeadLetterReason,
    DeadLetterStatus,
    EventStore,
    StoreCapability,
    StoredEvent,
)
from plugins.sqlite import SQLiteEventStore


def placed(n: int, **kw: object) -> OrderPlaced:
    return OrderPlaced(f"o-{n}", n, **kw)  # type: ignore[arg-type]


def letter(n: int, *, handler: str = "h", event_type: str = "contract.order_placed") -> DeadLetter:
    at = failure_time()
    return DeadLetter(
        event_id=uuid4(),
        event_type=event_type,
        handler=handler,
        reason=DeadLetterReason.EXHAUSTED,
        error_type="ValueError",
        message=f"boom {n}",
        traceback="Traceback ...",
        attempts=3,
        first_failure_at=at,
        last_failure_at=at + timedelta(seconds=1),
        payload={"order_id": f"o-{n}", "total": n},
        seq=n,
        group="g",
    )


async def collect(store: EventStore, **kw: object) -> list[StoredEvent]:
    return [r async for r in store.read(**kw)]  # type: ignore[arg-type]


class TestAppend:
    async def test_sequence_starts_at_one_and_is_contiguous(self, store: EventStore) -> None:
        """Successive appends get 1, 2, 3... and one append of N events gets N in a row."""
        first = await store.append([placed(1)])
        batch = await store.append([placed(2), placed(3), placed(4)])
        assert [r.seq for r in first + batch] == [1, 2, 3, 4]
        assert not any(r.duplicate for r in first + batch)
        assert await store.last_seq() == 4

    async def test_empty_append_writes_nothing(self, store: EventStore) -> None:
        """Appending no events returns no results and leaves the log empty."""
        assert await store.append([]) == []
        assert await store.last_seq() == 0

    async def test_record_keeps_every_field(self, store: EventStore) -> None:
        """A stored record carries the event's id, type, version, times, causal ids, payload."""
        root = placed(1)
        child = OrderShipped("o-1", causation_id=root.id, correlation_id=root.id)
        await store.append([root, child])
        record = await store.get(2)
        assert record is not None
        assert record.event_id == child.id
        assert record.type_name == "contract.order_shipped"
        assert record.version == 2
        assert record.created_at == child.created_at
        assert record.causation_id == root.id
        assert record.correlation_id == root.id
        assert record.payload == encode(child)
        assert record.decode() == child

    async def test_duplicate_id_returns_original_seq(self, store: EventStore) -> None:
        """Re-appending a stored id answers its first seq, marked duplicate, appending nothing."""
        event = placed(1)
        await store.append([placed(0), event])
        again = await store.append([event])
        assert (again[0].seq, again[0].duplicate, again[0].event_id) == (2, True, event.id)
        assert await store.count() == 2

    async def test_duplicate_within_one_batch(self, store: EventStore) -> None:
        """An id repeated inside one append is stored once; the repeat gets the same seq."""
        event = placed(1)
        results = await store.append([event, placed(2), event])
        assert [(r.seq, r.duplicate) for r in results] == [(1, False), (2, False), (1, True)]
        assert await store.count() == 2

    async def test_duplicate_mixed_with_new_events(self, store: EventStore) -> None:
        """New events next to a known id still get contiguous seqs with no gap."""
        known = placed(1)
        await store.append([known])
        results = await store.append([placed(2), known, placed(3)])
        assert [(r.seq, r.duplicate) for r in results] == [(2, False), (1, True), (3, False)]
        assert [r.seq for r in await collect(store)] == [1, 2, 3]

    async def test_concurrent_appends_are_gap_free(self, store: EventStore) -> None:
        """Fifty concurrent appends get exactly the seqs 1..50, each once."""
        results = await asyncio.gather(*(store.append([placed(i)]) for i in range(50)))
        assert sorted(r[0].seq for r in results) == list(range(1, 51))

    async def test_appended_at_never_decreases(self, store: EventStore) -> None:
        """appended_at is non-decreasing along the sequence."""
        for i in range(5):
            await store.append([placed(i), placed(i + 100)])
        times = [r.appended_at for r in await collect(store)]
        assert times == sorted(times)


class TestRead:
    async def _fill(self, store: EventStore, n: int = 10) -> None:
        events = [placed(i) if i % 3 else OrderShipped(f"o-{i}") for i in range(1, n + 1)]
        await store.append(events)

    async def test_reads_everything_in_order(self, store: EventStore) -> None:
        """A plain read yields every record in sequence order."""
        await self._fill(store)
        assert [r.seq for r in await collect(store)] == list(range(1, 11))

    @pytest.mark.parametrize("batch_size", [pytest.param(1, id="1"), pytest.param(3, id="3")])
    async def test_small_batches_yield_the_same(self, store: EventStore, batch_size: int) -> None:
        """Streaming in small batches yields the same records as one big batch."""
        await self._fill(store)
        assert [r.seq for r in await collect(store, batch_size=batch_size)] == list(range(1, 11))

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            pytest.param({"limit": -1}, "limit must be at least 0", id="negative-limit"),
            pytest.param({"batch_size": 0}, "batch_size must be at least 1", id="zero-batch"),
            pytest.param({"from_seq": 2**63}, "from_seq must be a 64-bit", id="huge-from"),
            pytest.param({"to_seq": -(2**64)}, "to_seq must be a 64-bit", id="huge-to"),
            pytest.param({"limit": 2**64}, "limit must be a 64-bit", id="huge-limit"),
        ],
    )
    async def test_bad_read_arguments_are_refused_alike(
        self, store: EventStore, kwargs: dict[str, int], message: str
    ) -> None:
        """Every store refuses the same bad arguments with the same one-line error (a
        negative limit used to mean "no limit" on SQLite and "one record" in memory)."""
        await self._fill(store, 3)
        with pytest.raises(ValueError, match=message):
            await collect(store, **kwargs)
        assert [r.seq for r in await collect(store, limit=0)] == []
        with pytest.raises(ValueError, match="seq must be a 64-bit"):
            await store.get(2**63)

    async def test_seq_bounds_are_inclusive(self, store: EventStore) -> None:
        """from_seq and to_seq include both ends."""
        await self._fill(store)
        assert [r.seq for r in await collect(store, from_seq=3, to_seq=6)] == [3, 4, 5, 6]

    async def test_types_filter(self, store: EventStore) -> None:
        """types keeps only records of the named types."""
        await self._fill(store)
        shipped = await collect(store, types=["contract.order_shipped"])
        assert [r.seq for r in shipped] == [3, 6, 9]
        assert await store.count(types=["contract.order_shipped"]) == 3

    async def test_types_with_subclasses(self, store: EventStore) -> None:
        """A read by a base class's type name and its subclasses' names (the
        registry's subtypes) returns both kinds, in sequence order, and nothing else."""
        await store.append(
            [
                OrderPlaced("a"),
                OrderShipped("a"),
                ExpressOrderPlaced("b"),
                OrderPlaced("c"),
            ]
        )
        names = default_registry.subtypes(OrderPlaced)
        assert names == ["contract.express_order_placed", "contract.order_placed"]
        records = await collect(store, types=names)
        assert [(r.seq, r.type_name) for r in records] == [
            (1, "contract.order_placed"),
            (3, "contract.express_order_placed"),
            (4, "contract.order_placed"),
        ]
        assert isinstance(records[1].decode(), ExpressOrderPlaced)
        assert await store.count(types=names) == 3

    async def test_no_types_selects_nothing(self, store: EventStore) -> None:
        """An empty types list matches no record."""
        await self._fill(store)
        assert await collect(store, types=[]) == []
        assert await store.count(types=[]) == 0

    async def test_limit_with_filter_and_batches(self, store: EventStore) -> None:
        """limit caps the matching records, across batch boundaries."""
        await self._fill(store)
        got = await collect(store, types=["contract.order_placed"], limit=4, batch_size=3)
        assert [r.seq for r in got] == [1, 2, 4, 5]

    async def test_since_until_select_by_appended_at(self, store: EventStore) -> None:
        """since/until select records by their append time, inclusively."""
        await store.append([placed(1)])
        await store.append([placed(2)])
        await store.append([placed(3)])
        second = await store.get(2)
        assert second is not None
        at = second.appended_at
        got = await collect(store, since=at, until=at)
        assert all(r.appended_at == at for r in got)
        assert 2 in [r.seq for r in got]
        later = await collect(store, since=at + timedelta(days=1))
        assert later == []

    async def test_get_and_get_by_id(self, store: EventStore) -> None:
        """get and get_by_id find a record, and answer None for a missing one."""
        event = placed(1)
        await store.append([event])
        by_id = await store.get_by_id(event.id)
        assert by_id is not None
        assert by_id.seq == 1
        assert await store.get(1) == by_id
        assert await store.get(2) is None
        assert await store.get_by_id(uuid4()) is None

    async def test_counts(self, store: EventStore) -> None:
        """count and count_by_type agree with what was appended."""
        await self._fill(store)
        assert await store.count() == 10
        assert await store.count_by_type() == {
            "contract.order_placed": 7,
            "contract.order_shipped": 3,
        }

    async def test_children_are_the_caused_events(self, store: EventStore) -> None:
        """children lists the records whose causation id is the given event, in order."""
        root = placed(1)
        kids = [OrderShipped("a", causation_id=root.id), OrderShipped("b", causation_id=root.id)]
        await store.append([root, placed(2), *kids])
        assert [r.seq for r in await store.children(root.id)] == [3, 4]
        assert await store.children(kids[0].id) == []


class TestCheckpoints:
    async def test_missing_checkpoint_is_zero(self, store: EventStore) -> None:
        """A group never committed starts at 0."""
        assert await store.load_checkpoint("g") == 0

    @pytest.mark.requires(StoreCapability.LEASES)
    async def test_checkpoint_moves_forward_only(self, store: EventStore) -> None:
        """commit_progress to a lower seq leaves the checkpoint where it was."""
        await store.commit_progress("g", 5)
        await store.commit_progress("g", 3)
        assert await store.load_checkpoint("g") == 5
        await store.commit_progress("g", 7)
        assert await store.load_checkpoint("g") == 7

    @pytest.mark.requires(StoreCapability.LEASES, StoreCapability.ATOMIC_PROGRESS)
    async def test_commit_progress_records_dead_letters(self, store: EventStore) -> None:
        """Dead letters given to commit_progress are stored with the checkpoint move."""
        await store.commit_progress("g", 2, [letter(1), letter(2)])
        assert await store.load_checkpoint("g") == 2
        entries = await store.list_dead_letters()
        assert [e.message for e in entries] == ["boom 1", "boom 2"]

    @pytest.mark.requires(StoreCapability.LEASES)
    async def test_groups_report_lag(self, store: EventStore) -> None:
        """groups lists each group with its checkpoint and lag behind the log."""
        await store.append([placed(i) for i in range(6)])
        await store.commit_progress("a", 4)
        await store.commit_progress("b", 6)
        info = {g.group: (g.checkpoint, g.lag, g.holder) for g in await store.groups()}
        assert info == {"a": (4, 2, None), "b": (6, 0, None)}


@pytest.mark.requires(StoreCapability.LEASES)
class TestLeases:
    async def test_second_holder_is_refused_naming_the_first(self, store: EventStore) -> None:
        """While a lease is alive another holder gets GroupLockedError naming the holder."""
        await store.acquire_lease("g", "worker-1", ttl=10)
        with pytest.raises(GroupLockedError) as info:
            await store.acquire_lease("g", "worker-2", ttl=10)
        assert info.value.holder == "worker-1"
        assert info.value.expires_in == pytest.approx(10)

    async def test_expired_lease_is_taken_over(self, store: EventStore, clock: WallClock) -> None:
        """Once the wall clock passes a lease's expiry another holder takes it."""
        await store.acquire_lease("g", "worker-1", ttl=10)
        clock.advance(10.5)
        lease = await store.acquire_lease("g", "worker-2", ttl=10)
        assert lease.holder == "worker-2"
        with pytest.raises(GroupLockedError):
            await store.renew_lease(dataclasses.replace(lease, holder="worker-1"), ttl=10)

    async def test_renew_extends_expiry(self, store: EventStore, clock: WallClock) -> None:
        """Renewing moves the expiry to now + ttl."""
        lease = await store.acquire_lease("g", "w", ttl=10)
        clock.advance(8)
        renewed = await store.renew_lease(lease, ttl=10)
        assert renewed.expires_at == pytest.approx(clock.now + 10)
        clock.advance(8)
        with pytest.raises(GroupLockedError):
            await store.acquire_lease("g", "other", ttl=10)

    async def test_release_frees_the_group(self, store: EventStore) -> None:
        """After release another holder acquires at once."""
        lease = await store.acquire_lease("g", "w", ttl=10)
        await store.release_lease(lease)
        assert (await store.acquire_lease("g", "other", ttl=10)).holder == "other"

    async def test_groups_show_live_holder_only(self, store: EventStore, clock: WallClock) -> None:
        """groups names the lease holder while the lease is alive, and nobody after."""
        await store.acquire_lease("g", "w", ttl=10)
        [info] = await store.groups()
        assert (info.group, info.holder, info.lease_expires_at) == ("g", "w", clock.now + 10)
        clock.advance(11)
        [info] = await store.groups()
        assert info.holder is None


@pytest.mark.requires(StoreCapability.LEASES, StoreCapability.ATOMIC_PROGRESS)
class TestFencedCommit:
    """commit_progress with a lease moves the checkpoint only while that lease holds."""

    async def test_holder_commits_with_its_lease(self, store: EventStore) -> None:
        """The live holder's fenced commit moves the checkpoint and stores its letters."""
        lease = await store.acquire_lease("g", "w-1", ttl=10)
        await store.commit_progress("g", 3, [letter(1)], lease=lease)
        assert await store.load_checkpoint("g") == 3
        assert await store.count_dead_letters() == 1

    async def test_stale_holder_is_refused_after_takeover(
        self, store: EventStore, clock: WallClock
    ) -> None:
        """A holder stalled past its TTL while another took over cannot commit."""
        stale = await store.acquire_lease("g", "w-1", ttl=10)
        await store.commit_progress("g", 2, lease=stale)
        clock.advance(11)
        await store.acquire_lease("g", "w-2", ttl=10)
        with pytest.raises(GroupLockedError) as info:
            await store.commit_progress("g", 9, [letter(9)], lease=stale)
        assert info.value.holder == "w-2"
        assert info.value.expires_in == pytest.approx(10)
        assert await store.load_checkpoint("g") == 2
        assert await store.count_dead_letters() == 0

    async def test_expired_lease_is_refused_even_unclaimed(
        self, store: EventStore, clock: WallClock
    ) -> None:
        """A lease past its expiry fences its holder out although nobody took it over."""
        lease = await store.acquire_lease("g", "w-1", ttl=10)
        clock.advance(10.5)
        with pytest.raises(GroupLockedError) as info:
            await store.commit_progress("g", 4, lease=lease)
        assert info.value.expires_in <= 0
        assert await store.load_checkpoint("g") == 0

    async def test_released_lease_is_refused(self, store: EventStore) -> None:
        """After release the old lease no longer lets its holder commit."""
        lease = await store.acquire_lease("g", "w-1", ttl=10)
        await store.release_lease(lease)
        with pytest.raises(GroupLockedError):
            await store.commit_progress("g", 4, lease=lease)
        assert await store.load_checkpoint("g") == 0

    async def test_renewed_lease_keeps_committing(
        self, store: EventStore, clock: WallClock
    ) -> None:
        """A holder that renews in time commits past its first expiry."""
        lease = await store.acquire_lease("g", "w-1", ttl=10)
        clock.advance(8)
        await store.renew_lease(lease, ttl=10)
        clock.advance(8)
        await store.commit_progress("g", 5, lease=lease)
        assert await store.load_checkpoint("g") == 5

    async def test_lease_of_another_group_is_refused(self, store: EventStore) -> None:
        """A lease fences only the group it was taken for."""
        lease = await store.acquire_lease("other", "w-1", ttl=10)
        with pytest.raises(GroupLockedError):
            await store.commit_progress("g", 1, lease=lease)
        assert await store.load_checkpoint("g") == 0


class TestDeadLetters:
    async def test_add_get_round_trip(self, store: EventStore) -> None:
        """An added entry comes back with every field and its assigned id, status open."""
        entry = letter(1)
        [entry_id] = await store.add_dead_letters([entry])
        got = await store.get_dead_letter(entry_id)
        assert got == dataclasses.replace(entry, id=entry_id)

    async def test_list_limit(self, store: EventStore) -> None:
        """limit keeps the first entries; a negative one is refused on every store
        (it meant "all" on SQLite and "all but the last" in memory)."""
        await store.add_dead_letters([letter(i) for i in range(1, 4)])
        assert [e.event_id for e in await store.list_dead_letters(limit=2)] == [
            e.event_id for e in (await store.list_dead_letters())[:2]
        ]
        assert await store.list_dead_letters(limit=0) == []
        with pytest.raises(ValueError, match="limit must be at least 0"):
            await store.list_dead_letters(limit=-1)

    async def test_missing_entry_raises(self, store: EventStore) -> None:
        """get of an unknown id raises DeadLetterNotFoundError."""
        with pytest.raises(DeadLetterNotFoundError):
            await store.get_dead_letter(999)

    async def test_list_filters(self, store: EventStore) -> None:
        """list_dead_letters filters by handler, event type, status and limit."""
        ids = await store.add_dead_letters(
            [letter(1, handler="a"), letter(2, handler="b"), letter(3, event_type="x")]
        )
        assert [e.id for e in await store.list_dead_letters(handler="b")] == [ids[1]]
        assert [e.id for e in await store.list_dead_letters(event_type="x")] == [ids[2]]
        assert [e.id for e in await store.list_dead_letters(limit=2)] == ids[:2]
        await store.resolve_dead_letter(ids[0], "redriven", failure_time())
        assert [e.id for e in await store.list_dead_letters()] == ids[1:]
        resolved = await store.list_dead_letters(status=DeadLetterStatus.RESOLVED)
        assert [e.id for e in resolved] == ids[:1]
        assert len(await store.list_dead_letters(status=None)) == 3

    async def test_resolve_is_compare_and_set(self, store: EventStore) -> None:
        """Concurrent resolutions of one entry succeed exactly once; the first is recorded."""
        [entry_id] = await store.add_dead_letters([letter(1)])
        wins = await asyncio.gather(
            *(store.resolve_dead_letter(entry_id, f"r{i}", failure_time()) for i in range(5))
        )
        assert sorted(wins) == [False, False, False, False, True]
        entry = await store.get_dead_letter(entry_id)
        assert entry.status is DeadLetterStatus.RESOLVED
        assert entry.resolution == f"r{wins.index(True)}"
        assert entry.resolved_at == failure_time()

    async def test_resolve_unknown_raises(self, store: EventStore) -> None:
        """Resolving an id that never existed raises DeadLetterNotFoundError."""
        with pytest.raises(DeadLetterNotFoundError):
            await store.resolve_dead_letter(42, "x", failure_time())

    async def test_failure_bumps_attempts(self, store: EventStore) -> None:
        """record_dead_letter_failure adds an attempt and replaces the error."""
        [entry_id] = await store.add_dead_letters([letter(1)])
        later = failure_time() + timedelta(hours=1)
        await store.record_dead_letter_failure(
            entry_id, error_type="KeyError", message="again", traceback="tb", at=later
        )
        entry = await store.get_dead_letter(entry_id)
        assert (entry.attempts, entry.error_type, entry.message) == (4, "KeyError", "again")
        assert (entry.traceback, entry.last_failure_at) == ("tb", later)
        assert entry.first_failure_at == failure_time()

    async def test_purge_and_count(self, store: EventStore) -> None:
        """purge removes resolved entries (or all) and counts follow."""
        ids = await store.add_dead_letters([letter(1), letter(2), letter(3)])
        await store.resolve_dead_letter(ids[0], "done", failure_time())
        assert await store.count_dead_letters() == 2
        assert await store.count_dead_letters(DeadLetterStatus.RESOLVED) == 1
        assert await store.purge_dead_letters(resolved_only=True) == 1
        assert await store.count_dead_letters(None) == 2
        assert await store.purge_dead_letters() == 2
        assert await store.count_dead_letters(None) == 0


class TestSnapshots:
    async def test_save_and_load(self, store: EventStore) -> None:
        """A saved snapshot loads back by id with its state."""
        snap = await store.save_snapshot("totals", 5, {"sum": 10, "items": [1, 2]})
        loaded = await store.load_snapshot(snap.id)
        assert loaded == snap
        assert loaded.state == {"sum": 10, "items": [1, 2]}
        assert await store.load_snapshot(snap.id + 100) is None

    async def test_state_is_copied(self, store: EventStore) -> None:
        """Changing the live state after saving does not change the snapshot."""
        state = {"items": [1]}
        snap = await store.save_snapshot("p", 1, state)
        state["items"].append(2)
        loaded = await store.load_snapshot(snap.id)
        assert loaded is not None
        assert loaded.state == {"items": [1]}

    async def test_latest_is_highest_seq(self, store: EventStore) -> None:
        """latest_snapshot picks the highest seq of that name; list filters by name."""
        await store.save_snapshot("p", 5, {"v": 5})
        await store.save_snapshot("p", 9, {"v": 9})
        await store.save_snapshot("p", 7, {"v": 7})
        await store.save_snapshot("q", 20, {"v": 20})
        latest = await store.latest_snapshot("p")
        assert latest is not None
        assert latest.state == {"v": 9}
        assert await store.latest_snapshot("none") is None
        assert [s.seq for s in await store.list_snapshots("p")] == [5, 9, 7]
        assert len(await store.list_snapshots()) == 4


class TestOpenStore:
    async def test_sqlite_url_opens_sqlite_store(self, tmp_path: Path) -> None:
        """open_store with a sqlite URL gives a SQLiteEventStore satisfying EventStore."""
        store = await open_store(f"sqlite:///{tmp_path}/via-entry-point.db")
        try:
            assert isinstance(store, SQLiteEventStore)
            assert isinstance(store, EventStore)
            assert store.durability == "survives power loss"
        finally:
            await store.aclose()

    async def test_unknown_scheme(self) -> None:
        """open_store with an unregistered scheme raises UnknownStoreSchemeError."""
        with pytest.raises(UnknownStoreSchemeError) as info:
            await open_store("bogus://x")
        assert "sqlite" in info.value.known
