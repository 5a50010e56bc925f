"""Snapshot: ``pubsub snapshot create / list / restore`` — projection state saved at a
log position; restore loads it and replays only the events after it."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from core.projections import create_snapshots, projections_of, restore_snapshots
from core.store import Snapshot
from pubsub_cli.context import AppDirOption, DbOption, JsonOption, StoreOption, open_store, state
from pubsub_cli.records import snapshot_dict
from pubsub_cli.targets import load_targets
from pubsub_cli.wiring import build_bus

app = typer.Typer(help="Projection snapshots.", no_args_is_help=True)

TargetsArg = Annotated[
    list[str], typer.Argument(metavar="TARGET...", help="Module(s) with the projections")
]


@app.command("create")
def create(
    ctx: typer.Context,
    targets: TargetsArg,
    app_dir: AppDirOption = None,
    json: JsonOption = False,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Rebuild each projection (latest snapshot + the events after it) and save its
    state at the current end of the log."""
    st = state(ctx)
    settings = st.settings(db=db, store=store, app_dir=app_dir)
    out = st.out(json)
    loaded = load_targets(targets, app_dir=settings.app_dir)

    async def go() -> tuple[int, list[Snapshot]]:
        async with open_store(settings) as s:
            bus = build_bus(loaded, s, group=settings.group, consume=False)
            async with bus:
                rebuilt = await restore_snapshots(bus)
                return rebuilt.replayed, await create_snapshots(bus, restored=rebuilt)

    replayed, snaps = asyncio.run(go())
    if json:
        out.json({"replayed": replayed, "snapshots": [snapshot_dict(x) for x in snaps]})
        return
    out.table(
        ("id", "projection", "seq", "keys"),
        [(x.id, x.name, x.seq, len(x.state)) for x in snaps],
        title="snapshots created",
        caption=f"rebuilt from the previous snapshot and {replayed} later event(s)",
    )


@app.command("list")
def list_snapshots(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("--name", help="Only this projection")] = None,
    json: JsonOption = False,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """List saved snapshots."""
    st = state(ctx)
    settings = st.settings(db=db, store=store)
    out = st.out(json)

    async def go() -> list[Snapshot]:
        async with open_store(settings) as s:
            return await s.list_snapshots(name)

    snaps = asyncio.run(go())
    if json:
        out.json({"snapshots": [snapshot_dict(x) for x in snaps]})
        return
    out.table(
        ("id", "projection", "seq", "created", "keys"),
        [(x.id, x.name, x.seq, x.created_at, len(x.state)) for x in snaps],
        title="snapshots",
    )


@app.command("restore")
def restore(
    ctx: typer.Context,
    targets: TargetsArg,
    snapshot_id: Annotated[
        int | None, typer.Option("--id", help="This snapshot (default: each latest)")
    ] = None,
    show_state: Annotated[
        bool, typer.Option("--show-state", help="Print each projection's restored state")
    ] = False,
    app_dir: AppDirOption = None,
    json: JsonOption = False,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Load a snapshot into its projection and replay only the events after it."""
    st = state(ctx)
    settings = st.settings(db=db, store=store, app_dir=app_dir)
    out = st.out(json)
    loaded = load_targets(targets, app_dir=settings.app_dir)

    async def go() -> tuple[Any, dict[str, dict[str, Any]]]:
        async with open_store(settings) as s:
            bus = build_bus(loaded, s, group=settings.group, consume=False)
            async with bus:
                report = await restore_snapshots(bus, snapshot_id=snapshot_id)
                states = {n: p.snapshot() for n, p in projections_of(bus).items()}
                return report, states

    report, states = asyncio.run(go())
    if json:
        out.json(
            {
                "snapshots": [snapshot_dict(x) for x in report.snapshots],
                "replayed": report.replayed,
                "state": states,
            }
        )
        return
    out.table(
        ("id", "projection", "seq"),
        [(x.id, x.name, x.seq) for x in report.snapshots],
        title="snapshots restored",
        caption=f"replayed {report.replayed} event(s) after the snapshot(s)",
    )
    if show_state:
        import orjson

        for name, value in states.items():
            out.block(name, orjson.dumps(value, option=orjson.OPT_INDENT_2).decode(), lexer="json")
