"""Run: ``pubsub run`` — the worker. It loads the handlers, takes the group's lease,
catches up from the checkpoint, follows new events until SIGINT/SIGTERM, then drains
in-flight work, saves the checkpoint and exits 0. A second signal forces exit 130/143."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from core.bus import EventBus
from core.errors import GroupLockedError, PubSubError, StoreUnavailableError
from core.hooks import PublishDetails
from pubsub_cli.context import Invocation, open_store, shared_options, shown_url, tracing_flag
from pubsub_cli.inputs import InputError, parse_line
from pubsub_cli.logs import LIBRARY_LOGGER, redact_url
from pubsub_cli.output import Output, number
from pubsub_cli.targets import LoadedTargets
from pubsub_cli.wiring import build_bus

if TYPE_CHECKING:
    from plugins.prometheus import ListenAddress, MetricsServer, PrometheusMetrics

_FORCED = {signal.SIGINT: 130, signal.SIGTERM: 143}

# The worker's lifecycle at info level (started, caught up, following, stopping,
# stopped); each delivery at debug level (a hook installed only then).
_log = logging.getLogger(f"{LIBRARY_LOGGER}.worker")


class _WorkerStopped(PubSubError):
    """Raised when the worker had to stop: its lease was taken over, or the store
    refused to save its progress. The message says which and what happens next."""


def _install_signals(stop: asyncio.Event, out: Output) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            out.error(f"{sig.name} again: exiting now without draining")
            sys.stdout.flush()
            os._exit(_FORCED[sig])
        out.note(f"{sig.name}: draining in-flight work (send it again to exit now)")
        _log.info("%s: stopping", sig.name, extra={"signal": sig.name})
        stop.set()

    for sig in _FORCED:
        loop.add_signal_handler(sig, on_signal, sig)


def _remove_signals() -> None:
    loop = asyncio.get_running_loop()
    for sig in _FORCED:
        loop.remove_signal_handler(sig)


_STDIN_WINDOW = 1024  # lines read ahead of the publisher, at most


class _StdinReader:
    """Standard input read by a daemon thread, line by line, into an asyncio queue.

    A read blocked on an open pipe never holds up shutdown: the thread is a daemon and
    is not the event loop's executor (``asyncio.run`` waits for that one). A file
    descriptor is read with ``os.read`` so that the thread never holds the lock of
    ``sys.stdin``'s buffer; a stream without one (tests) is read with ``readline``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self._room = threading.Semaphore(_STDIN_WINDOW)
        thread = threading.Thread(target=self._run, name="pubsub-stdin", daemon=True)
        thread.start()

    def _post(self, item: bytes | str | None) -> bool:
        if item is not None:
            self._room.acquire()
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the command is over
            return False
        return True

    def _run(self) -> None:
        try:
            try:
                fd = sys.stdin.fileno()
            except (AttributeError, OSError, ValueError):
                fd = -1
            if fd < 0:
                for line in iter(sys.stdin.readline, ""):
                    if not self._post(line):
                        return
                return
            pending = b""
            while chunk := os.read(fd, 65536):
                *lines, pending = (pending + chunk).split(b"\n")
                for raw in lines:
                    if not self._post(raw):
                        return
            if pending and not self._post(pending):
                return
        except Exception:  # a read error ends the input like end-of-file
            pass
        finally:
            self._post(None)

    async def lines(self) -> AsyncIterator[bytes | str]:
        while (item := await self._queue.get()) is not None:
            self._room.release()
            yield item


async def _read_stdin(bus: EventBus, out: Output) -> int:
    """Publish every JSON line of standard input through the bus; returns how many."""
    reader = _StdinReader(asyncio.get_running_loop())
    count = 0
    number = 0
    async for raw in reader.lines():
        number += 1
        where = f"<stdin> line {number}"
        try:
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            out.warn(f"skipped {where}: not UTF-8 text (byte 0x{raw[exc.start]:02x})")
            continue
        if not line.strip():
            continue
        try:
            event = parse_line(line, where)
        except InputError as exc:
            out.warn(f"skipped {exc}")
            continue
        await bus.publish_async(event)
        count += 1
    return count


async def _unless_stopped(work: Awaitable[Any], stop: asyncio.Event) -> bool:
    """Run ``work`` until it is done (True; its error is raised) or until ``stop`` is
    set first (False): then the work is cancelled and awaited; its CancelledError ends
    there."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done() and not stop.is_set():
            task.cancel()  # we were cancelled ourselves
    if task.done():
        task.result()
        return True
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        return False
    return True


async def _status_line(bus: EventBus, rate: float) -> str:
    """The status line: rate, handled, open dead letters, checkpoint of the log's end."""
    s = bus.statistics()
    store = bus.store
    dlq = await store.count_dead_letters() if store is not None else s.dead_lettered
    # The bus only knows the positions it has read; the store knows where the log ends.
    last = max(s.last_seq, await store.last_seq()) if store is not None else s.last_seq
    return (
        f"{rate:,.0f} handled/s · handled {number(s.handled_ok)} ok, "
        f"{number(s.handled_failed)} failed · DLQ {number(dlq)} open · "
        f"checkpoint {number(s.checkpoint)} of {number(last)}"
    )


