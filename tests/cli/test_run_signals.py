"""``pubsub run`` as a real process under signals: a SIGTERM during the catch-up stops
it (in-flight work drained, progress saved, nothing lost), a second one forces the exit,
and an open standard input does not hold the shutdown up."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import Watched, pubsub_process, spawn

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="POSIX signals")

# Every handled event is logged; a handler waits for the GATE file to exist, so the test
# decides when in-flight work may finish (and the catch-up cannot run ahead meanwhile:
# the bus keeps at most 256 events in flight).
HANDLERS = """
import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from core import Event, Router

router = Router(name="gated")


@dataclass(frozen=True, slots=True)
class Tick(Event, type_name="Tick"):
    n: int


@router.subscribe(Tick, name="gated.tick")
async def tick(event: Tick) -> None:
    print(f"started {event.n}", flush=True)
    gate = Path(os.environ["GATE"])
    while not gate.exists():
        await asyncio.sleep(0.01)
    with open(os.environ["LOG"], "a", encoding="utf-8") as f:
        f.write(f"{event.n}\\n")
"""

BACKLOG = 1000


@pytest.fixture
def gated(tmp_path: Path) -> dict[str, str]:
    """A store with a backlog of ticks; the environment every process of the test uses."""
    (tmp_path / "gated.py").write_text(HANDLERS)
    lines = "".join(f'{{"type": "Tick", "data": {{"n": {n}}}}}\n' for n in range(BACKLOG))
    (tmp_path / "ticks.jsonl").write_text(lines)
    env = {
        "PUBSUB_DB": str(tmp_path / "pubsub.db"),
        "GATE": str(tmp_path / "gate"),
        "LOG": str(tmp_path / "log.txt"),
    }
    r = pubsub_process(
        "publish", "--app", "gated.py", "--file", "ticks.jsonl", cwd=tmp_path, env=env
    )
    assert r.exit_code == 0, r.stderr
    return env


def handled(env: dict[str, str]) -> list[int]:
    log = Path(env["LOG"])
    return [int(n) for n in log.read_text().split()] if log.exists() else []


def test_sigterm_during_catch_up_stops_it_and_loses_nothing(
    tmp_path: Path, gated: dict[str, str]
) -> None:
    w = Watched(spawn("run", "gated.py", cwd=tmp_path, env=gated))
    w.expect("started", on="stdout")
    w.proc.send_signal(signal.SIGTERM)
    w.expect("SIGTERM: draining")
    Path(gated["GATE"]).touch()  # the in-flight handlers may finish now
    r = w.finish()
    assert r.exit_code == 0, r.stderr
    assert "stopped during catch-up" in r.stderr
    assert "saved for group 'default'" in r.stderr
    first = handled(gated)
    assert 0 < len(first) < BACKLOG
    again = pubsub_process("run", "gated.py", "--once", cwd=tmp_path, env=gated)
    assert again.exit_code == 0, again.stderr
    assert set(handled(gated)) == set(range(BACKLOG))  # at least once: nothing lost


def test_second_signal_during_catch_up_forces_exit(tmp_path: Path, gated: dict[str, str]) -> None:
    w = Watched(spawn("run", "gated.py", cwd=tmp_path, env=gated))
    w.expect("started", on="stdout")
    w.proc.send_signal(signal.SIGINT)
    w.expect("SIGINT: draining")
    w.proc.send_signal(signal.SIGINT)
    r = w.finish()
    assert r.exit_code == 130, r.stderr
    assert "exiting now without draining" in r.stderr
    assert handled(gated) == []


def test_sigterm_with_stdin_still_open_exits(tmp_path: Path, gated: dict[str, str]) -> None:
    Path(gated["GATE"]).touch()
    w = Watched(spawn("run", "gated.py", "--stdin", cwd=tmp_path, env=gated, stdin=subprocess.PIPE))
    assert w.proc.stdin is not None
    w.expect("following")
    w.proc.stdin.write('{"type": "Tick", "data": {"n": -1}}\n')
    w.proc.stdin.flush()
    w.expect("started -1", on="stdout")
    w.proc.send_signal(signal.SIGTERM)
    try:
        r = w.finish()  # stdin stays open: the writer never closes it
    finally:
        w.proc.stdin.close()
    assert r.exit_code == 0, r.stderr
    assert "saved for group 'default'" in r.stderr
    assert -1 in handled(gated)
