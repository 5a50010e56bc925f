"""The example user tests (``examples/test_*.py``) pass as the README runs them: with
pytest from the clone, the fixtures coming from pubsub's own pytest plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_TESTS = sorted((ROOT / "examples").glob("test_*.py"))


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in EXAMPLE_TESTS])
def test_example_tests_pass(path: Path) -> None:
    """Every example test passes, none is skipped, and the plugin's fixtures are what
    they use (with -p no:pubsub they are missing)."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(path)]
    # As a user runs it: without the suite's own PYTEST_ADDOPTS (CI adds coverage floors).
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    tests = path.read_text().count("\nasync def test_") + path.read_text().count("\ndef test_")
    assert f"{tests} passed" in run.stdout.splitlines()[-1]
    without = subprocess.run(
        [*command, "-p", "no:pubsub"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert without.returncode == 1
    assert "fixture 'pubsub_run' not found" in without.stdout


def test_there_are_example_tests() -> None:
    """The glob above finds the orders example's tests (a rename would skip them)."""
    assert [p.name for p in EXAMPLE_TESTS] == ["test_orders.py"]
