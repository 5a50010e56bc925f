"""Loading the OpenTelemetry plugin: nothing imports opentelemetry until tracing is
asked for, and asking for it without the extra is a one-line PluginLoadError."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.errors import PluginLoadError
from plugins.otel import MISSING_EXTRA, instrumentation


class TestLazy:
    def test_importing_does_not_import_opentelemetry(self) -> None:
        """``import core``, the CLI app and ``plugins.otel`` load no opentelemetry."""
        code = (
            "import sys, core, core.bus, pubsub_cli.app, plugins.otel; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry'))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )
        assert out.stdout.strip() == "[]"

    def test_missing_extra_is_a_plugin_load_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With opentelemetry unimportable, ``instrumentation()`` raises PluginLoadError
        whose one line says which extra to install."""
        monkeypatch.setitem(sys.modules, "opentelemetry", None)
        monkeypatch.delitem(sys.modules, "plugins.otel.tracing", raising=False)
        with pytest.raises(PluginLoadError) as info:
            instrumentation()
        assert str(info.value) == f"otel: {MISSING_EXTRA}"
        assert "\n" not in str(info.value)
