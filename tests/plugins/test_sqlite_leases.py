"""SQLite leases held by a dead process: a worker killed with kill -9 cannot release its
group's lease, and its successor on the same host takes it over at once instead of
waiting for the lease to expire; a live holder, or one on another host, still wins."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from core.errors import GroupLockedError
from plugins.sqlite import open_sqlite_store
from plugins.sqlite.holders import dead_on_this_host, start_time

REPO = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent(
    """
    import asyncio, os, socket, sys
    from plugins.sqlite import open_sqlite_store

    async def main() -> None:
        store = await open_sqlite_store("sqlite:///" + sys.argv[1])
        holder = f"{socket.gethostname()}:{os.getpid()}:child"
        await store.acquire_lease("g", holder, 600)
        print(holder, flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # held until killed

    asyncio.run(main())
    """
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "s.db"


@pytest.fixture
def child(db: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A process that took group g's lease for ten minutes and holds it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    holder = proc.stdout.readline().strip()
    try:
        yield proc, holder
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        proc.stdout.close()


def set_holder(db: Path, holder: str, started: int | None) -> None:
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "UPDATE leases SET holder = ?, holder_started = ? WHERE group_name = 'g'",
            (holder, started),
        )
    conn.close()


class TestDeadHolder:
    """acquire_lease takes over at once from a holder that died on this host."""

    async def test_killed_holder_is_taken_over_at_once(
        self, db: Path, child: tuple[subprocess.Popen[str], str]
    ) -> None:
        """While the holder lives the group is refused; after kill -9 it is taken."""
        proc, holder = child
        async with await open_sqlite_store(f"sqlite:///{db}") as store:
            with pytest.raises(GroupLockedError) as info:
                await store.acquire_lease("g", "successor", 10)
            assert info.value.holder == holder
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            lease = await store.acquire_lease("g", "successor", 10)
            assert lease.holder == "successor"
            [group] = await store.groups()
            assert group.holder == "successor"

    async def test_reused_pid_is_not_the_holder(
        self, db: Path, child: tuple[subprocess.Popen[str], str]
    ) -> None:
        """A live process with the holder's pid but another start time is not it."""
        proc, holder = child
        started = start_time(proc.pid)
        assert started is not None
        async with await open_sqlite_store(f"sqlite:///{db}") as store:
            set_holder(db, holder, started + 1)  # as if the pid were reused since
            assert (await store.acquire_lease("g", "successor", 10)).holder == "successor"

    async def test_live_holder_with_its_start_time_keeps_the_lease(
        self, db: Path, child: tuple[subprocess.Popen[str], str]
    ) -> None:
        """The start time recorded with the lease is the holder's own: it is kept."""
        proc, _ = child
        with closing(sqlite3.connect(db)) as conn, conn:
            [(recorded,)] = conn.execute("SELECT holder_started FROM leases").fetchall()
        conn.close()
        assert recorded == start_time(proc.pid)
        async with await open_sqlite_store(f"sqlite:///{db}") as store:
            with pytest.raises(GroupLockedError):
                await store.acquire_lease("g", "successor", 10)

    async def test_holder_on_another_host_waits_for_expiry(
        self, db: Path, child: tuple[subprocess.Popen[str], str]
    ) -> None:
        """A holder named for another host is never judged from here."""
        proc, _ = child
        proc.kill()
        proc.wait()
        set_holder(db, f"not-{socket.gethostname()}:{proc.pid}:x", None)
        async with await open_sqlite_store(f"sqlite:///{db}") as store:
            with pytest.raises(GroupLockedError):
                await store.acquire_lease("g", "successor", 10)


class TestDeadOnThisHost:
    """dead_on_this_host reads holder names as the bus makes them."""

    @pytest.mark.parametrize(
        "holder",
        [
            pytest.param("worker-1", id="not-host-pid-token"),
            pytest.param(f"{socket.gethostname()}:abc:t", id="pid-not-a-number"),
            pytest.param(f"{socket.gethostname()}:{os.getpid()}:t", id="this-process"),
            pytest.param(f"{socket.gethostname()}:0:t", id="pid-zero"),
        ],
    )
    def test_holders_not_judged_dead(self, holder: str) -> None:
        """Names that are not another process of this host are never taken as dead."""
        assert dead_on_this_host(holder, None) is False

    def test_live_process_without_start_time_is_alive(self) -> None:
        """Without a recorded start time a live pid counts as the holder."""
        assert dead_on_this_host(f"{socket.gethostname()}:{os.getppid()}:t", None) is False
