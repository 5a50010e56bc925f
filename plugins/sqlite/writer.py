"""Writer: group commit of appends to the SQLite log.

Every ``append`` call queues its rows and waits. Whenever no commit is in flight,
everything queued is written in a single transaction on the write connection's thread
(one ``BEGIN IMMEDIATE``, multi-row ``INSERT`` statements, one ``COMMIT``, hence one
fsync), then resolves each caller's future. Callers that wait together share a commit,
so throughput grows with the number of concurrent publishers while a lone publisher
still gets its own commit right away.

Sequence numbers are assigned inside the transaction as ``max(seq) + 1`` onwards, so they
are gap-free whatever fails; ``appended_at`` is ``max(now, last appended_at)`` so it never
decreases along the sequence. An event id already in the log (or earlier in the same
transaction) is answered with its original sequence number and ``duplicate=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from core.store import AppendResult

from .connection import Link, store_error

__all__ = ["GroupCommitWriter", "Row", "commit_batch"]

# event_id, type_name, version, created_at, payload, checksum, correlation_id,
# causation_id, headers
Row = tuple[bytes, str, int, str, bytes, int, bytes | None, bytes | None, bytes | None]

_INSERT_HEAD = (
    "INSERT INTO events (seq, appended_at, event_id, type_name, version, created_at, "
    "payload, checksum, correlation_id, causation_id, headers) VALUES "
)
_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_CHUNK = 100  # rows per multi-row INSERT (1,100 parameters; SQLite allows 32,766)
_MULTI: dict[int, str] = {}  # rows -> the INSERT statement of that many rows


def _insert_rows(conn: sqlite3.Connection, inserts: Sequence[tuple[object, ...]]) -> None:
    """Insert every row, up to ``_CHUNK`` rows per statement. One multi-row INSERT costs
    a third less than ``executemany`` of its rows (one step instead of one per row), and
    the interpreter lock is released once per statement instead of once per row, so the
    event loop's thread runs meanwhile without lock hand-offs."""
    for lo in range(0, len(inserts), _CHUNK):
        chunk = inserts[lo : lo + _CHUNK]
        sql = _MULTI.get(len(chunk))
        if sql is None:
            sql = _MULTI[len(chunk)] = _INSERT_HEAD + ", ".join([_VALUES] * len(chunk))
        conn.execute(sql, [value for row in chunk for value in row])


_LAST = "SELECT seq, appended_at FROM events ORDER BY seq DESC LIMIT 1"
_BY_ID = "SELECT seq FROM events WHERE event_id = ?"


T = TypeVar("T")
_Done = tuple[list[list[AppendResult]], int]  # each request's results, events appended


def _result_maker() -> Callable[[int, UUID], AppendResult]:
    """``AppendResult(seq, event_id)`` without its frozen ``__init__`` (one
    ``object.__setattr__`` per field, the writer thread's largest per-event cost after
    the insert itself); the constructor if the slots are not as expected."""
    names = tuple(f.name for f in dataclasses.fields(AppendResult))
    if names != ("seq", "event_id", "duplicate") or AppendResult.__slots__ != names:
        return AppendResult
    set_seq, set_id, set_dup = (vars(AppendResult)[n].__set__ for n in names)
    new = object.__new__

    def make(seq: int, event_id: UUID) -> AppendResult:
        r = new(AppendResult)
        set_seq(r, seq)
        set_id(r, event_id)
        set_dup(r, False)
        return r

    return make


_new_result = _result_maker()


