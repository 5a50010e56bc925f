"""Fixtures for the command-line tests: an in-process runner with its own store file,
and a subprocess runner for what only a real process shows (signals, exit codes)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from pubsub_cli.app import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class Result:
    """What one invocation left behind."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> object:
        return orjson.loads(self.stdout)

    def json_lines(self) -> list[object]:
        return [orjson.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def error_line(self) -> str:
        """The single error line on stderr."""
        lines = [line for line in self.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, self.stderr
        return lines[0]

    def usage_error(self, command: str) -> str:
        """Checks a usage error: exit 2 and, on stderr, exactly one ``error:`` line and
        the hint ``try 'COMMAND --help'``; returns the error line."""
        assert self.exit_code == 2, (self.exit_code, self.stderr)
        lines = self.stderr.splitlines()
        assert len(lines) == 2, self.stderr
        assert lines[0].startswith("error: "), self.stderr
        assert lines[1] == f"try '{command} --help'", self.stderr
        return lines[0]


class CLI:
    """Runs ``pubsub`` in-process against one database file."""

    def __init__(self, db: Path, cwd: Path) -> None:
        self.db = db
        self.cwd = cwd
        self.runner = CliRunner()

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        full_env = {"PUBSUB_DB": str(self.db), "NO_COLOR": "1", "COLUMNS": "200"}
        full_env.update(env or {})
        old = Path.cwd()
        os.chdir(self.cwd)
        try:
            r = self.runner.invoke(app, list(args), input=input, env=full_env, obj=None)
        finally:
            os.chdir(old)
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        return Result(r.exit_code, r.stdout, r.stderr)


@pytest.fixture
def isolated_imports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Handler modules a test imported (from its temporary folder or examples/) are
    forgotten afterwards; libraries stay imported."""
    roots = (str(tmp_path_factory.getbasetemp()), str(EXAMPLES))
    modules, path = set(sys.modules), list(sys.path)
    yield
    for name in set(sys.modules) - modules:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if file.startswith(roots):
            del sys.modules[name]
    sys.path[:] = path


@pytest.fixture
def cli(tmp_path: Path, isolated_imports: None) -> CLI:
    return CLI(tmp_path / "pubsub.db", tmp_path)


def pubsub_process(
    *args: str, cwd: Path, env: dict[str, str] | None = None, input: str | None = None
) -> Result:
    """Run ``python -m pubsub_cli`` as a real process and wait for it."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "pubsub_cli", *args],
        cwd=cwd,
        env=full_env,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def spawn(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m pubsub_cli`` without waiting (for signal tests)."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "pubsub_cli", *args],
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen[str], marker: str) -> list[str]:
    """Read the child's stderr until a line containing ``marker`` (its readiness)."""
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            return seen
    raise AssertionError(f"{marker!r} never appeared; stderr was:\n{''.join(seen)}")
