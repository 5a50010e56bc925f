"""Publish: ``pubsub publish`` — append events typed on the command line, from a
JSON-lines file or from standard input, all or nothing, and print their sequence
numbers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from core.events import Event
from core.store import EventStore
from pubsub_cli.context import Invocation, shared_options
from pubsub_cli.inputs import InputError, event_from_json, parse_lines, read_text_file


@shared_options(app_dir=True)
def publish(
    inv: Invocation,
    type_name: Annotated[
        str | None,
        typer.Argument(metavar="[TYPE]", help="Event type name (with --data)"),
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="The event's fields as a JSON object")
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            "-f",
            help='JSON lines {"type": ..., "data": {...}}; "-" reads standard input',
            metavar="PATH",
        ),
    ] = None,
    apps: Annotated[
        list[str] | None,
        typer.Option(
            "--app", help="TARGET that defines the event classes (repeatable)", metavar="TARGET"
        ),
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Append the valid lines and report the others"),
    ] = False,
) -> None:
    """Validate events against their registered classes and append them durably."""
    out = inv.out
    if type_name is not None and file is not None:
        raise typer.BadParameter("give TYPE --data JSON or --file, not both", param_hint="'TYPE'")
    if type_name is not None and data is None:
        raise typer.BadParameter("TYPE needs --data JSON (e.g. --data '{}')", param_hint="'--data'")
    if type_name is None and data is not None:
        raise typer.BadParameter("--data needs the event TYPE", param_hint="'TYPE'")
    if type_name is None and file is None:
        if sys.stdin.isatty():
            raise typer.BadParameter(
                "nothing to publish: give TYPE --data JSON, --file PATH, or pipe JSON lines",
                param_hint="'TYPE'",
            )
        file = "-"
    if apps:
        inv.load(apps, require_routers=False)

    events: list[Event]
    lines: list[int] = []
    skipped: list[InputError] = []
    if type_name is not None:
        assert data is not None
        events = [event_from_json(type_name, data, "--data")]
    else:
        assert file is not None
        if file == "-":
            source, text = "<stdin>", sys.stdin.read()
        else:
            source, text = file, read_text_file(Path(file))
        parsed = parse_lines(text.splitlines(), source)
        if parsed.errors and not skip_invalid:
            first = parsed.errors[0]
            more = len(parsed.errors) - 1
            suffix = f" (and {more} more invalid line(s))" if more else ""
            raise InputError(
                first.where,
                f"{first.problem}{suffix}; nothing was appended (--skip-invalid appends the rest)",
            )
        events, lines, skipped = parsed.events, parsed.lines, parsed.errors
        for problem in skipped:
            out.warn(f"skipped {problem}")

    async def append(s: EventStore) -> list[Any]:
        return list(await s.append(events)) if events else []

    results = inv.with_store(append, create=True)
    rows = [
        {
            "seq": r.seq,
            "id": str(r.event_id),
            "type": e.event_type,
            "duplicate": r.duplicate,
            **({"line": lines[i]} if lines else {}),
        }
        for i, (r, e) in enumerate(zip(results, events, strict=True))
    ]
    if inv.json:
        out.json(
            {
                "appended": sum(not r["duplicate"] for r in rows),
                "duplicates": sum(bool(r["duplicate"]) for r in rows),
                "events": rows,
                "skipped": [{"where": p.where, "error": p.problem} for p in skipped],
            }
        )
        return
    for r in rows:
        out.line(f"{r['seq']}" + (" (duplicate: already stored)" if r["duplicate"] else ""))
    out.note(
        f"appended {sum(not r['duplicate'] for r in rows)} event(s) to {inv.settings.store_url}"
        + (f", skipped {len(skipped)} invalid line(s)" if skipped else "")
    )
