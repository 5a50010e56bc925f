"""Tests of ``pubsub check`` as a health check: thresholds on a group's lag and on its
worker, one line naming what failed, and no advice to run ``pubsub check`` from within
``pubsub check``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core import open_store

from .conftest import CLI
from .test_events_listing import fill, flip_payload_byte


def hold_lease(db: Path, group: str, holder: str) -> None:
    """Take the group's lease as a live worker would, and keep it past this call."""

    async def go() -> None:
        store = await open_store(f"sqlite:///{db}")
        try:
            await store.acquire_lease(group, holder, 600.0)
        finally:
            await store.aclose()

    asyncio.run(go())


def checkpoint(db: Path, group: str, seq: int) -> None:
    async def go() -> None:
        store = await open_store(f"sqlite:///{db}")
        try:
            lease = await store.acquire_lease(group, "test-worker", 600.0)
            await store.commit_progress(group, seq)
            await store.release_lease(lease)
        finally:
            await store.aclose()

    asyncio.run(go())


@pytest.fixture
def logged(cli: CLI) -> CLI:
    fill(cli.db, 20)
    return cli


class TestMaxLag:
    """--max-lag N fails when the group is more than N events behind."""

    def test_never_run_group_lags_the_whole_log(self, logged: CLI) -> None:
        """A group without a checkpoint is 20 behind a 20-event log."""
        r = logged("check", "--quick", "--max-lag", "5")
        assert r.exit_code == 1
        assert r.error_line == (
            "error: store check failed: lag default: lag 20 > --max-lag 5 (the group has never run)"
        )

    def test_within_the_threshold(self, logged: CLI) -> None:
        """A group 4 behind passes --max-lag 5, exit 0; JSON lists the check."""
        checkpoint(logged.db, "default", 16)
        r = logged("check", "--quick", "--max-lag", "5", "--json")
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert isinstance(doc, dict)
        assert {"name": "lag default", "ok": True, "detail": "lag 4 <= --max-lag 5"} in doc[
            "checks"
        ]

    def test_names_the_group(self, logged: CLI) -> None:
        """--group (or PUBSUB_GROUP) picks the group the threshold looks at."""
        checkpoint(logged.db, "billing", 20)
        assert logged("check", "--quick", "--max-lag", "0", "--group", "billing").exit_code == 0
        r = logged("check", "--quick", "--max-lag", "0", env={"PUBSUB_GROUP": "billing"})
        assert r.exit_code == 0
        assert logged("check", "--quick", "--max-lag", "0").exit_code == 1


class TestRequireWorker:
    """--require-worker fails when no live worker holds the group's lease."""

    def test_no_worker(self, logged: CLI) -> None:
        """Without a lease holder it is one line saying so, exit 1."""
        r = logged("check", "--quick", "--require-worker")
        assert r.exit_code == 1
        assert r.error_line == (
            "error: store check failed: worker default: no live worker holds the lease "
            "(--require-worker)"
        )

    def test_live_worker(self, logged: CLI) -> None:
        """A live lease passes and names its holder."""
        hold_lease(logged.db, "default", "host:123:abc")
        r = logged("check", "--quick", "--require-worker")
        assert r.exit_code == 0, r.stderr
        assert "held by host:123:abc" in r.stdout

    def test_both_failures_in_one_line(self, logged: CLI) -> None:
        """Several failed thresholds are named in the same single line."""
        r = logged("check", "--quick", "--require-worker", "--max-lag", "1")
        line = r.error_line
        assert "lag default: lag 20 > --max-lag 1" in line
        assert "worker default: no live worker" in line


class TestNoSelfAdvice:
    """What check prints never tells the user to run check."""

    def test_corrupt_payload(self, logged: CLI) -> None:
        """A flipped payload byte is named by seq, without 'run pubsub check'."""
        flip_payload_byte(logged.db, 7)
        r = logged("check")
        assert r.exit_code == 1
        assert "corrupt seq: 7" in r.error_line
        assert "pubsub check" not in r.stderr
        assert "run 'pubsub check'" not in r.stdout

    def test_malformed_file(self, logged: CLI) -> None:
        """A store whose pages are damaged fails the open check without self-advice."""
        data = bytearray(logged.db.read_bytes())
        for at in range(4096, len(data), 4096):  # every page but the header's
            data[at : at + 64] = b"\xff" * 64
        logged.db.write_bytes(bytes(data))
        r = logged("check")
        assert r.exit_code == 1
        assert "corrupt" in r.error_line or "malformed" in r.error_line
        assert "run 'pubsub check'" not in r.stderr
        assert "run 'pubsub check'" not in r.stdout
