"""Store: ``SQLiteEventStore``, the embedded durable ``EventStore`` on one SQLite file.

Open it with ``await open_sqlite_store("sqlite:///path/to/events.db")`` (three slashes and
a relative path, four for an absolute one) or through ``core.entrypoints.open_store``.
Query options: ``synchronous=FULL`` (default: a returned append survives power loss) or
``NORMAL`` (survives a process crash, not power loss), ``mode=ro`` (or ``readonly=1``:
reads only, appends refused; it also reads a store in a directory this user cannot write,
see ``_open_reader``), ``mode=rw`` (an existing store only: a missing, empty or 0-byte
file is refused and left untouched, and a store this user cannot write is opened
read-only; what read commands use), ``mode=rwc`` (the default: create the store if
needed), ``busy_timeout`` (seconds, default 5) and ``max_page_count`` (a size cap in
pages). Integer arguments beyond SQLite's 64 bits are a ValueError naming
the argument.

The file is checked through a read-only connection before anything writes to it (see
``schema``). The store then keeps two connections in WAL mode: one for writes, fed by the
group-commit ``writer``, and one read-only connection for reads, so a long read never
blocks an append. Reads page through the log by sequence number (keyset pagination) and
verify every payload's checksum. WAL checkpoints are off (``wal_autocheckpoint=0``) until
the store takes a consumer lease (``acquire_lease``: the lease holder is the one live
worker of the file; ``enable_wal_checkpoints`` does the same without a lease).
``commit_progress`` given the worker's lease is fenced by it inside its transaction.

Every use of either connection first checks that the file at the path is still the one
opened (``connection.FileGuard``): a store whose file was deleted or replaced refuses
all further appends, acknowledgements and reads instead of writing into a lost inode.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

import orjson

from core.errors import (
    ChecksumMismatchError,
    DeadLetterNotFoundError,
    StoreUnavailableError,
)
from core.events import Event
from core.store import (
    Appender,
    AppendResult,
    DeadLetter,
    DeadLetterStatus,
    GroupInfo,
    Lease,
    Snapshot,
    StoredEvent,
    at_least,
    check_headers,
    check_read_args,
    int64,
)

from . import records, schema, transactions
from .connection import FileGuard, Link, connect, not_writable, store_error
from .writer import GroupCommitWriter, PutRows, Row

__all__ = ["SQLiteEventStore", "SQLiteStoreStatistics", "open_sqlite_store"]

_DURABILITY = {
    "FULL": "survives power loss",
    "NORMAL": "survives a process crash, not power loss",
}
_SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
_OPTIONS = ("busy_timeout", "max_page_count", "mode", "readonly", "synchronous")


@dataclass(frozen=True, slots=True)
class SQLiteStoreStatistics:
    """What this store's group-commit writer has done since it was opened."""

    transactions: int  # append transactions committed
    events: int  # events they appended
    duplicates: int  # events answered as duplicates of stored ids
    largest_transaction: int  # most events appended by one transaction


# -- the URL --------------------------------------------------------------------------


def _parse_url(url: str) -> tuple[Path, dict[str, str]]:
    scheme, sep, rest = url.partition("://")
    if scheme != "sqlite" or not sep:
        raise StoreUnavailableError(url, "not a sqlite URL; use sqlite:///path/to/events.db")
    raw_path, _, query = rest.partition("?")
    if raw_path.startswith("/"):
        raw_path = raw_path[1:]  # sqlite:///rel.db is relative, sqlite:////abs.db absolute
    if not raw_path:
        raise StoreUnavailableError(url, "no file path; use sqlite:///path/to/events.db")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise StoreUnavailableError(
            url, f"unknown option {unknown[0]!r}; known options: {', '.join(_OPTIONS)}"
        )
    return Path(raw_path), options


_BUSY_TIMEOUT_MAX = 2**31 // 1000  # seconds: SQLite takes the timeout as a C int of ms


