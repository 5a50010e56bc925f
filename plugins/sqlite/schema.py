"""Schema: the tables of a SQLite event store, how a file is recognised as one, and the
forward migrations that bring an older store up to date.

A pubsub store is marked by ``PRAGMA application_id`` (``APPLICATION_ID``) and versioned by
``PRAGMA user_version`` (the number of ``MIGRATIONS`` applied). ``inspect`` looks at a file
through a read-only connection and decides, before anything writes to it (not even the
switch to WAL), whether it is a new file, a pubsub store this code can open, a store from
a newer pubsub (``SchemaVersionError``) or something else (``NotAStoreError``); a file it
refuses is left byte-for-byte unchanged. A -wal beside the file that was written for
another file (the store was replaced while a process had it open) is refused too, before
SQLite could apply it: writers ``stamp`` the inode they opened into every WAL generation.
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
    "STAMP_MAGIC",
    "FileState",
    "Inspection",
    "create_private_file",
    "foreign_wal",
    "inspect",
    "migrate",
    "stamp",
    "wal_stamp",
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
    # 3: which file the writers opened (inode), stamped into every WAL generation, so a
    # -wal left beside a replaced file is recognised as another file's (see stamp); and
    # when a lease holder's process started (see holders), to recognise a dead one.
    """
    CREATE TABLE IF NOT EXISTS store_file (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        marker BLOB    NOT NULL
    );
    ALTER TABLE leases ADD COLUMN holder_started INTEGER;
    """,
    # 4: headers stored with an event (orjson of a string-to-string object, such as a
    # W3C trace context; NULL when it has none, which costs nothing).
    """
    ALTER TABLE events ADD COLUMN headers BLOB;
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
        stamped = wal_stamp(wal)
        inode = path.stat().st_ino
        # A -wal stamped for another inode is a copy's (copied with its file: the file's
        # own stamp names the same inode) or a replaced file's (another store's file is
        # at the path now: its own stamp differs). Only the second is refused.
        if stamped is not None and stamped != inode:
            own = file_stamp(path, header)
            if own is not None and own != stamped:
                raise StoreUnavailableError(location, foreign_wal(path, stamped, inode))
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


# A stamp is STAMP_MAGIC + the inode + the device + a nonce (8 bytes each, big-endian),
# kept as a blob in the one row of store_file. The magic holds bytes that UTF-8 text and JSON
# payloads cannot, so it is found in a WAL page image only where a stamp is.
STAMP_MAGIC = b"\xffpubsub-file\x00\xfe"


def stamp(conn: sqlite3.Connection, identity: tuple[int, int]) -> None:
    """Record which file (device, inode) this writer has open, inside the caller's
    transaction. A writer stamps after its first write and after the first write of each
    new WAL generation (``FileGuard.after_write``), so every WAL generation carries the
    inode of the file it was written for; ``inspect`` finds it in the -wal (``wal_stamp``) and
    compares it with the file at the path. The row keeps one size, so SQLite overwrites
    it in place (and ``secure_delete`` zeroes any copy it moves): a page image never
    holds a stale stamp."""
    device, inode = identity
    # The nonce makes each stamp new bytes: SQLite skips rewriting a row whose bytes
    # are unchanged, and then no frame of this generation would carry it.
    marker = (
        STAMP_MAGIC + inode.to_bytes(8, "big") + (device % 2**64).to_bytes(8, "big") + os.urandom(8)
    )
    conn.execute("PRAGMA secure_delete = ON")
    try:
        conn.execute(
            "INSERT INTO store_file (id, marker) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET marker = excluded.marker",
            (marker,),
        )
    finally:
        conn.execute("PRAGMA secure_delete = OFF")


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """SQLite's big-endian varint at ``at``: (value, offset after it)."""
    value = 0
    for i in range(8):
        byte = data[at + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    return (value << 8) | data[at + 8], at + 9


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8, 7: 8}


