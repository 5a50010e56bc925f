"""Connection: one aiosqlite connection, a way to run a whole function on its thread, and
the translation of sqlite3 errors into store errors.

aiosqlite runs every call on the connection's own thread; a transaction of many
statements issued call by call pays one thread round trip per statement. ``Link.run``
instead ships one plain function (``fn(sqlite3.Connection, *args)``) to that thread, so a
transaction is a single hop. It uses ``aiosqlite.Connection._execute``, the queueing
primitive every public aiosqlite method is built on (0.20 to 0.22 keep its signature);
aiosqlite has no public equivalent. ``Link.submit`` puts the function on the same queue
(``Connection._tx``) at once, which lets the group-commit writer start a transaction
from a callback, before the tasks already scheduled run.

``FileGuard`` notices a store file deleted or replaced under an open connection.

No ``sqlite3.Error`` leaves this package raw: ``store_error`` turns each into a
``StoreUnavailableError`` whose one-line message says what happened and what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from core.errors import StoreUnavailableError

__all__ = [
    "SHM_UNAVAILABLE",
    "FileGuard",
    "Link",
    "checkpoint",
    "connect",
    "disk_full",
    "is_full",
    "not_writable",
    "store_error",
]

T = TypeVar("T")

# What SQLite says when a read-only connection cannot set up the WAL index (the -shm
# file) because it may not create it: the store's directory is not writable.
SHM_UNAVAILABLE = frozenset(
    {"SQLITE_READONLY_DIRECTORY", "SQLITE_READONLY_CANTINIT", "SQLITE_CANTOPEN"}
)


def store_error(location: str, exc: BaseException) -> StoreUnavailableError:
    """The store error a sqlite3 (or closed-connection) failure means, on one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, ValueError) and "closed" in lowered:
        problem = "the store is closed; open it again"
    elif _io_error(exc, lowered) and disk_full(location):
        # A full disk often shows as an I/O error: the -shm or the -wal could not grow.
        problem = (
            f"the disk is full ({text}, with no space left where the store is): free "
            "space; nothing already committed was lost"
        )
    elif "full" in lowered:
        problem = (
            f"the database or disk is full ({text}): free space or raise the size limit; "
            "nothing already committed was lost"
        )
    elif "readonly" in lowered or "read-only" in lowered:
        problem = _read_only_problem(location, exc, text)
    elif "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
        problem = f"the file is corrupt ({text}); run 'pubsub check' or restore a backup"
    elif "locked" in lowered or "busy" in lowered:
        problem = f"the store is locked by another process ({text}); retry later"
    elif "unable to open" in lowered:
        problem = f"cannot open the file ({text}); check the path and its permissions"
    else:
        problem = f"sqlite error: {text}"
    return StoreUnavailableError(location, problem)


_FULL_BELOW = 1 << 20  # bytes: less free space than this is a full disk
_ROOM_FROM = 64 << 10  # bytes of WAL below which the worker does not check free space


def _io_error(exc: BaseException, lowered: str) -> bool:
    name = str(getattr(exc, "sqlite_errorname", ""))
    return (
        name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN"))
        or "disk i/o error" in lowered
        or "unable to open" in lowered
    )


def disk_full(location: str) -> bool:
    """Whether the file system holding the store at ``location`` has (almost) no space
    left for this user (root may use the blocks reserved for it)."""
    if "://" in location:
        return False
    try:
        found = os.statvfs(Path(location).absolute().parent)
    except OSError:
        return False
    blocks = found.f_bfree if os.geteuid() == 0 else found.f_bavail
    return blocks * found.f_frsize < _FULL_BELOW


def _writable(path: Path) -> bool:
    effective = os.access in os.supports_effective_ids
    return os.access(path, os.W_OK, effective_ids=effective)


def not_writable(path: Path) -> str | None:
    """What stops this user writing the store at ``path`` (the file, its directory, a
    read-only file system), in words; None when nothing visible does."""
    directory = path.parent
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return f"the file system holding {directory} is mounted read-only"
    except OSError:
        return None
    blocked = []
    if path.exists() and not _writable(path):
        blocked.append("the file")
    if not _writable(directory):
        blocked.append(
            f"the directory {directory} (SQLite creates {path.name}-wal and {path.name}-shm there)"
        )
    if not blocked:
        return None
    return (
        f"{' and '.join(blocked)} {'is' if len(blocked) == 1 else 'are'} not writable by this user"
    )


