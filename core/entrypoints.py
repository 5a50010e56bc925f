"""Entry points: discovering plugins of every group and opening stores by URL.

Built-ins register through the same groups as third-party packages
(``pubsub.stores``, ``pubsub.handlers``, ``pubsub.metrics``, ``pubsub.middleware``).
Loading is lazy, per plugin, and a plugin that fails to import is reported as broken
with its reason; it never takes the others down.

``PUBSUB_DISABLE_PLUGINS=1`` (any value but empty, ``0``, ``false``, ``no``, ``off``)
skips every third-party entry point: only those of this package itself (the built-in
stores) are discovered and loaded. That is the way to tell whether a misbehaving plugin
is the cause of a problem, and to run with exactly the code this package ships.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from .errors import PluginLoadError, UnknownStoreSchemeError
from .store import EventStore

__all__ = ["GROUPS", "PluginInfo", "discover", "load_plugin", "open_store", "store_schemes"]
# Also used by the command line, not part of core's API: DISABLE_ENV, third_party_disabled.

GROUPS = ("pubsub.handlers", "pubsub.stores", "pubsub.metrics", "pubsub.middleware")

StoreFactory = Callable[[str], Awaitable[EventStore]]


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One discovered entry point and, once loaded, whether it works."""

    group: str
    name: str
    value: str
    package: str | None
    version: str | None
    error: str | None = None

    @property
    def broken(self) -> bool:
        return self.error is not None


DISABLE_ENV = "PUBSUB_DISABLE_PLUGINS"
_OWN_DISTRIBUTION = "pubsub-workbench"  # the built-ins' package (pyproject.toml's name)
_OFF = frozenset({"", "0", "false", "no", "off"})


def third_party_disabled() -> bool:
    """Whether ``PUBSUB_DISABLE_PLUGINS`` asks to skip third-party entry points."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in _OFF


def _built_in(ep: md.EntryPoint) -> bool:
    dist = ep.dist
    if dist is None:
        return False
    return re.sub(r"[-_.]+", "-", dist.name).lower() == _OWN_DISTRIBUTION


def _entry_points(group: str, *, everything: bool = False) -> list[md.EntryPoint]:
    found = list(md.entry_points(group=group))
    if not everything and third_party_disabled():
        found = [ep for ep in found if _built_in(ep)]
    return sorted(found, key=lambda ep: ep.name)


def discover(groups: tuple[str, ...] = GROUPS, *, load: bool = True) -> list[PluginInfo]:
    """Every entry point of ``groups``; with ``load``, each is imported and a failure is
    recorded in ``error`` instead of raised."""
    out = []
    for group in groups:
        for ep in _entry_points(group):
            dist = ep.dist
            error = None
            if load:
                try:
                    ep.load()
                except Exception as exc:  # a broken plugin is data here, not a crash
                    error = f"{type(exc).__name__}: {exc}"
            out.append(
                PluginInfo(
                    group,
                    ep.name,
                    ep.value,
                    dist.name if dist is not None else None,
                    dist.version if dist is not None else None,
                    error,
                )
            )
    return out


def load_plugin(group: str, name: str) -> Any:
    """Load one entry point; PluginLoadError naming it when it is missing or broken."""
    for ep in _entry_points(group):
        if ep.name == name:
            try:
                return ep.load()
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {name!r} ({group})", f"failed to load: {type(exc).__name__}: {exc}"
                ) from exc
    known = ", ".join(ep.name for ep in _entry_points(group)) or "none"
    if any(ep.name == name for ep in _entry_points(group, everything=True)):
        raise PluginLoadError(
            f"plugin {name!r}",
            f"is a third-party entry point of {group}, skipped because {DISABLE_ENV} is set "
            f"(enabled: {known}); unset it to load the plugin",
        )
    raise PluginLoadError(f"plugin {name!r}", f"no such entry point in {group} (known: {known})")


def store_schemes() -> list[str]:
    return [ep.name for ep in _entry_points("pubsub.stores")]


async def open_store(url: str) -> EventStore:
    """Open the store a URL names (``sqlite:///path/file.db``, ``memory://``) through the
    ``pubsub.stores`` plugin registered for its scheme."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise UnknownStoreSchemeError(url, store_schemes())
    if scheme not in store_schemes():
        if any(ep.name == scheme for ep in _entry_points("pubsub.stores", everything=True)):
            load_plugin("pubsub.stores", scheme)  # raises: skipped by PUBSUB_DISABLE_PLUGINS
        raise UnknownStoreSchemeError(url, store_schemes())
    factory = cast(StoreFactory, load_plugin("pubsub.stores", scheme))
    return await factory(url)
