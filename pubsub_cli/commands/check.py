"""Check: ``pubsub check`` — the store's health for people and for a Docker
HEALTHCHECK: it opens, every payload matches its checksum, its schema is known, which
SQLite runs it, and who holds each group's lease. Exit 0 healthy, 1 not."""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any

import typer

from core.errors import ChecksumMismatchError, PubSubError
from core.store import EventStore
from pubsub_cli.context import Invocation, shared_options


async def _verify(store: EventStore) -> tuple[int, list[int]]:
    """Read the whole log; returns (records read, corrupt sequence numbers)."""
    read, corrupt, start = 0, [], 1
    last = await store.last_seq()
    while start <= last:
        try:
            async for r in store.read(from_seq=start):
                read += 1
                start = r.seq + 1
            break
        except ChecksumMismatchError as exc:
            corrupt.append(exc.seq)
            start = exc.seq + 1
    return read, corrupt


async def _store_checks(store: EventStore, deep: bool) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = [
        {"name": "open", "ok": True, "detail": f"{store.url} ({store.durability})"}
    ]
    own = getattr(store, "integrity_check", None)  # the store's own check, when it has one
    if callable(own):
        try:
            result = await own()
            problems = [str(p) for p in result if str(p) != "ok"] if result else []
            checks.append(
                {
                    "name": "integrity",
                    "ok": not problems,
                    "detail": "; ".join(map(str, problems)) or "ok",
                }
            )
        except PubSubError as exc:
            checks.append({"name": "integrity", "ok": False, "detail": str(exc)})
    last = await store.last_seq()
    if deep:
        read, corrupt = await _verify(store)
        checks.append(
            {
                "name": "checksums",
                "ok": not corrupt,
                "detail": f"{read} payload(s) verified"
                + (f"; corrupt seq: {', '.join(map(str, corrupt))}" if corrupt else ""),
            }
        )
    checks.append({"name": "events", "ok": True, "detail": f"last seq {last}"})
    for g in await store.groups():
        holder = f"held by {g.holder}" if g.holder else "no live worker"
        checks.append(
            {
                "name": f"group {g.group}",
                "ok": True,
                "detail": f"checkpoint {g.checkpoint}, lag {g.lag}, {holder}",
            }
        )
    if store.url.startswith("sqlite"):
        checks.append({"name": "sqlite", "ok": True, "detail": f"SQLite {sqlite3.sqlite_version}"})
    return checks


@shared_options()
def check(
    inv: Invocation,
    quick: Annotated[
        bool, typer.Option("--quick", help="Skip reading every payload (for frequent probes)")
    ] = False,
) -> None:
    """Check the store's health; exit 0 when healthy, 1 otherwise."""
    out, settings = inv.out, inv.settings
    try:
        checks = inv.with_store(lambda s: _store_checks(s, deep=not quick))
    except PubSubError as exc:
        checks = [{"name": "open", "ok": False, "detail": str(exc)}]
    healthy = all(c["ok"] for c in checks)
    if inv.json:
        out.json({"ok": healthy, "store": settings.store_url, "checks": checks})
    else:
        out.table(
            ("check", "result", "detail"),
            [(c["name"], "ok" if c["ok"] else "FAILED", c["detail"]) for c in checks],
            title=f"pubsub check {settings.store_url}",
        )
    if not healthy:
        failed = next(c for c in checks if not c["ok"])
        out.error(f"store check failed: {failed['name']}: {failed['detail']}")
        raise typer.Exit(1)
