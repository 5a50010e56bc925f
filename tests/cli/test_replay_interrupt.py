"""Tests of Ctrl-C during ``pubsub replay`` in a real process: one line says how far the
replay got, the exit is 130, and nothing else changed."""

from __future__ import annotations

import signal
from pathlib import Path

from .conftest import CLI, Watched, spawn

# The fifth replayed event announces itself and never finishes.
STUCK = """
import asyncio
import sys
from dataclasses import dataclass

from core import Event, Router

router = Router(name="stuck")


@dataclass(frozen=True, slots=True)
class Tick(Event, type_name="StuckTick"):
    n: int


@router.subscribe(Tick)
async def watch(event: Tick) -> None:
    if event.n == 5:
        print("replay reached tick 5", file=sys.stderr, flush=True)
        await asyncio.Event().wait()
"""


class TestReplayInterrupted:
    """SIGINT in the middle of a replay."""

    def test_says_how_far_it_got(self, cli: CLI, tmp_path: Path) -> None:
        """Four of ten events replayed: the line says so and where to go on; exit 130."""
        (tmp_path / "stuck.py").write_text(STUCK)
        lines = "".join(f'{{"type": "StuckTick", "data": {{"n": {n}}}}}\n' for n in range(1, 11))
        assert cli("publish", "--app", "stuck.py", "--file", "-", input=lines).exit_code == 0
        proc = Watched(spawn("replay", "stuck.py", cwd=tmp_path, env={"PUBSUB_DB": str(cli.db)}))
        proc.expect("replay reached tick 5")
        proc.proc.send_signal(signal.SIGINT)
        r = proc.finish()
        assert r.exit_code == 130, r.stderr
        assert r.stderr.splitlines()[-1] == (
            "interrupted after 4 of 10 event(s) (seq 1..4): the replay moved no checkpoint "
            "and appended nothing; run it again with --from-seq 5 to go on"
        )
        assert r.stdout == ""
        assert len(cli("events", "list", "--json", "--limit", "0").json_lines()) == 10
