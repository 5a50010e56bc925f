"""DLQ: ``pubsub dlq list / show / retry / purge`` — inspect dead letters, re-drive them
to their handler (a compare-and-set resolution recorded by the store), and delete them."""

from __future__ import annotations

import asyncio
import enum
from typing import Annotated, Any

import typer

from core.store import DeadLetter, DeadLetterStatus
from pubsub_cli.context import AppDirOption, DbOption, JsonOption, StoreOption, open_store, state
from pubsub_cli.records import DEAD_LETTER_COLUMNS, dead_letter_dict, dead_letter_row
from pubsub_cli.targets import load_targets
from pubsub_cli.wiring import build_bus

app = typer.Typer(help="Inspect and re-drive dead letters.", no_args_is_help=True)


class StatusChoice(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    ALL = "all"


@app.command("list")
def list_dead_letters(
    ctx: typer.Context,
    handler: Annotated[str | None, typer.Option("--handler", help="Only this handler")] = None,
    event_type: Annotated[
        str | None, typer.Option("--type", "-t", help="Only this event type")
    ] = None,
    status: Annotated[
        StatusChoice, typer.Option("--status", help="Which entries", case_sensitive=False)
    ] = StatusChoice.OPEN,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="At most (0: all)")] = 0,
    json: JsonOption = False,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """List dead letters: id, seq, event type, handler, error, attempts, last failure."""
    st = state(ctx)
    settings = st.settings(db=db, store=store)
    out = st.out(json)
    wanted = None if status is StatusChoice.ALL else DeadLetterStatus(status.value)

    async def go() -> list[DeadLetter]:
        async with open_store(settings) as s:
            return await s.list_dead_letters(
                handler=handler, event_type=event_type, status=wanted, limit=limit or None
            )

    entries = asyncio.run(go())
    if json:
        out.json({"entries": [dead_letter_dict(e) for e in entries]})
        return
    out.table(
        DEAD_LETTER_COLUMNS,
        [dead_letter_row(e) for e in entries],
        title=f"dead letters ({status.value})",
        caption=f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}",
    )


@app.command("show")
def show(
    ctx: typer.Context,
    entry_id: Annotated[int, typer.Argument(metavar="ID", help="Dead-letter id")],
    json: JsonOption = False,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Show one dead letter with its payload and full traceback."""
    st = state(ctx)
    settings = st.settings(db=db, store=store)
    out = st.out(json)

    async def go() -> DeadLetter:
        async with open_store(settings) as s:
            return await s.get_dead_letter(entry_id)

    entry = asyncio.run(go())
    doc = dead_letter_dict(entry, full=True)
    if json:
        out.json(doc)
        return
    out.fields(
        [(k, v) for k, v in doc.items() if k not in ("payload", "traceback")],
        title=f"dead letter {entry_id}",
    )
    import orjson

    out.block(
        "payload", orjson.dumps(doc["payload"], option=orjson.OPT_INDENT_2).decode(), lexer="json"
    )
    out.block("traceback", entry.traceback or "(none)", lexer="pytb")


@app.command("retry")
def retry(
    ctx: typer.Context,
    entry_ids: Annotated[
        list[int] | None, typer.Argument(metavar="[ID]...", help="Dead-letter ids")
    ] = None,
    all_open: Annotated[bool, typer.Option("--all", help="Every open entry")] = False,
    apps: Annotated[
        list[str] | None,
        typer.Option("--app", help="TARGET with the handlers (repeatable)", metavar="TARGET"),
    ] = None,
    plugin: Annotated[
        list[str] | None, typer.Option("--plugin", help="pubsub.handlers entry point")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when a re-drive fails again")
    ] = False,
    app_dir: AppDirOption = None,
    json: JsonOption = False,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Re-drive dead letters to their handler; the store records how each was resolved."""
    st = state(ctx)
    settings = st.settings(db=db, store=store, app_dir=app_dir)
    out = st.out(json)
    if bool(entry_ids) == all_open:
        raise typer.BadParameter("give dead-letter ids or --all (not both)", param_hint="'ID'")
    if not apps and not plugin:
        raise typer.BadParameter(
            "re-driving needs the handlers: pass --app TARGET (or --plugin NAME)",
            param_hint="'--app'",
        )
    loaded = load_targets(apps or [], plugins=plugin or [], app_dir=settings.app_dir)

    async def go() -> list[dict[str, Any]]:
        async with open_store(settings) as s:
            ids = list(entry_ids or [])
            if all_open:
                ids = [e.id for e in await s.list_dead_letters() if e.id is not None]
            bus = build_bus(loaded, s, group=settings.group, consume=False)
            results: list[dict[str, Any]] = []
            async with bus:
                with out.progress(len(ids), "re-driving") as advance:
                    for entry_id in ids:
                        entry = await s.get_dead_letter(entry_id)
                        res = await bus.redrive(entry_id)
                        outcome = res.outcome
                        after = await s.get_dead_letter(entry_id)
                        results.append(
                            {
                                "id": entry_id,
                                "handler": entry.handler,
                                "event_type": entry.event_type,
                                "resolved": res.resolved,
                                "already_resolved": res.already_resolved,
                                "status": outcome.status.value if outcome else None,
                                "error": None
                                if outcome is None or outcome.error is None
                                else f"{type(outcome.error).__name__}: {outcome.error}",
                                "resolution": after.resolution,
                                "resolved_at": after.resolved_at,
                            }
                        )
                        advance(1)
            return results

    results = asyncio.run(go())
    failed = [r for r in results if not r["resolved"] and not r["already_resolved"]]
    if json:
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
                    "resolved"
                    if r["resolved"]
                    else "already resolved"
                    if r["already_resolved"]
                    else f"failed again: {r['error']}",
                    r["resolution"],
                    r["resolved_at"],
                )
                for r in results
            ],
            title="dlq retry",
            caption=f"{len(results)} re-driven, {len(failed)} failed again",
        )
    if strict and failed:
        out.error(f"{len(failed)} of {len(results)} dead letter(s) failed again (--strict)")
        raise typer.Exit(1)


@app.command("purge")
def purge(
    ctx: typer.Context,
    resolved: Annotated[
        bool, typer.Option("--resolved", help="Only resolved entries (keep open ones)")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    json: JsonOption = False,
    db: DbOption = None,
    store: StoreOption = None,
) -> None:
    """Delete dead letters (all, or only resolved ones); asks first on a terminal."""
    st = state(ctx)
    settings = st.settings(db=db, store=store)
    out = st.out(json)
    settings.require_existing_store()
    which = "resolved" if resolved else "ALL"
    if not yes:
        if not out.err.is_terminal or json:
            raise typer.BadParameter(
                "purge deletes dead letters: confirm with --yes when not on a terminal",
                param_hint="'--yes'",
            )
        if not out.confirm(f"delete {which} dead letters in {settings.store_url}?"):
            out.note("nothing deleted")
            raise typer.Exit(1)

    async def go() -> int:
        async with open_store(settings) as s:
            return await s.purge_dead_letters(resolved_only=resolved)

    count = asyncio.run(go())
    if json:
        out.json({"purged": count, "resolved_only": resolved})
    else:
        out.text(f"purged {count} dead letter(s)")
