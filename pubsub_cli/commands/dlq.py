"""DLQ: ``pubsub dlq list / show / retry / purge`` — inspect dead letters, re-drive them
to their handler (a compare-and-set resolution recorded by the store), and delete them."""

from __future__ import annotations

import enum
from typing import Annotated, Any

import typer

from core.bus import EventBus
from core.store import DeadLetterStatus, EventStore
from pubsub_cli.context import ID_MAX, Invocation, PluginOption, shared_options, shown_url
from pubsub_cli.interrupts import Interrupted, cancel_on_signal, interrupted_by
from pubsub_cli.output import number
from pubsub_cli.records import DEAD_LETTER_COLUMNS, dead_letter_dict, dead_letter_row

app = typer.Typer(help="Inspect and re-drive dead letters.", no_args_is_help=True)


class StatusChoice(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    ALL = "all"


@app.command("list")
@shared_options()
def list_dead_letters(
    inv: Invocation,
    handler: Annotated[str | None, typer.Option("--handler", help="Only this handler")] = None,
    event_type: Annotated[
        str | None, typer.Option("--type", "-t", help="Only this event type")
    ] = None,
    status: Annotated[
        StatusChoice, typer.Option("--status", help="Which entries", case_sensitive=False)
    ] = StatusChoice.OPEN,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, max=ID_MAX, help="At most (0: all)")
    ] = 0,
) -> None:
    """List dead letters: id, seq, event type, handler, error, attempts, last failure."""
    out = inv.out
    wanted = None if status is StatusChoice.ALL else DeadLetterStatus(status.value)
    entries = inv.with_store(
        lambda s: s.list_dead_letters(
            handler=handler, event_type=event_type, status=wanted, limit=limit or None
        )
    )
    if inv.json:
        out.json({"entries": [dead_letter_dict(e) for e in entries]})
        return
    out.table(
        DEAD_LETTER_COLUMNS,
        [dead_letter_row(e) for e in entries],
        title=f"dead letters ({status.value})",
        caption=f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}",
    )


@app.command("show")
@shared_options()
def show(
    inv: Invocation,
    entry_id: Annotated[
        int, typer.Argument(metavar="ID", min=1, max=ID_MAX, help="Dead-letter id")
    ],
) -> None:
    """Show one dead letter with its payload and full traceback."""
    out = inv.out
    entry = inv.with_store(lambda s: s.get_dead_letter(entry_id))
    doc = dead_letter_dict(entry, full=True)
    if inv.json:
        out.json(doc)
        return
    out.fields(
        [(k, v) for k, v in doc.items() if k not in ("payload", "traceback")],
        title=f"dead letter {entry_id}",
    )
    out.json_block("payload", doc["payload"])
    out.block("traceback", entry.traceback or "(none)", lexer="pytb")


@app.command("retry")
@shared_options(app_dir=True)
def retry(
    inv: Invocation,
    entry_ids: Annotated[
        list[int] | None,
        typer.Argument(metavar="[ID]...", min=1, max=ID_MAX, help="Dead-letter ids"),
    ] = None,
    all_open: Annotated[bool, typer.Option("--all", help="Every open entry")] = False,
    apps: Annotated[
        list[str] | None,
        typer.Option("--app", help="TARGET with the handlers (repeatable)", metavar="TARGET"),
    ] = None,
    plugin: PluginOption = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when a re-drive fails again")
    ] = False,
) -> None:
    """Re-drive dead letters to their handler; the store records how each was resolved."""
    out = inv.out
    if entry_ids and all_open:
        raise typer.BadParameter("give dead-letter ids or --all, not both")
    if not entry_ids and not all_open:
        raise typer.BadParameter(
            "nothing to retry: give dead-letter ids, or --all for every open one"
        )
    if not apps and not plugin:
        raise typer.BadParameter(
            "re-driving needs the handlers: pass --app TARGET (or --plugin NAME)",
            param_hint="'--app'",
        )
    loaded = inv.load(apps or [], plugins=plugin)
    results: list[dict[str, Any]] = []
    total = len(entry_ids or [])

    async def redrive_each(bus: EventBus, s: EventStore) -> None:
        nonlocal total
        ids = list(entry_ids or [])
        if all_open:
            ids = [e.id for e in await s.list_dead_letters() if e.id is not None]
        total = len(ids)
        with out.progress(len(ids), "re-driving") as advance:
            for entry_id in ids:
                results.append(await _redrive_one(bus, s, entry_id))
                advance(1)

    try:
        with interrupted_by():
            inv.with_bus(loaded, lambda bus, s: cancel_on_signal(redrive_each(bus, s)))
    except Interrupted as stop:
        # The entry being re-driven when the signal came stays as it was (open, unless
        # its handler's success was already recorded): the store resolves by
        # compare-and-set, so nothing is resolved twice or half.
        resolved = sum(bool(r["resolved"]) for r in results)
        out.outcome(
            f"interrupted after resolving {number(resolved)} of {number(total)} dead "
            f"letter(s) ({number(len(results))} re-driven); the others are unchanged"
        )
        raise typer.Exit(stop.exit_code) from None
    failed = [r for r in results if not r["resolved"] and not r["already_resolved"]]
    if inv.json:
        out.json(
            {
                "retried": len(results),
                "resolved": sum(r["resolved"] for r in results),
                "already_resolved": sum(r["already_resolved"] for r in results),
                "failed": len(failed),
                "entries": results,
            }
        )
    else:
        out.table(
            ("id", "handler", "event type", "result", "resolution", "resolved at"),
            [
                (
                    r["id"],
                    r["handler"],
                    r["event_type"],
                    _result_text(r),
                    r["resolution"],
                    r["resolved_at"],
                )
                for r in results
            ],
            title="dlq retry",
            caption=_retry_caption(results, len(failed)),
        )
    if strict and failed:
        out.error(f"{len(failed)} of {len(results)} dead letter(s) failed again (--strict)")
        raise typer.Exit(1)


