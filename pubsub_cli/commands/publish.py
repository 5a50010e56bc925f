"""Publish: ``pubsub publish`` — append events typed on the command line, from a
JSON-lines file or from standard input, and print their sequence numbers.

A JSON-lines input is read twice, never held in memory: the first pass validates every
line (nothing is written, so a bad line anywhere, or a Ctrl-C, appends nothing), the
second appends the events in chunks of ``CHUNK``, one transaction each. Standard input
(and any input that cannot be read twice) is copied to a temporary file during the first
pass. Once appending has begun, a SIGINT/SIGTERM lets it finish (the summary is printed,
then the exit is 130/143); a second signal stops at once and says what was appended.
An input of at most ``CHUNK`` events is one transaction whatever happens; a larger one
that the store fails in the middle (a full disk) keeps its committed chunks, and the
error says which lines those are.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any, BinaryIO, NoReturn

import orjson
import typer

from core.events import Event
from core.store import Appender, AppendResult, AtomicAppend, EventStore
from pubsub_cli.context import Invocation, open_store, shared_options, shown_url, tracing_flag
from pubsub_cli.inputs import InputError, event_from_json, event_of_line, numbered_lines, open_jsonl
from pubsub_cli.interrupts import (
    Interrupted,
    finish_despite_signal,
    interrupted_by,
    terminate_raises,
)
from pubsub_cli.output import Output, json_with_array, number

CHUNK = 5_000  # events per append call (part of the one transaction): what bounds memory
_TICK = 4_096  # lines between progress updates

# How events are appended: ``store.append``, or with a producer span each (--tracing).
_Append = Callable[[Appender, list[Event]], Awaitable[list[AppendResult]]]


async def _append(store: Appender, events: list[Event]) -> list[AppendResult]:
    return await store.append(events)


def _appender(tracing: bool) -> _Append:
    """``store.append``, or the OpenTelemetry one (PluginLoadError without the extra)."""
    if not tracing:
        return _append
    from plugins.otel import instrumentation

    return instrumentation().append


@dataclass(slots=True)
class _Checked:
    """What the validating pass found; the input to read again for appending."""

    source: str
    reopen: Path | None  # the file itself (read again), or None: ``spool`` holds a copy
    spool: IO[bytes] | None
    stat: tuple[int, int] | None  # (size, mtime) of the file when it was validated
    events: int = 0
    skipped: list[InputError] = field(default_factory=list)
    skipped_lines: set[int] = field(default_factory=set)
    errors: int = 0
    first_error: InputError | None = None

    def lines(self) -> Iterator[tuple[int, bytes]]:
        if self.reopen is not None:
            with self.reopen.open("rb") as f:
                yield from numbered_lines(f)
            return
        assert self.spool is not None
        self.spool.seek(0)
        yield from numbered_lines(self.spool)


@dataclass(slots=True)
class _Appended:
    """What the appending pass committed so far."""

    out: Output
    json: IO[bytes] | None  # the --json rows, kept on disk until the document is written
    held: IO[bytes] | None = None  # the text lines of an atomic batch, until it commits
    appended: int = 0
    duplicates: int = 0
    first_line: int | None = None
    last_line: int | None = None

    def add(self, results: list[AppendResult], events: list[Event], lines: list[int]) -> None:
        for r, e, line in zip(results, events, lines, strict=True):
            if r.duplicate:
                self.duplicates += 1
            else:
                self.appended += 1
            if self.json is not None:
                row: dict[str, Any] = {
                    "seq": r.seq,
                    "id": str(r.event_id),
                    "type": e.event_type,
                    "duplicate": r.duplicate,
                }
                if line:
                    row["line"] = line
                self.json.write(orjson.dumps(row) + b"\n")
            else:
                text = f"{r.seq}" + (" (duplicate: already stored)" if r.duplicate else "")
                if self.held is not None:
                    self.held.write(text.encode() + b"\n")
                else:
                    self.out.line(text)
        if lines:
            self.first_line = lines[0] if self.first_line is None else self.first_line
            self.last_line = lines[-1]

    @property
    def done(self) -> int:
        return self.appended + self.duplicates

    def release(self) -> None:
        """The batch committed: print the lines held back."""
        if self.held is None:
            return
        self.held.seek(0)
        for raw in self.held:
            self.out.line(raw.decode().rstrip("\n"))
        self.held = None

    def where(self) -> str:
        if self.first_line is None:
            return ""
        return f" (lines {number(self.first_line)}..{number(self.last_line or 0)})"


def _validate(stream: BinaryIO, source: str, checked: _Checked, inv: Invocation) -> None:
    """The first pass: parse every line, count the events, keep the problems (and, for
    an input that cannot be read again, a copy)."""
    out = inv.out
    spool = checked.spool
    out.ready(f"validating {source}")
    with out.progress(None, f"validating {source}") as advance:
        for n, raw in numbered_lines(stream):
            if spool is not None:
                spool.write(raw)
                spool.write(b"\n")
            if not n % _TICK:
                advance(_TICK)
            try:
                if event_of_line(raw, f"{source} line {n}") is not None:
                    checked.events += 1
            except InputError as exc:
                checked.errors += 1
                checked.first_error = checked.first_error or exc
                checked.skipped.append(exc)
                checked.skipped_lines.add(n)


async def _append_lines(
    store: Appender, checked: _Checked, done: _Appended, advance: Any, append: _Append
) -> None:
    """The second pass: the valid lines again, appended ``CHUNK`` events at a time."""
    events: list[Event] = []
    lines: list[int] = []
    for n, raw in checked.lines():
        if n in checked.skipped_lines:
            continue
        try:
            event = event_of_line(raw, f"{checked.source} line {n}")
        except InputError as exc:
            raise InputError(
                exc.where, f"{exc.problem} (the file changed while publishing)"
            ) from None
        if event is None:
            continue
        events.append(event)
        lines.append(n)
        if len(events) >= CHUNK:
            done.add(await append(store, events), events, lines)
            advance(len(events))
            events, lines = [], []
    if events:
        done.add(await append(store, events), events, lines)
        advance(len(events))


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
            help='JSON lines {"type": ..., "data": {...}} (or an events list --json export); '
            '"-" reads standard input',
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
    tracing: Annotated[
        bool, tracing_flag("a producer span per event, its trace context stored with it")
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
    append = _appender(tracing)

    if type_name is not None:
        assert data is not None
        _publish_one(inv, event_from_json(type_name, data, "--data"), append)
        return
    assert file is not None
    try:
        with interrupted_by(), tempfile.TemporaryFile() as spool:
            with terminate_raises():
                checked = _check_input(inv, file, spool, skip_invalid)
            _publish_checked(inv, checked, append)
    except Interrupted as stop:
        out.outcome("interrupted: nothing appended")
        raise typer.Exit(stop.exit_code) from None


def _check_input(inv: Invocation, file: str, spool: IO[bytes], skip_invalid: bool) -> _Checked:
    """Validate the input (the first pass); raise the first problem unless
    ``skip_invalid``, when each is reported and skipped."""
    out = inv.out
    if file == "-":
        checked = _Checked("<stdin>", None, spool, None)
        _validate(sys.stdin.buffer, checked.source, checked, inv)
    else:
        path = Path(file)
        with open_jsonl(path) as stream:
            st = os.fstat(stream.fileno())
            regular = path.is_file()
            checked = _Checked(
                file,
                path if regular else None,
                None if regular else spool,
                (st.st_size, st.st_mtime_ns) if regular else None,
            )
            _validate(stream, file, checked, inv)
    if checked.first_error is not None and not skip_invalid:
        first = checked.first_error
        more = checked.errors - 1
        suffix = f" (and {number(more)} more invalid line(s))" if more else ""
        raise InputError(
            first.where,
            f"{first.problem}{suffix}; nothing was appended (--skip-invalid appends the rest)",
        )
    for problem in checked.skipped:
        out.warn(f"skipped {problem}")
    if checked.stat is not None and checked.reopen is not None:
        st = checked.reopen.stat()
        if (st.st_size, st.st_mtime_ns) != checked.stat:
            raise InputError(checked.source, "the file changed while it was read; nothing appended")
    return checked


def _publish_checked(inv: Invocation, checked: _Checked, append: _Append) -> None:
    """Append what the first pass validated (the second pass) and report it."""
    out = inv.out
    total = checked.events
    if not total:
        # Nothing to append: no store is opened (or created) for it.
        _report(inv, _Appended(out, None), checked.skipped, empty=checked.source)
        return
    with tempfile.TemporaryFile() as rows, tempfile.TemporaryFile() as held:
        done = _Appended(out, rows if inv.json else None)
        atomic = False  # the store commits the whole file as one transaction

        def announce(sig: signal.Signals) -> None:
            out.outcome(
                f"{sig.name}: finishing the append of all {number(total)} validated event(s) "
                "(all or nothing; send it again to stop now)"
            )

        def force(sig: signal.Signals) -> NoReturn:
            if atomic:
                out.outcome(
                    f"{sig.name} again: stopped; nothing was appended (the {number(total)} "
                    "event(s) were one transaction, not committed)"
                )
            else:
                out.outcome(
                    f"{sig.name} again: stopped; {number(done.done)} of {number(total)} "
                    f"event(s) were appended{done.where()}, the chunk being written may be "
                    "too, the rest was not"
                )
            sys.stdout.flush()
            os._exit(128 + int(sig))

        async def go() -> signal.Signals | None:
            async def work() -> None:
                nonlocal atomic
                async with open_store(inv.settings, create=True) as store:
                    out.ready(f"appending {number(total)} event(s) to {store.url}")
                    with out.progress(total, "appending") as advance:
                        if isinstance(store, AtomicAppend):
                            atomic = True
                            if not inv.json:
                                done.held = held
                            async with store.appending() as batch:
                                await _append_lines(batch, checked, done, advance, append)
                        else:
                            await _append_lines(store, checked, done, advance, append)
                done.release()

            _, sig = await finish_despite_signal(work(), announce=announce, force=force)
            return sig

        try:
            sig = asyncio.run(go())
        except Interrupted:
            raise
        except BaseException as exc:
            if atomic and isinstance(exc, Exception):
                out.error(
                    f"{exc}; nothing was appended (the {number(total)} event(s) were one "
                    "transaction, rolled back)",
                    exc,
                )
                raise typer.Exit(1) from None
            if done.done and isinstance(exc, Exception):
                out.error(
                    f"{exc}; {number(done.done)} of {number(total)} event(s) had been appended"
                    f"{done.where()} in committed chunks of {number(CHUNK)}, the rest was not",
                    exc,
                )
                raise typer.Exit(1) from None
            raise
        _report(inv, done, checked.skipped)
    if sig is not None:
        out.outcome(f"interrupted ({sig.name}) after the append finished: nothing was lost")
        raise typer.Exit(128 + int(sig))


def _publish_one(inv: Invocation, event: Event, append: _Append) -> None:
    """Append the single ``--data`` event and report it."""
    with tempfile.TemporaryFile() as rows:
        done = _Appended(inv.out, rows if inv.json else None)

        async def append_one(s: EventStore) -> None:
            done.add(await append(s, [event]), [event], [0])

        inv.with_store(append_one, create=True)
        _report(inv, done, [])


def _report(
    inv: Invocation, done: _Appended, skipped: list[InputError], *, empty: str | None = None
) -> None:
    out = inv.out
    if inv.json:
        doc = {
            "appended": done.appended,
            "duplicates": done.duplicates,
            "skipped": [{"where": p.where, "error": p.problem} for p in skipped],
        }
        json_with_array(out, doc, "events", _rows(done.json))
        return
    if empty is not None:
        out.note(
            f"nothing appended: {empty} holds no event"
            + (f" (skipped {number(len(skipped))} invalid line(s))" if skipped else "")
        )
        return
    out.note(
        f"appended {number(done.appended)} event(s) to {shown_url(inv.settings.store_url)}"
        + (
            f", {number(done.duplicates)} already stored (same id: not appended again)"
            if done.duplicates
            else ""
        )
        + (f", skipped {number(len(skipped))} invalid line(s)" if skipped else "")
    )


def _rows(spool: IO[bytes] | None) -> Iterator[bytes]:
    if spool is None:
        return
    spool.seek(0)
    for line in spool:
        yield line.rstrip(b"\n")
