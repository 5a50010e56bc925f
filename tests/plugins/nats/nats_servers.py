"""Private NATS server processes for the JetStream tests (see conftest.py)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REQUIRE_ENV = "PUBSUB_REQUIRE_NATS"


def _candidates() -> list[str]:
    explicit = os.environ.get("PUBSUB_NATS_BINARIES")
    if explicit:
        return [p for p in explicit.split(os.pathsep) if p]
    found: list[str] = []
    env = os.environ.get("PUBSUB_NATS_SERVER")
    if env:
        found.append(env)
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        found.append(str(beside))
    system = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if system:
        found.append(system)
    unique: list[str] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def server_version(binary: str) -> tuple[int, int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    if match is None:
        raise RuntimeError(f"cannot read the version of {binary}: {out.stdout!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: a missing server fails)", pytrace=False)
    pytest.skip(reason)


@dataclass
class NatsServer:
    """One private server process: ``url`` to connect, ``kill()`` for a crash test,
    ``start()`` again on the same port and store directory."""

    binary: str
    store_dir: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def version(self) -> tuple[int, int, int]:
        return server_version(self.binary)

    def start(self, *, ready_within: float = 10.0) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        log = self.store_dir / "server.log"
        args = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        args += ["-sd", str(self.store_dir), "-l", str(log)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"nats-server exited at start: {err.strip()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                if self._jetstream_ready():
                    return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nats-server on port {self.port} not ready in {ready_within} s")

    def _jetstream_ready(self) -> bool:
        log = self.store_dir / "server.log"
        with contextlib.suppress(OSError):
            return "Server is ready" in log.read_text(errors="replace")
        return False

    def kill(self) -> None:
        """kill -9, as a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()


def binaries() -> list[str]:
    return _candidates()
