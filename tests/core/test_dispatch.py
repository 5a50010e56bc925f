"""Dispatch: async handlers on the loop, sync handlers in a bounded executor, the
single-handler fast path, concurrent handlers, and failure isolation."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from core import Event, EventBus, OutcomeStatus


@dataclass(frozen=True, slots=True)
class Ping(Event, type_name="tests.core.dispatch.Ping"):
    n: int = 0


class TestSyncHandlers:
    async def test_sync_handler_does_not_block_an_async_one(self) -> None:
        """A blocking sync handler leaves the loop free: the async handler of the same
        event runs while the sync one is still blocked."""
        released = threading.Event()
        outcome: dict[str, bool] = {}

        def blocking(event: Ping) -> None:
            # Blocks (up to 2 s on failure) until the async handler has run.
            outcome["released"] = released.wait(timeout=2.0)

        async def quick(event: Ping) -> None:
            released.set()

        async with EventBus() as bus:
            bus.subscribe(Ping, name="blocking")(blocking)
            bus.subscribe(Ping, name="quick")(quick)
            result = await bus.publish_async(Ping())
        assert outcome == {"released": True}
        assert result.ok

    async def test_sync_handler_sleeping_does_not_delay_async_handler(self) -> None:
        """While a sync handler sleeps 0.2 s, the async handler finishes first."""
        order: list[str] = []
        done = threading.Event()

        def sleepy(event: Ping) -> None:
            done.wait(0.2)  # a 0.2 s sleep unless the async handler already finished
            order.append("sync")

        async def fast(event: Ping) -> None:
            order.append("async")
            done.set()

        async with EventBus() as bus:
            bus.subscribe(Ping, name="sleepy")(sleepy)
            bus.subscribe(Ping, name="fast")(fast)
            await bus.publish_async(Ping())
        assert order == ["async", "sync"]

    async def test_sync_handler_runs_in_a_worker_thread(self) -> None:
        """A sync handler runs off the loop's thread unless inline=True."""
        threads: dict[str, threading.Thread] = {}

        def worker(event: Ping) -> None:
            threads["worker"] = threading.current_thread()

        def inline(event: Ping) -> None:
            threads["inline"] = threading.current_thread()

        async with EventBus() as bus:
            bus.subscribe(Ping, name="worker")(worker)
            bus.subscribe(Ping, name="inline", inline=True)(inline)
            await bus.publish_async(Ping())
        assert threads["worker"] is not threading.current_thread()
        assert threads["inline"] is threading.current_thread()

    async def test_executor_is_bounded_by_max_workers(self) -> None:
        """With max_workers=2, at most two sync handlers run at once on two threads."""
        lock = threading.Lock()
        both = threading.Barrier(2, timeout=2.0)
        running = peak = 0
        idents: set[int] = set()

        def busy(event: Ping) -> None:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
                idents.add(threading.get_ident())
            if event.n < 2:
                both.wait()  # the first two must overlap
            with lock:
                running -= 1

        async with EventBus(max_workers=2) as bus:
            bus.subscribe(Ping, name="busy")(busy)
            results = await asyncio.gather(*(bus.publish_async(Ping(i)) for i in range(8)))
        assert all(r.ok for r in results)
        assert peak == 2
        assert len(idents) == 2

    async def test_executor_is_shut_down_with_the_bus(self) -> None:
        """Closing the bus stops the worker threads it started."""
        seen: list[threading.Thread] = []
        bus = EventBus()
        bus.subscribe(Ping, name="record")(lambda e: seen.append(threading.current_thread()))
        await bus.publish_async(Ping())
        assert seen[0].is_alive()
        await bus.aclose()
        assert not seen[0].is_alive()

    async def test_a_given_executor_is_left_running(self) -> None:
        """An executor passed in by the caller is not shut down by the bus."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            async with EventBus(executor=pool) as bus:
                bus.subscribe(Ping, name="record")(lambda e: None)
                await bus.publish_async(Ping())
            assert pool.submit(lambda: 42).result() == 42

    async def test_sync_handler_failure_is_reported(self) -> None:
        """An exception raised in a worker thread becomes a failed outcome."""

        def boom(event: Ping) -> None:
            raise ValueError("sync boom")

        async with EventBus() as bus:
            bus.subscribe(Ping, name="boom")(boom)
            result = await bus.publish_async(Ping())
        assert result.outcomes[0].status is OutcomeStatus.FAILED
        assert str(result.outcomes[0].error) == "sync boom"


class TestFastPath:
    @pytest.mark.parametrize(
        "policy",
        [
            pytest.param({}, id="plain"),
            pytest.param({"timeout": 5.0}, id="with-timeout"),
            pytest.param({"retry": 3, "max_concurrency": 2}, id="with-retry-and-limit"),
        ],
    )
    async def test_single_handler_runs_in_the_publishers_task(self, policy: dict[str, Any]) -> None:
        """Exactly one matching handler creates no task: it runs in the caller's task."""
        publisher = asyncio.current_task()
        before = len(asyncio.all_tasks())
        seen: dict[str, Any] = {}

        async def only(event: Ping) -> None:
            await asyncio.sleep(0)  # even a suspending single handler gets no task
            seen["task"] = asyncio.current_task()
            seen["tasks"] = len(asyncio.all_tasks())

        async with EventBus() as bus:
            bus.subscribe(Ping, name="only", **policy)(only)
            await bus.publish_async(Ping())
        assert seen["task"] is publisher
        assert seen["tasks"] == before

    async def test_suspending_handlers_run_concurrently(self) -> None:
        """Three handlers that each wait for the other two all finish (a barrier of 3)."""
        barrier = asyncio.Barrier(3)

        async def meet(event: Ping) -> None:
            async with asyncio.timeout(2.0):
                await barrier.wait()

        async with EventBus() as bus:
            for name in ("a", "b", "c"):
                bus.subscribe(Ping, name=name)(meet)
            result = await bus.publish_async(Ping())
        assert [o.status for o in result] == [OutcomeStatus.OK] * 3