async def _redrive_one(bus: EventBus, s: EventStore, entry_id: int) -> dict[str, Any]:
    """Re-drive one entry; its row of the report."""
    entry = await s.get_dead_letter(entry_id)
    res = await bus.redrive(entry_id)
    outcome = res.outcome
    after = await s.get_dead_letter(entry_id)
    return {
        "id": entry_id,
        "handler": entry.handler,
        "event_type": entry.event_type,
        "resolved": res.resolved,
        "already_resolved": res.already_resolved,
        # A re-drive that ran the handler has its outcome, also when it then lost the
        # compare-and-set to another re-drive; one that found the entry resolved has none.
        "handler_ran": outcome is not None or res.resolved,
        "status": outcome.status.value if outcome else None,
        "error": None
        if outcome is None or outcome.error is None
        else f"{type(outcome.error).__name__}: {outcome.error}",
        "resolution": after.resolution,
        "resolved_at": after.resolved_at,
    }


def _result_text(r: dict[str, Any]) -> str:
    if r["resolved"]:
        return "resolved"
    if r["already_resolved"]:
        if r["handler_ran"]:
            return "handler ran; already resolved by another re-drive"
        return "already resolved (skipped)"
    return f"failed again: {r['error']}"


def _retry_caption(results: list[dict[str, Any]], failed: int) -> str:
    """``N re-driven, M failed again``; an entry resolved before is not re-driven, one
    resolved by another re-drive while its handler ran here was."""
    skipped = sum(bool(r["already_resolved"] and not r["handler_ran"]) for r in results)
    lost = sum(bool(r["already_resolved"] and r["handler_ran"]) for r in results)
    caption = f"{number(len(results) - skipped)} re-driven, {number(failed)} failed again"
    if lost:
        caption += f", {number(lost)} resolved by another re-drive meanwhile"
    return caption + (f", {number(skipped)} already resolved (skipped)" if skipped else "")


@app.command("purge")
@shared_options()
def purge(
    inv: Invocation,
    resolved: Annotated[
        bool, typer.Option("--resolved", help="Only resolved entries (keep open ones)")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
) -> None:
    """Delete dead letters (all, or only resolved ones); asks first on a terminal."""
    out, settings = inv.out, inv.settings
    settings.require_existing_store()
    which = "resolved" if resolved else "ALL"
    if not yes:
        if not out.err.is_terminal or inv.json:
            raise typer.BadParameter(
                "purge deletes dead letters: confirm with --yes when not on a terminal",
                param_hint="'--yes'",
            )
        if not out.confirm(f"delete {which} dead letters in {shown_url(settings.store_url)}?"):
            out.note("nothing deleted")
            raise typer.Exit(1)

    count = inv.with_store(lambda s: s.purge_dead_letters(resolved_only=resolved))
    if inv.json:
        out.json({"purged": count, "resolved_only": resolved})
    else:
        out.text(f"purged {count} dead letter(s)")
