"""Scenarios behind `pubsub bench --scenarios` and benchmarks/peers.py: every scenario
is measured for pubsub and for its floor, and each handler ran as often as claimed."""

from __future__ import annotations

from core.scenarios import FLOOR_OF, SCENARIOS, Counter, floor_cases, measure, run_scenarios


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

    async def test_a_case_runs_its_handler_once_per_event(self) -> None:
        """The floor's ten-handler case awaits ten handlers per event: the counter
        shows it, so figures compare equal work."""
        counter = Counter()
        run, _ = floor_cases(counter)["10 async handlers"]
        await run(30)
        assert counter.n == 300
        seconds = await measure(floor_cases(counter)["1 async handler"], 200, 1)
        assert seconds > 0
