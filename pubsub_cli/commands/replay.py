"""Replay: ``pubsub replay`` — re-dispatch a range of the log to the handlers in
sequence order, with a progress bar and a summary; ``--dry-run`` prints the plan. A
replay never moves a live checkpoint and never appends; its failures go to the DLQ
tagged ``replay``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import typer

from core.bus import EventBus, ReplayReport
from core.errors import SubscriptionError
from core.events import default_registry
from core.store import EventStore, StoredEvent
from pubsub_cli.context import (
    ID_MAX,
    Invocation,
    PluginOption,
    SinceOption,
    TracingOption,
    UntilOption,
    shared_options,
)
from pubsub_cli.interrupts import Interrupted, cancel_on_signal, interrupted_by
from pubsub_cli.output import number
from pubsub_cli.times import time_range


class _Range:
    """The selection a replay reads: sequence bounds, times and types."""

    def __init__(
        self,
        from_seq: int,
        to_seq: int | None,
        since: datetime | None,
        until: datetime | None,
        types: list[str] | None,
    ) -> None:
        self.from_seq, self.to_seq = from_seq, to_seq
        self.since, self.until, self.types = since, until, types

    def read(self, store: EventStore) -> AsyncIterator[StoredEvent]:
        return store.read(
            from_seq=self.from_seq,
            to_seq=self.to_seq,
            since=self.since,
            until=self.until,
            types=self.types,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "types": self.types,
        }


async def _size(store: EventStore, rng: _Range, log_end: int) -> int | None:
    """How many events ``rng`` selects, when that is known without reading them."""
    if rng.since is not None or rng.until is not None:
        return None
    if rng.types:
        whole = rng.from_seq <= 1 and rng.to_seq is None
        return await store.count(types=rng.types) if whole else None
    end = log_end if rng.to_seq is None else min(rng.to_seq, log_end)
    return max(0, end - rng.from_seq + 1)


async def _plan(
    bus: EventBus, store: EventStore, rng: _Range, handlers: list[str] | None
) -> dict[str, Any]:
    """What a replay of ``rng`` would do: sequence range, events per type, receivers."""
    per_type: dict[str, int] = {}
    first = last = None
    first_at = last_at = None
    async for r in rng.read(store):
        if first is None:
            first, first_at = r.seq, r.appended_at
        last, last_at = r.seq, r.appended_at
        per_type[r.type_name] = per_type.get(r.type_name, 0) + 1
    receivers: dict[str, list[str] | None] = {}
    for name in per_type:
        cls = default_registry.get(name)
        got = None if cls is None else bus.handlers_for(cls)
        if got is not None and handlers:
            got = [h for h in got if h in handlers]
        receivers[name] = got
    return {
        "selection": rng.describe(),
        "events": sum(per_type.values()),
        "first_seq": first,
        "last_seq": last,
        "first_appended_at": first_at.isoformat() if first_at else None,
        "last_appended_at": last_at.isoformat() if last_at else None,
        "types": [
            {"type": t, "events": n, "handlers": receivers[t]} for t, n in sorted(per_type.items())
        ],
    }


def _handler_names(wanted: list[str] | None, known: list[str]) -> list[str] | None:
    """The loaded handlers ``--handler`` names: each value is a full name, or the part
    after its last dot when exactly one loaded handler ends so (``audit`` for
    ``orders.audit``). A short name two handlers share is a usage error naming both."""
    if not wanted:
        return None
    chosen: list[str] = []
    for name in wanted:
        if name in known:
            chosen.append(name)
            continue
        matches = sorted(k for k in known if k.rpartition(".")[2] == name)
        if len(matches) > 1:
            raise typer.BadParameter(
                f"{name!r} is ambiguous: it may be {', '.join(map(repr, matches))}; "
                "give the full name",
                param_hint="'--handler'",
            )
        if not matches:
            raise SubscriptionError(
                f"no handler named {name!r} is loaded; loaded: {', '.join(sorted(known))}"
            )
        chosen.append(matches[0])
    return chosen


@shared_options(app_dir=True)
def replay(
    inv: Invocation,
    targets: Annotated[
        list[str],
        typer.Argument(metavar="TARGET...", help="Handlers: file.py, package.module[:attr]"),
    ],
    since: SinceOption = None,
    until: UntilOption = None,
    from_seq: Annotated[
        int | None, typer.Option("--from-seq", min=1, max=ID_MAX, help="First sequence number")
    ] = None,
    to_seq: Annotated[
        int | None, typer.Option("--to-seq", min=1, max=ID_MAX, help="Last sequence number")
    ] = None,
    types: Annotated[
        list[str] | None, typer.Option("--type", "-t", help="Only this event type (repeatable)")
    ] = None,
    handler: Annotated[
        list[str] | None, typer.Option("--handler", help="Only this handler (repeatable)")
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", min=0.001, help="At most N events per second")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan, dispatch nothing")
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when a handler failed")] = False,
    plugin: PluginOption = None,
    tracing: TracingOption = False,
) -> None:
    """Re-dispatch a range of stored events to the handlers, in sequence order."""
    out = inv.out
    if since is not None and from_seq is not None:
        raise typer.BadParameter("give --since or --from-seq, not both", param_hint="'--since'")
    if from_seq is not None and to_seq is not None and from_seq > to_seq:
        raise typer.BadParameter(
            f"--from-seq {from_seq} is after --to-seq {to_seq}: the sequence range is inverted"
        )
    rng = _Range(from_seq or 1, to_seq, *time_range(since, until), types or None)
    loaded = inv.load(targets, plugins=plugin)

    log_end = 0
    total: int | None = None
    finished = 0  # events whose dispatch is over (replay asked for the next one)
    first_seq: int | None = None
    last_seq: int | None = None

    async def counted(records: AsyncIterator[StoredEvent]) -> AsyncIterator[StoredEvent]:
        nonlocal finished, first_seq, last_seq
        async for record in records:
            yield record
            finished += 1
            first_seq = record.seq if first_seq is None else first_seq
            last_seq = record.seq

    async def go(bus: EventBus, s: EventStore) -> tuple[dict[str, Any], ReplayReport | None]:
        nonlocal log_end, total
        log_end = await s.last_seq()
        chosen = _handler_names(handler, [sub.name for sub in bus.subscriptions])
        if dry_run:
            return await _plan(bus, s, rng, chosen), None
        # The real run does not read the range twice: the sequence is gap-free, so a
        # range by sequence alone knows its size; other selections get a bar without
        # a total.
        plan = {"selection": rng.describe()}
        total = await _size(s, rng, log_end)
        with out.progress(total, "replaying") as advance:
            done = 0

            def progress(n: int) -> None:
                nonlocal done
                advance(n - done)
                done = n

            report = await cancel_on_signal(
                bus.replay(
                    counted(rng.read(s)), handlers=chosen or None, rate=rate, progress=progress
                )
            )
        return plan, report

    try:
        with interrupted_by():
            plan, report = inv.with_bus(loaded, go, tracing=tracing)
    except Interrupted as stop:
        of = f" of {number(total)}" if total is not None else ""
        where = f" (seq {first_seq}..{last_seq})" if first_seq is not None else ""
        out.outcome(
            f"interrupted after {number(finished)}{of} event(s){where}: the replay moved no "
            "checkpoint and appended nothing; run it again with --from-seq "
            f"{(last_seq or rng.from_seq - 1) + 1} to go on"
        )
        raise typer.Exit(stop.exit_code) from None
    nothing = f"no stored event matches the selection (the log ends at seq {log_end})"
    if report is None:
        if inv.json:
            out.json({"dry_run": True, **plan})
            return
        out.fields(
            [
                ("selection", ", ".join(f"{k}={v}" for k, v in plan["selection"].items() if v)),
                *(
                    [
                        ("sequence range", f"{plan['first_seq']} .. {plan['last_seq']}"),
                        (
                            "time range",
                            f"{plan['first_appended_at']} .. {plan['last_appended_at']}",
                        ),
                    ]
                    if plan["events"]
                    else [("sequence range", f"empty: {nothing}")]
                ),
                ("events", plan["events"]),
            ],
            title="replay plan (dry run: nothing dispatched)",
        )
        if not plan["types"]:
            return
        out.table(
            ("event type", "events", "handlers"),
            [
                (
                    t["type"],
                    t["events"],
                    "unknown type (not imported)"
                    if t["handlers"] is None
                    else ", ".join(t["handlers"]) or "none",
                )
                for t in plan["types"]
            ],
        )
        return
    failed = sum(t.failed for t in report.per_handler.values())
    doc = {
        "dry_run": False,
        "selection": plan["selection"],
        "events": report.events,
        "first_seq": report.first_seq,
        "last_seq": report.last_seq,
        "decode_errors": report.decode_errors,
        "dead_letters": report.dead_letters,
        "handlers": {
            name: {"ok": t.ok, "failed": t.failed} for name, t in report.per_handler.items()
        },
        "duration": report.duration,
        "rate": report.rate,
    }
    if inv.json:
        out.json(doc)
    else:
        out.table(
            ("handler", "ok", "failed"),
            [(name, t.ok, t.failed) for name, t in report.per_handler.items()],
            title=f"replayed {report.events} event(s), seq {report.first_seq} .. {report.last_seq}"
            if report.events
            else f"replayed 0 events: {nothing}",
            caption=(
                f"{report.duration:.3f}s, {report.rate:,.0f} events/s; "
                f"{report.decode_errors} undecodable; {report.dead_letters} new dead letter(s) "
                "(source: replay)"
            ),
        )
    if strict and (failed or report.decode_errors):
        out.error(
            f"replay: {failed} handler failure(s), {report.decode_errors} decode error(s) (--strict)"
        )
        raise typer.Exit(1)