def _option_seconds(url: str, options: Mapping[str, str], name: str, default: float) -> float:
    """A duration option in seconds: a finite number from 0 to about 24 days."""
    text = options.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= _BUSY_TIMEOUT_MAX:  # also refuses nan, inf and 1e400 (inf)
        raise StoreUnavailableError(
            url, f"option {name}={text!r} must be a number of seconds from 0 to {_BUSY_TIMEOUT_MAX}"
        )
    return value


_MODES = ("ro", "rw", "rwc")


def _not_there(path: Path, readonly: bool) -> str:
    """Why a store opened without creating (mode=ro or mode=rw) cannot be opened: the
    file is missing or is not a store yet; nothing was written."""
    how = "mode=ro" if readonly else "mode=rw"
    try:
        size = path.stat().st_size
    except OSError:
        return f"does not exist (opened with {how}, which never creates a store)"
    what = "is an empty file (0 bytes)" if size == 0 else "is an empty SQLite database"
    return (
        f"{what}, not a pubsub store yet; it was left as it is (opened with {how}, which "
        "never creates or initializes a store): publish to it or run a worker to create one"
    )


async def _configured_reader(uri: str, location: str, busy_ms: int) -> tuple[Link, str | None]:
    reader = await connect(uri, location)
    try:
        await reader.run(transactions.configure_reader, busy_ms)
        problem = await reader.run(transactions.probe_reader)
    except BaseException:
        await reader.aclose()
        raise
    return reader, problem


def _immutable_refusal(path: Path, problem: str) -> tuple[str, str | None]:
    """Why this user cannot create the -shm file, and why the store may not be read
    without it (None when it may: no -wal, or an empty one)."""
    cause = not_writable(path)
    if cause is None:
        return "", f"cannot read: SQLite cannot set up {path.name}-shm ({problem})"
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return cause, schema.wal_unreadable(path, cause)
    return cause, None


async def _open_reader(uri: str, path: Path, location: str, busy_ms: int) -> Link:
    """The connection of a read-only store.

    In WAL mode even a reader needs the -shm file, and SQLite creates it when it is
    missing; in a directory this user cannot write it cannot. The file alone then holds
    the whole store exactly when no -wal file exists or it is empty (nothing waits to be
    checkpointed), and the store is opened ``immutable=1``: SQLite reads the file without
    any locking or -shm. Such a reader does not see appends made after it opened and must
    not be kept open while someone else writes the store. When the -wal holds changes the
    open is refused: reading the file alone would silently miss them.
    """
    reader, problem = await _configured_reader(f"{uri}?mode=ro", location, busy_ms)
    if problem is None:
        return reader
    await reader.aclose()
    cause, refusal = await asyncio.to_thread(_immutable_refusal, path, problem)
    if refusal is not None:
        raise StoreUnavailableError(location, refusal)
    reader, problem = await _configured_reader(f"{uri}?mode=ro&immutable=1", location, busy_ms)
    if problem is not None:  # pragma: no cover - immutable reads never set up a WAL index
        await reader.aclose()
        raise StoreUnavailableError(location, f"cannot read: {cause} ({problem})")
    return reader


async def _file_guard(location: str, path: Path) -> FileGuard:
    """The guard of the file just opened at ``path``: the links it is given check, before
    each use, that the file there is still this one (``FileGuard``)."""
    try:
        return await asyncio.to_thread(FileGuard, path, location, schema.stamp)
    except OSError as exc:
        raise StoreUnavailableError(location, f"cannot stat the file: {exc.strerror}") from None


