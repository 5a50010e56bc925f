"""Exports: ``core/__init__`` only re-exports, with a sorted ``__all__`` that stays
complete: every public name of a core module is either re-exported or listed below as
deliberately internal."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import core

# Names in a module's __all__ that stay out of ``core`` on purpose (import them from
# their module). Adding a public name to a module means deciding: re-export or list here.
INTERNAL = {
    "clock": {"system_clock"},  # the default instance; SystemClock is exported
    "codec": {"decode", "decode_as", "encode", "from_dict", "to_dict"},  # Event methods wrap them
    "consumer": {"Delivered", "Dispatcher", "LogConsumer"},  # the seam's two sides
    "devmode": {"check_event", "check_signature"},  # what dev_mode=True checks
    "dispatch": {"InstrumentedRunner", "Route", "Runner"},  # the bus's machinery
    "dlq": {
        "DECODE_HANDLER",
        "MIDDLEWARE_HANDLER",
        "for_corrupt",
        "for_failure",
        "for_undecodable",
        "qualified_name",
    },  # how entries are built
    "replay": {"redrive", "replay"},  # EventBus.replay and EventBus.redrive wrap them
    "results": {
        "Failure",
        "ManyResult",
        "OneResult",
    },  # a HandlerOutcome with what its dead letter needs
    "entrypoints": {"GROUPS", "PluginInfo", "discover", "load_plugin", "store_schemes"},  # CLI
    "memory": {"open_memory_store"},  # the entry-point factory
    "metrics": {
        "GuardedRecorder",
        "NullMetrics",
        "TRUSTED_COLLECTORS",
    },  # the bus guarding a collector
    "progress": {"GroupProgress"},  # the bus's checkpoint bookkeeping
    "store": {
        "NO_HEADERS",
        "at_least",
        "check_headers",
        "check_read_args",
        "int64",
    },  # argument checks for stores, and what a record without headers holds
    "projections": {"create_snapshots", "projections_of", "restore_snapshots"},  # CLI commands
    "routing": {
        "SubscribeOptions",
        "Subscriber",
        "handler_name",
        "make_policy",
        "subscriber",
        "takes_context",
    },  # helpers of subscribe()
    "testing": {"FakeClock", "ScriptedRandom"},  # test doubles live in core.testing
}

MODULES = sorted(m.name for m in pkgutil.iter_modules(core.__path__))


def module_all(name: str) -> list[str]:
    return list(getattr(importlib.import_module(f"core.{name}"), "__all__", []))


class TestAll:
    def test_sorted_without_duplicates(self) -> None:
        """core.__all__ is sorted and has no duplicates."""
        assert core.__all__ == sorted(set(core.__all__))

    def test_every_name_exists(self) -> None:
        """Every name in core.__all__ can be imported from core."""
        missing = [name for name in core.__all__ if not hasattr(core, name)]
        assert missing == []

    def test_every_public_attribute_is_listed(self) -> None:
        """Every public, non-module attribute of core is in core.__all__."""
        public = {
            name
            for name, value in vars(core).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)
        }
        assert sorted(public - set(core.__all__)) == []

    @pytest.mark.parametrize("module", [pytest.param(m, id=m) for m in MODULES])
    def test_module_names_are_reexported_or_internal(self, module: str) -> None:
        """Each public name of a core module is re-exported, as the same object, unless
        it is listed as internal."""
        mod = importlib.import_module(f"core.{module}")
        internal = INTERNAL.get(module, set())
        for name in module_all(module):
            if name in internal:
                continue
            assert name in core.__all__, f"core.{module}.{name} is neither exported nor internal"
            assert getattr(core, name) is getattr(mod, name)

    def test_internal_list_is_not_stale(self) -> None:
        """Every name listed as internal still exists in its module's __all__ and is not
        also exported."""
        for module, names in INTERNAL.items():
            assert names <= set(module_all(module)), module
            assert not names & set(core.__all__), module

    def test_init_only_reexports(self) -> None:
        """Every name core exports is defined in one of its modules, as the same object."""
        mods = [importlib.import_module(f"core.{m}") for m in MODULES]
        orphans = [
            name
            for name in core.__all__
            if not any(getattr(mod, name, None) is getattr(core, name) for mod in mods)
        ]
        assert orphans == []