def _schema_rootpage(page1: bytes, table: str) -> int | None:
    """The root page of ``table`` in the schema on page 1 of a database file, when the
    schema is a single leaf page without overflow (a pubsub store's is); else None."""
    if page1[100] != 0x0D:
        return None
    cells = int.from_bytes(page1[103:105], "big")
    for i in range(cells):
        at = int.from_bytes(page1[108 + 2 * i : 110 + 2 * i], "big")
        size, at = _varint(page1, at)
        _rowid, at = _varint(page1, at)
        if at + size > len(page1):
            return None  # overflowing record: not a pubsub schema row
        header_size, cursor = _varint(page1, at)
        types = []
        while cursor < at + header_size:
            kind, cursor = _varint(page1, cursor)
            types.append(kind)
        values: list[object] = []
        body = at + header_size
        for kind in types[:4]:  # type, name, tbl_name, rootpage
            if kind in _INT_SIZES:
                n = _INT_SIZES[kind]
                values.append(int.from_bytes(page1[body : body + n], "big", signed=True))
            elif kind >= 12:
                n = (kind - 12) // 2
                values.append(page1[body : body + n])
            else:
                n = 0
                values.append({8: 0, 9: 1}.get(kind))
            body += n
        if len(values) == 4 and values[0] == b"table" and values[1] == table.encode():
            root = values[3]
            return root if isinstance(root, int) else None
    return None


def file_stamp(path: Path, header: bytes) -> int | None:
    """The inode stamped in the database file itself (what its last checkpoint left),
    read from its pages without SQLite, which would apply the -wal; None when it holds
    none or cannot be read that way."""
    size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if size == 1 else size
    try:
        with path.open("rb") as f:
            page1 = f.read(page_size)
            root = _schema_rootpage(page1, "store_file") if len(page1) == page_size else None
            if root is None or root < 2:
                return None
            f.seek((root - 1) * page_size)
            page = f.read(page_size)
    except (OSError, IndexError):
        return None
    at = page.find(STAMP_MAGIC)
    if at < 0:
        return None
    start = at + len(STAMP_MAGIC)
    return int.from_bytes(page[start : start + 8], "big")


_WAL_MAGIC = (0x377F0682, 0x377F0683)


def wal_stamp(wal: Path) -> int | None:
    """The inode stamped in the current generation of the -wal at ``wal`` (its first
    stamp: writers stamp near the start of a generation), None when it holds none.

    Reads the WAL format directly, frame by frame, while the frames carry the header's
    salts (older frames past the current generation do not), because SQLite applies a
    -wal to whatever file is at the path: a view through SQLite would mix two files."""
    try:
        f = wal.open("rb")
    except OSError:
        return None
    with f:
        header = f.read(32)
        if len(header) < 32 or int.from_bytes(header[:4], "big") not in _WAL_MAGIC:
            return None
        page_size = int.from_bytes(header[8:12], "big")
        salts = header[16:24]
        if not 512 <= page_size <= 65536:
            return None
        while True:
            frame = f.read(24)
            if len(frame) < 24 or frame[8:16] != salts:
                return None
            page = f.read(page_size)
            if len(page) < page_size:
                return None
            at = page.find(STAMP_MAGIC)
            if at >= 0:
                start = at + len(STAMP_MAGIC)
                return int.from_bytes(page[start : start + 8], "big")


def foreign_wal(path: Path, stamped_inode: int, inode: int) -> str:
    """Why a -wal written for another file is not applied to the file at ``path``."""
    return (
        f"{path.name}-wal beside it was written for another store file (inode "
        f"{stamped_inode}; this file is inode {inode} and another store): the store was "
        "replaced while a process had it open, and applying that -wal would corrupt it. "
        f"Nothing was changed. Move {path.name}-wal and {path.name}-shm away once no "
        "process uses the old store (they hold the old file's last writes), then open it"
    )
