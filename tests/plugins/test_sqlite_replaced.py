"""SQLite store file deleted or replaced under a running process: the process refuses
every further append, acknowledgement and read with one clear error, instead of
acknowledging writes that go to a lost file or into the -wal the new file shares."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest
from sqlite_events import Tick

from core.errors import StoreUnavailableError
from plugins.sqlite import SQLiteEventStore, open_sqlite_store

REPO = Path(__file__).resolve().parents[2]


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


def remove_store_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def make_store(path: Path, n: int) -> None:
    async with await open_sqlite_store(url_of(path)) as store:
        await store.append([Tick(i) for i in range(n)])


def count_rows(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn, conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def wal_size(path: Path) -> int:
    return os.stat(f"{path}-wal").st_size


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def read_all(store: SQLiteEventStore) -> list[int]:
    return [r.seq async for r in store.read()]


class TestDeleted:
    """A store whose file was deleted refuses appends, commits and reads."""

    async def test_append_after_delete_is_refused(self, tmp_path: Path) -> None:
        """The first append after rm of the files fails naming the deletion."""
        db = tmp_path / "s.db"
        async with await open_sqlite_store(url_of(db)) as store:
            await store.append([Tick(1)])
            remove_store_files(db)
            with pytest.raises(StoreUnavailableError, match="deleted while this process"):
                await store.append([Tick(2)])
        assert not db.exists()  # nothing recreated the file

    async def test_commit_and_read_after_delete_are_refused(self, tmp_path: Path) -> None:
        """A worker's checkpoint commit and its next read fail too, so it stops."""
        db = tmp_path / "s.db"
        async with await open_sqlite_store(url_of(db)) as store:
            await store.append([Tick(1)])
            lease = await store.acquire_lease("g", "w", 10)
            remove_store_files(db)
            with pytest.raises(StoreUnavailableError, match="deleted"):
                await store.commit_progress("g", 1, lease=lease)
            with pytest.raises(StoreUnavailableError, match="deleted"):
                await read_all(store)
            with pytest.raises(StoreUnavailableError, match="deleted"):
                await store.renew_lease(lease, 10)

    async def test_refusal_is_sticky(self, tmp_path: Path) -> None:
        """A file put back at the path later does not make the old store write again."""
        db = tmp_path / "s.db"
        async with await open_sqlite_store(url_of(db)) as store:
            await store.append([Tick(1)])
            remove_store_files(db)
            with pytest.raises(StoreUnavailableError):
                await store.append([Tick(2)])
            await make_store(db, 3)
            with pytest.raises(StoreUnavailableError, match="deleted"):
                await store.append([Tick(4)])
        assert count_rows(db) == 3


