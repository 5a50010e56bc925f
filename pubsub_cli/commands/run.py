"""Run: ``pubsub run`` — the worker. It loads the handlers, takes the group's lease,
catches up from the checkpoint, follows new events until SIGINT/SIGTERM, then drains
in-flight work, saves the checkpoint and exits 0. A second signal forces exit 130/143."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import Annotated, Any

import typer

from core.bus import EventBus
from pubsub_cli.context import Invocation, open_store, shared_options
from pubsub_cli.inputs import InputError, parse_line
from pubsub_cli.output import Output
from pubsub_cli.wiring import build_bus

_FORCED = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _install_signals(stop: asyncio.Event, out: Output) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            out.error(f"{sig.name} again: exiting now without draining")
            sys.stdout.flush()
            os._exit(_FORCED[sig])
        out.note(f"{sig.name}: draining in-flight work (send it again to exit now)")
        stop.set()

    for sig in _FORCED:
        loop.add_signal_handler(sig, on_signal, sig)


def _remove_signals() -> None:
    loop = asyncio.get_running_loop()
    for sig in _FORCED:
        loop.remove_signal_handler(sig)


async def _read_stdin(bus: EventBus, out: Output) -> int:
    """Publish every JSON line of standard input through the bus; returns how many."""
    loop = asyncio.get_running_loop()
    count = 0
    number = 0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return count
        number += 1
        if not line.strip():
            continue
        try:
            event = parse_line(line, f"<stdin> line {number}")
        except InputError as exc:
            out.warn(f"skipped {exc}")
            continue
        await bus.publish_async(event)
        count += 1


async def _status(bus: EventBus, out: Output, every: float, stop: asyncio.Event) -> None:
    last_ok = last_at = 0.0
    last_at = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        s = bus.statistics()
        now = time.monotonic()
        handled = s.handled_ok + s.handled_failed
        rate = (handled - last_ok) / (now - last_at) if now > last_at else 0.0
        last_ok, last_at = handled, now
        store = bus.store
        dlq = await store.count_dead_letters() if store is not None else s.dead_lettered
        out.status(
            f"{rate:,.0f} handled/s · handled {s.handled_ok:,} ok, {s.handled_failed:,} failed · "
            f"DLQ {dlq:,} open · checkpoint {s.checkpoint:,} of {s.last_seq:,}"
        )


def _group_name(value: str | None) -> str | None:
    """A consumer group needs a name: its checkpoint and lease are stored under it."""
    if value is not None and not value.strip():
        raise typer.BadParameter("a consumer group name cannot be empty")
    return value


@shared_options(json=False, app_dir=True)
def run(
    inv: Invocation,
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="TARGET...",
            help="Handlers: file.py, package.module, or either with :attribute",
        ),
    ] = None,
    plugin: Annotated[
        list[str] | None,
        typer.Option("--plugin", help="Also load this pubsub.handlers entry point (repeatable)"),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            "-g",
            envvar="PUBSUB_GROUP",
            show_envvar=True,
            callback=_group_name,
            help="Consumer group [default: default]",
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Process the backlog, then exit (for scripts, cron)")
    ] = False,
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Also publish JSON lines read from standard input")
    ] = False,
    graceful_timeout: Annotated[
        float | None,
        typer.Option(
            "--graceful-timeout",
            envvar="PUBSUB_GRACEFUL_TIMEOUT",
            show_envvar=True,
            min=0,
            help="Seconds to wait for in-flight work on shutdown [default: 30]",
        ),
    ] = None,
    poll: Annotated[
        float, typer.Option("--poll", min=0.01, help="Seconds between looks for new events")
    ] = 0.2,
    status_every: Annotated[
        float, typer.Option("--status-every", min=0.1, help="Seconds between status lines")
    ] = 5.0,
) -> None:
    """Run handlers as the group's worker: catch up, follow new events, drain on signal."""
    settings = inv.resolve(group=group, graceful_timeout=graceful_timeout)
    out = inv.out
    if not targets and not plugin:
        raise typer.BadParameter("give at least one TARGET or --plugin NAME", param_hint="TARGET")
    loaded = inv.load(targets or [], plugins=plugin)

    async def go() -> None:
        stop = asyncio.Event()
        _install_signals(stop, out)
        try:
            async with open_store(settings, create=True) as s:
                checkpoint = await s.load_checkpoint(settings.group)
                bus = build_bus(loaded, s, group=settings.group)
                names = ", ".join(sub.name for sub in bus.subscriptions)
                out.note(f"handlers: {names}")
                try:
                    await bus.start()
                    helpers: list[asyncio.Task[Any]] = []
                    if stdin:
                        reader = asyncio.create_task(_read_stdin(bus, out))
                        if once:
                            await reader
                        else:
                            helpers.append(reader)
                    await bus.drain()
                    caught = bus.statistics().last_seq - checkpoint
                    out.ready(
                        f"caught up {max(caught, 0)} event(s) in group {settings.group!r} "
                        f"(checkpoint {checkpoint})"
                    )
                    if not once:
                        if out.interactive:
                            helpers.append(
                                asyncio.create_task(_status(bus, out, status_every, stop))
                            )
                        out.ready(
                            f"following {settings.store_url} as {bus.holder} "
                            "(Ctrl-C or SIGTERM to stop)"
                        )
                        await bus.follow(stop, poll_interval=poll)
                        for task in helpers:
                            task.cancel()
                        await asyncio.gather(*helpers, return_exceptions=True)
                finally:
                    drained = await bus.drain(settings.graceful_timeout)
                    if not drained:
                        out.warn(
                            f"in-flight work did not finish within {settings.graceful_timeout}s; "
                            "unfinished events will be delivered again"
                        )
                    await bus.aclose(timeout=0 if not drained else settings.graceful_timeout)
                s_final = bus.statistics()
                out.note(
                    f"stopped: handled {s_final.handled_ok} ok, {s_final.handled_failed} failed; "
                    f"checkpoint {s_final.checkpoint} saved for group {settings.group!r}"
                )
        finally:
            _remove_signals()

    asyncio.run(go())
