"""Check: ``pubsub check`` — the store's health for people and for a Docker
HEALTHCHECK: it opens, every payload matches its checksum, its schema is known, which
SQLite runs it, and who holds each group's lease; a store that checks itself
(``SelfCheckingStore``: JetStream's server version, applied stream configuration,
durability and duplicate window) adds its rows, a warning among them not unhealthy; with thresholds (``--max-lag``,
``--require-worker``) also whether a group keeps up. Exit 0 healthy, 1 not, with one
line naming what failed."""

from __future__ import annotations

import re
import sqlite3
from typing import Annotated, Any

import typer

from core.errors import ChecksumMismatchError, PubSubError
from core.store import EventStore, GroupInfo, SelfCheckingStore
from pubsub_cli.context import Invocation, shared_options, shown_url


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


# The store's messages advise running this very command; here that advice is noise.
_SELF_ADVICE = re.compile(r"(;\s*)?run 'pubsub check'(\s+or\s+)?")


def _without_self_advice(text: str) -> str:
    return _SELF_ADVICE.sub(lambda m: "; " if m.group(1) and m.group(2) else "", text)


def _threshold_checks(
    groups: list[GroupInfo],
    last: int,
    *,
    group: str,
    max_lag: int | None,
    require_worker: bool,
) -> list[dict[str, Any]]:
    """The checks the thresholds ask for, on ``group`` (a group that never ran has
    checkpoint 0, so its lag is the whole log, and no worker)."""
    info = next((g for g in groups if g.group == group), None)
    lag = info.lag if info is not None else last
    checks: list[dict[str, Any]] = []
    if max_lag is not None:
        checks.append(
            {
                "name": f"lag {group}",
                "ok": lag <= max_lag,
                "detail": f"lag {lag} {'<=' if lag <= max_lag else '>'} --max-lag {max_lag}"
                + ("" if info is not None else " (the group has never run)"),
            }
        )
    if require_worker:
        holder = info.holder if info is not None else None
        checks.append(
            {
                "name": f"worker {group}",
                "ok": holder is not None,
                "detail": f"held by {holder}"
                if holder
                else "no live worker holds the lease (--require-worker)",
            }
        )
    return checks


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
            checks.append(
                {"name": "integrity", "ok": False, "detail": _without_self_advice(str(exc))}
            )
    if isinstance(store, SelfCheckingStore):  # the store's own checks (engine, config)
        for c in await store.self_checks():
            row: dict[str, Any] = {"name": c.name, "ok": c.ok, "detail": c.detail}
            if c.warning:
                row["warning"] = True
            checks.append(row)
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


def _result(check: dict[str, Any]) -> str:
    if not check["ok"]:
        return "FAILED"
    return "warning" if check.get("warning") else "ok"


@shared_options()
def check(
    inv: Invocation,
    quick: Annotated[
        bool, typer.Option("--quick", help="Skip reading every payload (for frequent probes)")
    ] = False,
    max_lag: Annotated[
        int | None,
        typer.Option(
            "--max-lag",
            min=0,
            help="Unhealthy when the group is more than N events behind the log",
            metavar="N",
        ),
    ] = None,
    require_worker: Annotated[
        bool,
        typer.Option("--require-worker", help="Unhealthy when no live worker holds the group"),
    ] = False,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            "-g",
            envvar="PUBSUB_GROUP",
            show_envvar=True,
            help="The group --max-lag and --require-worker look at \\[default: default]",
            metavar="NAME",
        ),
    ] = None,
) -> None:
    """Check the store's health; exit 0 when healthy, 1 otherwise (one line says what
    failed)."""
    out = inv.out
    settings = inv.resolve(group=group)

    async def work(store: EventStore) -> list[dict[str, Any]]:
        checks = await _store_checks(store, deep=not quick)
        if max_lag is not None or require_worker:
            checks += _threshold_checks(
                await store.groups(),
                await store.last_seq(),
                group=settings.group,
                max_lag=max_lag,
                require_worker=require_worker,
            )
        return checks

    try:
        checks = inv.with_store(work)
    except PubSubError as exc:
        checks = [{"name": "open", "ok": False, "detail": _without_self_advice(str(exc))}]
    healthy = all(c["ok"] for c in checks)
    if inv.json:
        out.json({"ok": healthy, "store": shown_url(settings.store_url), "checks": checks})
    else:
        out.table(
            ("check", "result", "detail"),
            [(c["name"], _result(c), c["detail"]) for c in checks],
            title=f"pubsub check {shown_url(settings.store_url)}",
        )
    if not healthy:
        failed = "; ".join(f"{c['name']}: {c['detail']}" for c in checks if not c["ok"])
        out.error(f"store check failed: {failed}")
        raise typer.Exit(1)
