"""Fixtures of the store contract suite: one store of each kind behind the same name.

The kinds: memory, SQLite, and JetStream on each nats-server binary found (a private
server per binary and session, a namespace per test; see tests/plugins/nats). A test
marked ``requires(StoreCapability...)`` is skipped, with the reason, for a store that
does not declare that capability (``core.store.store_capabilities``): the gate is what a
store declares, never its backend's name.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from store_events import WallClock

from core.memory import MemoryEventStore
from core.store import EventStore, StoreCapability, store_capabilities
from plugins.sqlite import SQLiteEventStore

sys.path.insert(0, str(Path(__file__).parents[1] / "plugins" / "nats"))
from nats_servers import NatsServer, binaries, missing, server_version


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(*capabilities): skip for stores that do not declare them"
    )


def _nats_id(binary: str) -> str:
    try:
        return "nats-" + ".".join(map(str, server_version(binary)))
    except (OSError, RuntimeError):
        return f"nats-{Path(binary).name}"


_NATS = [pytest.param(("nats", b), id=_nats_id(b)) for b in binaries()] or [
    pytest.param(("nats", None), id="nats-missing")
]


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


@pytest.fixture(scope="session")
def nats_contract_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, NatsServer]]:
    """The private servers of the contract suite, started on first use, one per binary."""
    servers: dict[str, NatsServer] = {}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def _nats_url(
    servers: dict[str, NatsServer], binary: str | None, factory: pytest.TempPathFactory
) -> str:
    if binary is None:
        missing("no nats-server binary found (PUBSUB_NATS_SERVER, the test extra, PATH)")
        raise AssertionError("unreachable")
    server = servers.get(binary)
    if server is None:
        server = NatsServer(binary, factory.mktemp("nats"))
        try:
            server.start()
        except RuntimeError as exc:
            missing(str(exc))
        servers[binary] = server
    return f"{server.url}?ns=c{uuid.uuid4().hex[:12]}"


@pytest.fixture(
    params=[
        pytest.param(("memory", None), id="memory"),
        pytest.param(("sqlite", None), id="sqlite"),
        *_NATS,
    ]
)
async def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    clock: WallClock,
    nats_contract_servers: dict[str, NatsServer],
) -> AsyncIterator[EventStore]:
    kind, binary = request.param
    opened: EventStore
    if kind == "memory":
        opened = MemoryEventStore(wall_clock=clock)
    elif kind == "sqlite":
        opened = await SQLiteEventStore.open(f"sqlite:///{tmp_path}/store.db", wall_clock=clock)
    else:
        from plugins.nats import JetStreamEventStore

        url = _nats_url(nats_contract_servers, binary, tmp_path_factory)
        opened = await JetStreamEventStore.open(url)
    marker = request.node.get_closest_marker("requires")
    if marker is not None:
        lacking = [c for c in marker.args if StoreCapability(c) not in store_capabilities(opened)]
        if lacking:
            await opened.aclose()
            pytest.skip(
                f"{opened.url.split('?')[0].split(':')[0]} store does not declare "
                f"{', '.join(str(c) for c in lacking)}"
            )
    try:
        yield opened
    finally:
        await opened.aclose()
