"""SQLite store: the short cuts of the hot paths (slot-filled records and results, reads
one batch ahead, the no-lookup append) give exactly what the plain code gives."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from sqlite_events import Tick

from core.store import AppendResult, StoredEvent
from plugins.sqlite import SQLiteEventStore, open_sqlite_store, records


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteEventStore]:
    opened = await open_sqlite_store(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        yield opened
    finally:
        await opened.aclose()


def row(seq: int, payload: bytes, *, corr: UUID | None, caus: UUID | None) -> tuple[object, ...]:
    created = datetime(2026, 1, 2, 3, 4, 5, 6789, tzinfo=UTC)
    return (
        seq,
        UUID(int=seq).bytes,
        "t.x",
        2,
        created.isoformat(),
        1_700_000_000_000_000 + seq // 2,
        payload,
        zlib.crc32(payload),
        None if corr is None else corr.bytes,
        None if caus is None else caus.bytes,
        None,  # headers
    )


class TestRecords:
    def test_records_equal_what_the_constructors_make(self) -> None:
        """Each record, its ids and times equal (and hash like) constructor-made ones."""
        corr, caus = uuid4(), uuid4()
        rows = [
            row(s, b'{"n": %d}' % s, corr=corr if s % 2 else None, caus=caus) for s in (1, 2, 3)
        ]
        got, error = records.to_records(rows)  # type: ignore[arg-type]
        assert error is None
        for record, r in zip(got, rows, strict=True):
            expected = StoredEvent(
                r[0],  # type: ignore[arg-type]
                UUID(bytes=r[1]),  # type: ignore[arg-type]
                "t.x",
                2,
                datetime.fromisoformat(r[4]),  # type: ignore[arg-type]
                datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=r[5]),  # type: ignore[arg-type]
                r[6],  # type: ignore[arg-type]
                corr if r[0] % 2 else None,  # type: ignore[operator]
                caus,
            )
            assert type(record) is StoredEvent
            assert record == expected
            assert hash(record.event_id) == hash(expected.event_id)
            assert str(record.event_id) == str(expected.event_id)
            assert record.event_id.is_safe == expected.event_id.is_safe

    def test_a_short_id_is_refused_like_the_constructor_does(self) -> None:
        """A stored id that is not 16 bytes raises the UUID constructor's ValueError."""
        bad = list(row(1, b"{}", corr=None, caus=None))
        bad[1] = b"\x01" * 15
        with pytest.raises(ValueError, match="16-char"):
            records.to_records([tuple(bad)])

    def test_records_stop_at_the_first_bad_checksum(self) -> None:
        rows = [row(s, b"{}", corr=None, caus=None) for s in (1, 2, 3)]
        broken = list(rows[1])
        broken[7] = 0
        got, error = records.to_records([rows[0], tuple(broken), rows[2]])
        assert [r.seq for r in got] == [1]
        assert error is not None
        assert error.seq == 2


class TestAppend:
    async def test_results_equal_what_the_constructor_makes(self, store: SQLiteEventStore) -> None:
        ticks = [Tick(i) for i in range(3)]
        got = await store.append(ticks)
        assert got == [AppendResult(i + 1, t.id) for i, t in enumerate(ticks)]
        assert all(type(r) is AppendResult and r.duplicate is False for r in got)

    async def test_a_duplicate_in_the_batch_takes_the_lookup_path(
        self, store: SQLiteEventStore
    ) -> None:
        """An id twice in one call: stored once, the second answered as a duplicate."""
        first = Tick(1)
        await store.append([Tick(0)])
        got = await store.append([first, Tick(2), first])
        assert [(r.seq, r.duplicate) for r in got] == [(2, False), (3, False), (2, True)]
        assert store.statistics().duplicates == 1


class TestReadAhead:
    async def test_batches_and_limits_give_every_record_once(self, store: SQLiteEventStore) -> None:
        await store.append([Tick(i) for i in range(1, 11)])
        for batch_size in (1, 3, 10, 11):
            for limit in (None, 1, 3, 9, 10, 12):
                seqs = [r.seq async for r in store.read(batch_size=batch_size, limit=limit)]
                assert seqs == list(range(1, 11))[: limit or 10], (batch_size, limit)

    async def test_stopping_early_leaves_nothing_behind(self, store: SQLiteEventStore) -> None:
        """A read abandoned with a batch in flight closes cleanly (warnings are errors)."""
        await store.append([Tick(i) for i in range(1, 11)])
        reader = store.read(batch_size=2)
        assert (await anext(reader)).seq == 1
        await reader.aclose()
        assert [r.seq async for r in store.read(from_seq=9)] == [9, 10]
