"""The optional C extension ``core._speedups``: the one-handler publish path and the
built-in metrics recorders it updates in place. ``speedups`` is None when it is not
built (no compiler at install time) or when ``PUBSUB_PURE_PYTHON`` is set to anything
but ``0``; the Python code it replaces then does the same work."""

from __future__ import annotations

import os
import types


def _load() -> types.ModuleType | None:
    if os.environ.get("PUBSUB_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    return _speedups


speedups = _load()
