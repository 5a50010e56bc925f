"""Context: what every command shares — the global flags, the output, the resolved
settings, and opening the store they name.

The root callback stores a ``CLIState`` on typer's context. A command decorated with
``shared_options`` declares only its own options and receives an ``Invocation``: the
state, its output, its settings, and the ways to load TARGETs and open the store (or a
replay-only bus on it). ``open_store`` refuses to create a database for commands that
only read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import re
import sys
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Concatenate, ParamSpec, TextIO, TypeVar

import typer

from core.bus import EventBus
from core.entrypoints import open_store as _open_store
from core.errors import StoreUnavailableError
from core.store import EventStore

from .logs import LogFormat, LogLevel, configured
from .output import Output
from .settings import Settings, resolve_settings
from .targets import LoadedTargets, load_targets
from .times import SINCE_HELP, UNTIL_HELP
from .wiring import build_bus

__all__ = [
    "ID_MAX",
    "AppDirOption",
    "CLIState",
    "DbOption",
    "Invocation",
    "JsonOption",
    "NoColorOption",
    "PluginOption",
    "QuietOption",
    "RootDbOption",
    "RootStoreOption",
    "SinceOption",
    "StoreOption",
    "UntilOption",
    "VerboseOption",
    "open_store",
    "shared_options",
    "shown_url",
    "state",
]

P = ParamSpec("P")
T = TypeVar("T")

# Sequence numbers, ids and limits go to the store as 64-bit integers (SQLite's
# INTEGER): a larger one is refused as a usage error instead of overflowing there.
ID_MAX = 2**63 - 1

_DB_HELP = (
    "SQLite store file (default ./pubsub.db, or db in the tool.pubsub table of pyproject.toml)"
)
_STORE_HELP = "Store URL of any registered store (sqlite:///path.db, memory://); from the same source, wins over --db"

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def shown_url(url: str) -> str:
    """A store URL as it may be printed: any ``user:password@`` of its hosts removed
    (a broker's credentials never reach output, errors or ``--json``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    hosts, q, query = rest.partition("?")
    hosts = ",".join(h.rpartition("@")[2] for h in hosts.split(","))
    return f"{scheme}://{hosts}{q}{query}"


def _store_url(value: str | None) -> str | None:
    """A --store value must at least look like a URL (whether a store serves its scheme
    is known only when it is opened)."""
    if value is not None and not _URL.match(value):
        raise typer.BadParameter(
            f"{value!r} is not a store URL: use sqlite:///path.db, memory:// or another "
            "scheme 'pubsub plugins list' shows"
        )
    return value


RootDbOption = Annotated[
    Path | None,
    typer.Option("--db", envvar="PUBSUB_DB", show_envvar=True, help=_DB_HELP, metavar="PATH"),
]
RootStoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="PUBSUB_STORE",
        show_envvar=True,
        help=_STORE_HELP,
        metavar="URL",
        callback=_store_url,
    ),
]
# On a command the flags read no environment: a command's --db beats the root's --db,
# which beats PUBSUB_DB (read by the root option).
DbOption = Annotated[
    Path | None,
    typer.Option("--db", help=f"{_DB_HELP} \\[env var: PUBSUB_DB]", metavar="PATH"),
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help=f"{_STORE_HELP} \\[env var: PUBSUB_STORE]",
        metavar="URL",
        callback=_store_url,
    ),
]
AppDirOption = Annotated[
    Path | None,
    typer.Option(
        "--app-dir",
        envvar="PUBSUB_APP_DIR",
        show_envvar=True,
        exists=True,
        file_okay=False,
        dir_okay=True,
        help="Folder put first on sys.path before importing TARGETs [default: .]",
        metavar="DIR",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else")
]
SinceOption = Annotated[str | None, typer.Option("--since", help=SINCE_HELP, metavar="TIME")]
UntilOption = Annotated[str | None, typer.Option("--until", help=UNTIL_HELP, metavar="TIME")]
PluginOption = Annotated[
    list[str] | None, typer.Option("--plugin", help="pubsub.handlers entry point")
]


@dataclass(slots=True)
class CLIState:
    """The root flags and where output goes; one per invocation."""

    verbose: int = 0
    quiet: bool = False
    db: Path | None = None
    store: str | None = None
    db_from_env: bool = False  # the root's db/store were read from PUBSUB_DB/PUBSUB_STORE
    store_from_env: bool = False
    config: Path | None = None  # --config FILE, read instead of the nearest pyproject.toml
    no_color: bool = False
    log_level: LogLevel | None = None  # --log-level (None: warning, error with -q)
    log_format: LogFormat = LogFormat.TEXT  # --log-format
    output: Output = field(default_factory=Output)

    def set_output_flags(
        self, *, verbose: int = 0, quiet: bool = False, no_color: bool = False
    ) -> None:
        """Add the output flags given before or after the command (``-v`` counts add
        up) and remake the output they shape."""
        self.verbose += verbose
        self.quiet = (self.quiet or quiet) and not self.verbose
        self.no_color = self.no_color or no_color
        self.output = Output(quiet=self.quiet, verbose=self.verbose > 0, no_color=self.no_color)

    def settings(
        self,
        *,
        db: Path | None = None,
        store: str | None = None,
        group: str | None = None,
        app_dir: Path | None = None,
        graceful_timeout: float | None = None,
        lease_ttl: float | None = None,
    ) -> Settings:
        """The command's settings: its own flags, then the root's, then env/project."""
        return resolve_settings(
            db=db if db is not None else self.db,
            store=store if store is not None else self.store,
            db_from_env=db is None and self.db_from_env,
            store_from_env=store is None and self.store_from_env,
            group=group,
            app_dir=app_dir,
            graceful_timeout=graceful_timeout,
            lease_ttl=lease_ttl,
            config=self.config,
        )

    def out(self, json_mode: bool = False) -> Output:
        return self.output.with_json(json_mode) if json_mode else self.output


def state(ctx: typer.Context) -> CLIState:
    """The invocation's state (a fresh default one when called outside ``pubsub``)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CLIState):
        root.obj = CLIState()
    return root.obj


def _existing_store_url(url: str) -> str:
    """The URL that opens an existing store only (for JetStream: ``mode=rw``, an
    existing namespace). For SQLite: a missing file is refused
    here, with what to pass instead, and ``mode=rw`` (unless the URL gives a mode) makes
    the store refuse an empty or 0-byte file untouched and open a store this user cannot
    write read-only: commands that do not create a store never create or initialize
    one, and read on read-only files, directories and mounts."""
    if url.startswith("nats://"):  # an existing namespace only (plugins.nats.url)
        query = url.partition("?")[2]
        if any(option.split("=", 1)[0] == "mode" for option in query.split("&")):
            return url
        return f"{url}{'&' if query else '?'}mode=rw"
    if not url.startswith("sqlite://"):
        return url
    rest, _, query = url.removeprefix("sqlite://").partition("?")
    path = rest[1:] if rest.startswith("/") else rest
    if path and path != ":memory:" and not Path(path).exists():
        raise StoreUnavailableError(
            path,
            "does not exist: pass --db PATH (or set PUBSUB_DB) to an existing store, "
            "or create one with 'pubsub publish' or 'pubsub run'",
        )
    if any(option.split("=", 1)[0] in ("mode", "readonly") for option in query.split("&")):
        return url
    return f"{url}{'&' if query else '?'}mode=rw"


@asynccontextmanager
async def open_store(settings: Settings, *, create: bool = False) -> AsyncIterator[EventStore]:
    """Open the store the settings name and close it afterwards. Without ``create`` a
    missing SQLite file is an error, and nothing creates or initializes one (read
    commands never create a database; see ``_existing_store_url``)."""
    url = settings.store_url if create else _existing_store_url(settings.store_url)
    try:
        store = await _open_store(url)
    except StoreUnavailableError as exc:
        if exc.location != url or url == settings.store_url:
            raise
        raise StoreUnavailableError(shown_url(settings.store_url), exc.problem) from None
    try:
        yield store
    finally:
        await store.aclose()


class Invocation:
    """One run of a command: the root state, the command's output (``--json`` or not),
    its settings (its own ``--db``/``--store``/``--app-dir``, then the root's, then env
    and project), and the steps most commands take with them."""

    def __init__(
        self,
        state: CLIState,
        json: bool,
        flags: dict[str, Any],
        *,
        stdout: TextIO | None = None,
    ) -> None:
        self.state = state
        self.json = json
        self.out = state.output.with_json(json, stdout=stdout) if json else state.output
        self._flags = flags

    @functools.cached_property
    def settings(self) -> Settings:
        return self.resolve()

    def resolve(self, **more: Any) -> Settings:
        """The settings with more options given on the command line (``--group``...)."""
        return self.state.settings(**self._flags, **more)

    def load(
        self,
        targets: Sequence[str],
        *,
        plugins: Sequence[str] | None = None,
        require_routers: bool = True,
    ) -> LoadedTargets:
        """Import the TARGETs (and ``pubsub.handlers`` plugins) from ``--app-dir``."""
        return load_targets(
            targets,
            plugins=plugins or [],
            app_dir=self.settings.app_dir,
            require_routers=require_routers,
        )

    def with_store(self, work: Callable[[EventStore], Awaitable[T]], *, create: bool = False) -> T:
        """Run ``work`` on the opened store in a fresh event loop, then close it."""

        async def go() -> T:
            async with open_store(self.settings, create=create) as store:
                return await work(store)

        return asyncio.run(go())

    def with_bus(
        self,
        loaded: LoadedTargets,
        work: Callable[[EventBus, EventStore], Awaitable[T]],
        *,
        tracing: bool = False,
    ) -> T:
        """Run ``work`` with a bus that carries the loaded handlers but does not consume
        (replay, re-drive, snapshots): it takes no lease and moves no checkpoint. With
        ``tracing`` the bus is traced with OpenTelemetry (PluginLoadError, before the
        store is opened, without the otel extra)."""
        tracer = None
        if tracing:
            from plugins.otel import instrumentation

            tracer = instrumentation()

        async def on_store(store: EventStore) -> T:
            bus = build_bus(loaded, store, group=self.settings.group, consume=False)
            if tracer is not None:
                bus.instrument(tracer)
            async with bus:
                return await work(bus, store)

        return self.with_store(on_store)


def tracing_flag(what: str) -> Any:
    """The ``--tracing`` flag (env ``PUBSUB_TRACING``) of a command, for
    ``Annotated[bool, tracing_flag(...)]``; ``what`` says what tracing does there."""
    return typer.Option(
        "--tracing",
        envvar="PUBSUB_TRACING",
        show_envvar=True,
        help=f"Trace with OpenTelemetry: {what} (extra otel; the SDK and exporter are "
        "configured by your handlers module or opentelemetry-instrument)",
    )


TracingOption = Annotated[
    bool, tracing_flag("each dispatch a new trace linked to the event's stored one")
]
VerboseOption = Annotated[
    int,
    typer.Option(
        "-v", "--verbose", count=True, help="Show the traceback with an error (-v and -vv alike)"
    ),
]
QuietOption = Annotated[
    bool, typer.Option("-q", "--quiet", help="Only results and errors: no notes on stderr")
]
NoColorOption = Annotated[
    bool, typer.Option("--no-color", help="No colour (as NO_COLOR=1 in the environment)")
]
# The output flags every command also accepts after its name (pubsub events list -v).
_OUTPUT: dict[str, tuple[Any, Any]] = {
    "verbose": (VerboseOption, 0),
    "quiet": (QuietOption, False),
    "no_color": (NoColorOption, False),
}

_SHARED: dict[str, tuple[Any, Any]] = {
    "app_dir": (AppDirOption, None),
    "json": (JsonOption, False),
    "db": (DbOption, None),
    "store": (StoreOption, None),
}


def shared_options(
    *, json: bool = True, store: bool = True, app_dir: bool = False
) -> Callable[[Callable[Concatenate[Invocation, P], T]], Callable[..., T]]:
    """Give a command the options many commands share, after its own: ``--app-dir``
    (with ``app_dir``), ``--json`` (with ``json``) and ``--db``/``--store`` (with
    ``store``), in that order (the order ``--help`` lists them in). The command takes an
    ``Invocation`` first instead of typer's context and declares only its own options."""
    names = [
        name
        for name, wanted in (("app_dir", app_dir), ("json", json), ("db", store), ("store", store))
        if wanted
    ]

    def decorate(fn: Callable[Concatenate[Invocation, P], T]) -> Callable[..., T]:
        hints = typing.get_type_hints(fn, include_extras=True)
        own = [
            p.replace(annotation=hints[p.name])
            for p in list(inspect.signature(fn).parameters.values())[1:]
        ]
        clash = {p.name for p in own} & (set(names) | set(_OUTPUT))
        if clash:
            raise TypeError(f"{fn.__name__} declares shared option(s) {sorted(clash)}")
        params = [
            inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
            *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own),
            *(
                inspect.Parameter(
                    n,
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=_SHARED[n][0],
                    default=_SHARED[n][1],
                )
                for n in names
            ),
            *(
                inspect.Parameter(
                    n, inspect.Parameter.KEYWORD_ONLY, annotation=_OUTPUT[n][0], default=default
                )
                for n, (_, default) in _OUTPUT.items()
            ),
        ]

        @functools.wraps(fn)
        def command(ctx: typer.Context, **options: Any) -> T:
            flags = {n: options.pop(n) for n in _OUTPUT}
            if any(flags.values()):
                state(ctx).set_output_flags(**flags)
            root = state(ctx)
            with configured(
                root.log_level, root.log_format, verbose=root.verbose > 0, quiet=root.quiet
            ):
                return _invoke(ctx, options)

        def _invoke(ctx: typer.Context, options: dict[str, Any]) -> T:
            shared = {n: options.pop(n) for n in names}
            json_mode = bool(shared.pop("json", False))
            run: Callable[..., T] = fn
            if not json_mode:
                return run(Invocation(state(ctx), json_mode, shared), **options)
            # stdout is the JSON document's alone: what handlers and libraries print
            # while the command runs goes to stderr.
            inv = Invocation(state(ctx), json_mode, shared, stdout=sys.stdout)
            with contextlib.redirect_stdout(sys.stderr):
                return run(inv, **options)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate
