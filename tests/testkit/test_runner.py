"""run_handlers and the pubsub_run fixture: a handlers module, loaded as ``pubsub run``
loads its TARGET, run against a list of events; one PublishResult per event."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core import DispatchError, EventBus, MemoryEventStore, PluginLoadError, Router
from core.testing import FakeClock
from plugins.testkit import Recorder, RunHandlers, run_handlers

from .conftest import UserProject
from .test_recorder import Order, refuse

_names = itertools.count()

MODULE = """
from dataclasses import dataclass

from core import Event, EventBus, RetryPolicy, Router
from plugins.testkit import fail_times

router = Router()


@dataclass(frozen=True, slots=True)
class Ping(Event, type_name="tests.testkit.runner.{name}.Ping"):
    n: int


@router.subscribe(Ping, name="double")
async def double(event: Ping) -> int:
    return event.n * 2


flaky = fail_times(2, exc=ConnectionError, per_event=True)


@router.subscribe(Ping, name="gateway", retry=RetryPolicy(max_attempts=3, base=60.0, cap=600.0))
@flaky
async def gateway(event: Ping) -> str:
    return "sent"


seen = []


async def tag(event, call_next):
    seen.append(event.n)
    return await call_next(event)


bus = EventBus()
bus.add_middleware(tag)
published = []
bus.on_publish(lambda details: published.append(details.event.n))
bus.subscribe(Ping, name="triple")(lambda e: e.n * 3)
"""


@pytest.fixture
def handlers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Path]]:
    """Writes a handlers module with a name of its own, importable from ``tmp_path``
    (sys.path and sys.modules are restored after the test)."""
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    written: list[str] = []

    def write() -> Path:
        name = f"kit_handlers_{next(_names)}"
        path = tmp_path / f"{name}.py"
        path.write_text(MODULE.format(name=name))
        written.append(name)
        return path

    yield write
    for name in written:
        sys.modules.pop(name, None)


def _module(path: Path) -> Any:
    """The handlers module (the runner finds this very module by its file)."""
    importlib.invalidate_caches()
    return importlib.import_module(path.stem)


class TestTargets:
    """What run_handlers accepts, as pubsub run does."""

    async def test_file_path_runs_routers_and_buses(
        self, handlers: Callable[[], Path], pubsub_run: RunHandlers
    ) -> None:
        """A file's Router and EventBus both run: the bus's handler and its middleware
        come along; each result carries every handler's value."""
        path = handlers()
        module = _module(path)
        results = await pubsub_run(str(path), [module.Ping(1), module.Ping(2)])
        assert [r.values for r in results] == [
            {"double": 2, "gateway": "sent", "triple": 3},
            {"double": 4, "gateway": "sent", "triple": 6},
        ]
        assert module.seen == [1, 2]  # the target bus's middleware ran on our bus
        assert module.published == [1, 2]  # and its hook

    async def test_retries_take_no_real_time(
        self, handlers: Callable[[], Path], pubsub_run: RunHandlers, pubsub_clock: FakeClock
    ) -> None:
        """A handler that fails twice with a 60-second backoff succeeds on its third
        attempt, and the fake clock moved by exactly 60 + 120 seconds."""
        path = handlers()
        module = _module(path)
        (result,) = await asyncio.wait_for(pubsub_run(path, [module.Ping(1)]), 10)
        gateway = next(o for o in result if o.handler == "gateway")
        assert (gateway.ok, gateway.attempts) == (True, 3)
        assert pubsub_clock.sleeps == [60.0, 120.0]
        assert pubsub_clock.monotonic() == 180.0

    async def test_dotted_module_and_attribute(
        self,
        handlers: Callable[[], Path],
        pubsub_bus: EventBus,
        pubsub_run: RunHandlers,
        pubsub_recorder: Recorder,
    ) -> None:
        """``module:router`` by dotted name takes only that router; the recorder of
        pubsub_bus sees the run."""
        path = handlers()
        module = _module(path)
        (result,) = await pubsub_run(f"{path.stem}:router", [module.Ping(5)], app_dir=path.parent)
        assert result.values == {"double": 10, "gateway": "sent"}
        assert pubsub_recorder.received("double", module.Ping, count=1)
        assert sorted(s.name for s in pubsub_bus.subscriptions) == ["double", "gateway"]

    async def test_router_and_module_objects(self, handlers: Callable[[], Path]) -> None:
        """A Router and a module object are targets too; given again on one bus, the
        same subscriptions are included once."""
        module = _module(handlers())
        async with EventBus(clock=FakeClock()) as bus:
            await run_handlers(module.router, [], bus=bus)
            await run_handlers(module, [], bus=bus)
            (result,) = await run_handlers([module.router, module], [module.Ping(3)], bus=bus)
            assert len(bus.subscriptions) == 3
            assert bus.middleware == (module.tag,)
            assert len(bus.hooks) == 1
        async with module.bus:  # a target's own bus, run as itself
            (own,) = await run_handlers(module.bus, [module.Ping(4)], bus=module.bus)
        assert own.values == {"triple": 12}
        assert result.values == {"double": 6, "gateway": "sent", "triple": 9}
        assert module.seen == [3, 4]

    async def test_own_bus_on_a_store_is_closed(self, handlers: Callable[[], Path]) -> None:
        """Without bus=, the run's bus consumes the store given and is closed at the
        end: the group's lease is released and its checkpoint saved."""
        path = handlers()
        module = _module(path)
        store = MemoryEventStore()
        results = await asyncio.wait_for(
            run_handlers(path, [module.Ping(1), module.Ping(2)], store=store), 10
        )
        assert [(r.seq, r.ok) for r in results] == [(1, True), (2, True)]
        (group,) = await store.groups()
        assert (group.group, group.checkpoint, group.holder) == ("default", 2, None)

    async def test_raise_on_error(self, pubsub_run: RunHandlers) -> None:
        """raise_on_error turns a failed handler into a DispatchError."""
        router = Router()
        router.add(Order, refuse, name="refuse")
        with pytest.raises(DispatchError, match="refuse"):
            await pubsub_run(router, [Order("A-1")], raise_on_error=True)


