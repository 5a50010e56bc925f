"""Stats: ``pubsub stats`` — what the store knows: events per type, dead letters per
handler, snapshots, and each consumer group's checkpoint, lag and lease holder."""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from core.store import DeadLetterStatus
from pubsub_cli.context import DbOption, JsonOption, StoreOption, open_store, state
from pubsub_cli.records import group_dict


def stats(
    ctx: typer.Context,
    json: JsonOption = False,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Counts per event type and per handler, DLQ and consumer groups, from the store."""
    st = state(ctx)
    settings = st.settings(db=db, store=store)
    out = st.out(json)

    async def go() -> dict[str, Any]:
        async with open_store(settings) as s:
            types = await s.count_by_type()
            letters = await s.list_dead_letters(status=None)
            handlers: dict[str, dict[str, int]] = {}
            for e in letters:
                row = handlers.setdefault(e.handler, {"open": 0, "resolved": 0})
                row["open" if e.status is DeadLetterStatus.OPEN else "resolved"] += 1
            return {
                "store": s.url,
                "durability": s.durability,
                "events": sum(types.values()),
                "last_seq": await s.last_seq(),
                "types": dict(sorted(types.items())),
                "dlq": {
                    "open": sum(h["open"] for h in handlers.values()),
                    "resolved": sum(h["resolved"] for h in handlers.values()),
                    "handlers": dict(sorted(handlers.items())),
                },
                "groups": [group_dict(g) for g in await s.groups()],
                "snapshots": len(await s.list_snapshots()),
            }

    doc = asyncio.run(go())
    if json:
        out.json(doc)
        return
    out.fields(
        [
            ("store", doc["store"]),
            ("durability", doc["durability"]),
            ("events", doc["events"]),
            ("last seq", doc["last_seq"]),
            ("dead letters", f"{doc['dlq']['open']} open, {doc['dlq']['resolved']} resolved"),
            ("snapshots", doc["snapshots"]),
        ],
        title="store",
    )
    out.table(("event type", "events"), list(doc["types"].items()), title="events per type")
    out.table(
        ("handler", "DLQ open", "DLQ resolved"),
        [(h, c["open"], c["resolved"]) for h, c in doc["dlq"]["handlers"].items()],
        title="dead letters per handler",
    )
    out.table(
        ("group", "checkpoint", "lag", "holder"),
        [(g["group"], g["checkpoint"], g["lag"], g["holder"]) for g in doc["groups"]],
        title="consumer groups",
    )
