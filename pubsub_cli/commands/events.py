"""Events: browsing the log — ``events list``, ``events tail`` (follow) and ``events
show`` (one event with its causal chain)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID

import typer

from core.errors import ChecksumMismatchError, StoreError
from core.store import EventStore, StoredEvent
from pubsub_cli.context import (
    ID_MAX,
    Invocation,
    SinceOption,
    UntilOption,
    open_store,
    shared_options,
    shown_url,
)
from pubsub_cli.output import Output, TableStream
from pubsub_cli.records import EVENT_COLUMNS, event_dict, event_row
from pubsub_cli.times import time_range

app = typer.Typer(help="Browse the event log.", no_args_is_help=True)

TypeOption = Annotated[
    list[str] | None,
    typer.Option("--type", "-t", help="Only this event type (repeatable)", metavar="TYPE"),
]


DEFAULT_LIMIT = 100
_CHUNK = 500  # rows printed per write: memory stays bounded whatever the log's size
_CORRUPT = "corrupt: its payload does not match the stored checksum"


@dataclass(slots=True)
class _Listing:
    """What ``events list`` has printed so far, and how it prints the next rows."""

    out: Output
    table: TableStream | None
    pending: list[StoredEvent | ChecksumMismatchError] = field(default_factory=list)
    shown: int = 0
    corrupt: list[int] = field(default_factory=list)

    def add(self, item: StoredEvent | ChecksumMismatchError) -> None:
        self.pending.append(item)
        self.shown += 1
        if isinstance(item, ChecksumMismatchError):
            self.corrupt.append(item.seq)
        if len(self.pending) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        items, self.pending = self.pending, []
        if self.table is None:
            self.out.json_lines([_json_item(i) for i in items])
        else:
            self.table.add([_row_item(i) for i in items])


def _json_item(item: StoredEvent | ChecksumMismatchError) -> dict[str, Any]:
    if isinstance(item, ChecksumMismatchError):
        return {"seq": item.seq, "type": item.type_name, "error": _CORRUPT}
    return event_dict(item)


def _row_item(item: StoredEvent | ChecksumMismatchError) -> tuple[object, ...]:
    if isinstance(item, ChecksumMismatchError):
        return (
            item.seq,
            item.type_name,
            None,
            None,
            "CORRUPT: payload does not match its checksum",
        )
    return event_row(item)


async def _matching(
    store: EventStore,
    *,
    from_seq: int,
    to_seq: int | None,
    timed: bool,
    types: list[str] | None,
) -> int | None:
    """How many events the filters select, when the store can say so cheaply (sequence
    numbers are gap-free; a type filter over the whole log is a count); else None."""
    if timed:
        return None
    if types:
        return await store.count(types=types) if from_seq == 1 and to_seq is None else None
    last = await store.last_seq()
    high = last if to_seq is None else min(last, to_seq)
    return max(0, high - from_seq + 1)


@app.command("list")
@shared_options()
def list_events(
    inv: Invocation,
    since: SinceOption = None,
    until: UntilOption = None,
    types: TypeOption = None,
    from_seq: Annotated[
        int, typer.Option("--from-seq", min=1, max=ID_MAX, help="First sequence number")
    ] = 1,
    to_seq: Annotated[
        int | None,
        typer.Option("--to-seq", min=1, max=ID_MAX, help="Last sequence number", metavar="N"),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            "-n",
            min=0,
            max=ID_MAX,
            help=f"At most this many events (0: all) \\[default: {DEFAULT_LIMIT}]",
            metavar="N",
        ),
    ] = None,
) -> None:
    """List stored events in sequence order (JSON lines with --json), printed as they
    are read. A corrupt record is listed with an error (exit code still 0)."""
    out = inv.out
    since_at, until_at = time_range(since, until)
    if to_seq is not None and to_seq < from_seq:
        raise typer.BadParameter(
            f"{to_seq} is before --from-seq {from_seq}: the range is inverted",
            param_hint="'--to-seq'",
        )
    wanted = DEFAULT_LIMIT if limit is None else limit  # 0: all
    url = shown_url(inv.settings.store_url)

    async def go(s: EventStore) -> tuple[_Listing, bool, int | None]:
        table = None
        if not inv.json:
            last = await s.last_seq() if to_seq is None else to_seq
            if wanted:
                last = min(last, from_seq + wanted - 1)
            table = out.table_stream(
                EVENT_COLUMNS,
                title=f"events in {url}",
                min_widths={"seq": len(f"{last:,}"), "appended": 19, "id": 12},
            )
        listing = _Listing(out, table)
        start, more = from_seq, False
        while True:
            # One more than asked for, to tell whether the limit cut the listing.
            left = None if not wanted else wanted - listing.shown + 1
            reader = s.read(
                from_seq=start,
                to_seq=to_seq,
                since=since_at,
                until=until_at,
                types=types or None,
                limit=left,
            )
            try:
                try:
                    async for r in reader:
                        if wanted and listing.shown == wanted:
                            more = True
                            break
                        listing.add(r)
                        start = r.seq + 1
                finally:  # stopped early: let the store drop its read-ahead now
                    aclose = getattr(reader, "aclose", None)
                    if aclose is not None:
                        await aclose()
                break
            except ChecksumMismatchError as exc:  # the rest of the log is still readable
                if wanted and listing.shown == wanted:
                    more = True
                    break
                listing.add(exc)
                start = exc.seq + 1
        listing.flush()
        total = None
        if more and limit is None:
            timed = since_at is not None or until_at is not None
            total = await _matching(
                s, from_seq=from_seq, to_seq=to_seq, timed=timed, types=types or None
            )
        return listing, more, total

    listing, more, total = inv.with_store(go)
    if listing.table is not None:
        caption = f"{listing.shown:,} event(s)"
        if more or (limit and listing.shown == limit):
            caption += f" (--limit {wanted})"
        listing.table.close(caption)
    if listing.corrupt:
        seqs = ", ".join(map(str, listing.corrupt[:10])) + (
            " ..." if len(listing.corrupt) > 10 else ""
        )
        out.warn(
            f"{len(listing.corrupt)} corrupt record(s) listed with an error (seq {seqs}); "
            "'pubsub check' verifies the whole log"
        )
    if more and limit is None:
        of = f" of {total:,}" if total is not None else " matching"
        out.note(f"showing the first {wanted}{of} events; pass --limit 0 for all (or --limit N)")


async def _follow(
    store: EventStore,
    out: Output,
    *,
    start: int,
    types: list[str] | None,
    poll: float,
    stop: asyncio.Event,
) -> None:
    after = start
    while not stop.is_set():
        try:
            async for r in store.read(from_seq=after + 1, types=types):
                after = r.seq
                if out.json_mode:
                    out.json_line(event_dict(r))
                else:
                    _tail_line(out, r)
        except ChecksumMismatchError as exc:  # flagged as in events list; go on after it
            after = exc.seq
            if out.json_mode:
                out.json_line(_json_item(exc))
            else:
                out.line(f"{exc.seq}\t-\t{exc.type_name}\t-\tCORRUPT: {_CORRUPT}")
            out.warn(f"event seq {exc.seq} is corrupt (its payload fails its checksum)")
            continue
        if types:  # skipped types still move the cursor
            after = max(after, await store.last_seq())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll)


def _tail_line(out: Output, r: StoredEvent) -> None:
    data = event_row(r, width=100)[-1]
    at = r.appended_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    out.line(f"{r.seq}\t{at}\t{r.type_name}\t{r.event_id}\t{data}")


@app.command("tail")
@shared_options()
def tail(
    inv: Invocation,
    last: Annotated[
        int, typer.Option("--last", "-n", min=0, help="Show this many recent events first")
    ] = 10,
    types: TypeOption = None,
    poll: Annotated[
        float, typer.Option("--poll", min=0.01, help="Seconds between looks at the log")
    ] = 0.5,
) -> None:
    """Follow the log: print new events as they are appended, until Ctrl-C."""
    out, settings = inv.out, inv.settings

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with open_store(settings) as s:
                last_seq = await s.last_seq()
                start = max(0, last_seq - last)
                out.ready(
                    f"following {shown_url(settings.store_url)} after seq {last_seq} (Ctrl-C to stop)"
                )
                await _follow(s, out, start=start, types=types or None, poll=poll, stop=stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    asyncio.run(go())


def _node(record: StoredEvent) -> str:
    return f"#{record.seq} {record.type_name} {record.event_id}"


async def _descendants(store: EventStore, record: StoredEvent, depth: int) -> list[Any]:
    if depth <= 0:
        return []
    return [
        (child, await _descendants(store, child, depth - 1))
        for child in await store.children(record.event_id)
    ]


_HEX = frozenset("0123456789abcdef")
_SHORT_MIN = 4  # hex digits a short id needs: fewer would match half the log


def _short_id(ref: str) -> str | None:
    """``ref`` as a fragment of an event id's hex digits (dashes and case ignored), when
    it can be one."""
    digits = ref.strip().lower().replace("-", "")
    if _SHORT_MIN <= len(digits) < 32 and set(digits) <= _HEX:
        return digits
    return None


def _event_key(ref: str) -> int | UUID | str:
    """SEQ|ID as a sequence number, an event id, or the short id ``events list`` prints
    (the last 12 hex digits; any unique start or end of the id's digits works); anything
    else is a usage error."""
    try:
        seq = int(ref)
    except ValueError:
        pass
    else:
        if 1 <= seq <= ID_MAX:
            return seq
        raise typer.BadParameter(
            f"{ref!r} is not a sequence number: they run from 1 to {ID_MAX}",
            param_hint="'SEQ|ID'",
        )
    try:
        return UUID(ref)
    except ValueError:
        short = _short_id(ref)
        if short is None:
            raise typer.BadParameter(
                f"{ref!r} is neither a sequence number, an event id (UUID) nor a short id "
                f"(at least {_SHORT_MIN} hex digits of one, as 'events list' shows)",
                param_hint="'SEQ|ID'",
            ) from None
        return short


async def _by_short_id(store: EventStore, short: str, ref: str) -> StoredEvent | None:
    """The one event whose id's hex digits end (or start) with ``short``; a fragment
    that fits several is an error listing them. Reads the log's ids once."""
    found: list[StoredEvent] = []
    start = 1
    while True:
        try:
            async for r in store.read(from_seq=start):
                start = r.seq + 1
                digits = r.event_id.hex
                if digits.endswith(short) or digits.startswith(short):
                    found.append(r)
            break
        except ChecksumMismatchError as exc:  # its id cannot be trusted: skip it
            start = exc.seq + 1
    if len(found) > 1:
        shown = ", ".join(f"#{r.seq} {r.event_id}" for r in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise StoreError(
            f"short id {ref!r} is ambiguous: it fits {len(found)} events ({shown}{more}); "
            "give more digits, the full id or the sequence number"
        )
    return found[0] if found else None


@app.command("show")
@shared_options()
def show(
    inv: Invocation,
    ref: Annotated[
        str,
        typer.Argument(
            metavar="SEQ|ID",
            help="Sequence number, event id, or the short id 'events list' shows",
        ),
    ],
    depth: Annotated[int, typer.Option("--depth", min=1, help="How deep to follow effects")] = 20,
) -> None:
    """Show one event, its payload and its causal chain (causes and effects)."""
    out = inv.out
    key = _event_key(ref)

    async def go(s: EventStore) -> tuple[StoredEvent, list[StoredEvent], list[Any]]:
        if isinstance(key, int):
            record = await s.get(key)
            short = _short_id(ref)
            if record is None and short is not None:  # all digits: a short id, maybe
                record = await _by_short_id(s, short, ref)
        elif isinstance(key, UUID):
            record = await s.get_by_id(key)
        else:
            record = await _by_short_id(s, key, ref)
        if record is None:
            raise StoreError(
                f"no event {ref} in {shown_url(inv.settings.store_url)}: see 'pubsub events list'"
            )
        causes: list[StoredEvent] = []
        cursor = record
        while cursor.causation_id is not None and len(causes) < depth:
            parent = await s.get_by_id(cursor.causation_id)
            if parent is None:
                break
            causes.insert(0, parent)
            cursor = parent
        return record, causes, await _descendants(s, record, depth)

    record, causes, effects = inv.with_store(go)

    def tree_json(items: list[Any]) -> list[dict[str, Any]]:
        return [
            {"seq": r.seq, "id": str(r.event_id), "type": r.type_name, "effects": tree_json(sub)}
            for r, sub in items
        ]

    def tree_rows(items: list[Any]) -> list[tuple[str, list[Any]]]:
        return [(_node(r), tree_rows(sub)) for r, sub in items]

    if inv.json:
        out.json(
            {
                "event": event_dict(record),
                "causes": [
                    {"seq": r.seq, "id": str(r.event_id), "type": r.type_name} for r in causes
                ],
                "effects": tree_json(effects),
            }
        )
        return
    doc = event_dict(record)
    out.fields([(k, v) for k, v in doc.items() if k != "data"], title=f"event #{record.seq}")
    out.json_block("data", doc["data"])
    chain: list[tuple[str, list[Any]]] = [(f"[this] {_node(record)}", tree_rows(effects))]
    for cause in reversed(causes):
        chain = [(_node(cause), chain)]
    out.tree("causal chain", chain)
