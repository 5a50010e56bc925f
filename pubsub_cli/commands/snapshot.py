"""Snapshot: ``pubsub snapshot create / list / restore`` — projection state saved at a
log position; restore loads it and replays only the events after it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from core.bus import EventBus
from core.projections import RestoreReport, create_snapshots, projections_of, restore_snapshots
from core.store import EventStore, Snapshot
from pubsub_cli.context import ID_MAX, Invocation, shared_options
from pubsub_cli.records import snapshot_dict

app = typer.Typer(help="Projection snapshots.", no_args_is_help=True)

TargetsArg = Annotated[
    list[str], typer.Argument(metavar="TARGET...", help="Module(s) with the projections")
]


@app.command("create")
@shared_options(app_dir=True)
def create(inv: Invocation, targets: TargetsArg) -> None:
    """Rebuild each projection (latest snapshot + the events after it) and save its
    state at the current end of the log."""
    out = inv.out
    loaded = inv.load(targets)

    async def go(bus: EventBus, s: EventStore) -> tuple[RestoreReport, list[Snapshot]]:
        rebuilt = await restore_snapshots(bus)
        return rebuilt, await create_snapshots(bus, restored=rebuilt)

    rebuilt, snaps = inv.with_bus(loaded, go)
    replayed = rebuilt.replayed
    if inv.json:
        out.json({"replayed": replayed, "snapshots": [snapshot_dict(x) for x in snaps]})
        return
    out.table(
        ("id", "projection", "seq", "keys"),
        [(x.id, x.name, x.seq, len(x.state)) for x in snaps],
        title="snapshots created",
        caption=_rebuilt_from(len(rebuilt.snapshots), replayed),
    )


def _rebuilt_from(previous: int, replayed: int) -> str:
    """Where the saved state came from: earlier snapshots and the events after them, or
    the whole log when there was no snapshot yet."""
    if not previous:
        return f"rebuilt from the whole log ({replayed} event(s)): no previous snapshot"
    which = "the previous snapshot" if previous == 1 else f"{previous} previous snapshots"
    return f"rebuilt from {which} and {replayed} later event(s)"


@app.command("list")
@shared_options()
def list_snapshots(
    inv: Invocation,
    name: Annotated[str | None, typer.Option("--name", help="Only this projection")] = None,
) -> None:
    """List saved snapshots."""
    out = inv.out
    snaps = inv.with_store(lambda s: s.list_snapshots(name))
    if inv.json:
        out.json({"snapshots": [snapshot_dict(x) for x in snaps]})
        return
    out.table(
        ("id", "projection", "seq", "created", "keys"),
        [(x.id, x.name, x.seq, x.created_at, len(x.state)) for x in snaps],
        title="snapshots",
    )


@app.command("restore")
@shared_options(app_dir=True)
def restore(
    inv: Invocation,
    targets: TargetsArg,
    snapshot_id: Annotated[
        int | None,
        typer.Option("--id", min=1, max=ID_MAX, help="This snapshot (default: each latest)"),
    ] = None,
    show_state: Annotated[
        bool, typer.Option("--show-state", help="Print each projection's restored state")
    ] = False,
) -> None:
    """Load a snapshot into its projection and replay only the events after it."""
    out = inv.out
    loaded = inv.load(targets)

    async def go(bus: EventBus, s: EventStore) -> tuple[RestoreReport, dict[str, Any]]:
        report = await restore_snapshots(bus, snapshot_id=snapshot_id)
        return report, {n: p.snapshot() for n, p in projections_of(bus).items()}

    report, states = inv.with_bus(loaded, go)
    if inv.json:
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
        for name, value in states.items():
            out.json_block(name, value)