class TestBadTargets:
    """Targets that cannot run: the loader's one-line errors, or a TypeError."""

    async def test_missing_file(self, tmp_path: Path) -> None:
        """A file that does not exist is a PluginLoadError naming it."""
        with pytest.raises(PluginLoadError, match="no such file"):
            await run_handlers(str(tmp_path / "nope.py"), [])

    async def test_not_a_target(self) -> None:
        """Something that is no target at all is refused with what to pass."""
        with pytest.raises(TypeError, match="pass a handlers file"):
            await run_handlers(42, [])  # type: ignore[arg-type]

    async def test_bus_with_clock(self) -> None:
        """bus= with clock= is a contradiction, refused."""
        async with EventBus() as bus:
            with pytest.raises(TypeError, match="not both"):
                await run_handlers([], [], bus=bus, clock=FakeClock())


class TestInAUsersProject:
    """pubsub_run on the user's own handlers file, as the README shows."""

    def test_user_runs_their_handlers_file(self, project: UserProject) -> None:
        """The file's handlers run; the follow-up event is published and handled."""
        project.tests(
            """
            import pytest
            from handlers import OrderPlaced, OrderShipped

            @pytest.mark.asyncio
            async def test_ships(pubsub_run, pubsub_recorder):
                (result,) = await pubsub_run("handlers.py", [OrderPlaced("A-1", total=12)])
                assert result.values == {"shop.ship": "shipped A-1"}
                pubsub_recorder.published(OrderShipped, where=lambda e: e.order_id == "A-1")
                pubsub_recorder.received("shop.notify", OrderShipped, count=1)
            """
        )
        project.run().assert_outcomes(passed=1)
