"""The plugin changes nothing for a project that does not use its fixtures: a foreign
project's run, collection, markers and options are the same with the plugin as with
``-p no:pubsub``, and loading it imports neither the bus nor the SQLite store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Another project's test file, run as data in a subprocess with and without the plugin:
# it must pass, fail, skip and xfail exactly alike both times (test_fails fails on
# purpose; the comparison, not these asserts, is what this suite checks).
FOREIGN_TESTS = """
import asyncio
import sys

import pytest


@pytest.fixture
def bus():
    return ["their", "own", "bus"]


def test_passes(bus):
    assert bus == ["their", "own", "bus"]


def test_fails():
    assert sorted("cba") == ["a", "b"]  # a deliberate failure


@pytest.mark.parametrize("n", [1, 2])
def test_parametrized(n):
    assert n in (1, 2)


@pytest.mark.skip(reason="not today")
def test_skipped():
    pass


@pytest.mark.xfail(reason="known")
def test_xfails():
    raise RuntimeError


@pytest.mark.asyncio
async def test_async():
    assert await asyncio.sleep(0, result="slept") == "slept"


def test_nothing_of_pubsub_was_imported():
    loaded = {"core", "core.bus", "aiosqlite", "plugins.sqlite", "plugins.testkit"}
    assert loaded.isdisjoint(sys.modules)
"""


def _pytest(folder: Path, *args: str) -> tuple[int, str]:
    """Run pytest in ``folder``; its exit code and its output with the lines that may
    differ by themselves (the plugin list, timings) normalised."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["COLUMNS"] = "120"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    out = re.sub(r"^plugins: .*$", "plugins: ...", proc.stdout + proc.stderr, flags=re.M)
    out = re.sub(r"in \d+\.\d+s", "in N.NNs", out)
    return proc.returncode, out


@pytest.fixture
def foreign(tmp_path: Path) -> Path:
    """A project that has never heard of pubsub (its own fixture is named ``bus``)."""
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    (tmp_path / "test_theirs.py").write_text(FOREIGN_TESTS)
    return tmp_path


class TestForeignProject:
    """With and without the plugin, pytest behaves the same for someone else's tests."""

    def test_plugin_is_loaded_by_the_entry_point(self, foreign: Path) -> None:
        """The editable install registers it: the header names the distribution, and
        its fixtures are listed (so the comparisons below compare something)."""
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--fixtures"],
            cwd=foreign,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        (plugins,) = [line for line in proc.stdout.splitlines() if line.startswith("plugins:")]
        assert "pubsub-workbench" in plugins
        assert re.search(r"^pubsub_bus -- .*plugins/pytest_plugin\.py", proc.stdout, re.M)

    @pytest.mark.parametrize(
        "args",
        [
            pytest.param(("-rA",), id="run"),
            pytest.param(("--co", "-q"), id="collect"),
            pytest.param(("--markers",), id="markers"),
            pytest.param(("--help",), id="help"),
        ],
    )
    def test_same_as_without_the_plugin(self, foreign: Path, args: tuple[str, ...]) -> None:
        """Same exit code, same output (outcomes, failure report, collection, markers,
        options), whether the plugin is loaded or disabled with -p no:pubsub."""
        with_plugin = _pytest(foreign, *args)
        without = _pytest(foreign, "-p", "no:pubsub", *args)
        assert with_plugin == without
        if args == ("-rA",):
            code, out = with_plugin
            assert code == 1
            assert "1 failed, 5 passed, 1 skipped, 1 xfailed" in out
            assert "PASSED test_theirs.py::test_nothing_of_pubsub_was_imported" in out
