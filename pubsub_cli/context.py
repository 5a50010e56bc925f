"""Context: what every command shares — the global flags, the output, the resolved
settings, and opening the store they name.

The root callback stores a ``CLIState`` on typer's context; commands fetch it with
``state(ctx)``. ``open_store`` refuses to create a database for commands that only read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from core.entrypoints import open_store as _open_store
from core.store import EventStore

from .output import Output
from .settings import Settings, resolve_settings

__all__ = [
    "AppDirOption",
    "CLIState",
    "DbOption",
    "JsonOption",
    "RootDbOption",
    "RootStoreOption",
    "StoreOption",
    "open_store",
    "state",
]

_DB_HELP = (
    "SQLite store file (default ./pubsub.db, or db in the tool.pubsub table of pyproject.toml)"
)
_STORE_HELP = "Store URL of any registered store (sqlite:///path.db, memory://); wins over --db"

RootDbOption = Annotated[
    Path | None,
    typer.Option("--db", envvar="PUBSUB_DB", show_envvar=True, help=_DB_HELP, metavar="PATH"),
]
RootStoreOption = Annotated[
    str | None,
    typer.Option(
        "--store", envvar="PUBSUB_STORE", show_envvar=True, help=_STORE_HELP, metavar="URL"
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
    typer.Option("--store", help=f"{_STORE_HELP} \\[env var: PUBSUB_STORE]", metavar="URL"),
]
AppDirOption = Annotated[
    Path | None,
    typer.Option(
        "--app-dir",
        envvar="PUBSUB_APP_DIR",
        show_envvar=True,
        help="Folder put first on sys.path before importing TARGETs [default: .]",
        metavar="DIR",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else")
]


@dataclass(slots=True)
class CLIState:
    """The root flags and where output goes; one per invocation."""

    verbose: int = 0
    quiet: bool = False
    db: Path | None = None
    store: str | None = None
    output: Output = field(default_factory=Output)

    def settings(
        self,
        *,
        db: Path | None = None,
        store: str | None = None,
        group: str | None = None,
        app_dir: Path | None = None,
        graceful_timeout: float | None = None,
    ) -> Settings:
        """The command's settings: its own flags, then the root's, then env/project."""
        return resolve_settings(
            db=db if db is not None else self.db,
            store=store if store is not None else self.store,
            group=group,
            app_dir=app_dir,
            graceful_timeout=graceful_timeout,
        )

    def out(self, json_mode: bool = False) -> Output:
        return self.output.with_json(json_mode) if json_mode else self.output


def state(ctx: typer.Context) -> CLIState:
    """The invocation's state (a fresh default one when called outside ``pubsub``)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CLIState):
        root.obj = CLIState()
    return root.obj


@asynccontextmanager
async def open_store(settings: Settings, *, create: bool = False) -> AsyncIterator[EventStore]:
    """Open the store the settings name and close it afterwards. Without ``create`` a
    missing SQLite file is an error (read commands never create a database)."""
    if not create:
        settings.require_existing_store()
    store = await _open_store(settings.store_url)
    try:
        yield store
    finally:
        await store.aclose()
