"""Tests of ``pubsub bench`` and ``core.bench``: the shape of the report, never timings."""

from __future__ import annotations

import pytest

from pubsub_cli.benchmarking.runner import BenchConfig, run_benchmark
from pubsub_cli.benchmarking.scenarios import SCENARIOS

from .conftest import CLI


class TestBenchLogic:
    """run_benchmark measures both phases on either store."""

    @pytest.mark.parametrize("store", ["memory", "sqlite"])
    async def test_report(self, store: str) -> None:
        """Every event is handled by every handler; the SLO checks are present."""
        config = BenchConfig(events=200, handlers=2, store=store, publishers=4)  # type: ignore[arg-type]
        done: list[int] = []
        report = await run_benchmark(config, progress=done.append)
        assert report.handled == 400
        assert report.failed == 0
        assert sum(done) == config.events + config.samples
        assert [c.target for c in report.checks[:3]] == ["> 10,000", "< 1", "< 1"]
        assert report.overhead_p50 <= report.overhead_p99 <= report.overhead_max

    def test_bad_config(self) -> None:
        """A nonsensical configuration is refused."""
        with pytest.raises(ValueError, match="events and publishers"):
            BenchConfig(events=0)


class TestBenchCommand:
    """The command prints a table or one JSON document."""

    def test_json(self, cli: CLI) -> None:
        """--json has throughput, overhead and the SLO checks."""
        r = cli("bench", "--events", "300", "--json")
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert isinstance(doc, dict)
        assert set(doc) >= {"config", "throughput", "overhead", "checks", "passed"}
        assert set(doc["overhead"]) == {"p50_ms", "p99_ms", "max_ms"}

    def test_table(self, cli: CLI) -> None:
        """The table names the seed's service levels."""
        r = cli("bench", "--events", "300", "--store", "sqlite", "--publishers", "8")
        assert r.exit_code == 0, r.stderr
        assert "seed SLO" in r.stdout
        assert "> 10,000" in r.stdout

    def test_scenarios_json(self, cli: CLI) -> None:
        """--scenarios adds one entry per hot-path scenario, each with its floor."""
        r = cli("bench", "--events", "200", "--scenarios", "--json")
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert isinstance(doc, dict)
        assert list(doc["scenarios"]) == list(SCENARIOS)
        for row in doc["scenarios"].values():
            assert set(row) == {"events_per_s", "us_per_event", "floor_us_per_event", "x_floor"}
            assert row["x_floor"] == pytest.approx(row["us_per_event"] / row["floor_us_per_event"])

    def test_scenarios_table(self, cli: CLI) -> None:
        """Without --json the scenarios are a second table."""
        r = cli("bench", "--events", "200", "--scenarios")
        assert r.exit_code == 0, r.stderr
        assert "hot-path scenarios" in r.stdout
        assert "10 async handlers" in r.stdout

    def test_bad_store(self, cli: CLI) -> None:
        """An unknown --store is a usage error."""
        assert cli("bench", "--store", "redis").exit_code == 2


class TestPlugins:
    """plugins list shows the built-in stores."""

    def test_json(self, cli: CLI) -> None:
        """Both store schemes are listed as working, with their package."""
        doc = cli("plugins", "list", "--json").json()
        assert isinstance(doc, dict)
        stores = {p["name"]: p for p in doc["plugins"] if p["group"] == "pubsub.stores"}
        assert stores["sqlite"]["status"] == "ok"
        assert stores["memory"]["package"] == "pubsub-workbench"

    def test_broken_plugin_is_listed(self, cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
        """A plugin that fails to import is shown as broken; the others still load."""
        import importlib.metadata as md

        real = md.entry_points

        def fake(**kw: str) -> list[md.EntryPoint]:
            found = list(real(**kw))
            if kw.get("group") == "pubsub.handlers":
                found.append(
                    md.EntryPoint("broken", "no_such_module_xyz:router", "pubsub.handlers")
                )
            return found

        monkeypatch.setattr(md, "entry_points", fake)
        r = cli("plugins", "list", "--json")
        assert r.exit_code == 0
        rows = {p["name"]: p for p in r.json()["plugins"]}  # type: ignore[index]
        assert rows["broken"]["status"] == "broken"
        assert "ModuleNotFoundError" in rows["broken"]["error"]
        assert rows["sqlite"]["status"] == "ok"
        r = cli("run", "--plugin", "broken", "--once")
        assert r.exit_code == 1
        assert "plugin 'broken'" in r.error_line

    def test_handlers_plugin_that_is_no_router(
        self, cli: CLI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A handlers entry point that loads but gives no Router or EventBus is broken
        (run --plugin would refuse it)."""
        import importlib.metadata as md

        real = md.entry_points

        def fake(**kw: str) -> list[md.EntryPoint]:
            found = list(real(**kw))
            if kw.get("group") == "pubsub.handlers":
                found.append(md.EntryPoint("not_router", "os:sep", "pubsub.handlers"))
            return found

        monkeypatch.setattr(md, "entry_points", fake)
        r = cli("plugins", "list", "--json")
        assert r.exit_code == 0
        rows = {p["name"]: p for p in r.json()["plugins"]}  # type: ignore[index]
        assert rows["not_router"]["status"] == "broken"
        assert rows["not_router"]["error"] == "entry point gave a str, not a Router"
        table = cli("plugins", "list", "--group", "pubsub.handlers")
        assert "broken: entry point gave a str" in table.stdout
        assert "1 broken" in table.stdout

    def test_unknown_group(self, cli: CLI) -> None:
        """An unknown --group is a usage error."""
        assert cli("plugins", "list", "--group", "nope").exit_code == 2