class TestFailureIsolation:
    async def test_failures_never_prevent_siblings(self) -> None:
        """Handlers failing before and after suspending leave the others to finish."""
        ran: list[str] = []

        async def early(event: Ping) -> None:
            raise ValueError("early")

        async def steady(event: Ping) -> None:
            await asyncio.sleep(0)
            ran.append("steady")

        async def late(event: Ping) -> None:
            await asyncio.sleep(0)
            raise KeyError("late")

        def sync_ok(event: Ping) -> None:
            ran.append("sync_ok")

        async with EventBus() as bus:
            for name, fn in [
                ("early", early),
                ("steady", steady),
                ("late", late),
                ("sync_ok", sync_ok),
            ]:
                bus.subscribe(Ping, name=name)(fn)
            result = await bus.publish_async(Ping())
        assert [(o.handler, o.status) for o in result] == [
            ("early", OutcomeStatus.FAILED),
            ("steady", OutcomeStatus.OK),
            ("late", OutcomeStatus.FAILED),
            ("sync_ok", OutcomeStatus.OK),
        ]
        assert sorted(ran) == ["steady", "sync_ok"]

    async def test_a_failure_does_not_cancel_a_running_sibling(self) -> None:
        """After one handler failed, a sibling that is still waiting keeps running."""
        fail_now, finish_now = asyncio.Event(), asyncio.Event()
        cancelled = False

        async def failing(event: Ping) -> None:
            await fail_now.wait()
            raise ValueError("gone")

        async def waiting(event: Ping) -> None:
            nonlocal cancelled
            try:
                await finish_now.wait()
            except asyncio.CancelledError:
                cancelled = True
                raise

        async with EventBus() as bus:
            bus.subscribe(Ping, name="failing")(failing)
            bus.subscribe(Ping, name="waiting")(waiting)
            publish = asyncio.ensure_future(bus.publish_async(Ping()))
            await asyncio.sleep(0)
            fail_now.set()
            for _ in range(5):
                await asyncio.sleep(0)
            assert not publish.done()
            finish_now.set()
            result = await publish
        assert not cancelled
        assert [o.status for o in result] == [OutcomeStatus.FAILED, OutcomeStatus.OK]


class TestOnePlainHandler:
    async def test_result_of_the_hot_path_reads_like_any_other(self) -> None:
        """One plain handler: the result is ok, has one outcome naming the handler with
        the duration the metrics recorded, built once, and no seq (no store)."""

        async def only(event: Ping) -> None:
            pass

        bus = EventBus()
        bus.subscribe(Ping, name="only")(only)
        result = await bus.publish_async(Ping())
        assert (result.ok, len(result), result.failures, result.seq, result.duplicate) == (
            True,
            1,
            [],
            None,
            False,
        )
        (outcome,) = result.outcomes
        assert (outcome.handler, outcome.status, outcome.attempts) == ("only", OutcomeStatus.OK, 1)
        assert result.outcomes is result.outcomes
        snapshot = bus.metrics.snapshot()["handlers"]["only"]
        assert snapshot["duration"]["max"] == outcome.duration
        assert "only" in repr(result)
        await bus.aclose()