def _read_only_problem(location: str, exc: BaseException, text: str) -> str:
    if getattr(exc, "sqlite_errorname", "") == "SQLITE_READONLY_DBMOVED":
        return f"cannot write: the file was moved or deleted while open ({text}); open it again"
    path = Path(location)
    cause = not_writable(path) if "://" not in location and path.parent.is_dir() else None
    if cause is None:
        return (
            f"cannot write: the store is read-only ({text}); check the permissions of the "
            "file and its directory, or open it with ?mode=ro to read it"
        )
    return f"cannot write: {cause} ({text}); open it with ?mode=ro to read it"


class FileGuard:
    """The identity (device and inode) of the file a store opened, checked on the
    connection threads before each use of a connection.

    A store file deleted or replaced (``mv other.db s.db``) under a running process is
    not noticed by SQLite in WAL mode: the process goes on writing the old inode, so its
    appends are acknowledged and lost, and its frames land in the ``-wal`` that the new
    file now shares by name. Each transaction and read therefore first compares the
    path's ``st_dev``/``st_ino`` with the ones opened (one ``stat``, about a
    microsecond); on a mismatch the store refuses everything from then on, with an
    error that says what happened.
    """

    def __init__(
        self,
        path: Path,
        location: str,
        stamper: Callable[[sqlite3.Connection, tuple[int, int]], None] | None = None,
    ) -> None:
        self._path = os.fspath(path.absolute())
        self._wal = f"{self._path}-wal"
        self._location = location
        self._stamper = stamper
        found = os.stat(self._path)
        self.identity = (found.st_dev, found.st_ino)
        self.lost: str | None = None
        self._stamped_salt: bytes | None = None
        self.checkpointer = False  # this store is the file's worker: it may checkpoint

    def wal_salt(self) -> bytes | None:
        """The salts of the -wal header (new ones each time the WAL restarts from its
        beginning: a new WAL generation), None without a -wal."""
        try:
            fd = os.open(self._wal, os.O_RDONLY)
        except OSError:
            return None
        try:
            return os.pread(fd, 8, 16)
        finally:
            os.close(fd)

    def _make_room(self, conn: sqlite3.Connection) -> None:
        """The worker checkpoints early when the free space left on the disk falls
        below the size of the WAL: copying the WAL into the file needs room for the
        pages it adds, which a completely full disk no longer has."""
        try:
            wal = os.stat(self._wal).st_size
            found = os.statvfs(os.path.dirname(self._path))
        except OSError:
            return
        blocks = found.f_bfree if os.geteuid() == 0 else found.f_bavail
        if wal > _ROOM_FROM and blocks * found.f_frsize < wal:
            checkpoint(conn)

    def after_write(self, conn: sqlite3.Connection) -> None:
        """After a write: stamp the file's identity into the WAL (``schema.stamp``) when
        this connection has not stamped its current generation yet. One small
        transaction after a process's first write, then one per WAL generation (about
        every 4 MB of WAL); a process that only reads never writes a stamp. Nothing
        while a transaction is still open (an atomic batch's parts): after its commit."""
        if conn.in_transaction:
            return
        if self.checkpointer:
            self._make_room(conn)
        if self._stamper is None:
            return
        salt = self.wal_salt()
        if salt is None or salt == self._stamped_salt:
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._stamper(conn, self.identity)
            conn.execute("COMMIT")
        except sqlite3.Error:  # the write itself is committed; the next one tries again
            with contextlib.suppress(sqlite3.Error):  # no transaction left: nothing to undo
                conn.execute("ROLLBACK")
            return
        self._stamped_salt = self.wal_salt()

    def check(self) -> None:
        """StoreUnavailableError once the file at the path is not the one opened."""
        if self.lost is None:
            try:
                found = os.stat(self._path)
            except FileNotFoundError:
                self.lost = (
                    "the file was deleted while this process had it open: nothing more is "
                    "written or acknowledged (it would be lost); restore the file or open "
                    "the store again"
                )
            except OSError:
                return  # cannot tell: SQLite reports what is wrong with the file
            else:
                if (found.st_dev, found.st_ino) == self.identity:
                    return
                self.lost = (
                    "the file was replaced (moved or copied over) while this process had "
                    "it open: nothing more is written or acknowledged (it would go to the "
                    "old file, or corrupt the new one through the shared -wal); open the "
                    "store again"
                )
        raise StoreUnavailableError(self._location, self.lost)


def _guarded(guard: FileGuard, fn: Callable[..., T], raw: sqlite3.Connection, *args: Any) -> T:
    guard.check()
    return fn(raw, *args)


