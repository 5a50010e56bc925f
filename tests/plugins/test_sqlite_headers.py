"""SQLite store, headers: the column migration 4 adds (an orjson object, NULL when an
event has none) and a store of schema version 3 upgrading in place, its old records
reading back without headers."""

from __future__ import annotations

import sqlite3
import zlib
from contextlib import closing
from pathlib import Path

import orjson
from sqlite_events import Tick

from plugins.sqlite import APPLICATION_ID, SCHEMA_VERSION, open_sqlite_store
from plugins.sqlite.schema import MIGRATIONS


def columns(db: Path) -> list[str]:
    with closing(sqlite3.connect(db)) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(events)")]


def raw_headers(db: Path) -> list[bytes | None]:
    with closing(sqlite3.connect(db)) as conn:
        return [row[0] for row in conn.execute("SELECT headers FROM events ORDER BY seq")]


def old_store(db: Path) -> Tick:
    """A store at schema version 3 (before headers) holding one event; returns it."""
    old = Tick(1)
    payload = b'{"n":1}'
    with closing(sqlite3.connect(db)) as conn, conn:
        for step in MIGRATIONS[:3]:
            conn.executescript(step)
        conn.execute(
            "INSERT INTO events (seq, event_id, type_name, version, created_at, appended_at, "
            "payload, checksum) VALUES (1, ?, ?, 1, ?, 1700000000000000, ?, ?)",
            (
                old.id.bytes,
                old.event_type,
                old.created_at.isoformat(),
                payload,
                zlib.crc32(payload),
            ),
        )
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 3")
    return old


class TestHeadersColumn:
    async def test_null_without_headers_orjson_with(self, tmp_path: Path) -> None:
        """An event without headers costs a NULL; with them, one orjson object."""
        db = tmp_path / "events.db"
        trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
        async with await open_sqlite_store(f"sqlite:///{db}") as store:
            await store.append([Tick(1), Tick(2)], headers=[None, trace])
            await store.append([Tick(3)])
        stored = raw_headers(db)
        assert stored[0] is None
        assert stored[2] is None
        assert stored[1] is not None
        assert orjson.loads(stored[1]) == trace


class TestUpgrade:
    async def test_a_version_3_store_upgrades_in_place(self, tmp_path: Path) -> None:
        """Opening a store of version 3 adds the column; the old record reads back with
        no headers, and new events keep theirs."""
        db = tmp_path / "old.db"
        old = old_store(db)
        assert "headers" not in columns(db)
        async with await open_sqlite_store(f"sqlite:///{db}") as store:
            assert (await store.pragmas())["user_version"] == SCHEMA_VERSION
            record = await store.get(1)
            assert record is not None
            assert record.event_id == old.id
            assert dict(record.headers) == {}
            await store.append([Tick(2)], headers=[{"k": "v"}])
            records = [r async for r in store.read()]
        assert [dict(r.headers) for r in records] == [{}, {"k": "v"}]
        assert "headers" in columns(db)
        assert raw_headers(db)[0] is None