class TestSeveralPlainHandlers:
    """Several async handlers without a policy take publish's many-handler hot path."""

    @staticmethod
    def bus_with(*handlers: tuple[str, Any]) -> EventBus:
        bus = EventBus()
        for name, fn in handlers:
            bus.subscribe(Ping, name=name)(fn)
        return bus

    async def test_all_ok_outcomes_are_built_on_demand(self) -> None:
        """Every handler runs once; the outcomes read later name each handler in
        subscription order, ok, one attempt, with the duration the metrics saw."""
        ran: list[str] = []

        def make(name: str) -> Any:
            async def handler(event: Ping) -> None:
                ran.append(name)

            return handler

        names = [f"h{i}" for i in range(5)]
        bus = self.bus_with(*[(n, make(n)) for n in names])
        result = await bus.publish_async(Ping())
        assert ran == names
        assert result.ok
        assert len(result) == 5
        assert result.failures == []
        assert [(o.handler, o.status, o.attempts) for o in result] == [
            (n, OutcomeStatus.OK, 1) for n in names
        ]
        assert result.outcomes is result.outcomes  # built once
        handlers = bus.metrics.snapshot()["handlers"]
        for o in result:
            assert handlers[o.handler]["succeeded"] == 1
            assert handlers[o.handler]["duration"]["max"] == o.duration
        stats = bus.statistics()
        assert (stats.published, stats.handled_ok, stats.handled_failed) == (1, 5, 0)
        await bus.aclose()

    async def test_mixed_failures_and_suspensions_keep_order(self) -> None:
        """A handler failing at once, one suspending then failing, one suspending then
        succeeding and one succeeding at once: every outcome in subscription order,
        each failure dead-lettered, siblings all run."""
        ran: list[str] = []

        async def ok_first(event: Ping) -> None:
            ran.append("ok_first")

        async def early(event: Ping) -> None:
            raise ValueError("early")

        async def late(event: Ping) -> None:
            await asyncio.sleep(0)
            raise KeyError("late")

        async def slow_ok(event: Ping) -> None:
            await asyncio.sleep(0)
            ran.append("slow_ok")

        async def ok_last(event: Ping) -> None:
            ran.append("ok_last")

        bus = self.bus_with(
            ("ok_first", ok_first),
            ("early", early),
            ("late", late),
            ("slow_ok", slow_ok),
            ("ok_last", ok_last),
        )
        result = await bus.publish_async(Ping())
        assert [(o.handler, o.status) for o in result] == [
            ("ok_first", OutcomeStatus.OK),
            ("early", OutcomeStatus.FAILED),
            ("late", OutcomeStatus.FAILED),
            ("slow_ok", OutcomeStatus.OK),
            ("ok_last", OutcomeStatus.OK),
        ]
        assert sorted(ran) == ["ok_first", "ok_last", "slow_ok"]
        assert [type(o.error) for o in result.failures] == [ValueError, KeyError]
        letters = await bus.dead_letters.list_dead_letters()
        assert sorted(d.handler for d in letters) == ["early", "late"]
        stats = bus.statistics()
        assert (stats.handled_ok, stats.handled_failed, stats.dead_lettered) == (3, 2, 2)
        await bus.aclose()

    async def test_publish_inside_a_handler_records_causation(self) -> None:
        """An event published from one of several plain handlers is caused by the
        event that handler received."""
        children: list[Ping] = []

        async def spawn(event: Ping) -> None:
            if event.n == 0:
                child = Ping(n=1)
                children.append(child)
                await bus.publish_async(child)

        async def other(event: Ping) -> None:
            pass

        bus = self.bus_with(("spawn", spawn), ("other", other))
        parent = Ping(n=0)
        await bus.publish_async(parent)
        assert [c.causation_id for c in children] == [parent.id]
        await bus.aclose()

    async def test_inline_sync_handlers_join_the_plain_path(self) -> None:
        """Inline sync handlers among plain async ones run on the loop's thread, in
        order, and a failing one is reported like any other."""
        threads: list[int] = []

        def sync_ok(event: Ping) -> None:
            threads.append(threading.get_ident())

        def sync_bad(event: Ping) -> None:
            raise RuntimeError("inline failure")

        async def async_ok(event: Ping) -> None:
            threads.append(threading.get_ident())

        bus = EventBus()
        bus.subscribe(Ping, name="sync_ok", inline=True)(sync_ok)
        bus.subscribe(Ping, name="async_ok")(async_ok)
        bus.subscribe(Ping, name="sync_bad", inline=True)(sync_bad)
        result = await bus.publish_async(Ping())
        assert threads == [threading.get_ident()] * 2
        assert [(o.handler, o.status) for o in result] == [
            ("sync_ok", OutcomeStatus.OK),
            ("async_ok", OutcomeStatus.OK),
            ("sync_bad", OutcomeStatus.FAILED),
        ]
        await bus.aclose()

    async def test_one_inline_sync_handler_runs_on_the_loop(self) -> None:
        """A single inline sync handler is called on the loop's thread and its
        failure is dead-lettered."""
        calls: list[int] = []

        def only(event: Ping) -> None:
            calls.append(threading.get_ident())
            if event.n:
                raise ValueError("bad n")

        bus = EventBus()
        bus.subscribe(Ping, name="only", inline=True)(only)
        assert (await bus.publish_async(Ping())).ok
        failed = await bus.publish_async(Ping(n=1))
        assert [o.status for o in failed] == [OutcomeStatus.FAILED]
        assert calls == [threading.get_ident()] * 2
        assert [d.handler for d in await bus.dead_letters.list_dead_letters()] == ["only"]
        await bus.aclose()