def is_full(exc: BaseException) -> bool:
    """Whether a sqlite3 error says the database or the disk is full."""
    return getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL" or "full" in str(exc).lower()


def checkpoint(conn: sqlite3.Connection) -> bool:
    """Copy the WAL into the file and truncate it (``TRUNCATE``), or, while readers keep
    it in use, copy what they allow (``PASSIVE``: the next write then starts the WAL
    from its beginning instead of growing it). True when it did anything."""
    for mode in ("TRUNCATE", "PASSIVE"):
        try:
            busy, frames, copied = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error:
            return False
        if not busy:
            return True
        if copied > 0 or frames == 0:
            return True
    return False


def _guarded_write(
    guard: FileGuard, fn: Callable[..., T], raw: sqlite3.Connection, *args: Any
) -> T:
    guard.check()
    try:
        result = fn(raw, *args)
    except sqlite3.OperationalError as exc:
        # Disk full: the worker (the file's one checkpointer) checkpoints the WAL, which
        # frees the space of superseded page versions, and tries once more. Safe: the
        # failed transaction was rolled back, and appends are idempotent by event id.
        if not (guard.checkpointer and is_full(exc)) or raw.in_transaction:
            raise
        if not checkpoint(raw):
            raise
        result = fn(raw, *args)
    guard.after_write(raw)
    return result


class Link:
    """An open aiosqlite connection and its sqlite3 connection, used on its thread only."""

    def __init__(self, conn: aiosqlite.Connection, location: str) -> None:
        self._conn = conn
        self._raw = conn._conn
        self._execute = cast(Callable[..., Awaitable[Any]], conn._execute)
        self._tx = conn._tx
        self._location = location
        self._closed = False
        self._guard: FileGuard | None = None
        self._wrap: Callable[..., Any] = _guarded
        _open_links.add(self)

    def guard(self, guard: FileGuard, *, writes: bool = False) -> None:
        """Check ``guard`` on the connection's thread before every function run on it
        (and, on the write connection, stamp each new WAL generation after it)."""
        self._guard = guard
        self._wrap = _guarded_write if writes else _guarded

    def _stop_at_exit(self) -> None:
        """Stop the connection's thread (a program is exiting without closing the
        store): what is queued runs first, then the connection closes."""
        if not self._closed:
            self._closed = True
            self._conn.stop()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(raw_connection, *args)`` on the connection's thread; sqlite3 errors come
        back as StoreUnavailableError, store errors raised by ``fn`` unchanged."""
        if self._closed:
            raise StoreUnavailableError(self._location, "the store is closed; open it again")
        try:
            if self._guard is not None:
                return cast(T, await self._execute(self._wrap, self._guard, fn, self._raw, *args))
            return cast(T, await self._execute(fn, self._raw, *args))
        except (sqlite3.Error, ValueError) as exc:
            if isinstance(exc, ValueError) and "closed" not in str(exc).lower():
                raise
            raise store_error(self._location, exc) from exc

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``fn(raw_connection, *args)`` on the connection's thread now, without
        waiting for the event loop to run a task; the future holds the raw outcome
        (sqlite3 errors untranslated: pass them through ``store_error``)."""
        if self._closed:
            raise StoreUnavailableError(self._location, "the store is closed; open it again")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if self._guard is not None:
            call = partial(self._wrap, self._guard, fn, self._raw, *args)
            self._tx.put_nowait((future, call))
        else:
            self._tx.put_nowait((future, partial(fn, self._raw, *args)))
        return future

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        _open_links.discard(self)
        try:
            await self._conn.close()
        except sqlite3.Error as exc:
            raise store_error(self._location, exc) from exc


# Connections a program has not closed. aiosqlite runs each on a non-daemon thread, and
# the interpreter joins those at exit before atexit handlers run: a script that never
# closed its store would hang there. threading's own exit hooks run before that join
# (concurrent.futures uses them the same way); a write nobody was answered for is
# rolled back by SQLite, as after a crash.
_open_links: weakref.WeakSet[Link] = weakref.WeakSet()


def _stop_unclosed() -> None:
    for link in list(_open_links):
        link._stop_at_exit()


_register_exit_hook = getattr(threading, "_register_atexit", None)
if _register_exit_hook is not None:
    _register_exit_hook(_stop_unclosed)


async def connect(uri: str, location: str) -> Link:
    """Open ``uri`` (a ``file:`` URI) in autocommit mode: transactions are explicit."""
    try:
        conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise store_error(location, exc) from exc
    return Link(conn, location)
