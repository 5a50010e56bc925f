"""``plugins.testkit`` only re-exports, with a sorted ``__all__`` naming every public
name of its modules."""

from __future__ import annotations

import importlib
import pkgutil

import plugins.testkit as testkit


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, every name exists, and each module's __all__ is re-exported."""
    assert testkit.__all__ == sorted(set(testkit.__all__))
    assert [n for n in testkit.__all__ if not hasattr(testkit, n)] == []
    names: set[str] = set()
    for module in pkgutil.iter_modules(testkit.__path__):
        names |= set(importlib.import_module(f"plugins.testkit.{module.name}").__all__)
    assert names == set(testkit.__all__)
