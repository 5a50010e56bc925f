"""Tests of ``pubsub snapshot create / restore`` when a projection fails while it is
rebuilt: no snapshot is saved, the command names the event and the error, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import CLI, pubsub_process

# A projection that counts ticks and fails on every 50th while FLAKY is set.
COUNTER = """
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core import Event, Router

router = Router(name="counting")


@dataclass(frozen=True, slots=True)
class Tick(Event, type_name="CountTick"):
    n: int


class Count:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, event: Tick) -> None:
        if os.environ.get("FLAKY") and event.n % 50 == 0:
            raise RuntimeError(f"cannot count tick {event.n}")
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        return {"count": self.count}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.count = int(state["count"])


router.add(Tick, Count(), name="counting.count")
"""

# Another type, from a module the snapshot command is not given.
OTHER = """
from dataclasses import dataclass

from core import Event


@dataclass(frozen=True, slots=True)
class Other(Event, type_name="SnapOther"):
    x: int
"""


@pytest.fixture
def ticks(cli: CLI, tmp_path: Path) -> CLI:
    """200 ticks in the log."""
    (tmp_path / "counter.py").write_text(COUNTER)
    lines = "".join(f'{{"type": "CountTick", "data": {{"n": {n}}}}}\n' for n in range(1, 201))
    r = cli("publish", "--app", "counter.py", "--file", "-", input=lines)
    assert r.exit_code == 0, r.stderr
    return cli


def snapshots(cli: CLI) -> list[object]:
    r = cli("snapshot", "list", "--json")
    assert r.exit_code == 0, r.stderr
    return r.json()["snapshots"]  # type: ignore[index,no-any-return]


class TestCreateRefused:
    """A failing projection never yields a saved snapshot."""

    def test_names_the_event_and_the_error(self, ticks: CLI) -> None:
        """Exit 1, one line with the first failing seq and its error, nothing saved."""
        r = ticks("snapshot", "create", "counter.py", env={"FLAKY": "1"})
        assert r.exit_code == 1
        assert r.error_line == (
            "error: projection 'counting.count' failed at seq 50: RuntimeError: cannot count "
            "tick 50 (and 3 more failure(s)); no snapshot was saved: fix the projection and "
            "run the command again"
        )
        assert snapshots(ticks) == []

    def test_failures_leave_no_dead_letters(self, ticks: CLI) -> None:
        """The refused rebuild writes nothing to the store's dead-letter queue."""
        ticks("snapshot", "create", "counter.py", env={"FLAKY": "1"})
        r = ticks("dlq", "list", "--status", "all", "--json")
        assert r.json() == {"entries": []}

    def test_sound_projection_still_saves(self, ticks: CLI) -> None:
        """Without failures the snapshot is saved at the end of the log."""
        r = ticks("snapshot", "create", "counter.py", "--json")
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert isinstance(doc, dict)
        assert [s["seq"] for s in doc["snapshots"]] == [200]

    def test_restore_refuses_an_incomplete_state(self, ticks: CLI) -> None:
        """Restore with a failing projection: exit 1, the state is not shown."""
        assert ticks("snapshot", "create", "counter.py").exit_code == 0
        lines = "".join(f'{{"type": "CountTick", "data": {{"n": {n}}}}}\n' for n in range(250, 251))
        assert ticks("publish", "--app", "counter.py", "--file", "-", input=lines).exit_code == 0
        r = ticks("snapshot", "restore", "counter.py", "--json", env={"FLAKY": "1"})
        assert r.exit_code == 1
        assert "failed at seq 201" in r.error_line
        assert "the restored state is incomplete" in r.error_line
        assert r.stdout == ""

    def test_types_not_loaded_are_not_a_failure(self, ticks: CLI, tmp_path: Path) -> None:
        """An event of a type this command did not import is skipped with a warning (in
        a process of its own: this one has the type registered)."""
        (tmp_path / "other.py").write_text(OTHER)
        r = ticks("publish", "--app", "other.py", "SnapOther", "--data", '{"x": 1}')
        assert r.exit_code == 0, r.stderr
        r = pubsub_process(
            "snapshot", "create", "counter.py", cwd=tmp_path, env={"PUBSUB_DB": str(ticks.db)}
        )
        assert r.exit_code == 0, r.stderr
        assert "1 event(s) of a type not loaded here (SnapOther) were skipped" in r.stderr
        assert len(snapshots(ticks)) == 1
