"""Scenarios behind `pubsub bench --scenarios` and benchmarks/peers.py: every scenario
is measured for pubsub and for its floor, both ways (events prebuilt and built per
publish), and each handler ran as often as claimed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pubsub_cli.benchmarking
from pubsub_cli.benchmarking.scenarios import (
    FLOOR_OF,
    SCENARIO_KINDS,
    SCENARIOS,
    WAYS,
    Counter,
    floor_cases,
    label,
    measure,
    run_scenarios,
    timed_loop,
)

PACKAGE = Path(pubsub_cli.benchmarking.__file__).parent


class TestScenarios:
    async def test_every_scenario_has_a_figure_and_a_floor(self) -> None:
        """run_scenarios reports seconds per event for every scenario and its floor,
        calling progress after each warm-up and each round."""
        ticks: list[int] = []
        table = await run_scenarios(events=200, repeat=1, progress=ticks.append)
        assert set(table["pubsub"]) == set(SCENARIOS)
        floors = {FLOOR_OF.get(name, name) for name in SCENARIOS}
        assert floors <= set(table["floor"])
        for row in table.values():
            assert all(isinstance(v, float) and v > 0 for v in row.values())
        assert len(ticks) == len(table["pubsub"]) + len(table["floor"]) + 1  # + one round

    def test_every_scenario_is_measured_both_ways(self) -> None:
        """Each kind of scenario appears once with events prebuilt and once with each
        event built per publish; no scenario measures only prebuilt events."""
        assert tuple(label(kind, way) for kind in SCENARIO_KINDS for way in WAYS) == SCENARIOS
        assert WAYS == ("prebuilt", "built per publish")
        counter = Counter()
        assert set(floor_cases(counter)) == {FLOOR_OF.get(name, name) for name in SCENARIOS}

    async def test_a_case_runs_its_handler_once_per_event(self) -> None:
        """The floor's ten-handler case awaits ten handlers per event: the counter
        shows it, so figures compare equal work."""
        counter = Counter()
        run, _ = floor_cases(counter)[label("10 async handlers", "prebuilt")]
        await run(30)
        assert counter.n == 300
        seconds = await measure(floor_cases(counter)[label("1 async handler", "prebuilt")], 200, 1)
        assert seconds > 0

    @pytest.mark.parametrize(
        "built", [pytest.param(False, id="prebuilt"), pytest.param(True, id="built")]
    )
    async def test_a_built_loop_makes_its_events_inside_the_timed_region(self, built: bool) -> None:
        """A prebuilt runner makes every event before it awaits the first call; a built
        runner makes each one just before its call."""
        log: list[str] = []

        def make(i: int) -> int:
            log.append(f"make {i}")
            return i

        async def call(i: int) -> None:
            log.append(f"call {i}")

        await timed_loop(call, make, built=built)(2)
        if built:
            assert log == ["make 0", "call 0", "make 1", "call 1"]
        else:
            assert log == ["make 0", "make 1", "call 0", "call 1"]


class TestPackage:
    @pytest.mark.parametrize("module", ["runner.py", "scenarios.py", "__init__.py"])
    def test_no_typer_or_rich(self, module: str) -> None:
        """The benchmarking package is library code: it imports neither typer nor rich."""
        tree = ast.parse((PACKAGE / module).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert not imported & {"typer", "rich"}

    def test_not_in_core(self) -> None:
        """The bench scenarios and runner are no longer core modules."""
        core_dir = PACKAGE.parent.parent / "core"
        assert not (core_dir / "bench.py").exists()
        assert not (core_dir / "scenarios.py").exists()