def _last(conn: sqlite3.Connection) -> tuple[int, int]:
    last = conn.execute(_LAST).fetchone()
    seq, last_at = (0, 0) if last is None else last
    return seq, max(time.time_ns() // 1000, last_at)


def _append_all(
    conn: sqlite3.Connection, requests: Sequence[tuple[Sequence[Row], Sequence[UUID]]]
) -> _Done:
    """The common case: every event is new, so sequence numbers run on from the last."""
    seq, now = _last(conn)
    first = seq + 1
    inserts = [(seq + i, now, *row) for i, row in enumerate(_rows(requests), 1)]
    _insert_rows(conn, inserts)
    make = _new_result
    out = []
    for rows, ids in requests:
        out.append([make(s, i) for s, i in zip(range(first, first + len(rows)), ids, strict=True)])
        first += len(rows)
    return out, len(inserts)


def _rows(requests: Sequence[tuple[Sequence[Row], Sequence[UUID]]]) -> Iterator[Row]:
    for rows, _ in requests:
        yield from rows


def _assign(
    conn: sqlite3.Connection, requests: Sequence[tuple[Sequence[Row], Sequence[UUID]]]
) -> _Done:
    """The careful case: each id is looked up, in the log and earlier in the batch."""
    seq, now = _last(conn)
    known: dict[bytes, int] = {}
    inserts = []
    out = []
    for rows, ids in requests:
        results = []
        for row, event_id in zip(rows, ids, strict=True):
            key = row[0]
            found = known.get(key)
            if found is None:
                hit = conn.execute(_BY_ID, (key,)).fetchone()
                if hit is not None:
                    found = known[key] = hit[0]
            if found is not None:
                results.append(AppendResult(found, event_id, True))
                continue
            seq += 1
            known[key] = seq
            inserts.append((seq, now, *row))
            results.append(AppendResult(seq, event_id))
        out.append(results)
    _insert_rows(conn, inserts)
    return out, len(inserts)


def commit_batch(
    conn: sqlite3.Connection, requests: Sequence[tuple[Sequence[Row], Sequence[UUID]]]
) -> _Done:
    """Write every request in one transaction (runs on the connection's thread).

    The common case, no id already stored, costs no lookups: a UNIQUE violation sends the
    whole batch once more down the path that looks each id up.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        try:
            done = _append_all(conn, requests)
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            done = _assign(conn, requests)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return done


def _begin(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def _part(conn: sqlite3.Connection, rows: Sequence[Row], ids: Sequence[UUID]) -> _Done:
    """One part of an atomic batch, inside the batch's open transaction: under a
    savepoint of its own, so that the UNIQUE fallback undoes only this part's rows."""
    conn.execute("SAVEPOINT part")
    try:
        done = _append_all(conn, [(rows, ids)])
    except sqlite3.IntegrityError:
        conn.execute("ROLLBACK TO part")
        done = _assign(conn, [(rows, ids)])
    conn.execute("RELEASE part")
    return done


def _end(conn: sqlite3.Connection, commit: bool) -> None:
    if conn.in_transaction:
        conn.execute("COMMIT" if commit else "ROLLBACK")


PutRows = Callable[[Sequence[Row], Sequence[UUID]], Awaitable[list[AppendResult]]]


class GroupCommitWriter:
    """Queues appends and commits everything queued together, one transaction at a time.

    No task drives it. An append that finds no commit in flight schedules a submission
    with ``call_soon``, so every caller already runnable joins the same transaction; the
    completion callback of a transaction resolves its callers and at once submits what
    queued meanwhile. While a commit is in flight the event loop is mostly idle, so the
    connection's thread gets the GIL without waiting (overlapping Python work in both
    threads measured slower: GIL hand-offs, not fsyncs, became the bottleneck).
    """

    def __init__(self, link: Link, *, location: str, refuse: Callable[[], None]) -> None:
        self._link = link
        self._location = location
        self._refuse = refuse  # raises when the store cannot be written (read-only, closed)
        # What queued since the last submission: each caller's rows and ids (handed to
        # the connection's thread as they are) and, in the same order, its future.
        self._queue: list[tuple[Sequence[Row], Sequence[UUID]]] = []
        self._waiters: list[asyncio.Future[list[AppendResult]]] = []
        self._inflight: asyncio.Future[_Done] | None = None
        self._scheduled = False  # a _submit is due on the event loop
        self._held = False  # an atomic batch has the connection: group commits wait
        self._exclusive = asyncio.Lock()  # one atomic batch at a time
        self.transactions = 0  # group commits done
        self.events = 0  # events they appended
        self.duplicates = 0  # events answered as duplicates
        self.largest = 0  # most events in one transaction

    async def append(self, rows: Sequence[Row], ids: Sequence[UUID]) -> list[AppendResult]:
        """Queue the rows and return once the transaction holding them is committed."""
        self._refuse()
        future: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, ids))
        self._waiters.append(future)
        if self._inflight is None and not self._scheduled and not self._held:
            # Not at once: let the tasks that are already runnable (typically the callers
            # the last commit woke up) queue their appends for this transaction too.
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._submit)
        return await future

    def _submit(self) -> None:
        self._scheduled = False
        if self._inflight is not None or not self._queue or self._held:
            return
        batch, self._queue = self._queue, []
        waiters, self._waiters = self._waiters, []
        try:
            inflight = self._link.submit(commit_batch, batch)
        except Exception as exc:
            for future in waiters:
                if not future.done():
                    future.set_exception(exc)
            return
        self._inflight = inflight
        inflight.add_done_callback(partial(self._committed, batch, waiters))

    def _committed(
        self,
        batch: list[tuple[Sequence[Row], Sequence[UUID]]],
        waiters: list[asyncio.Future[list[AppendResult]]],
        inflight: asyncio.Future[_Done],
    ) -> None:
        self._inflight = None
        try:
            done = inflight.result()
        except BaseException as exc:
            error: BaseException = exc
            if isinstance(exc, sqlite3.Error | ValueError):
                error = store_error(self._location, exc)
            for future in waiters:
                if not future.done():
                    future.set_exception(error)
        else:
            self.transactions += 1
            results, size = done
            self.duplicates += sum(len(rows) for rows, _ in batch) - size
            for future, result in zip(waiters, results, strict=True):
                if not future.done():  # the caller may have been cancelled
                    future.set_result(result)
            self.events += size
            self.largest = max(self.largest, size)
        if self._queue:
            self._submit()

    @contextlib.asynccontextmanager
    async def atomically(self) -> AsyncIterator[PutRows]:
        """One transaction for everything appended through the function this gives,
        committed (one fsync) when the block ends, rolled back if it raises: all or
        nothing, however many parts. Group commits queued meanwhile wait for it."""
        self._refuse()
        async with self._exclusive:
            while self._inflight is not None or self._scheduled or self._queue:
                if self._inflight is not None:
                    await asyncio.wait([self._inflight])
                else:
                    await asyncio.sleep(0)
            self._held = True
            counts = [0, 0]  # events given, rows inserted (not the results: memory stays flat)
            try:
                await self._run(_begin)

                async def put(rows: Sequence[Row], ids: Sequence[UUID]) -> list[AppendResult]:
                    self._refuse()
                    (results,), inserted = await self._run(_part, rows, ids)
                    counts[0] += len(results)
                    counts[1] += inserted
                    return results

                try:
                    yield put
                except BaseException:
                    # The connection's thread runs jobs in order: the rollback comes after
                    # any part still running, even if this task was cancelled.
                    await asyncio.shield(self._run(_end, False))
                    raise
                await self._run(_end, True)
                self.transactions += 1
                given, size = counts
                self.events += size
                self.duplicates += given - size
                self.largest = max(self.largest, size)
            finally:
                self._held = False
                if self._queue:
                    self._submit()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._link.submit(fn, *args)
        except (sqlite3.Error, ValueError) as exc:
            raise store_error(self._location, exc) from exc

    async def aclose(self) -> None:
        """Wait for the appends already queued to be committed."""
        while self._inflight is not None or self._scheduled:
            if self._inflight is not None:
                await asyncio.wait([self._inflight])
            else:
                await asyncio.sleep(0)
