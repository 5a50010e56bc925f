"""Tests of ``PUBSUB_DISABLE_PLUGINS``: third-party entry points are skipped, the
built-in stores keep working, and asking for a skipped plugin says why it is missing."""

from __future__ import annotations

import importlib.metadata as md

import pytest

from .conftest import CLI, EXAMPLES

OFF = {"PUBSUB_DISABLE_PLUGINS": "1"}


@pytest.fixture
def third_party(monkeypatch: pytest.MonkeyPatch) -> None:
    """A third-party store and a third-party handlers plugin are installed."""
    real = md.entry_points

    def fake(**kw: str) -> list[md.EntryPoint]:
        found = list(real(**kw))
        if kw.get("group") == "pubsub.stores":
            found.append(
                md.EntryPoint("fakestore", "core.memory:open_memory_store", "pubsub.stores")
            )
        if kw.get("group") == "pubsub.handlers":
            found.append(md.EntryPoint("extra", "core.routing:Router", "pubsub.handlers"))
        return found

    monkeypatch.setattr(md, "entry_points", fake)


def names(cli: CLI, env: dict[str, str] | None = None) -> set[str]:
    r = cli("plugins", "list", "--json", env=env)
    assert r.exit_code == 0, r.stderr
    return {p["name"] for p in r.json()["plugins"]}  # type: ignore[index]


@pytest.mark.usefixtures("third_party")
class TestDisablePlugins:
    """With PUBSUB_DISABLE_PLUGINS set only this package's own entry points count."""

    def test_listing_skips_third_party(self, cli: CLI) -> None:
        """plugins list shows the built-ins only, and a note says why."""
        assert {"fakestore", "extra", "sqlite", "memory"} <= names(cli)
        shown = names(cli, OFF)
        assert {"sqlite", "memory"} <= shown
        assert not {"fakestore", "extra"} & shown
        r = cli("plugins", "list", env=OFF)
        assert "third-party plugins are skipped: PUBSUB_DISABLE_PLUGINS is set" in r.stderr

    @pytest.mark.parametrize("value", ["", "0", "false", "No", "off"])
    def test_off_values_change_nothing(self, cli: CLI, value: str) -> None:
        """An empty or false-like value leaves every plugin enabled."""
        assert "fakestore" in names(cli, {"PUBSUB_DISABLE_PLUGINS": value})

    def test_built_in_store_keeps_working(self, cli: CLI) -> None:
        """Publishing to and reading the SQLite store works with plugins disabled."""
        data = '{"order_id": "A-1"}'
        app = str(EXAMPLES / "orders.py")
        r = cli("publish", "--app", app, "OrderShipped", "--data", data, env=OFF)
        assert r.exit_code == 0, r.stderr
        assert len(cli("events", "list", "--json", env=OFF).json_lines()) == 1

    def test_skipped_store_says_why(self, cli: CLI) -> None:
        """A store URL whose scheme only a skipped plugin serves names the variable."""
        assert cli("--store", "fakestore://x", "stats", "--json").exit_code == 0
        r = cli("--store", "fakestore://x", "stats", env=OFF)
        assert r.exit_code == 1
        assert "skipped because PUBSUB_DISABLE_PLUGINS is set" in r.error_line

    def test_skipped_handlers_plugin_says_why(self, cli: CLI) -> None:
        """run --plugin of a skipped plugin is one line naming the variable."""
        r = cli("run", "--plugin", "extra", "--once", env=OFF)
        assert r.exit_code == 1
        assert "plugin 'extra'" in r.error_line
        assert "PUBSUB_DISABLE_PLUGINS" in r.error_line
