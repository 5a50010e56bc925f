"""A program that never closes its SQLite store still exits (aiosqlite's connection
threads are non-daemon: the interpreter used to wait for them forever), and what it
published is in the store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from dataclasses import dataclass
    from core import Event, EventBus
    from plugins.sqlite import open_sqlite_store

    @dataclass(frozen=True)
    class Note(Event, type_name="tests.exit.Note"):
        n: int

    async def main() -> None:
        store = await open_sqlite_store("sqlite:///" + sys.argv[1])
        bus = EventBus(store, consume=False)
        await bus.start()
        for n in range(3):
            await bus.publish_async(Note(n))
        print("published, not closing")

    asyncio.run(main())
    """
)


def test_a_store_left_open_does_not_hang_the_exit(tmp_path: Path) -> None:
    db = tmp_path / "open.db"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,  # it used to hang here forever
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "published, not closing"
    with closing(sqlite3.connect(db)) as conn, conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (3,)
