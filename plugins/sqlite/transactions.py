"""Transactions: the store's writes and connection settings, each a plain function that
runs whole on a connection's thread (``Link.run``), so a transaction costs one hop.

Every write is ``BEGIN IMMEDIATE`` ... ``COMMIT`` and rolls back on any exception;
``commit_progress`` moves a checkpoint forward only and adds its dead letters in the same
transaction, fenced by the committer's lease when it gives one; ``acquire_lease`` refuses
a live lease of another holder, unless that holder is a dead process of this host.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from core.errors import GroupLockedError
from core.store import NO_HOLDER, Lease

from . import holders, schema
from .connection import SHM_UNAVAILABLE

__all__ = [
    "acquire_lease",
    "add_dead_letters",
    "commit_progress",
    "configure_reader",
    "configure_writer",
    "enable_checkpoints",
    "execute",
    "execute_pragma",
    "insert_returning",
    "probe_reader",
    "read_pragmas",
]

WAL_AUTOCHECKPOINT = 1000  # pages: the worker's automatic checkpoint threshold
WAL_SIZE_LIMIT = 16 << 20  # bytes the worker truncates the WAL to after a reset

PRAGMAS = (
    "application_id",
    "user_version",
    "journal_mode",
    "synchronous",
    "wal_autocheckpoint",
    "busy_timeout",
    "page_size",
    "max_page_count",
)


def _transaction(conn: sqlite3.Connection, body: Callable[[], Any]) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


_INSERT_DLQ = (
    "INSERT INTO dead_letters (event_id, event_type, handler, reason, error_type, message, "
    "traceback, attempts, first_failure_at, last_failure_at, payload, seq, group_name, "
    "source, status, resolved_at, resolution) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _insert_dead_letters(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> list[int]:
    ids = []
    for row in rows:
        cursor = conn.execute(_INSERT_DLQ, row)
        assert cursor.lastrowid is not None
        ids.append(cursor.lastrowid)
    return ids


def add_dead_letters(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> list[int]:
    result: list[int] = _transaction(conn, lambda: _insert_dead_letters(conn, rows))
    return result


def _check_lease(conn: sqlite3.Connection, group: str, holder: str, now: float) -> None:
    """GroupLockedError unless ``holder`` holds the group's lease, alive at ``now``."""
    current = conn.execute(
        "SELECT holder, expires_at FROM leases WHERE group_name = ?", (group,)
    ).fetchone()
    if current is None:
        raise GroupLockedError(group, NO_HOLDER, 0.0)
    if current[0] != holder or current[1] <= now:
        raise GroupLockedError(group, current[0], current[1] - now)


def commit_progress(
    conn: sqlite3.Connection,
    group: str,
    seq: int,
    rows: Sequence[tuple[Any, ...]],
    now: int,
    fence: tuple[str, float] | None = None,
) -> None:
    """Dead letters and the checkpoint move in one transaction; with ``fence``
    (holder, wall-clock now) only while that holder's lease is alive."""

    def body() -> None:
        if fence is not None:
            _check_lease(conn, group, *fence)
        _insert_dead_letters(conn, rows)
        conn.execute(
            "INSERT INTO checkpoints (group_name, seq, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (group_name) DO UPDATE SET seq = excluded.seq, "
            "updated_at = excluded.updated_at WHERE excluded.seq > checkpoints.seq",
            (group, seq, now),
        )

    _transaction(conn, body)


def acquire_lease(
    conn: sqlite3.Connection,
    group: str,
    holder: str,
    ttl: float,
    now: float,
    checkpoints: bool = False,
) -> Lease:
    """Take or renew the lease; with ``checkpoints`` the connection then checkpoints the
    WAL automatically (the lease holder is the file's one live worker)."""

    def body() -> Lease:
        current = conn.execute(
            "SELECT holder, expires_at, holder_started FROM leases WHERE group_name = ?",
            (group,),
        ).fetchone()
        if (
            current is not None
            and current[0] != holder
            and current[1] > now
            and not holders.dead_on_this_host(current[0], current[2])
        ):
            raise GroupLockedError(group, current[0], current[1] - now)
        conn.execute(
            "INSERT INTO leases (group_name, holder, expires_at, holder_started) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT (group_name) DO UPDATE SET holder = excluded.holder, "
            "expires_at = excluded.expires_at, holder_started = excluded.holder_started",
            (group, holder, now + ttl, holders.own_start_time(holder)),
        )
        # A row of another holder is a lease that was never released (that worker
        # died or stalled): what it was dispatching may be delivered again.
        previous = current[0] if current is not None and current[0] != holder else None
        return Lease(group, holder, now + ttl, previous_holder=previous)

    lease: Lease = _transaction(conn, body)
    if checkpoints:
        enable_checkpoints(conn)
    return lease


def enable_checkpoints(conn: sqlite3.Connection) -> None:
    """Make this connection the file's checkpointer: automatic checkpoints, and a WAL
    cut back to ``WAL_SIZE_LIMIT`` after each reset, so the WAL gives its disk space
    back instead of keeping its largest size."""
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}").fetchall()
    conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}").fetchall()


def execute(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    """One statement in its own transaction; returns the number of rows it changed."""
    changed: int = _transaction(conn, lambda: conn.execute(sql, params).rowcount)
    return changed


def insert_returning(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    def body() -> int:
        rowid = conn.execute(sql, params).lastrowid
        assert rowid is not None
        return rowid

    result: int = _transaction(conn, body)
    return result


def read_pragmas(conn: sqlite3.Connection) -> dict[str, str | int]:
    return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in PRAGMAS}


def execute_pragma(conn: sqlite3.Connection, sql: str) -> None:
    conn.execute(sql).fetchall()


def configure_writer(
    conn: sqlite3.Connection,
    synchronous: str,
    busy_ms: int,
    max_pages: str | None,
    location: str,
) -> None:
    """Pragmas of the write connection, then the forward migrations."""
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"cannot switch to WAL (journal_mode stays {mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    if max_pages is not None:
        conn.execute(f"PRAGMA max_page_count = {int(max_pages)}").fetchall()
    schema.migrate(conn, location)


def configure_reader(conn: sqlite3.Connection, busy_ms: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    conn.execute("PRAGMA query_only = 1")


def probe_reader(conn: sqlite3.Connection) -> str | None:
    """Read the schema once, so that a store that cannot be read shows now, not at the
    first query. Returns SQLite's error name when the WAL index cannot be set up
    (``SHM_UNAVAILABLE``); any other error is raised."""
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
    except sqlite3.OperationalError as exc:
        name = getattr(exc, "sqlite_errorname", "")
        if name in SHM_UNAVAILABLE:
            return str(name)
        raise
    return None
