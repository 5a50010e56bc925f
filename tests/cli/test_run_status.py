"""The status line of ``pubsub run`` (drawn on a terminal only; its text is tested)."""

from __future__ import annotations

import asyncio

from core.bus import EventBus
from core.entrypoints import open_store
from pubsub_cli.commands.run import _status_line

from .conftest import CLI, EXAMPLES


def test_status_line_knows_the_end_of_the_log(cli: CLI) -> None:
    """Before the bus has read anything, the log's end comes from the store."""
    r = cli(
        "publish", "--app", str(EXAMPLES / "orders.py"), "--file", str(EXAMPLES / "orders.jsonl")
    )
    assert r.exit_code == 0, r.stderr

    async def go() -> str:
        store = await open_store(f"sqlite:///{cli.db}")
        try:
            return await _status_line(EventBus(store), 0.0)
        finally:
            await store.aclose()

    assert asyncio.run(go()).endswith("checkpoint 0 of 4")
