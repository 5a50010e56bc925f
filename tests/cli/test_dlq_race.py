"""Tests of ``pubsub dlq retry`` when another re-drive resolves the same entry while
this one's handler runs: the loser says its handler ran and the other resolution won."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import CLI

# The handler fails until RACE_MODE is set; then, while it runs, it resolves its own
# dead letter through a second store on the same file, as a concurrent `dlq retry` in
# another process would, so the command's compare-and-set loses.
RACING = """
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from core import Event, Router
from core.entrypoints import open_store

router = Router(name="racing")


@dataclass(frozen=True, slots=True)
class Ping(Event, type_name="RacePing"):
    n: int


@router.subscribe(Ping)
async def pong(event: Ping) -> None:
    if not os.environ.get("RACE_MODE"):
        raise RuntimeError("not yet")
    other = await open_store("sqlite:///" + os.environ["PUBSUB_DB"])
    try:
        for entry in await other.list_dead_letters():
            if entry.event_id == event.id and entry.id is not None:
                await other.resolve_dead_letter(entry.id, "by the other re-drive", datetime.now(UTC))
    finally:
        await other.aclose()
"""


@pytest.fixture
def racing(cli: CLI, tmp_path: Path) -> CLI:
    """One open dead letter of the handler ``pong``."""
    (tmp_path / "racing.py").write_text(RACING)
    r = cli("publish", "--app", "racing.py", "RacePing", "--data", '{"n": 1}')
    assert r.exit_code == 0, r.stderr
    r = cli("run", "racing.py", "--once")
    assert r.exit_code == 0, r.stderr
    assert len(cli("dlq", "list", "--json").json()["entries"]) == 1  # type: ignore[index]
    return cli


class TestRaceLoser:
    """A re-drive whose handler ran but whose resolution lost the race says so."""

    def test_table_says_the_handler_ran(self, racing: CLI) -> None:
        """The row and the caption say the handler ran and another re-drive resolved it."""
        r = racing("dlq", "retry", "1", "--app", "racing.py", env={"RACE_MODE": "1"})
        assert r.exit_code == 0, r.stderr
        assert "handler ran; already resolved by another re-drive" in r.stdout
        assert "skipped" not in r.stdout
        assert "1 re-driven, 0 failed again" in r.stdout
        assert "1 resolved by another re-drive meanwhile" in r.stdout

    def test_json_says_the_handler_ran(self, racing: CLI) -> None:
        """--json marks the entry handler_ran and counts it as already resolved."""
        r = racing("dlq", "retry", "1", "--app", "racing.py", "--json", env={"RACE_MODE": "1"})
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert isinstance(doc, dict)
        assert doc["already_resolved"] == 1
        assert doc["entries"][0]["handler_ran"] is True
        assert doc["entries"][0]["resolution"] == "by the other re-drive"

    def test_resolved_before_is_still_skipped(self, racing: CLI) -> None:
        """An entry resolved before the command started is skipped: its handler did not run."""
        r = racing("dlq", "retry", "1", "--app", "racing.py", env={"RACE_MODE": "1"})
        assert r.exit_code == 0, r.stderr
        r = racing("dlq", "retry", "1", "--app", "racing.py", "--json", env={"RACE_MODE": "1"})
        doc = r.json()
        assert isinstance(doc, dict)
        assert doc["entries"][0]["handler_ran"] is False
        assert doc["entries"][0]["already_resolved"] is True