async def _status(bus: EventBus, out: Output, every: float, stop: asyncio.Event) -> None:
    """A status line every ``every`` seconds; its rate is the events handled in that
    interval divided by its length (the catch-up before it is not counted)."""
    first = bus.statistics()
    last_ok = first.handled_ok + first.handled_failed
    last_at = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        s = bus.statistics()
        now = time.monotonic()
        handled = s.handled_ok + s.handled_failed
        rate = (handled - last_ok) / (now - last_at) if now > last_at else 0.0
        last_ok, last_at = handled, now
        out.status(await _status_line(bus, rate))


async def _catch_up_progress(bus: EventBus, out: Output, checkpoint: int, end: int) -> None:
    """A progress bar of the catch-up on a terminal (display only: it reads the bus's
    statistics a few times a second until it is cancelled)."""
    with out.progress(max(end - checkpoint, 0), "catching up") as advance:
        shown = checkpoint
        while True:
            seen = min(bus.statistics().checkpoint, end)
            if seen > shown:
                advance(seen - shown)
                shown = seen
            await asyncio.sleep(0.25)


def _rate(events: int, seconds: float) -> str:
    return f"{events / seconds:,.0f} events/s" if seconds > 0 else "-"


class _WorkerWatch(logging.Filter):
    """The library's warnings while the worker runs (a filter on the ``pubsub`` logger).

    The two problems a worker cannot go on with — its lease taken over, or a store that
    refuses to save progress (a full disk, a read-only or vanished file) — are kept in
    ``fatal`` with ``stop`` set instead of being logged, so the worker ends with one
    ``error:`` line (the lifecycle log says it at info level). Any other problem is
    logged once per place and error type, not again on every heartbeat or commit that
    fails the same way (nor its debug-level traceback record)."""

    def __init__(self, stop: asyncio.Event, group: str) -> None:
        super().__init__()
        self.stop = stop
        self.group = group
        self.fatal: BaseException | None = None
        self._seen: set[tuple[str, str]] = set()
        self._dropped: BaseException | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        exc = getattr(record, "pubsub_error", None)
        if exc is None and record.exc_info:
            exc = record.exc_info[1]
        if exc is None:
            return True
        if exc is self._dropped:  # the traceback record of a warning left out
            return False
        where = getattr(record, "pubsub_where", None)
        if where is None:
            where = str(record.args[0]) if isinstance(record.args, tuple) and record.args else ""
        if isinstance(exc, GroupLockedError) or (
            isinstance(exc, StoreUnavailableError) and where == "checkpoint commit"
        ):
            if self.fatal is None:
                self.fatal = exc
                self._log_fatal(exc)
            self.stop.set()
            self._dropped = exc
            return False
        if record.levelno < logging.WARNING:
            return True
        key = (where, type(exc).__name__)
        if key in self._seen:
            self._dropped = exc
            return False
        self._seen.add(key)
        return True

    def _log_fatal(self, exc: BaseException) -> None:
        if isinstance(exc, GroupLockedError):
            _log.info(
                "lease of group %r lost to %r: stopping",
                self.group,
                exc.holder,
                extra={"group": self.group, "holder": exc.holder},
            )
        else:
            _log.info(
                "store refused to save progress (%s): stopping",
                exc,
                extra={"group": self.group},
            )


@contextlib.contextmanager
def _worker_log(stop: asyncio.Event, group: str) -> Iterator[_WorkerWatch]:
    logger = logging.getLogger(LIBRARY_LOGGER)
    watch = _WorkerWatch(stop, group)
    logger.addFilter(watch)
    try:
        yield watch
    finally:
        logger.removeFilter(watch)


def _log_delivery(details: PublishDetails) -> None:
    """The debug record of one delivery (installed as a hook at debug level only)."""
    event = details.event
    _log.debug(
        "delivering %s seq %s",
        event.event_type,
        details.seq,
        extra={
            "event_id": event.id,
            "event_type": event.event_type,
            "group": details.group,
            "seq": details.seq,
            "redelivery": details.redelivery,
        },
    )


def _fatal_message(exc: BaseException, group: str) -> str:
    if isinstance(exc, GroupLockedError):
        return (
            f"the lease of group {group!r} was lost to {exc.holder!r}: this worker stopped "
            "dispatching (a stall longer than --lease-ttl?); the new holder delivers its "
            "unfinished events again"
        )
    return (
        f"{exc}; the worker stopped: progress after the last saved checkpoint was not "
        "saved and is delivered again on the next run"
    )


