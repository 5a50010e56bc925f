"""``--json``: stdout holds the JSON document and nothing else, even when the handlers
a command runs (or the modules it imports) print."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import CLI

NOISY = """
import os
from dataclasses import dataclass

from core import Event, Router

print("noisy: imported")

router = Router(name="noisy")


@dataclass(frozen=True, slots=True)
class Noise(Event, type_name="Noise"):
    n: int


@router.subscribe(Noise, name="noisy.shout")
async def shout(event: Noise) -> None:
    print(f"noisy: shout {event.n}")
    if os.environ.get("NOISY_FAIL") == "1":
        raise RuntimeError("noisy failure")
"""


@pytest.fixture
def noisy(cli: CLI, tmp_path: Path) -> CLI:
    """A store with one Noise event, handled once and failed into the DLQ."""
    (tmp_path / "noisy.py").write_text(NOISY)
    r = cli("publish", "--app", "noisy.py", "Noise", "--data", '{"n": 1}')
    assert r.exit_code == 0, r.stderr
    r = cli("run", "noisy.py", "--once", env={"NOISY_FAIL": "1"})
    assert r.exit_code == 0, r.stderr
    return cli


def test_replay_json_is_only_json(noisy: CLI) -> None:
    r = noisy("replay", "noisy.py", "--since", "1h", "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert isinstance(doc, dict)
    assert doc["handlers"]["noisy.shout"] == {"ok": 1, "failed": 0}
    assert "noisy: shout 1" in r.stderr  # what the handler printed is not lost


def test_dlq_retry_json_is_only_json(noisy: CLI) -> None:
    r = noisy("dlq", "retry", "--all", "--app", "noisy.py", "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert isinstance(doc, dict)
    assert doc["resolved"] == 1
    assert "noisy: shout 1" in r.stderr


def test_without_json_prints_stay_on_stdout(noisy: CLI) -> None:
    r = noisy("replay", "noisy.py", "--since", "1h")
    assert r.exit_code == 0, r.stderr
    assert "noisy: shout 1" in r.stdout
