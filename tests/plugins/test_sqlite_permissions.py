"""SQLite store permissions: a store this user may read but not write (a read-only file,
a read-only directory) stays readable where SQLite allows it, refuses writes with a
one-line message that says what is not writable and suggests mode=ro, and loses nothing.

Root writes through any permission bits, so when the tests run as root the store is
opened by a child process running as ``nobody`` (subprocess ``user=``/``group=``);
otherwise the child runs as the current user and chmod does the job.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlite_events import Tick

from plugins.sqlite import open_sqlite_store

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHILD = HERE / "sqlite_as_user.py"


def _interpreters() -> Iterator[str]:
    """Pythons of this version the other user may be able to run (a venv's python can
    be a link into root's home)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, shutil.which(version), f"/usr/bin/{version}"):
        if candidate:
            yield candidate


class Other:
    """Runs the child as the user the tests give or withhold permissions from."""

    def __init__(self) -> None:
        self.root = os.geteuid() == 0
        # The installed dependencies, wherever this run finds them (a venv, --user, ...).
        site_packages = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.pathsep.join([str(ROOT), *site_packages]),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.ids: dict[str, Any] = {}
        if self.root:
            nobody = pwd.getpwnam("nobody")
            self.uid = nobody.pw_uid
            self.ids = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        else:
            self.uid = os.geteuid()
        self.python = self._find_python()

    def _find_python(self) -> str | None:
        for python in _interpreters():
            try:
                done = subprocess.run(
                    [python, "-c", "import sys, plugins.sqlite; print(sys.version_info[:2])"],
                    capture_output=True,
                    text=True,
                    env=self.env,
                    check=False,
                    **self.ids,
                )
            except OSError:
                continue
            if done.returncode == 0 and done.stdout.strip() == str(sys.version_info[:2]):
                return python
        return None

    def open(self, url: str) -> dict[str, Any]:
        assert self.python is not None
        done = subprocess.run(
            [self.python, str(CHILD), url],
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
            timeout=60,
            **self.ids,
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def may_write(self, directory: Path) -> None:
        if self.root:
            os.chown(directory, self.uid, -1)

    def may_read(self, path: Path) -> None:
        """Readable by the other user, not writable: root keeps ownership."""
        path.chmod(0o444 if not self.root else 0o644)

    def may_not_write(self, directory: Path) -> None:
        directory.chmod(0o555)


@pytest.fixture(scope="module")
def other() -> Other:
    found = Other()
    if found.python is None:
        pytest.skip("found no Python the child can run with the project importable")
    return found


@pytest.fixture
def place() -> Iterator[Path]:
    """A directory the other user can reach (pytest's tmp_path may be private to root)."""
    top = Path(tempfile.mkdtemp(prefix="pubsub-perm-"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        for d in (top, *(p for p in top.rglob("*") if p.is_dir())):
            d.chmod(0o755)
        shutil.rmtree(top)


async def make_store(path: Path, n: int = 3) -> None:
    """A checkpointed store of n events (closing it removes its -wal and -shm)."""
    async with await open_sqlite_store(f"sqlite:///{path}") as store:
        await store.append([Tick(i) for i in range(1, n + 1)])


async def stored_seqs(path: Path) -> list[int]:
    async with await open_sqlite_store(f"sqlite:///{path}?mode=ro") as store:
        assert await store.integrity_check() == ["ok"]
        return [record.seq async for record in store.read()]


def one_line(error: dict[str, str] | None) -> str:
    assert error is not None
    assert error["type"] == "StoreUnavailableError", error
    assert "\n" not in error["message"]
    return error["message"]


class TestReadOnlyFile:
    async def test_plain_open_reads_and_append_says_the_file_is_not_writable(
        self, other: Other, place: Path
    ) -> None:
        """A read-only file in a writable directory: reads work; the append names the file
        as not writable by this user and suggests mode=ro; nothing stored is lost."""
        d = place / "store"
        d.mkdir()
        db = d / "events.db"
        await make_store(db)
        other.may_read(db)
        other.may_write(d)
        result = other.open(f"sqlite:///{db}")
        assert result["open"] is None
        assert result["seqs"] == [1, 2, 3]
        message = one_line(result["append"])
        assert "the file is not writable by this user" in message
        assert "?mode=ro" in message
        assert "open it read-write" not in message
        assert await stored_seqs(db) == [1, 2, 3]

    async def test_mode_rw_reads_a_read_only_file(self, other: Other, place: Path) -> None:
        """mode=rw opens a read-only file read-only: reads work, the append says why not."""
        d = place / "store"
        d.mkdir()
        db = d / "events.db"
        await make_store(db)
        other.may_read(db)
        other.may_write(d)
        result = other.open(f"sqlite:///{db}?mode=rw")
        assert (result["open"], result["seqs"], result["readonly"]) == (None, [1, 2, 3], True)
        assert "cannot write: the file is not writable by this user" in one_line(result["append"])
        assert await stored_seqs(db) == [1, 2, 3]

    async def test_mode_ro_reads(self, other: Other, place: Path) -> None:
        """The same file opened with mode=ro reads and refuses the append as read-only."""
        d = place / "store"
        d.mkdir()
        db = d / "events.db"
        await make_store(db)
        other.may_read(db)
        other.may_write(d)
        result = other.open(f"sqlite:///{db}?mode=ro")
        assert (result["open"], result["seqs"], result["readonly"]) == (None, [1, 2, 3], True)
        assert "opened read-only (mode=ro)" in one_line(result["append"])


class TestReadOnlyDirectory:
    async def _store_in_locked_directory(self, other: Other, place: Path) -> Path:
        d = place / "locked"
        d.mkdir()
        db = d / "events.db"
        await make_store(db)
        other.may_read(db)
        other.may_not_write(d)
        return db

    async def test_mode_rw_falls_back_to_reading(self, other: Other, place: Path) -> None:
        """mode=rw (what read commands open with) reads a store in a directory it cannot
        write, creates nothing there, and refuses the append naming the directory."""
        db = await self._store_in_locked_directory(other, place)
        before = sorted(p.name for p in db.parent.iterdir())
        result = other.open(f"sqlite:///{db}?mode=rw")
        assert (result["open"], result["read"], result["seqs"]) == (None, None, [1, 2, 3])
        assert result["readonly"] is True
        message = one_line(result["append"])
        assert message.startswith(f"store {db}: cannot write: ")
        assert f"the directory {db.parent} " in message
        assert sorted(p.name for p in db.parent.iterdir()) == before

    async def test_mode_ro_reads_a_checkpointed_store(self, other: Other, place: Path) -> None:
        """mode=ro reads a store whose directory it cannot write (no -shm can be made),
        creates nothing there, and refuses the append."""
        db = await self._store_in_locked_directory(other, place)
        result = other.open(f"sqlite:///{db}?mode=ro")
        assert result["open"] is None
        assert result["read"] is None
        assert result["seqs"] == [1, 2, 3]
        assert "opened read-only (mode=ro)" in one_line(result["append"])
        assert sorted(p.name for p in db.parent.iterdir()) == ["events.db"]

    async def test_plain_open_names_the_directory(self, other: Other, place: Path) -> None:
        """A plain open is refused with one line naming the directory and suggesting mode=ro;
        the store is unchanged."""
        db = await self._store_in_locked_directory(other, place)
        before = db.read_bytes()
        result = other.open(f"sqlite:///{db}")
        message = one_line(result["open"])
        assert f"the directory {db.parent} " in message
        assert "not writable by this user" in message
        assert "?mode=ro" in message
        assert db.read_bytes() == before
        assert sorted(p.name for p in db.parent.iterdir()) == ["events.db"]

    async def test_uncheckpointed_wal_is_refused_not_ignored(
        self, other: Other, place: Path
    ) -> None:
        """With changes still in the -wal and no -shm, reading the file alone would miss
        them: mode=ro refuses with one line saying so, and leaves the files as they were."""
        source = place / "source.db"
        d = place / "locked"
        d.mkdir()
        db = d / "events.db"
        await make_store(source, 1)
        async with await open_sqlite_store(f"sqlite:///{source}") as store:
            await store.append([Tick(2), Tick(3)])  # no checkpoint: they stay in the -wal
            shutil.copyfile(source, db)
            shutil.copyfile(f"{source}-wal", f"{db}-wal")
        assert os.stat(f"{db}-wal").st_size > 0
        for path in (db, Path(f"{db}-wal")):
            other.may_read(path)
        other.may_not_write(d)
        before = {p.name: p.read_bytes() for p in d.iterdir()}
        for query in ("?mode=ro", ""):
            result = other.open(f"sqlite:///{db}{query}")
            message = one_line(result["open"])
            assert "events.db-wal holds changes not yet checkpointed" in message, query
            assert f"the directory {d} " in message
        assert {p.name: p.read_bytes() for p in d.iterdir()} == before
        d.chmod(0o755)
        assert await stored_seqs(db) == [1, 2, 3]

    async def test_existing_wal_and_shm_are_read(self, other: Other, place: Path) -> None:
        """With a -wal and its -shm present, mode=ro reads the changes in the -wal too."""
        source = place / "source.db"
        d = place / "locked"
        d.mkdir()
        db = d / "events.db"
        await make_store(source, 1)
        async with await open_sqlite_store(f"sqlite:///{source}") as store:
            await store.append([Tick(2), Tick(3)])
            for suffix in ("", "-wal", "-shm"):
                shutil.copyfile(f"{source}{suffix}", f"{db}{suffix}")
        for suffix in ("", "-wal", "-shm"):
            other.may_read(Path(f"{db}{suffix}"))
        other.may_not_write(d)
        result = other.open(f"sqlite:///{db}?mode=ro")
        assert (result["open"], result["read"], result["seqs"]) == (None, None, [1, 2, 3])


def test_the_child_is_not_privileged(other: Other) -> None:
    """The permission tests mean something only if the child cannot write through them."""
    assert other.uid != 0
