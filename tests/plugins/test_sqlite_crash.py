"""SQLite crash safety: appends whose call returned survive SIGKILL, and a restarted
consumer dispatches every stored event at least once."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from uuid import UUID

from sqlite_crash_worker import (
    Killed,
    finish_consumer,
    kill_consumer,
    kill_publisher,
    parse_promises,
    verify_log,
)

KILLS = 20


def check_killed(killed: Killed, *, may_finish: bool = False) -> None:
    allowed = (-9, 0) if may_finish else (-9,)
    assert killed.returncode in allowed, f"the child ended by itself: {killed.stderr}"
    assert "Traceback" not in killed.stderr, killed.stderr


class TestKillDuringPublish:
    async def test_acknowledged_appends_survive_sigkill(self, tmp_path: Path) -> None:
        """Twenty SIGKILLs at random moments lose no acknowledged append and leave no gap."""
        seed = random.randrange(2**32)
        rng = random.Random(seed)
        db = tmp_path / "crash.db"
        promised: dict[int, UUID] = {}
        for _ in range(KILLS):
            killed = kill_publisher(db, rng)
            check_killed(killed)
            parse_promises(killed, promised)
        count = await verify_log(db, promised)
        assert count >= len(promised), f"seed {seed}"
        assert promised, f"no append was acknowledged (seed {seed})"


class TestKillDuringConsume:
    async def test_restarted_consumer_dispatches_everything(self, tmp_path: Path) -> None:
        """A consumer killed repeatedly and restarted handles every stored event at least once."""
        seed = random.randrange(2**32)
        rng = random.Random(seed)
        db = tmp_path / "consume.db"
        promised: dict[int, UUID] = {}
        for _ in range(3):
            killed = kill_publisher(db, rng, max_lines=300)
            parse_promises(killed, promised)
        await verify_log(db, promised)
        handled: set[str] = set()
        for _ in range(5):
            killed = kill_consumer(db, rng, max_lines=len(promised))
            check_killed(killed, may_finish=True)
            handled.update(killed.lines)
        handled.update(finish_consumer(db))
        missing = {str(i) for i in promised.values()} - handled
        assert not missing, f"{len(missing)} events never handled (seed {seed})"


class TestDuplicatesPerCrash:
    async def test_a_kill_during_catch_up_redelivers_at_most_the_window(
        self, tmp_path: Path
    ) -> None:
        """Kill -9 during the catch-up of a 3,000-event backlog, five times: each restart
        handles again at most max_in_flight of the events the killed one handled."""
        from sqlite_crash_worker import Tick

        from plugins.sqlite import open_sqlite_store

        seed = random.randrange(2**32)
        rng = random.Random(seed)
        db = tmp_path / "backlog.db"
        store = await open_sqlite_store(f"sqlite:///{db}")
        for start in range(0, 3000, 500):
            await store.append([Tick(n) for n in range(start, start + 500)])
        await store.aclose()
        window = 32
        runs: list[list[str]] = []
        for _ in range(5):
            killed = kill_consumer(db, rng, min_lines=100, max_lines=500, window=window)
            check_killed(killed, may_finish=True)
            runs.append(killed.lines)
        runs.append(finish_consumer(db))
        for before, after in itertools.pairwise(runs):
            again = set(before) & set(after)
            assert len(again) <= window, f"{len(again)} redelivered (seed {seed})"
        handled = {line for run in runs for line in run}
        assert len(handled) == 3000, f"seed {seed}"
