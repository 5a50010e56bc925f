"""Tests of Ctrl-C during ``pubsub dlq retry --all`` in a real process: the command says
how many entries it resolved before the signal and exits 130."""

from __future__ import annotations

import signal
from pathlib import Path

from .conftest import CLI, Watched, spawn

# Fails until GATE is set; then the third re-drive announces itself and never returns,
# so the signal comes at a known point.
GATED = """
import asyncio
import os
import sys
from dataclasses import dataclass

from core import Event, Router

router = Router(name="gated")
calls = 0


@dataclass(frozen=True, slots=True)
class Job(Event, type_name="GatedJob"):
    n: int


@router.subscribe(Job)
async def work(event: Job) -> None:
    global calls
    if not os.environ.get("GATE"):
        raise RuntimeError("down")
    calls += 1
    if calls == 3:
        print("third re-drive started", file=sys.stderr, flush=True)
        await asyncio.Event().wait()
"""


class TestRetryInterrupted:
    """SIGINT during a re-drive of every open entry."""

    def test_says_how_far_it_got(self, cli: CLI, tmp_path: Path) -> None:
        """Two of five resolved, then SIGINT: one line says so, exit 130, three stay open."""
        (tmp_path / "gated.py").write_text(GATED)
        lines = "".join(f'{{"type": "GatedJob", "data": {{"n": {n}}}}}\n' for n in range(5))
        assert cli("publish", "--app", "gated.py", "--file", "-", input=lines).exit_code == 0
        assert cli("run", "gated.py", "--once").exit_code == 0
        assert len(cli("dlq", "list", "--json").json()["entries"]) == 5  # type: ignore[index]

        proc = Watched(
            spawn(
                "dlq",
                "retry",
                "--all",
                "--app",
                "gated.py",
                cwd=tmp_path,
                env={"PUBSUB_DB": str(cli.db), "GATE": "1"},
            )
        )
        proc.expect("third re-drive started")
        proc.proc.send_signal(signal.SIGINT)
        r = proc.finish()
        assert r.exit_code == 130, r.stderr
        assert "interrupted after resolving 2 of 5 dead letter(s)" in r.stderr
        assert "Traceback" not in r.stderr
        assert r.stdout == ""
        assert len(cli("dlq", "list", "--json").json()["entries"]) == 3  # type: ignore[index]