class SQLiteEventStore:
    """A durable event log, consumer groups, leases, dead letters and snapshots in one
    SQLite file. Create it with ``await SQLiteEventStore.open(url)``; close it with
    ``aclose()`` or ``async with``."""

    def __init__(
        self,
        url: str,
        path: Path,
        writer: Link | None,
        reader: Link,
        *,
        synchronous: str,
        wall_clock: Callable[[], float],
        cannot_write: str | None = None,
        guard: FileGuard | None = None,
    ) -> None:
        self._url = url
        self._guard = guard
        self._cannot_write = cannot_write  # why mode=rw fell back to read-only
        self._path = path
        self._location = str(path)
        self._writer_link = writer
        self._reader = reader
        self._synchronous = synchronous
        self._wall = wall_clock
        self._closed = False
        self._writer: GroupCommitWriter | None = None
        if writer is not None:
            self._writer = GroupCommitWriter(
                writer, location=self._location, refuse=self._refuse_writes
            )

    # -- opening and closing ----------------------------------------------------------

    @classmethod
    async def open(
        cls, url: str, *, wall_clock: Callable[[], float] = time.time
    ) -> SQLiteEventStore:
        """Open (or create) the store a ``sqlite://`` URL names; ``wall_clock`` gives
        lease times in seconds since the epoch."""
        path, options = _parse_url(url)
        location = str(path)
        synchronous = options.get("synchronous", "FULL").upper()
        if synchronous not in _DURABILITY:
            raise StoreUnavailableError(
                url, f"option synchronous={synchronous!r} must be FULL or NORMAL"
            )
        mode = options.get("mode", "rwc")
        if mode not in _MODES:
            raise StoreUnavailableError(
                url, f"option mode={mode!r} must be ro, rw (existing store only) or rwc"
            )
        readonly = mode == "ro" or options.get("readonly", "0") in ("1", "true", "yes")
        existing = mode == "rw"  # open an existing store only: never create or initialize
        busy_ms = int(_option_seconds(url, options, "busy_timeout", 5.0) * 1000)
        max_pages = options.get("max_page_count")
        if max_pages is not None and not max_pages.isdigit():
            raise StoreUnavailableError(url, f"option max_page_count={max_pages!r} must be >= 1")

        # Refuses a foreign or newer file before anything writes to it.
        found = await asyncio.to_thread(schema.inspect, path, location)
        uri = path.absolute().as_uri()
        if (readonly or existing) and found.state is schema.FileState.NEW:
            raise StoreUnavailableError(
                location, await asyncio.to_thread(_not_there, path, readonly)
            )
        cannot_write = None
        if existing and not readonly:
            # What reads an existing store may read one this user cannot write (a
            # read-only file, directory or mount): it is opened read-only then.
            cannot_write = await asyncio.to_thread(not_writable, path)
            readonly = cannot_write is not None
        if readonly:
            if found.version < schema.SCHEMA_VERSION:
                raise StoreUnavailableError(
                    location,
                    f"has schema version {found.version} and needs an upgrade to "
                    f"{schema.SCHEMA_VERSION}: open it once without mode=ro",
                )
            reader = await _open_reader(uri, path, location, busy_ms)
            try:
                reader.guard(await _file_guard(location, path))
            except BaseException:
                await reader.aclose()
                raise
            return cls(
                url,
                path,
                None,
                reader,
                synchronous=synchronous,
                wall_clock=wall_clock,
                cannot_write=cannot_write,
            )

        if found.state is schema.FileState.NEW:
            try:
                await asyncio.to_thread(schema.create_private_file, path)
            except OSError as exc:
                raise StoreUnavailableError(
                    location, f"cannot create the file: {exc.strerror}"
                ) from None
        writer = await connect(f"{uri}?mode=rw", location)
        try:
            guard = await _file_guard(location, path)
            await writer.run(
                transactions.configure_writer, synchronous, busy_ms, max_pages, location
            )
            writer.guard(guard, writes=True)
            reader = await connect(f"{uri}?mode=ro", location)
        except BaseException:
            await writer.aclose()
            raise
        try:
            await reader.run(transactions.configure_reader, busy_ms)
            reader.guard(guard)
        except BaseException:
            await reader.aclose()
            await writer.aclose()
            raise
        return cls(
            url, path, writer, reader, synchronous=synchronous, wall_clock=wall_clock, guard=guard
        )

    async def aclose(self) -> None:
        """Wait for queued appends, then close both connections (the last close of the
        file checkpoints its WAL)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer is not None:
                await self._writer.aclose()
        finally:
            await self._reader.aclose()
            if self._writer_link is not None:
                await self._writer_link.aclose()

    async def __aenter__(self) -> SQLiteEventStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _refuse_writes(self) -> None:
        if self._closed:
            raise StoreUnavailableError(self._location, "the store is closed; open it again")
        if self._writer_link is None and self._cannot_write is not None:
            raise StoreUnavailableError(
                self._location,
                f"cannot write: {self._cannot_write}; it was opened read-only for reading",
            )
        if self._writer_link is None:
            raise StoreUnavailableError(
                self._location,
                "opened read-only (mode=ro): writes are refused; open it without mode=ro",
            )

    def _write_link(self) -> Link:
        self._refuse_writes()
        assert self._writer_link is not None
        return self._writer_link

    # -- what it is -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    @property
    def path(self) -> Path:
        return self._path

    @property
    def durability(self) -> str:
        return _DURABILITY[self._synchronous]

    @property
    def readonly(self) -> bool:
        return self._writer_link is None

    async def enable_wal_checkpoints(self) -> None:
        """Let this process checkpoint the WAL (the live worker of the file calls this
        when it takes a consumer lease; publishers never checkpoint)."""
        await self._write_link().run(transactions.enable_checkpoints)
        self._checkpointer()

    def statistics(self) -> SQLiteStoreStatistics:
        w = self._writer
        if w is None:
            return SQLiteStoreStatistics(0, 0, 0, 0)
        return SQLiteStoreStatistics(w.transactions, w.events, w.duplicates, w.largest)

    async def pragmas(self) -> dict[str, str | int]:
        """The settings the store runs with, as the write connection (or, read-only, the
        read connection) sees them."""
        link = self._writer_link or self._reader
        values = await link.run(transactions.read_pragmas)
        values["synchronous"] = _SYNCHRONOUS_NAMES.get(int(values["synchronous"]), "?")
        return values

    async def integrity_check(self) -> list[str]:
        """``PRAGMA integrity_check``: ``["ok"]`` for a sound file, else the problems."""
        rows = await self._reader.run(records.fetch_all, "PRAGMA integrity_check", ())
        return [str(row[0]) for row in rows]

    # -- the log ----------------------------------------------------------------------

    async def append(
        self,
        events: Sequence[Event],
        *,
        headers: Sequence[Mapping[str, str] | None] | None = None,
    ) -> list[AppendResult]:
        """Append durably: returns once the group commit holding these events is done."""
        if self._writer is None:
            self._refuse_writes()
        rows = _rows(events, headers)
        if not rows:
            return []
        assert self._writer is not None
        return await self._writer.append(rows, [e.id for e in events])

    @contextlib.asynccontextmanager
    async def appending(self) -> AsyncIterator[Appender]:
        """Appends that commit together (``core.store.AtomicAppend``): everything appended
        through the appender inside the block is one transaction, committed when the
        block ends and rolled back, with nothing stored, if it raises (a full disk
        halfway through a large file, Ctrl-C). Other appends of this store wait."""
        if self._writer is None:
            self._refuse_writes()
        assert self._writer is not None
        async with self._writer.atomically() as put:
            yield _Appender(put)

    async def read(
        self,
        *,
        from_seq: int = 1,
        to_seq: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[StoredEvent]:
        check_read_args(from_seq, to_seq, limit, batch_size)
        clauses = ["seq > ?"]
        params: list[Any] = []
        if to_seq is not None:
            clauses.append("seq <= ?")
            params.append(to_seq)
        if since is not None:
            clauses.append("appended_at >= ?")
            params.append(records.micros(since))
        if until is not None:
            clauses.append("appended_at <= ?")
            params.append(records.micros(until))
        if types is not None:
            wanted = sorted(set(types))
            if not wanted:
                return
            clauses.append(f"type_name IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        sql = (
            f"SELECT {records.EVENT_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "
            "ORDER BY seq LIMIT ?"
        )
        after = max(from_seq, 1) - 1
        remaining = limit
        size = max(batch_size, 1)
        fetch = self._reader.run
        ahead: asyncio.Future[tuple[list[StoredEvent], ChecksumMismatchError | None]] | None
        n = size if remaining is None else min(size, remaining)
        ahead = asyncio.ensure_future(fetch(records.fetch_records, sql, (after, *params, n)))
        try:
            while ahead is not None:
                batch, error = await ahead
                ahead = None
                if remaining is not None:
                    remaining -= n
                if error is None and len(batch) == n and (remaining is None or remaining > 0):
                    # The next batch is read while this one is consumed.
                    after = batch[-1].seq
                    n = size if remaining is None else min(size, remaining)
                    ahead = asyncio.ensure_future(
                        fetch(records.fetch_records, sql, (after, *params, n))
                    )
                for record in batch:
                    yield record
                if error is not None:
                    raise error
        finally:
            if ahead is not None:  # the consumer stopped early: nobody will await it
                ahead.cancel()
                ahead.add_done_callback(_forget)

    async def _one(self, where: str, params: Sequence[Any]) -> StoredEvent | None:
        sql = f"SELECT {records.EVENT_COLUMNS} FROM events WHERE {where}"
        batch, error = await self._reader.run(records.fetch_records, sql, params)
        if error is not None:
            raise error
        return batch[0] if batch else None

    async def get(self, seq: int) -> StoredEvent | None:
        return await self._one("seq = ?", (int64("seq", seq),))

    async def get_by_id(self, event_id: UUID) -> StoredEvent | None:
        return await self._one("event_id = ?", (event_id.bytes,))

    async def last_seq(self) -> int:
        rows = await self._reader.run(records.fetch_all, "SELECT max(seq) FROM events", ())
        return int(rows[0][0] or 0)

    async def count(self, *, types: Sequence[str] | None = None) -> int:
        if types is None:
            rows = await self._reader.run(records.fetch_all, "SELECT count(*) FROM events", ())
        else:
            wanted = sorted(set(types))
            marks = ", ".join("?" * len(wanted))
            sql = f"SELECT count(*) FROM events WHERE type_name IN ({marks})"
            rows = await self._reader.run(records.fetch_all, sql, wanted)
        return int(rows[0][0])

    async def count_by_type(self) -> dict[str, int]:
        rows = await self._reader.run(
            records.fetch_all,
            "SELECT type_name, count(*) FROM events GROUP BY type_name ORDER BY min(seq)",
            (),
        )
        return {str(name): int(n) for name, n in rows}

    async def children(self, event_id: UUID) -> list[StoredEvent]:
        sql = f"SELECT {records.EVENT_COLUMNS} FROM events WHERE causation_id = ? ORDER BY seq"
        batch, error = await self._reader.run(records.fetch_records, sql, (event_id.bytes,))
        if error is not None:
            raise error
        return batch

    # -- consumer groups and leases ---------------------------------------------------

    async def load_checkpoint(self, group: str) -> int:
        rows = await self._reader.run(
            records.fetch_all, "SELECT seq FROM checkpoints WHERE group_name = ?", (group,)
        )
        return int(rows[0][0]) if rows else 0

    async def commit_progress(
        self,
        group: str,
        seq: int,
        dead_letters: Sequence[DeadLetter] = (),
        *,
        lease: Lease | None = None,
    ) -> None:
        int64("seq", seq)
        rows = _dead_letter_rows(dead_letters)
        now = time.time_ns() // 1000
        fence = None if lease is None else (lease.holder, self._wall())
        await self._write_link().run(transactions.commit_progress, group, seq, rows, now, fence)

    async def groups(self) -> list[GroupInfo]:
        rows = await self._reader.run(
            records.fetch_all,
            "SELECT g.name, coalesce(c.seq, 0), l.holder, l.expires_at, "
            "(SELECT coalesce(max(seq), 0) FROM events) "
            "FROM (SELECT group_name AS name FROM checkpoints "
            "      UNION SELECT group_name FROM leases) AS g "
            "LEFT JOIN checkpoints AS c ON c.group_name = g.name "
            "LEFT JOIN leases AS l ON l.group_name = g.name ORDER BY g.name",
            (),
        )
        now = self._wall()
        out = []
        for name, checkpoint, holder, expires_at, last in rows:
            alive = holder is not None and expires_at > now
            out.append(
                GroupInfo(
                    name,
                    checkpoint,
                    last - checkpoint,
                    holder if alive else None,
                    expires_at if alive else None,
                )
            )
        return out

    async def acquire_lease(self, group: str, holder: str, ttl: float) -> Lease:
        """Take the group's lease; the holder is the file's live worker, so from now on
        this store also checkpoints the WAL (publishers never do)."""
        lease = await self._write_link().run(
            transactions.acquire_lease, group, holder, ttl, self._wall(), True
        )
        self._checkpointer()
        return lease

    def _checkpointer(self) -> None:
        """From now on this store checkpoints the WAL, also to recover from a full disk
        (``connection.checkpoint``)."""
        if self._guard is not None:
            self._guard.checkpointer = True

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        return await self.acquire_lease(lease.group, lease.holder, ttl)

    async def release_lease(self, lease: Lease) -> None:
        await self._write_link().run(
            transactions.execute,
            "DELETE FROM leases WHERE group_name = ? AND holder = ?",
            (lease.group, lease.holder),
        )

    # -- dead letters -----------------------------------------------------------------

    async def add_dead_letters(self, entries: Sequence[DeadLetter]) -> list[int]:
        rows = _dead_letter_rows(entries)
        return await self._write_link().run(transactions.add_dead_letters, rows)

    async def list_dead_letters(
        self,
        *,
        handler: str | None = None,
        event_type: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.OPEN,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        clauses = ["1"]
        params: list[Any] = []
        for column, value in (("handler", handler), ("event_type", event_type)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if status is not None:
            clauses.append("status = ?")
            params.append(str(status))
        sql = f"SELECT {records.DLQ_COLUMNS} FROM dead_letters WHERE {' AND '.join(clauses)} ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(at_least("limit", limit, 0))
        rows = await self._reader.run(records.fetch_all, sql, params)
        return [records.dead_letter(row) for row in rows]

    async def get_dead_letter(self, entry_id: int) -> DeadLetter:
        rows = await self._reader.run(
            records.fetch_all,
            f"SELECT {records.DLQ_COLUMNS} FROM dead_letters WHERE id = ?",
            (int64("entry_id", entry_id),),
        )
        if not rows:
            raise DeadLetterNotFoundError(entry_id)
        return records.dead_letter(rows[0])

    async def resolve_dead_letter(self, entry_id: int, resolution: str, at: datetime) -> bool:
        int64("entry_id", entry_id)
        changed = await self._write_link().run(
            transactions.execute,
            "UPDATE dead_letters SET status = ?, resolved_at = ?, resolution = ? "
            "WHERE id = ? AND status = ?",
            (str(DeadLetterStatus.RESOLVED), at.isoformat(), resolution, entry_id, "open"),
        )
        if changed == 1:
            return True
        await self.get_dead_letter(entry_id)  # DeadLetterNotFoundError if it never existed
        return False

    async def record_dead_letter_failure(
        self, entry_id: int, *, error_type: str, message: str, traceback: str, at: datetime
    ) -> None:
        int64("entry_id", entry_id)
        changed = await self._write_link().run(
            transactions.execute,
            "UPDATE dead_letters SET attempts = attempts + 1, error_type = ?, message = ?, "
            "traceback = ?, last_failure_at = ? WHERE id = ?",
            (error_type, message, traceback, at.isoformat(), entry_id),
        )
        if changed != 1:
            raise DeadLetterNotFoundError(entry_id)

    async def purge_dead_letters(self, *, resolved_only: bool = False) -> int:
        sql = "DELETE FROM dead_letters"
        params: tuple[Any, ...] = ()
        if resolved_only:
            sql += " WHERE status = ?"
            params = (str(DeadLetterStatus.RESOLVED),)
        return await self._write_link().run(transactions.execute, sql, params)

    async def count_dead_letters(
        self, status: DeadLetterStatus | None = DeadLetterStatus.OPEN
    ) -> int:
        if status is None:
            rows = await self._reader.run(
                records.fetch_all, "SELECT count(*) FROM dead_letters", ()
            )
        else:
            rows = await self._reader.run(
                records.fetch_all,
                "SELECT count(*) FROM dead_letters WHERE status = ?",
                (str(status),),
            )
        return int(rows[0][0])

    # -- snapshots --------------------------------------------------------------------

    async def save_snapshot(self, name: str, seq: int, state: Mapping[str, Any]) -> Snapshot:
        int64("seq", seq)
        blob = orjson.dumps(dict(state))
        created = datetime.now(UTC)
        snap_id = await self._write_link().run(
            transactions.insert_returning,
            "INSERT INTO snapshots (name, seq, state, created_at) VALUES (?, ?, ?, ?)",
            (name, seq, blob, created.isoformat()),
        )
        return Snapshot(snap_id, name, seq, orjson.loads(blob), created)

    async def _snapshots(self, where: str, params: Sequence[Any], tail: str) -> list[Snapshot]:
        sql = f"SELECT id, name, seq, state, created_at FROM snapshots WHERE {where} {tail}"
        rows = await self._reader.run(records.fetch_all, sql, params)
        return [records.snapshot(row) for row in rows]

    async def latest_snapshot(self, name: str) -> Snapshot | None:
        found = await self._snapshots("name = ?", (name,), "ORDER BY seq DESC, id DESC LIMIT 1")
        return found[0] if found else None

    async def list_snapshots(self, name: str | None = None) -> list[Snapshot]:
        if name is None:
            return await self._snapshots("1", (), "ORDER BY id")
        return await self._snapshots("name = ?", (name,), "ORDER BY id")

    async def load_snapshot(self, snapshot_id: int) -> Snapshot | None:
        found = await self._snapshots("id = ?", (int64("snapshot_id", snapshot_id),), "")
        return found[0] if found else None


def _dead_letter_rows(entries: Sequence[DeadLetter]) -> list[tuple[Any, ...]]:
    return [records.dead_letter_row(e, f"dead_letters[{i}]") for i, e in enumerate(entries)]


def _forget(future: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a read nobody waits for any more (no warning)."""
    if not future.cancelled():
        future.exception()


