"""Plugins: ``pubsub plugins list`` — every entry point of every pubsub group, with its
source package and whether it loads."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from core.entrypoints import DISABLE_ENV, GROUPS, PluginInfo, discover, third_party_disabled
from pubsub_cli.context import Invocation, shared_options
from pubsub_cli.targets import check_handlers_plugin

app = typer.Typer(help="Discovered plugins (entry points).", no_args_is_help=True)


def _checked(plugin: PluginInfo) -> PluginInfo:
    """A handlers entry point that loads is ok only when it gives a Router or EventBus
    (what ``pubsub run --plugin`` needs)."""
    if plugin.group != "pubsub.handlers" or plugin.broken:
        return plugin
    return dataclasses.replace(plugin, error=check_handlers_plugin(plugin.name))


@app.command("list")
@shared_options(store=False)
def list_plugins(
    inv: Invocation,
    group: Annotated[
        list[str] | None,
        typer.Option("--group", "-g", help=f"Only these groups ({', '.join(GROUPS)})"),
    ] = None,
) -> None:
    """List every discovered plugin; a broken one is shown with its reason."""
    out = inv.out
    groups = tuple(group) if group else GROUPS
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise typer.BadParameter(
            f"unknown group {unknown[0]!r}; known: {', '.join(GROUPS)}", param_hint="'--group'"
        )
    found = [_checked(p) for p in discover(groups)]
    if third_party_disabled():
        out.note(f"third-party plugins are skipped: {DISABLE_ENV} is set")
    if inv.json:
        out.json(
            {
                "plugins": [
                    {
                        "group": p.group,
                        "name": p.name,
                        "value": p.value,
                        "package": p.package,
                        "version": p.version,
                        "status": "broken" if p.broken else "ok",
                        "error": p.error,
                    }
                    for p in found
                ]
            }
        )
        return
    out.table(
        ("group", "name", "object", "package", "status"),
        [
            (
                p.group,
                p.name,
                p.value,
                f"{p.package} {p.version}" if p.package else "-",
                f"broken: {p.error}" if p.broken else "ok",
            )
            for p in found
        ],
        title="plugins",
        caption=f"{len(found)} plugin(s), {sum(p.broken for p in found)} broken",
    )
