"""Snapshot: ``pubsub snapshot create / list / restore`` — projection state saved at a
log position; restore loads it and replays only the events after it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from core.bus import EventBus
from core.dlq import DECODE_HANDLER
from core.errors import PubSubError, UnknownEventTypeError
from core.memory import MemoryDeadLetterQueue
from core.projections import RestoreReport, create_snapshots, projections_of, restore_snapshots
from core.store import DeadLetter, EventStore, Snapshot
from pubsub_cli.context import ID_MAX, Invocation, shared_options
from pubsub_cli.output import number
from pubsub_cli.records import snapshot_dict
from pubsub_cli.targets import LoadedTargets
from pubsub_cli.wiring import build_bus

T = TypeVar("T")

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

    async def go(
        bus: EventBus, failures: MemoryDeadLetterQueue
    ) -> tuple[RestoreReport, list[Snapshot]]:
        rebuilt = await restore_snapshots(bus)
        await _refuse_failed(inv, failures, "no snapshot was saved")
        return rebuilt, await create_snapshots(bus, restored=rebuilt)

    rebuilt, snaps = _with_projections(inv, loaded, go)
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


class ProjectionFailedError(PubSubError):
    """Raised when a projection failed on an event (or an event could not be decoded)
    while it was rebuilt: its state misses that event, so it is not saved or shown."""

    def __init__(self, failures: list[DeadLetter], consequence: str) -> None:
        self.failures = failures
        first = failures[0]
        who = (
            "an event could not be decoded"
            if first.handler == DECODE_HANDLER
            else (f"projection {first.handler!r} failed")
        )
        more = len(failures) - 1
        super().__init__(
            f"{who} at seq {first.seq}: {first.error_type.rpartition('.')[2]}: "
            f"{first.message}"
            + (f" (and {number(more)} more failure(s))" if more else "")
            + f"; {consequence}: fix the projection and run the command again"
        )


async def _refuse_failed(
    inv: Invocation, failures: MemoryDeadLetterQueue, consequence: str
) -> None:
    """Raise ProjectionFailedError for what failed in the rebuild. An event whose type
    no loaded module defines cannot be one a loaded projection subscribes to (its class
    would be loaded): it is skipped with a warning, not a failure."""
    entries = await failures.list_dead_letters(status=None)
    unknown = [e for e in entries if e.handler == DECODE_HANDLER and _unknown_type(e)]
    if unknown:
        types = ", ".join(sorted({e.event_type for e in unknown}))
        inv.out.warn(
            f"{number(len(unknown))} event(s) of a type not loaded here ({types}) were "
            "skipped: pass the module that defines a type if a projection subscribes to a "
            "base class of it"
        )
    failed = [e for e in entries if not (e.handler == DECODE_HANDLER and _unknown_type(e))]
    if failed:
        raise ProjectionFailedError(sorted(failed, key=lambda e: e.seq or 0), consequence)


def _unknown_type(entry: DeadLetter) -> bool:
    return entry.error_type.rpartition(".")[2] == UnknownEventTypeError.__name__


def _with_projections(
    inv: Invocation,
    loaded: LoadedTargets,
    work: Callable[[EventBus, MemoryDeadLetterQueue], Awaitable[T]],
) -> T:
    """Run ``work`` with a bus that carries the loaded handlers and does not consume;
    what fails while it rebuilds projections goes to an in-memory dead-letter queue that
    ``work`` inspects (a refused snapshot leaves no row behind in the store)."""

    async def on_store(store: EventStore) -> T:
        failures = MemoryDeadLetterQueue()
        bus = build_bus(
            loaded, store, group=inv.settings.group, consume=False, dead_letters=failures
        )
        async with bus:
            return await work(bus, failures)

    return inv.with_store(on_store)


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

    async def go(
        bus: EventBus, failures: MemoryDeadLetterQueue
    ) -> tuple[RestoreReport, dict[str, Any]]:
        report = await restore_snapshots(bus, snapshot_id=snapshot_id)
        await _refuse_failed(inv, failures, "the restored state is incomplete")
        return report, {n: p.snapshot() for n, p in projections_of(bus).items()}

    report, states = _with_projections(inv, loaded, go)
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
