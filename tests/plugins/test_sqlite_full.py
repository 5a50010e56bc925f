"""SQLite store on a full disk: the worker (the file's one checkpointer) checkpoints the
WAL and tries a failed write once more; publishers never checkpoint; an I/O error that a
full disk caused is reported as the full disk it is."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlite_events import Tick

from core.errors import StoreUnavailableError
from plugins.sqlite import connection, open_sqlite_store, writer


def full_error() -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
    return exc


class FullOnce:
    """A commit function that fails as on a full disk the first ``times`` calls."""

    def __init__(self, real: Any, times: int = 1) -> None:
        self.real = real
        self.left = times
        self.calls = 0

    def __call__(self, conn: sqlite3.Connection, *args: Any) -> Any:
        self.calls += 1
        if self.left:
            self.left -= 1
            raise full_error()
        return self.real(conn, *args)


@pytest.fixture
def checkpoints(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records every checkpoint the store runs (and runs it)."""
    done: list[bool] = []
    real = connection.checkpoint

    def recording(conn: sqlite3.Connection) -> bool:
        result = real(conn)
        done.append(result)
        return result

    monkeypatch.setattr(connection, "checkpoint", recording)
    return done


class TestRetryAfterCheckpoint:
    """After SQLITE_FULL the worker checkpoints and retries once; nothing doubles."""

    async def test_worker_append_is_retried_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoints: list[bool]
    ) -> None:
        """The lease holder's append succeeds after one checkpoint, appended once."""
        failing = FullOnce(writer.commit_batch)
        monkeypatch.setattr(writer, "commit_batch", failing)
        async with await open_sqlite_store(f"sqlite:///{tmp_path}/s.db") as store:
            await store.acquire_lease("g", "worker", 10)
            [result] = await store.append([Tick(1)])
            assert (result.seq, result.duplicate) == (1, False)
            assert await store.count() == 1
        assert checkpoints == [True]
        assert failing.calls == 2

    async def test_second_failure_is_reported(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoints: list[bool]
    ) -> None:
        """Still full after the checkpoint: one clear error, no third attempt."""
        failing = FullOnce(writer.commit_batch, times=5)
        monkeypatch.setattr(writer, "commit_batch", failing)
        async with await open_sqlite_store(f"sqlite:///{tmp_path}/s.db") as store:
            await store.acquire_lease("g", "worker", 10)
            with pytest.raises(StoreUnavailableError, match="full"):
                await store.append([Tick(1)])
            assert failing.calls == 2
            monkeypatch.setattr(writer, "commit_batch", failing.real)
            assert await store.count() == 0

    async def test_publisher_never_checkpoints(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoints: list[bool]
    ) -> None:
        """A store without a lease reports the full disk and leaves the WAL alone."""
        failing = FullOnce(writer.commit_batch)
        monkeypatch.setattr(writer, "commit_batch", failing)
        async with await open_sqlite_store(f"sqlite:///{tmp_path}/s.db") as store:
            with pytest.raises(StoreUnavailableError, match="database or disk is full"):
                await store.append([Tick(1)])
            assert await store.append([Tick(2)])  # space came back: it goes on
        assert checkpoints == []
        assert failing.calls == 2


class TestFullDiskWords:
    """An I/O error on a full disk names the full disk."""

    @pytest.mark.parametrize(
        ("text", "name"),
        [
            pytest.param("disk I/O error", "SQLITE_IOERR_WRITE", id="ioerr-write"),
            pytest.param("disk I/O error", "SQLITE_IOERR_SHMSIZE", id="shm-size"),
            pytest.param("unable to open database file", "SQLITE_CANTOPEN", id="no-shm"),
        ],
    )
    def test_io_error_on_full_disk_says_full(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, name: str
    ) -> None:
        """With no space left where the store is, the I/O error reads as a full disk."""
        monkeypatch.setattr(connection, "disk_full", lambda location: True)
        exc = sqlite3.OperationalError(text)
        exc.sqlite_errorname = name  # type: ignore[attr-defined]
        error = connection.store_error(str(tmp_path / "s.db"), exc)
        assert error.problem.startswith(f"the disk is full ({text}, with no space left")

    def test_io_error_with_space_left_stays_an_io_error(self, tmp_path: Path) -> None:
        """With space left an I/O error is not blamed on the disk."""
        exc = sqlite3.OperationalError("disk I/O error")
        exc.sqlite_errorname = "SQLITE_IOERR_WRITE"  # type: ignore[attr-defined]
        error = connection.store_error(str(tmp_path / "s.db"), exc)
        assert error.problem == "sqlite error: disk I/O error"