def _subscription_count(loaded: LoadedTargets) -> int:
    return sum(len(r.subscriptions) for _, r in loaded.routers) + sum(
        len(b.subscriptions) for _, b in loaded.buses
    )


def _group_name(value: str | None) -> str | None:
    """A consumer group needs a name: its checkpoint and lease are stored under it."""
    if value is not None and not value.strip():
        raise typer.BadParameter("a consumer group name cannot be empty")
    return value


def _metrics_address(value: str | None) -> str | None:
    """``--metrics-addr`` must be HOST:PORT (or :PORT, PORT) before anything starts."""
    if value is not None:
        _parse_metrics_address(value, "--metrics-addr")
    return value


def _parse_metrics_address(value: str, where: str) -> ListenAddress:
    from plugins.prometheus import parse_address

    try:
        return parse_address(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=where) from None


def _serve_metrics(address: ListenAddress, out: Output) -> tuple[PrometheusMetrics, MetricsServer]:
    """The ``prometheus`` collector of the ``pubsub.metrics`` group, served at
    ``address``; raises (PluginLoadError, MetricsServerError) before anything is
    opened, so a missing extra or a taken port changes nothing."""
    from core.entrypoints import load_plugin

    factory = load_plugin("pubsub.metrics", "prometheus")
    collector: PrometheusMetrics = factory()
    server = collector.serve(address)
    reach = "" if server.address.loopback else " (not loopback: reachable from other machines)"
    out.note(f"metrics: serving {server.url}{reach}")
    return collector, server


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
    lease_ttl: Annotated[
        float | None,
        typer.Option(
            "--lease-ttl",
            envvar="PUBSUB_LEASE_TTL",
            show_envvar=True,
            min=0.1,
            help="Seconds the group's lease lasts without a heartbeat (renewed every third "
            "of it); a worker stalled longer loses the group to the next one [default: 15]",
        ),
    ] = None,
    metrics_addr: Annotated[
        str | None,
        typer.Option(
            "--metrics-addr",
            envvar="PUBSUB_METRICS_ADDR",
            show_envvar=True,
            metavar="HOST:PORT",
            callback=_metrics_address,
            help="Serve Prometheus metrics at http://HOST:PORT/metrics while the worker runs "
            "(needs the prometheus extra; a bare :PORT or PORT listens on 127.0.0.1 only) "
            "[default: off]",
        ),
    ] = None,
    tracing: Annotated[bool, tracing_flag("each event's stored trace continued")] = False,
) -> None:
    """Run handlers as the group's worker: catch up, follow new events, drain on signal."""
    settings = inv.resolve(group=group, graceful_timeout=graceful_timeout, lease_ttl=lease_ttl)
    # The flag or PUBSUB_METRICS_ADDR (typer read both) beats [tool.pubsub] metrics-addr.
    address = None
    if metrics_addr is not None:
        address = _parse_metrics_address(metrics_addr, "--metrics-addr")
    elif settings.metrics_addr is not None:
        address = _parse_metrics_address(settings.metrics_addr, "[tool.pubsub] metrics-addr")
    out = inv.out
    if not targets and not plugin:
        raise typer.BadParameter("give at least one TARGET or --plugin NAME", param_hint="TARGET")
    loaded = inv.load(targets or [], plugins=plugin)
    if not _subscription_count(loaded):
        given = ", ".join([*(targets or []), *(f"--plugin {p}" for p in plugin or [])])
        raise typer.BadParameter(
            f"no handlers found in {given}: its routers have no subscriptions, so the "
            "group would move past every event unhandled",
            param_hint="TARGET",
        )
    tracer = None
    if tracing:  # before the store is opened or a port bound: a missing extra changes nothing
        from plugins.otel import instrumentation

        tracer = instrumentation()
    metrics: PrometheusMetrics | None = None
    server: MetricsServer | None = None
    if address is not None:
        metrics, server = _serve_metrics(address, out)

    async def go() -> None:
        stop = asyncio.Event()
        _install_signals(stop, out)
        try:
            with _worker_log(stop, settings.group) as log:
                try:
                    await work(stop)
                except PubSubError:
                    if log.fatal is None:
                        raise
                if log.fatal is not None:
                    raise _WorkerStopped(_fatal_message(log.fatal, settings.group))
        finally:
            _remove_signals()

    async def work(stop: asyncio.Event) -> None:
        async with open_store(settings, create=True) as s:
            checkpoint = await s.load_checkpoint(settings.group)
            end = await s.last_seq()
            bus = build_bus(
                loaded,
                s,
                group=settings.group,
                close_timeout=settings.graceful_timeout,
                lease_ttl=settings.lease_ttl,
                metrics=metrics,
            )
            if tracer is not None:
                bus.instrument(tracer)
            names = ", ".join(sub.name for sub in bus.subscriptions)
            out.note(f"handlers: {names}")
            store_url = redact_url(s.url)
            _log.info(
                "worker starting: group %r on %s at checkpoint %d of %d, handlers: %s",
                settings.group,
                store_url,
                checkpoint,
                end,
                names,
                extra={
                    "group": settings.group,
                    "store": store_url,
                    "holder": bus.holder,
                    "checkpoint": checkpoint,
                    "last_seq": end,
                },
            )
            if _log.isEnabledFor(logging.DEBUG):
                bus.on_publish(_log_delivery)
            helpers: list[asyncio.Task[Any]] = []
            try:
                if metrics is not None:  # the worker gauges, read on this loop
                    helpers.append(asyncio.create_task(metrics.watch(bus)))
                # A signal during the catch-up cancels it: the bus then drains what
                # it dispatched, commits that progress and releases the lease.
                began = time.monotonic()
                bar = (
                    asyncio.create_task(_catch_up_progress(bus, out, checkpoint, end))
                    if out.interactive
                    else None
                )
                try:
                    started = await _unless_stopped(bus.start(), stop)
                    caught_up = started and await _unless_stopped(bus.drain(), stop)
                finally:
                    if bar is not None:
                        bar.cancel()
                        await asyncio.gather(bar, return_exceptions=True)
                if not started:
                    out.note("stopped during catch-up")
                    _log.info("stopped during catch-up", extra={"group": settings.group})
                else:
                    if caught_up:
                        caught = max(bus.statistics().last_seq - checkpoint, 0)
                        took = time.monotonic() - began
                        _log.info(
                            "caught up %d event(s) in %.1fs",
                            caught,
                            took,
                            extra={
                                "group": settings.group,
                                "count": caught,
                                "last_seq": bus.statistics().last_seq,
                            },
                        )
                        out.ready(
                            f"caught up {number(caught)} event(s) in group "
                            f"{settings.group!r} (checkpoint {number(checkpoint)}) in "
                            f"{took:.1f}s, {_rate(caught, took)}"
                        )
                    if stdin:
                        reader = asyncio.create_task(_read_stdin(bus, out))
                        if once:
                            await _unless_stopped(reader, stop)
                            await _unless_stopped(bus.drain(), stop)
                        else:
                            helpers.append(reader)
                    if not once and not stop.is_set():
                        if out.interactive:
                            helpers.append(
                                asyncio.create_task(_status(bus, out, status_every, stop))
                            )
                        out.ready(
                            f"following {shown_url(settings.store_url)} as {bus.holder} "
                            "(Ctrl-C or SIGTERM to stop)"
                        )
                        _log.info(
                            "following %s as %s",
                            store_url,
                            bus.holder,
                            extra={
                                "group": settings.group,
                                "store": store_url,
                                "holder": bus.holder,
                            },
                        )
                        await bus.follow(stop, poll_interval=poll)
            finally:
                for task in helpers:
                    task.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
                _log.info(
                    "stopping: draining %d in-flight event(s)",
                    bus.statistics().in_flight,
                    extra={"group": settings.group},
                )
                drained = await bus.drain(settings.graceful_timeout)
                if not drained:
                    out.warn(
                        f"in-flight work did not finish within {settings.graceful_timeout}s; "
                        "unfinished events will be delivered again"
                    )
                await bus.aclose(timeout=0 if not drained else settings.graceful_timeout)
            final = bus.statistics()
            if final.undecodable:
                out.warn(
                    f"{number(final.undecodable)} event(s) could not be decoded here (a type "
                    "no loaded module defines, or a bad payload): each is a dead letter of "
                    "'<decode>'; load the module that defines it and "
                    "'pubsub dlq retry --all --app ...' re-drives them"
                )
            _log.info(
                "stopped: handled %d ok, %d failed, %d undecodable; %d dead letter(s) "
                "written; checkpoint %d saved",
                final.handled_ok,
                final.handled_failed,
                final.undecodable,
                final.dead_lettered,
                final.checkpoint,
                extra={
                    "group": settings.group,
                    "handled_ok": final.handled_ok,
                    "handled_failed": final.handled_failed,
                    "undecodable": final.undecodable,
                    "dead_lettered": final.dead_lettered,
                    "checkpoint": final.checkpoint,
                    "drained": drained,
                },
            )
            out.note(
                f"stopped: handled {number(final.handled_ok)} ok, "
                f"{number(final.handled_failed)} failed, {number(final.undecodable)} "
                f"undecodable; {number(final.dead_lettered)} dead letter(s) written; "
                f"checkpoint {number(final.checkpoint)} saved for group {settings.group!r}"
            )

    try:
        asyncio.run(go())
    finally:
        if server is not None:
            server.close()
