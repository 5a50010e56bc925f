"""Stats: ``pubsub stats`` — what the store knows: events per type, dead letters per
handler, snapshots, and each consumer group's checkpoint, lag and lease holder."""

from __future__ import annotations

from typing import Any

from core.store import DeadLetterStatus, EventStore
from pubsub_cli.context import Invocation, shared_options
from pubsub_cli.records import group_dict


async def _counts(s: EventStore) -> dict[str, Any]:
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


@shared_options()
def stats(inv: Invocation) -> None:
    """Counts per event type and per handler, DLQ and consumer groups, from the store."""
    out = inv.out
    doc = inv.with_store(_counts)
    if inv.json:
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
