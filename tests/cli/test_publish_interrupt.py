"""Tests of Ctrl-C during ``pubsub publish --file`` in a real process: the batch is all
or nothing under a signal too, and one line says which it was."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import orjson
import pytest

from .conftest import CLI, EXAMPLES, Watched, spawn

ORDERS = str(EXAMPLES / "orders.py")

# A store plugin (scheme gated://) that is the SQLite store whose second append waits
# until the file GATE exists, after saying so on stderr: the test signals the process
# at that point, while the first chunk is committed and the others are not.
GATED_STORE = """
import asyncio
import contextlib
import os
import sys

from plugins.sqlite import open_sqlite_store


async def open_gated(url):
    store = await open_sqlite_store("sqlite:///" + url.removeprefix("gated://"))
    real = store.append
    real_appending = store.appending
    calls = 0

    async def hold():
        nonlocal calls
        calls += 1
        if calls == 2:
            print("gated: holding the second chunk", file=sys.stderr, flush=True)
            while not os.path.exists(os.environ["GATE"]):
                await asyncio.sleep(0.01)

    async def append(events, **options):
        await hold()
        return await real(events, **options)

    class Gated:
        def __init__(self, batch):
            self.batch = batch

        async def append(self, events, **options):
            await hold()
            return await self.batch.append(events, **options)

    @contextlib.asynccontextmanager
    async def appending():
        async with real_appending() as batch:
            yield Gated(batch)

    store.append = append
    store.appending = appending
    return store
"""


def jsonl(n: int) -> str:
    return "".join(
        orjson.dumps(
            {"type": "OrderPlaced", "data": {"order_id": f"A-{i}", "sku": "BOOK", "total": "1"}}
        ).decode()
        + "\n"
        for i in range(n)
    )


def count(cli: CLI) -> int:
    r = cli("events", "list", "--json", "--limit", "0")
    assert r.exit_code == 0, r.stderr
    return len(r.json_lines())


@pytest.fixture
def gated_env(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH with the gated:// store plugin and its distribution metadata."""
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "gatedstore.py").write_text(GATED_STORE)
    info = plugin / "gatedstore-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gatedstore\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pubsub.stores]\ngated = gatedstore:open_gated\n")
    return {"PYTHONPATH": str(plugin), "GATE": str(tmp_path / "gate")}


class TestInterruptedPublish:
    """SIGINT before and during the append."""

    def test_while_validating_nothing_is_appended(self, cli: CLI, tmp_path: Path) -> None:
        """A signal while the input is still being read: nothing appended, one line, 130."""
        proc = Watched(
            spawn(
                "publish",
                "--app",
                ORDERS,
                "--file",
                "-",
                cwd=tmp_path,
                env={"PUBSUB_DB": str(cli.db)},
                stdin=subprocess.PIPE,
            )
        )
        assert proc.proc.stdin is not None
        proc.proc.stdin.write(jsonl(100))
        proc.proc.stdin.flush()
        proc.expect("validating <stdin>")
        # Standard input is still open: the first pass cannot have ended.
        proc.proc.send_signal(signal.SIGINT)
        r = proc.finish()
        assert r.exit_code == 130, r.stderr
        assert r.stderr.splitlines()[-1] == "interrupted: nothing appended"
        assert "Traceback" not in r.stderr
        assert r.stdout == ""
        assert not cli.db.exists()

    def test_while_appending_everything_is_appended(
        self, cli: CLI, tmp_path: Path, gated_env: dict[str, str]
    ) -> None:
        """A signal after the first of three chunks: the append finishes, the summary is
        printed, then one line says so and the exit is 130."""
        path = tmp_path / "big.jsonl"
        path.write_text(jsonl(12_000))  # 5,000 + 5,000 + 2,000
        proc = Watched(
            spawn(
                "--store",
                f"gated://{cli.db}",
                "publish",
                "--app",
                ORDERS,
                "--file",
                str(path),
                cwd=tmp_path,
                env=gated_env,
            )
        )
        proc.expect("gated: holding the second chunk")
        proc.proc.send_signal(signal.SIGINT)
        proc.expect("SIGINT: finishing the append of all 12,000 validated event(s)")
        Path(gated_env["GATE"]).touch()
        r = proc.finish()
        assert r.exit_code == 130, r.stderr
        assert "appended 12,000 event(s)" in r.stderr
        assert r.stderr.splitlines()[-1] == (
            "interrupted (SIGINT) after the append finished: nothing was lost"
        )
        assert len(r.stdout.split()) == 12_000
        assert count(cli) == 12_000

    def test_second_signal_says_what_was_appended(
        self, cli: CLI, tmp_path: Path, gated_env: dict[str, str]
    ) -> None:
        """A second signal stops at once: the file was one transaction, so nothing of it
        is stored (the first chunk included) and no sequence number was printed."""
        path = tmp_path / "big.jsonl"
        path.write_text(jsonl(12_000))
        proc = Watched(
            spawn(
                "--store",
                f"gated://{cli.db}",
                "publish",
                "--app",
                ORDERS,
                "--file",
                str(path),
                cwd=tmp_path,
                env=gated_env,
            )
        )
        proc.expect("gated: holding the second chunk")
        proc.proc.send_signal(signal.SIGINT)
        proc.expect("SIGINT: finishing the append")
        proc.proc.send_signal(signal.SIGINT)
        r = proc.finish()
        assert r.exit_code == 130, r.stderr
        assert (
            "SIGINT again: stopped; nothing was appended (the 12,000 event(s) were one "
            "transaction, not committed)" in r.stderr
        )
        assert r.stdout == ""
        assert count(cli) == 0
