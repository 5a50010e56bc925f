"""Schema: the tables of a SQLite event store, how a file is recognised as one, and the
forward migrations that bring an older store up to date.

A pubsub store is marked by ``PRAGMA application_id`` (``APPLICATION_ID``) and versioned by
``PRAGMA user_version`` (the number of ``MIGRATIONS`` applied). ``inspect`` looks at a file
through a read-only connection and decides, before anything writes to it (not even the
switch to WAL), whether it is a new file, a pubsub store this code can open, a store from
a newer pubsub (``SchemaVersionError``) or something else (``NotAStoreError``); a file it
refuses is left byte-for-byte unchanged.
"""

from __future__ import annotations

import enum
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from core.errors import NotAStoreError, SchemaVersionError, StoreUnavailableError

from .connection import SHM_UNAVAILABLE, not_writable

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "FileState",
    "Inspection",
    "create_private_file",
    "inspect",
    "migrate",
    "wal_unreadable",
]

APPLICATION_ID = 0x50756253  # "PubS" in ASCII: marks a pubsub store
SQLITE_MAGIC = b"SQLite format 3\x00"

# Each step brings user_version n to n + 1. Never edit a released step: append a new one.
MIGRATIONS: tuple[str, ...] = (
    # 1: the log, consumer groups and leases.
    """
    CREATE TABLE IF NOT EXISTS events (
        seq            INTEGER PRIMARY KEY,
        event_id       BLOB    NOT NULL UNIQUE,
        type_name      TEXT    NOT NULL,
        version        INTEGER NOT NULL,
        created_at     TEXT    NOT NULL,
        appended_at    INTEGER NOT NULL,
        payload        BLOB    NOT NULL,
        checksum       INTEGER NOT NULL,
        correlation_id BLOB,
        causation_id   BLOB
    );
    CREATE INDEX IF NOT EXISTS events_by_appended_at ON events (appended_at);
    CREATE INDEX IF NOT EXISTS events_by_type ON events (type_name, seq);
    CREATE INDEX IF NOT EXISTS events_by_causation ON events (causation_id)
        WHERE causation_id IS NOT NULL;
    CREATE TABLE IF NOT EXISTS checkpoints (
        group_name TEXT    PRIMARY KEY,
        seq        INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS leases (
        group_name TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
    # 2: dead letters and snapshots.
    """
    CREATE TABLE IF NOT EXISTS dead_letters (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id         BLOB    NOT NULL,
        event_type       TEXT    NOT NULL,
        handler          TEXT    NOT NULL,
        reason           TEXT    NOT NULL,
        error_type       TEXT    NOT NULL,
        message          TEXT    NOT NULL,
        traceback        TEXT    NOT NULL,
        attempts         INTEGER NOT NULL,
        first_failure_at TEXT    NOT NULL,
        last_failure_at  TEXT    NOT NULL,
        payload          BLOB    NOT NULL,
        seq              INTEGER,
        group_name       TEXT,
        source           TEXT    NOT NULL,
        status           TEXT    NOT NULL,
        resolved_at      TEXT,
        resolution       TEXT
    );
    CREATE INDEX IF NOT EXISTS dead_letters_by_status ON dead_letters (status, id);
    CREATE TABLE IF NOT EXISTS snapshots (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        name       TEXT    NOT NULL,
        seq        INTEGER NOT NULL,
        state      BLOB    NOT NULL,
        created_at TEXT    NOT NULL
    );
    CREATE INDEX IF NOT EXISTS snapshots_by_name ON snapshots (name, seq, id);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class FileState(enum.Enum):
    """What ``inspect`` found at a path."""

    NEW = "new"  # missing, empty, or an empty SQLite database: ours to create
    STORE = "store"  # a pubsub store at SCHEMA_VERSION or older


@dataclass(frozen=True, slots=True)
class Inspection:
    state: FileState
    version: int  # the store's user_version (0 for a new file)


def _read_header(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(108)


def inspect(path: Path, location: str) -> Inspection:
    """Classify the file at ``path`` without writing to it; NotAStoreError or
    SchemaVersionError for a file that must be left alone."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return Inspection(FileState.NEW, 0)
    except OSError as exc:
        raise StoreUnavailableError(location, f"cannot stat the file: {exc.strerror}") from None
    if path.is_dir():
        raise NotAStoreError(location, "is a directory, not a pubsub store")
    if size == 0:
        return Inspection(FileState.NEW, 0)
    try:
        header = _read_header(path)
    except OSError as exc:
        raise StoreUnavailableError(location, f"cannot read the file: {exc.strerror}") from None
    if not header.startswith(SQLITE_MAGIC) or len(header) < 108:
        raise NotAStoreError(location, "is not a pubsub store (not an SQLite database)")
    wal = Path(f"{path}-wal")
    if Path(f"{path}-journal").exists() or (wal.exists() and wal.stat().st_size > 0):
        # The journal may hold a newer first page than the file: ask SQLite, read-only.
        app_id, version, objects = _ask_sqlite(path, location)
    else:
        # The header is authoritative: read it without opening the file with SQLite,
        # which would create -wal/-shm files beside a WAL-mode database.
        version = int.from_bytes(header[60:64], "big", signed=True)
        app_id = int.from_bytes(header[68:72], "big", signed=True)
        page_type, cells = header[100], int.from_bytes(header[103:105], "big")
        objects = 0 if page_type == 0x0D and cells == 0 else 1
    if app_id == 0 and version == 0 and objects == 0:
        return Inspection(FileState.NEW, 0)
    if app_id != APPLICATION_ID:
        raise NotAStoreError(location, f"is not a pubsub store (application_id {app_id:#x})")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(location, version, SCHEMA_VERSION)
    return Inspection(FileState.STORE, version)


def _ask_sqlite(path: Path, location: str) -> tuple[int, int, int]:
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreUnavailableError(location, f"cannot open the file: {exc}") from None
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        cause = None
        if getattr(exc, "sqlite_errorname", "") in SHM_UNAVAILABLE:
            cause = not_writable(path)
        if cause is not None:
            raise StoreUnavailableError(location, wal_unreadable(path, cause)) from None
        raise NotAStoreError(location, f"is not a pubsub store (unreadable: {exc})") from None
    finally:
        conn.close()
    return int(app_id), int(version), int(objects)


def wal_unreadable(path: Path, cause: str) -> str:
    """Why a store whose -wal holds changes cannot be read by a user who cannot create
    its -shm file, and what to do."""
    return (
        f"cannot read: {cause}, and {path.name}-wal holds changes not yet checkpointed into "
        "the file, which SQLite cannot read without creating "
        f"{path.name}-shm; open the store once read-write as a user who can write the "
        "directory (its last close checkpoints them), then mode=ro can read it"
    )


def create_private_file(path: Path) -> None:
    """Create an empty file readable by its owner only (0o600); no-op if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def migrate(conn: sqlite3.Connection, location: str) -> int:
    """Apply the missing forward migrations in one transaction; returns the new version.
    Runs on the write connection (autocommit mode), after ``inspect`` accepted the file."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id not in (0, APPLICATION_ID):  # changed since inspect: refuse, write nothing
            raise NotAStoreError(location, f"is not a pubsub store (application_id {app_id:#x})")
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(location, version, SCHEMA_VERSION)
        for step in MIGRATIONS[version:]:
            for statement in step.split(";"):
                if statement.strip():
                    conn.execute(statement)
        if version < SCHEMA_VERSION or app_id != APPLICATION_ID:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION
