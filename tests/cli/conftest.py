"""Fixtures for the command-line tests: an in-process runner with its own store file,
and a subprocess runner for what only a real process shows (signals, exit codes)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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


def spawn(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """Start ``python -m pubsub_cli`` without waiting (for signal tests)."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "pubsub_cli", *args],
        cwd=cwd,
        env=full_env,
        stdin=stdin,
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


class Watched:
    """A spawned process whose stdout and stderr are read line by line by two threads,
    so that a test can wait for a line on either without blocking on the other. The
    timeout of ``expect`` is only a safety net against a hang."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._queues: dict[str, queue.Queue[str | None]] = {}
        for name in self.lines:
            self._queues[name] = queue.Queue()
            stream = getattr(proc, name)
            threading.Thread(target=self._pump, args=(name, stream), daemon=True).start()

    def _pump(self, name: str, stream: IO[str]) -> None:
        q = self._queues[name]
        for line in stream:
            q.put(line)
        q.put(None)

    def expect(self, marker: str, *, on: str = "stderr", timeout: float = 60.0) -> str:
        """Wait for a line of ``on`` containing ``marker``; returns it."""
        q, seen = self._queues[on], self.lines[on]
        while True:
            try:
                line = q.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"{marker!r} never appeared on {on}: {seen}") from None
            if line is None:
                q.put(None)
                raise AssertionError(f"{on} ended before {marker!r}: {seen}")
            seen.append(line)
            if marker in line:
                return line

    def finish(self, timeout: float = 60.0) -> Result:
        """Wait for the exit; everything it wrote."""
        code = self.proc.wait(timeout=timeout)
        for name, q in self._queues.items():
            while (line := q.get(timeout=timeout)) is not None:
                self.lines[name].append(line)
            q.put(None)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return Result(code, "".join(self.lines["stdout"]), "".join(self.lines["stderr"]))