async def open_sqlite_store(
    url: str, *, wall_clock: Callable[[], float] = time.time
) -> SQLiteEventStore:
    """The ``pubsub.stores`` factory for ``sqlite://`` URLs."""
    try:
        return await SQLiteEventStore.open(url, wall_clock=wall_clock)
    except sqlite3.Error as exc:
        raise store_error(url, exc) from exc


def _rows(events: Sequence[Event], headers: Sequence[Mapping[str, str] | None] | None) -> list[Row]:
    """The rows of ``events``; an encode error or bad headers refuse the whole call."""
    extra = check_headers(headers, len(events))
    if extra is None:
        return [records.event_row(e) for e in events]
    return [records.event_row(e, h) for e, h in zip(events, extra, strict=True)]


class _Appender:
    """The appender of one ``appending()`` block: each call adds its events to the
    block's transaction (sequence numbers as if committed; nothing is until the end)."""

    __slots__ = ("_put",)

    def __init__(self, put: PutRows) -> None:
        self._put = put

    async def append(
        self,
        events: Sequence[Event],
        *,
        headers: Sequence[Mapping[str, str] | None] | None = None,
    ) -> list[AppendResult]:
        rows = _rows(events, headers)
        if not rows:
            return []
        return await self._put(rows, [e.id for e in events])
