"""Entry points: discovering plugins of every group and opening stores by URL.

Built-ins register through the same groups as third-party packages
(``pubsub.stores``, ``pubsub.handlers``, ``pubsub.metrics``, ``pubsub.middleware``).
Loading is lazy, per plugin, and a plugin that fails to import is reported as broken
with its reason; it never takes the others down.
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from .errors import PluginLoadError, UnknownStoreSchemeError
from .store import EventStore

__all__ = ["GROUPS", "PluginInfo", "discover", "load_plugin", "open_store", "store_schemes"]

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


def _entry_points(group: str) -> list[md.EntryPoint]:
    return sorted(md.entry_points(group=group), key=lambda ep: ep.name)


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
        raise UnknownStoreSchemeError(url, store_schemes())
    factory = cast(StoreFactory, load_plugin("pubsub.stores", scheme))
    return await factory(url)