class TestReplaced:
    """A store whose file was replaced by another (mv) refuses to go on."""

    async def test_append_after_mv_is_refused(self, tmp_path: Path) -> None:
        """After mv other.db s.db the old store refuses appends and commits."""
        db, other = tmp_path / "s.db", tmp_path / "other.db"
        await make_store(other, 50)
        async with await open_sqlite_store(url_of(db)) as store:
            await store.append([Tick(i) for i in range(5)])
            os.replace(other, db)
            with pytest.raises(StoreUnavailableError, match="replaced"):
                await store.append([Tick(99)])
            with pytest.raises(StoreUnavailableError, match="replaced"):
                await store.commit_progress("g", 1)

    async def test_stale_wal_is_not_applied_to_the_new_file(self, tmp_path: Path) -> None:
        """The old file's -wal left beside the new one is refused at open, the new file
        stays byte-for-byte as it was, and without that -wal it opens with its events."""
        db, other = tmp_path / "s.db", tmp_path / "other.db"
        await make_store(other, 50)
        async with await open_sqlite_store(url_of(db)) as store:
            await store.append([Tick(i) for i in range(5)])
            os.replace(other, db)
        assert wal_size(db) > 0  # SQLite kept the moved file's -wal
        before = digest(db)
        with pytest.raises(StoreUnavailableError, match="written for another store file"):
            await open_sqlite_store(url_of(db))
        with pytest.raises(StoreUnavailableError, match="written for another store file"):
            await open_sqlite_store(f"{url_of(db)}?mode=ro")
        assert digest(db) == before
        for suffix in ("-wal", "-shm"):
            os.replace(f"{db}{suffix}", tmp_path / f"old{suffix}")
        async with await open_sqlite_store(url_of(db)) as store:
            assert await read_all(store) == list(range(1, 51))
            assert await store.integrity_check() == ["ok"]

    async def test_copy_moved_over_the_path_is_refused_with_the_stale_wal(
        self, tmp_path: Path
    ) -> None:
        """The issue's case: cp other.db tmp.db && mv tmp.db s.db beside the old -wal."""
        db, other = tmp_path / "s.db", tmp_path / "other.db"
        await make_store(other, 50)
        async with await open_sqlite_store(url_of(db)) as store:
            await store.append([Tick(i) for i in range(5)])
            shutil.copyfile(other, tmp_path / "tmp.db")
            os.replace(tmp_path / "tmp.db", db)
        before = digest(db)
        with pytest.raises(StoreUnavailableError, match="written for another store file"):
            await open_sqlite_store(url_of(db))
        assert digest(db) == before

    async def test_store_copied_with_its_wal_opens(self, tmp_path: Path) -> None:
        """A store copied together with its -wal (file first) is the same store: its -wal
        is applied and every event is there."""
        source, copy = tmp_path / "source.db", tmp_path / "copy.db"
        await make_store(source, 2)
        async with await open_sqlite_store(url_of(source)) as store:
            await store.append([Tick(3), Tick(4)])  # they stay in the -wal
            for suffix in ("", "-wal"):
                shutil.copyfile(f"{source}{suffix}", f"{copy}{suffix}")
        async with await open_sqlite_store(url_of(copy)) as store:
            assert await read_all(store) == [1, 2, 3, 4]

    async def test_two_store_objects_on_one_path(self, tmp_path: Path) -> None:
        """While an old store object still has the replaced file open, a new one on the
        path is refused instead of sharing its -wal; the old one refuses to write."""
        db, other = tmp_path / "s.db", tmp_path / "other.db"
        await make_store(other, 50)
        before = digest(other)
        async with await open_sqlite_store(url_of(db)) as old:
            await old.append([Tick(1)])
            os.replace(other, db)
            with pytest.raises(StoreUnavailableError, match="written for another store file"):
                await open_sqlite_store(url_of(db))
            with pytest.raises(StoreUnavailableError, match="replaced"):
                await old.append([Tick(3)])
        assert digest(db) == before

    async def test_each_wal_generation_is_stamped(self, tmp_path: Path) -> None:
        """After a checkpoint restarts the WAL, the next writes stamp the new generation,
        so a later replacement is still recognised."""
        db, other = tmp_path / "s.db", tmp_path / "other.db"
        await make_store(other, 2)
        async with await open_sqlite_store(url_of(db)) as store:
            await store.append([Tick(1)])
            side = sqlite3.connect(db)
            side.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            side.close()
            assert wal_size(db) == 0
            await store.append([Tick(2)])  # the first frames of a new generation
            os.replace(other, db)
        with pytest.raises(StoreUnavailableError, match="written for another store file"):
            await open_sqlite_store(url_of(db))

    async def test_own_wal_after_a_crash_is_applied(self, tmp_path: Path) -> None:
        """A -wal that belongs to the file (left by a process that never closed it) is
        the store's own: it opens with every event."""
        db = tmp_path / "s.db"
        first = await open_sqlite_store(url_of(db))
        await first.append([Tick(i) for i in range(7)])
        crashed = sqlite3.connect(db)  # holds the file open: first's close cannot
        crashed.execute("SELECT count(*) FROM events").fetchall()  # checkpoint, so
        try:  # its -wal stays as after a kill
            await first.aclose()
            assert wal_size(db) > 0
            async with await open_sqlite_store(url_of(db)) as store:
                assert await read_all(store) == list(range(1, 8))
        finally:
            crashed.close()

    async def test_read_only_store_notices_replacement(self, tmp_path: Path) -> None:
        """A mode=ro reader (a `pubsub events tail`) stops instead of following a
        file that is gone from the path."""
        db, other = tmp_path / "s.db", tmp_path / "other.db"
        await make_store(db, 3)
        await make_store(other, 1)
        async with await open_sqlite_store(f"{url_of(db)}?mode=ro") as reader:
            assert await read_all(reader) == [1, 2, 3]
            os.replace(other, db)
            with pytest.raises(StoreUnavailableError, match="replaced"):
                await read_all(reader)


PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, sys.argv[2])
    from sqlite_events import Tick
    from core.errors import PubSubError
    from plugins.sqlite import open_sqlite_store

    async def main() -> int:
        async with await open_sqlite_store("sqlite:///" + sys.argv[1]) as store:
            await store.append([Tick(1)])
            print("ready", flush=True)
            sys.stdin.readline()  # the test replaces the file meanwhile
            try:
                await store.append([Tick(2)])
            except PubSubError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
        print("acknowledged", flush=True)
        return 0

    sys.exit(asyncio.run(main()))
    """
)


class TestInAnotherProcess:
    """A publisher process gets the refusal too."""

    @pytest.mark.parametrize("how", [pytest.param("rm", id="rm"), pytest.param("mv", id="mv")])
    def test_publisher_process_is_refused(self, tmp_path: Path, how: str) -> None:
        """A process holding the store open fails its next append with one error line."""
        db = tmp_path / "s.db"
        proc = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(db), str(Path(__file__).parent)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        if how == "rm":
            remove_store_files(db)
        else:
            other = tmp_path / "other.db"
            with closing(sqlite3.connect(other)) as conn, conn:
                conn.execute("CREATE TABLE t (x)")
            conn.close()
            os.replace(other, db)
        out, err = proc.communicate("go\n", timeout=60)
        assert proc.returncode == 1, (out, err)
        assert "acknowledged" not in out
        lines = err.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("error: store ")
        assert ("deleted" if how == "rm" else "replaced") in lines[0]


HANDLERS = """
from dataclasses import dataclass

from core import Event, Router

router = Router(name="h")


@dataclass(frozen=True, slots=True)
class Tick(Event, type_name="Tick"):
    n: int


@router.subscribe(Tick, name="h.tick")
async def tick(event: Tick) -> None:
    pass
"""


class TestWorker:
    """A `pubsub run` worker whose store file is deleted stops, non-zero, saying why."""

    def test_worker_stops_non_zero_when_the_file_is_deleted(self, tmp_path: Path) -> None:
        """The follow loop's next read fails: exit 1 with one error line."""
        (tmp_path / "h.py").write_text(HANDLERS)
        db = tmp_path / "s.db"
        env = {**os.environ, "NO_COLOR": "1"}
        cli = [sys.executable, "-m", "pubsub_cli"]
        publish = [*cli, "publish", "Tick", "--app", "h.py", "--data", '{"n": 1}', "--db", "s.db"]
        subprocess.run(publish, cwd=tmp_path, env=env, check=True, capture_output=True)
        worker = subprocess.Popen(
            [*cli, "run", "h.py", "--db", "s.db"],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(REPO)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert worker.stderr is not None
        seen = []
        for line in worker.stderr:  # wait until it follows the log
            seen.append(line)
            if line.startswith("following "):
                break
        assert seen[-1].startswith("following "), seen
        remove_store_files(db)
        try:
            _, rest = worker.communicate(timeout=60)  # a safety net: it used to run on
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        assert worker.returncode == 1
        errors = [line for line in rest.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, rest
        assert "deleted while this process had it open" in errors[0]
        # The bus logs a checkpoint commit that fails meanwhile with its traceback
        # (core.bus._internal_error, not the store's doing): only the exit line is pinned.
        assert not db.exists()
