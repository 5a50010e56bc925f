"""SQLite store: what the SQLite event store promises beyond the store contract (file
format checks, durability settings, group commit, corruption, read-only and full disks)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sqlite3
import stat
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlite_events import Tick

from core.errors import (
    ChecksumMismatchError,
    EventDecodeError,
    GroupLockedError,
    NotAStoreError,
    SchemaVersionError,
    StoreUnavailableError,
    UnknownEventTypeError,
)
from core.events import Event, EventRegistry
from core.store import DeadLetter, DeadLetterReason
from plugins.sqlite import APPLICATION_ID, SCHEMA_VERSION, SQLiteEventStore, open_sqlite_store
from plugins.sqlite.schema import MIGRATIONS


def url_of(path: Path, query: str = "") -> str:
    return f"sqlite:///{path}{query}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def exists(path: Path) -> bool:
    return path.exists()


def write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def flip_byte(path: Path, marker: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[data.index(marker)] ^= 0x01
    path.write_bytes(bytes(data))


def truncate_half(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def blank_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0:16] = b"\x00" * 16
    path.write_bytes(bytes(data))


async def seqs_until_error(store: SQLiteEventStore, out: list[int], **kw: int) -> None:
    async for record in store.read(**kw):
        out.append(record.seq)  # noqa: PERF401 - keeps what was read before the error


async def read_all(url: str) -> None:
    async with await open_sqlite_store(url) as store:
        async for _ in store.read():
            pass


async def append_until_full(store: SQLiteEventStore, done: list[int]) -> None:
    for i in range(1000):
        await store.append([Tick(i, note="y" * 500)])
        done.append(i)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SQLiteEventStore]:
    opened = await open_sqlite_store(url_of(db))
    try:
        yield opened
    finally:
        await opened.aclose()


async def fill(path: Path, n: int, *, note: str = "", query: str = "") -> None:
    async with await open_sqlite_store(url_of(path, query)) as store:
        await store.append([Tick(i, note=f"{note}{i:06d}") for i in range(1, n + 1)])


@dataclass(frozen=True, slots=True)
class TickWithCount(Event, type_name="sqlite_test.tick_with_count"):
    count: int


NOW = datetime(2024, 1, 1, tzinfo=UTC)


async def list_of(records: AsyncIterator[Any]) -> list[Any]:
    return [r async for r in records]


def letter(seq: int, traceback: str = "tb") -> DeadLetter:
    now = datetime.now(UTC)
    return DeadLetter(
        event_id=uuid4(),
        event_type="sqlite_test.tick",
        handler="h",
        reason=DeadLetterReason.EXHAUSTED,
        error_type="ValueError",
        message="boom",
        traceback=traceback,
        attempts=1,
        first_failure_at=now,
        last_failure_at=now,
        seq=seq,
    )


class TestCreation:
    async def test_new_file_is_private_and_marked(self, db: Path) -> None:
        """A new store file is 0o600 and carries the pubsub application_id and version."""
        async with await open_sqlite_store(url_of(db)) as store:
            await store.append([Tick(1)])
            for name in ("events.db", "events.db-wal", "events.db-shm"):
                assert stat.S_IMODE(os.stat(db.parent / name).st_mode) == 0o600, name
        with closing(sqlite3.connect(db)) as conn, conn:
            assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()

    async def test_pragmas_and_durability(self, store: SQLiteEventStore) -> None:
        """The default store runs WAL, synchronous FULL, no autocheckpoint; it says so."""
        pragmas = await store.pragmas()
        assert pragmas["journal_mode"] == "wal"
        assert pragmas["synchronous"] == "FULL"
        assert pragmas["wal_autocheckpoint"] == 0
        assert pragmas["busy_timeout"] == 5000
        assert store.durability == "survives power loss"

    async def test_enable_wal_checkpoints(self, store: SQLiteEventStore) -> None:
        """enable_wal_checkpoints turns on automatic checkpoints for this connection."""
        await store.enable_wal_checkpoints()
        assert (await store.pragmas())["wal_autocheckpoint"] == 1000

    async def test_lease_holder_checkpoints_the_wal(self, store: SQLiteEventStore) -> None:
        """Taking a consumer lease makes this store the file's checkpointer by itself."""
        await store.append([Tick(1)])
        assert (await store.pragmas())["wal_autocheckpoint"] == 0  # a publisher
        await store.acquire_lease("g", "worker", 10)
        assert (await store.pragmas())["wal_autocheckpoint"] == 1000

    async def test_refused_lease_leaves_checkpoints_off(self, db: Path) -> None:
        """A store refused the lease stays a publisher: it never checkpoints."""
        async with (
            await open_sqlite_store(url_of(db)) as one,
            await open_sqlite_store(url_of(db)) as two,
        ):
            await one.acquire_lease("g", "one", 10)
            with pytest.raises(GroupLockedError):
                await two.acquire_lease("g", "two", 10)
            assert (await two.pragmas())["wal_autocheckpoint"] == 0

    async def test_synchronous_normal_is_reported(self, db: Path) -> None:
        """synchronous=NORMAL is applied and reported as not surviving power loss."""
        async with await open_sqlite_store(url_of(db, "?synchronous=NORMAL")) as store:
            assert (await store.pragmas())["synchronous"] == "NORMAL"
            assert store.durability == "survives a process crash, not power loss"

    async def test_relative_url(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """sqlite:///name.db is relative to the working directory."""
        monkeypatch.chdir(tmp_path)
        async with await open_sqlite_store("sqlite:///rel.db") as store:
            await store.append([Tick(1)])
        assert (tmp_path / "rel.db").exists()

    @pytest.mark.parametrize(
        "query",
        [
            pytest.param("?synchronous=OFF", id="synchronous-off"),
            pytest.param("?bogus=1", id="unknown-option"),
            pytest.param("?busy_timeout=soon", id="bad-timeout"),
        ],
    )
    async def test_bad_options_are_refused(self, db: Path, query: str) -> None:
        """An unknown or invalid URL option is a one-line StoreUnavailableError."""
        with pytest.raises(StoreUnavailableError) as info:
            await open_sqlite_store(url_of(db, query))
        assert "\n" not in str(info.value)
        assert not exists(db)

    async def test_migrates_an_older_store(self, db: Path) -> None:
        """A store at schema version 1 is brought forward to the current version."""
        with closing(sqlite3.connect(db)) as conn, conn:
            conn.executescript(MIGRATIONS[0])
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("PRAGMA user_version = 1")
        conn.close()
        async with await open_sqlite_store(url_of(db)) as store:
            assert (await store.pragmas())["user_version"] == SCHEMA_VERSION
            [entry_id] = await store.add_dead_letters([letter(1)])
            assert (await store.get_dead_letter(entry_id)).seq == 1


class TestForeignFiles:
    async def _refused(self, path: Path, error: type[Exception]) -> None:
        before, names = digest(path), siblings(path)
        with pytest.raises(error) as info:
            await open_sqlite_store(url_of(path))
        assert "\n" not in str(info.value)
        assert digest(path) == before
        assert siblings(path) == names

    async def test_text_file_left_unchanged(self, db: Path) -> None:
        """A non-SQLite file is NotAStoreError and stays byte-for-byte the same."""
        write(db, b"name,qty\nwidget,3\n" * 100)
        await self._refused(db, NotAStoreError)

    async def test_other_sqlite_database_left_unchanged(self, db: Path) -> None:
        """An SQLite file of another application is NotAStoreError, untouched, not WAL."""
        with closing(sqlite3.connect(db)) as conn, conn:
            conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
            conn.execute("INSERT INTO customers (name) VALUES ('ada')")
        conn.close()
        await self._refused(db, NotAStoreError)
        with closing(sqlite3.connect(db)) as conn, conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        conn.close()

    async def test_newer_schema_left_unchanged(self, db: Path) -> None:
        """A store of a newer schema version is SchemaVersionError and untouched."""
        await fill(db, 3)
        with closing(sqlite3.connect(db)) as conn, conn:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
        await self._refused(db, SchemaVersionError)

    async def test_directory_is_not_a_store(self, tmp_path: Path) -> None:
        """A directory path is NotAStoreError."""
        with pytest.raises(NotAStoreError):
            await open_sqlite_store(url_of(tmp_path))

    async def test_empty_file_becomes_a_store(self, db: Path) -> None:
        """An empty file is taken as a new store."""
        write(db, b"")
        await fill(db, 2)
        async with await open_sqlite_store(url_of(db)) as store:
            assert await store.last_seq() == 2


class TestCorruption:
    async def test_flipped_payload_byte_names_its_seq(self, db: Path) -> None:
        """A flipped byte in one payload fails that seq's checksum; the rest stays readable."""
        await fill(db, 50, note="marker-")
        flip_byte(db, b"marker-000017")
        async with await open_sqlite_store(url_of(db)) as store:
            seen: list[int] = []
            with pytest.raises(ChecksumMismatchError) as info:
                await seqs_until_error(store, seen, batch_size=10)
            assert (info.value.seq, info.value.type_name) == (17, "sqlite_test.tick")
            assert seen == list(range(1, 17))
            with pytest.raises(ChecksumMismatchError):
                await store.get(17)
            rest = [r.seq async for r in store.read(from_seq=18)]
            assert rest == list(range(18, 51))
            after = await store.get(18)
            assert after is not None
            decoded = after.decode()
            assert isinstance(decoded, Tick)
            assert (decoded.n, decoded.note) == (18, "marker-000018")

    async def test_truncated_file_is_unavailable(self, db: Path) -> None:
        """A truncated store gives a one-line StoreUnavailableError, never a raw sqlite3 error."""
        await fill(db, 3000, note="x" * 200)
        truncate_half(db)
        with pytest.raises(StoreUnavailableError) as info:
            await read_all(url_of(db))
        assert "corrupt" in str(info.value)
        assert "\n" not in str(info.value)

    async def test_garbage_header_is_not_a_store(self, db: Path) -> None:
        """A file whose SQLite header is overwritten is refused and left unchanged."""
        await fill(db, 10)
        blank_header(db)
        before = digest(db)
        with pytest.raises(NotAStoreError):
            await open_sqlite_store(url_of(db))
        assert digest(db) == before


class TestReadOnly:
    async def test_appends_are_refused_reads_work(self, db: Path) -> None:
        """A store opened with mode=ro reads, and refuses every write with a clear message."""
        await fill(db, 5)
        async with await open_sqlite_store(url_of(db, "?mode=ro")) as store:
            assert store.readonly
            assert await store.last_seq() == 5
            with pytest.raises(StoreUnavailableError, match="read-only"):
                await store.append([Tick(6)])
            with pytest.raises(StoreUnavailableError, match="read-only"):
                await store.commit_progress("g", 5)
            with pytest.raises(StoreUnavailableError, match="read-only"):
                await store.acquire_lease("g", "me", 5)
        async with await open_sqlite_store(url_of(db)) as store:
            assert await store.last_seq() == 5
            assert await store.load_checkpoint("g") == 0

    async def test_missing_file_read_only(self, db: Path) -> None:
        """mode=ro on a missing file is StoreUnavailableError and creates nothing."""
        with pytest.raises(StoreUnavailableError, match="does not exist"):
            await open_sqlite_store(url_of(db, "?readonly=1"))
        assert not exists(db)


class TestFullDatabase:
    async def test_full_store_keeps_committed_events(self, db: Path) -> None:
        """When the size cap is hit appends fail as unavailable; committed events stay."""
        async with await open_sqlite_store(url_of(db, "?max_page_count=40")) as store:
            done: list[int] = []
            with pytest.raises(StoreUnavailableError, match="full") as info:
                await append_until_full(store, done)
            committed = len(done)
            assert "\n" not in str(info.value)
            assert committed > 0
            assert await store.last_seq() == committed
            assert [r.seq async for r in store.read()] == list(range(1, committed + 1))
            assert await store.integrity_check() == ["ok"]

    async def test_commit_progress_is_atomic(self, db: Path) -> None:
        """A commit_progress that cannot store its dead letters does not move the checkpoint."""
        async with await open_sqlite_store(url_of(db, "?max_page_count=40")) as store:
            await store.append([Tick(1)])
            await store.commit_progress("g", 1)
            with pytest.raises(StoreUnavailableError, match="full"):
                await store.commit_progress("g", 2, [letter(2, traceback="t" * 400_000)])
            assert await store.load_checkpoint("g") == 1
            assert await store.count_dead_letters(None) == 0


class TestGroupCommit:
    async def test_concurrent_appends_share_one_transaction(self, store: SQLiteEventStore) -> None:
        """A hundred appends waiting together are committed by a single transaction."""
        results = await asyncio.gather(*(store.append([Tick(i)]) for i in range(100)))
        assert sorted(r[0].seq for r in results) == list(range(1, 101))
        stats = store.statistics()
        assert (stats.transactions, stats.events, stats.largest_transaction) == (1, 100, 100)
        first = await store.get(1)
        assert first is not None
        again = await store.get_by_id(first.event_id)
        assert again is not None
        await store.append([again.decode(), Tick(1000)])
        stats = store.statistics()
        assert (stats.transactions, stats.events, stats.duplicates) == (2, 101, 1)

    @pytest.mark.parametrize("size", [1, 99, 100, 101, 250])
    async def test_batches_across_statement_chunks(
        self, store: SQLiteEventStore, size: int
    ) -> None:
        """A transaction of any size (rows go in up to 100 per INSERT) stores every event
        once, in order, and a duplicate inside such a batch keeps its first seq."""
        first = [Tick(i) for i in range(size)]
        results = await store.append(first)
        assert [r.seq for r in results] == list(range(1, size + 1))
        records = [r async for r in store.read()]
        assert [r.event_id for r in records] == [e.id for e in first]
        assert [r.decode() for r in records] == first
        again = [Tick(size + i) for i in range(size)]
        middle = size // 2
        mixed = [*again[:middle], first[-1], *again[middle:]]
        results = await store.append(mixed)
        assert results[middle].duplicate
        assert results[middle].seq == size
        assert [r.seq for r in results if not r.duplicate] == list(range(size + 1, 2 * size + 1))
        assert await store.last_seq() == 2 * size
        assert [r.decode() async for r in store.read(from_seq=size + 1)] == again

    async def test_parts_appended_in_one_block_commit_together(self, db: Path) -> None:
        """appending(): parts get running seqs, a duplicate across parts keeps its first
        seq, another reader sees nothing until the block ends, then everything; an
        append of another caller meanwhile waits and lands after the block."""
        async with (
            await open_sqlite_store(url_of(db)) as store,
            await open_sqlite_store(url_of(db, "?mode=ro")) as reader,
        ):
            first = [Tick(i) for i in range(150)]
            second = [Tick(1000 + i) for i in range(50)]
            async with store.appending() as batch:
                one = await batch.append(first)
                two = await batch.append([first[7], *second])
                assert await reader.last_seq() == 0
                other = asyncio.ensure_future(store.append([Tick(5000)]))
                for _ in range(20):
                    await asyncio.sleep(0)
                assert not other.done()
            assert [r.seq for r in one] == list(range(1, 151))
            assert (two[0].seq, two[0].duplicate) == (8, True)
            assert [r.seq for r in two[1:]] == list(range(151, 201))
            assert (await asyncio.wait_for(other, 10))[0].seq == 201
            assert await reader.last_seq() == 201
            stats = store.statistics()
            assert (stats.events, stats.duplicates) == (201, 1)

    async def test_a_block_that_raises_stores_nothing(self, db: Path) -> None:
        """An exception inside appending() rolls every part back; the store goes on."""
        async with await open_sqlite_store(url_of(db)) as store:
            await store.append([Tick(0)])

            async def stopped() -> None:
                async with store.appending() as batch:
                    await batch.append([Tick(i) for i in range(1, 300)])
                    raise RuntimeError("stop")

            with pytest.raises(RuntimeError, match="stop"):
                await stopped()
            assert await store.last_seq() == 1
            assert (await store.append([Tick(9)]))[0].seq == 2

    async def test_a_full_disk_halfway_stores_none_of_the_parts(self, db: Path) -> None:
        """A part that does not fit fails the whole block: the parts before it are not
        stored either, and what was committed before the block stays."""
        async with await open_sqlite_store(url_of(db, "?max_page_count=60")) as store:
            await store.append([Tick(0)])
            parts = 0

            async def until_full() -> None:
                nonlocal parts
                async with store.appending() as batch:
                    for k in range(1000):
                        await batch.append([Tick(k, note="n" * 2_000) for _ in range(10)])
                        parts += 1

            with pytest.raises(StoreUnavailableError, match="full"):
                await until_full()
            assert parts > 1
            assert await store.last_seq() == 1
            assert [r.seq async for r in store.read()] == [1]
            assert await store.integrity_check() == ["ok"]

    async def test_failed_commit_fails_every_waiter(self, db: Path) -> None:
        """When the shared transaction fails every waiting caller gets the error, none commit."""
        async with await open_sqlite_store(url_of(db, "?max_page_count=40")) as store:
            await store.append([Tick(0)])
            outcomes = await asyncio.gather(
                *(store.append([Tick(i, note="z" * 20_000)]) for i in range(20)),
                return_exceptions=True,
            )
            assert all(isinstance(o, StoreUnavailableError) for o in outcomes)
            assert await store.last_seq() == 1
            assert (await store.append([Tick(99)]))[0].seq == 2

    async def test_two_stores_on_one_file_stay_gap_free(self, db: Path) -> None:
        """Two stores (as two processes would) appending at once share one gap-free sequence."""
        async with (
            await open_sqlite_store(url_of(db)) as one,
            await open_sqlite_store(url_of(db)) as two,
        ):
            batches = await asyncio.gather(
                *(s.append([Tick(i), Tick(i + 1000)]) for i in range(20) for s in (one, two))
            )
            seqs = sorted(r.seq for batch in batches for r in batch)
            assert seqs == list(range(1, 81))
            for batch in batches:
                assert batch[1].seq == batch[0].seq + 1
            await one.acquire_lease("g", "one", 10)
            with pytest.raises(GroupLockedError):
                await two.acquire_lease("g", "two", 10)

    async def test_appended_at_never_goes_back(self, db: Path) -> None:
        """An append after a record stamped in the future is stamped no earlier than it."""
        await fill(db, 1)
        future = datetime.now(UTC) + timedelta(days=1)
        with closing(sqlite3.connect(db)) as conn, conn:
            micros = (future - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
            conn.execute("UPDATE events SET appended_at = ?", (micros,))
        conn.close()
        async with await open_sqlite_store(url_of(db)) as store:
            await store.append([Tick(2)])
            records = [r async for r in store.read()]
        assert records[1].appended_at >= records[0].appended_at >= future


class TestDecodeErrors:
    async def test_unknown_type_and_changed_fields(self, store: SQLiteEventStore) -> None:
        """A type no longer registered or with changed fields is a named error; others decode."""
        await store.append([Tick(1), Tick(2)])
        record = await store.get(1)
        assert record is not None
        with pytest.raises(UnknownEventTypeError) as unknown:
            record.decode(EventRegistry())
        assert unknown.value.type_name == "sqlite_test.tick"

        changed = EventRegistry()
        changed.register(TickWithCount)
        changed._by_name["sqlite_test.tick"] = TickWithCount  # as if the fields had changed
        with pytest.raises(EventDecodeError) as bad:
            record.decode(changed)
        assert bad.value.seq == 1
        other = await store.get(2)
        assert other is not None
        assert isinstance(other.decode(), Tick)


class TestReadsAndWrites:
    async def test_open_read_does_not_block_writes(self, store: SQLiteEventStore) -> None:
        """Appends and checkpoints commit while a read is half consumed; it then sees them."""
        await store.append([Tick(i) for i in range(1, 6)])
        reader = store.read(batch_size=2)
        first = [await anext(reader), await anext(reader)]
        await store.append([Tick(6)])
        await store.commit_progress("g", 6)
        rest = [record async for record in reader]
        assert [r.seq for r in first + rest] == [1, 2, 3, 4, 5, 6]
        assert await store.load_checkpoint("g") == 6


class TestClosing:
    async def test_close_waits_for_queued_appends(self, db: Path) -> None:
        """Appends queued when aclose is called are committed before the store closes."""
        store = await open_sqlite_store(url_of(db))
        appends = [asyncio.ensure_future(store.append([Tick(i)])) for i in range(10)]
        await asyncio.sleep(0)  # let every append queue its rows
        await store.aclose()
        results = [await a for a in appends]
        assert sorted(r[0].seq for r in results) == list(range(1, 11))
        async with await open_sqlite_store(url_of(db)) as again:
            assert await again.last_seq() == 10

    async def test_closed_store_refuses(self, db: Path) -> None:
        """After aclose every call is a one-line StoreUnavailableError; aclose is idempotent."""
        store = await open_sqlite_store(url_of(db))
        await store.aclose()
        await store.aclose()
        with pytest.raises(StoreUnavailableError, match="closed"):
            await store.append([Tick(1)])
        with pytest.raises(StoreUnavailableError, match="closed"):
            await store.last_seq()
        assert siblings(db) == ["events.db"]
        assert digest(db)


class TestExports:
    def test_all_is_complete(self) -> None:
        """plugins.sqlite re-exports exactly the names in its sorted __all__."""
        import plugins.sqlite as package

        # "@py_builtins"/"@pytest_ar": pytest rewrites the asserts of the package that
        # holds a pytest11 plugin (plugins.pytest_plugin) and adds those two names.
        public = {n for n in vars(package) if not n.startswith(("_", "@"))} - {
            "connection",
            "holders",
            "records",
            "schema",
            "store",
            "transactions",
            "writer",
        }
        assert sorted(package.__all__) == package.__all__
        assert set(package.__all__) == public


class TestIntegerRange:
    """SQLite integers are 64-bit: a larger seq, limit or id is refused with a ValueError
    naming the argument, not a raw OverflowError from sqlite3, and nothing is written."""

    BIG = 2**63

    @pytest.mark.parametrize(
        ("name", "call"),
        [
            pytest.param("to_seq", lambda s, n: list_of(s.read(to_seq=n)), id="read-to_seq"),
            pytest.param("from_seq", lambda s, n: list_of(s.read(from_seq=n + 1)), id="from"),
            pytest.param("limit", lambda s, n: list_of(s.read(limit=n)), id="read-limit"),
            pytest.param("batch_size", lambda s, n: list_of(s.read(batch_size=n)), id="batch"),
            pytest.param("seq", lambda s, n: s.get(n), id="get"),
            pytest.param("seq", lambda s, n: s.commit_progress("g", n), id="commit_progress"),
            pytest.param("seq", lambda s, n: s.save_snapshot("p", n, {}), id="save_snapshot"),
            pytest.param("snapshot_id", lambda s, n: s.load_snapshot(n), id="load_snapshot"),
            pytest.param("entry_id", lambda s, n: s.get_dead_letter(n), id="get_dead_letter"),
            pytest.param("entry_id", lambda s, n: s.resolve_dead_letter(n, "r", NOW), id="resolve"),
            pytest.param(
                "entry_id",
                lambda s, n: s.record_dead_letter_failure(
                    n, error_type="E", message="m", traceback="t", at=NOW
                ),
                id="record_failure",
            ),
            pytest.param("limit", lambda s, n: s.list_dead_letters(limit=n), id="list-limit"),
            pytest.param(
                "dead_letters[0].seq",
                lambda s, n: s.add_dead_letters([letter(n)]),
                id="add_dead_letters",
            ),
            pytest.param(
                "dead_letters[0].seq",
                lambda s, n: s.commit_progress("g", 1, [letter(n)]),
                id="commit_progress-letter",
            ),
        ],
    )
    @pytest.mark.parametrize("sign", [1, -2], ids=["too-big", "too-small"])
    async def test_out_of_range_is_a_value_error(
        self, store: SQLiteEventStore, name: str, call: Any, sign: int
    ) -> None:
        await store.append([Tick(1)])
        with pytest.raises(ValueError, match=rf"^{re.escape(name)} ") as info:
            await call(store, sign * self.BIG)
        assert not isinstance(info.value, OverflowError)
        assert "\n" not in str(info.value)
        assert "64-bit" in str(info.value)
        assert await store.load_checkpoint("g") == 0
        assert await store.count_dead_letters(None) == 0
        assert await store.list_snapshots() == []
        assert [r.seq async for r in store.read()] == [1]

    async def test_the_largest_64_bit_values_still_work(self, store: SQLiteEventStore) -> None:
        await store.append([Tick(1)])
        top = 2**63 - 1
        assert await store.get(top) is None
        assert [r.seq async for r in store.read(to_seq=top, limit=top, batch_size=top)] == [1]
        assert [r.seq async for r in store.read(from_seq=-top)] == [1]
        assert await store.load_snapshot(top) is None
        assert await store.list_dead_letters(limit=top) == []
