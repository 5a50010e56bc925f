"""The plugin's fixtures, used by a user's test files as pytest loads them through the
``pytest11`` entry point: the fake clock makes retries and timeouts exact and instant,
the buses and the store are opened and closed around each test, in either asyncio
mode of pytest-asyncio."""

from __future__ import annotations

import pytest

from .conftest import UserProject

RETRY_TEST = """
    import asyncio
    import pytest
    from core import RetryPolicy
    from plugins.testkit import fail_times
    from handlers import OrderPlaced

    @pytest.mark.asyncio
    async def test_retried_with_backoff(pubsub_bus, pubsub_clock):
        flaky = fail_times(3, exc=ConnectionError)

        @pubsub_bus.subscribe(
            OrderPlaced, name="charge", retry=RetryPolicy(max_attempts=5, base=1.5, multiplier=2.0)
        )
        @flaky
        async def charge(event):
            return "charged"

        result = await asyncio.wait_for(pubsub_bus.publish_async(OrderPlaced("A-1")), 10)
        (outcome,) = result.outcomes
        assert (outcome.status, outcome.attempts, outcome.value) == ("ok", 4, "charged")
        assert pubsub_clock.sleeps == [1.5, 3.0, 6.0]
        assert pubsub_clock.monotonic() == 10.5
        assert (flaky.calls, flaky.failed) == (4, 3)
"""


class TestFakeClock:
    """pubsub_clock and pubsub_rng: exact delays, no real waiting."""

    @pytest.mark.parametrize(
        "mode", [pytest.param("strict", id="strict"), pytest.param("auto", id="auto")]
    )
    def test_retry_with_backoff_moves_the_clock_by_the_backoff(
        self, pytester: pytest.Pytester, mode: str
    ) -> None:
        """Three failures then a success: the fake clock advanced by exactly the three
        backoffs (1.5 + 3 + 6 seconds, jitter pinned to the top), in either mode."""
        project = UserProject(pytester, mode)
        project.tests(RETRY_TEST)
        project.run().assert_outcomes(passed=1)

    def test_handler_timeout_fires_at_the_fake_deadline(self, project: UserProject) -> None:
        """A handler stuck for an hour times out at exactly 30 fake seconds; its
        sleep is cancelled and the outcome says timed_out."""
        project.tests(
            """
            import asyncio
            import pytest
            from handlers import OrderPlaced

            @pytest.mark.asyncio
            async def test_times_out(pubsub_bus, pubsub_clock):
                cancelled = []

                @pubsub_bus.subscribe(OrderPlaced, name="slow", timeout=30)
                async def slow(event):
                    try:
                        await asyncio.sleep(3600)
                    except asyncio.CancelledError:
                        cancelled.append(pubsub_clock.monotonic())
                        raise

                result = await asyncio.wait_for(pubsub_bus.publish_async(OrderPlaced("A-1")), 10)
                (outcome,) = result.outcomes
                assert outcome.status == "timed_out"
                assert isinstance(outcome.error, TimeoutError)
                assert cancelled == [30.0]
                assert pubsub_clock.monotonic() == 30.0
            """
        )
        project.run().assert_outcomes(passed=1)

    def test_each_test_gets_a_fresh_clock(self, project: UserProject) -> None:
        """Time moved in one test does not carry over to the next."""
        project.tests(
            """
            import asyncio
            import pytest

            @pytest.mark.asyncio
            async def test_first(pubsub_clock):
                await asyncio.wait_for(pubsub_clock.sleep(7), 10)
                assert pubsub_clock.monotonic() == 7

            def test_second(pubsub_clock):
                assert pubsub_clock.monotonic() == 0
                assert pubsub_clock.sleeps == []
            """
        )
        project.run().assert_outcomes(passed=2)

    def test_users_own_clock_fixture_wins(self, project: UserProject) -> None:
        """A project's conftest may override pubsub_clock (here with a threshold, for a
        sync handler whose timeout must not fire while its thread works); the plugin's
        buses then run on that clock."""
        project.pytester.makeconftest(
            """
            import pytest
            from core.testing import FakeClock

            @pytest.fixture
            def pubsub_clock():
                return FakeClock(100.0, autojump_threshold=0.5)
            """
        )
        project.tests(
            """
            import asyncio
            import threading
            import pytest
            from handlers import OrderPlaced

            @pytest.mark.asyncio
            async def test_sync_handler_with_timeout(pubsub_bus, pubsub_clock):
                release = threading.Event()

                def work(event):
                    release.wait(5)
                    return "done"

                pubsub_bus.subscribe(OrderPlaced, name="work", timeout=10)(work)
                publish = asyncio.ensure_future(pubsub_bus.publish_async(OrderPlaced("A-1")))
                await asyncio.sleep(0.01)  # the thread works; the loop idles meanwhile
                release.set()
                result = await asyncio.wait_for(publish, 10)
                assert result.values == {"work": "done"}
                assert pubsub_clock.monotonic() == 100.0
            """
        )
        project.run().assert_outcomes(passed=1)


class TestBuses:
    """pubsub_bus, pubsub_make_bus, pubsub_store and pubsub_sqlite_bus."""

    def test_buses_are_closed_after_each_test(self, project: UserProject) -> None:
        """The fixture's bus and every bus made by pubsub_make_bus are open during the
        test and closed after it."""
        project.tests(
            """
            import pytest
            seen = []

            @pytest.mark.asyncio
            async def test_uses_buses(pubsub_bus, pubsub_make_bus):
                other = await pubsub_make_bus(group="other")
                assert not pubsub_bus.closed and not other.closed
                assert other.group == "other"
                seen.extend([pubsub_bus, other])

            def test_they_were_closed():
                assert [bus.closed for bus in seen] == [True, True]
            """
        )
        project.run().assert_outcomes(passed=2)

    def test_make_bus_takes_bus_options(self, project: UserProject) -> None:
        """A bus made with raise_on_error raises the handler's failure as a
        DispatchError; the fixture's bus reports it in the result instead."""
        project.tests(
            """
            import pytest
            from core import DispatchError
            from handlers import OrderPlaced

            async def broken(event):
                raise ValueError("no")

            @pytest.mark.asyncio
            async def test_options(pubsub_bus, pubsub_make_bus):
                strict = await pubsub_make_bus(raise_on_error=True)
                strict.subscribe(OrderPlaced, name="broken")(broken)
                pubsub_bus.subscribe(OrderPlaced, name="broken")(broken)
                with pytest.raises(DispatchError):
                    await strict.publish_async(OrderPlaced("A-1"))
                result = await pubsub_bus.publish_async(OrderPlaced("A-1"))
                assert [o.status for o in result.outcomes] == ["failed"]
            """
        )
        project.run().assert_outcomes(passed=1)

    def test_sqlite_bus_appends_durably_and_closes_the_store(self, project: UserProject) -> None:
        """The SQLite bus stores each event (and the handler's follow-up) in a file of
        its own, moves the checkpoint, and the store is closed after the test."""
        project.tests(
            """
            import pytest
            from core import StoreUnavailableError
            from handlers import OrderPlaced, router
            seen = []

            @pytest.mark.asyncio
            async def test_durable(pubsub_sqlite_bus, pubsub_store, pubsub_clock, tmp_path):
                pubsub_sqlite_bus.include(router)
                result = await pubsub_sqlite_bus.publish_async(OrderPlaced("A-1"))
                assert (result.seq, result.ok) == (1, True)
                assert result.values == {"shop.ship": "shipped A-1"}
                assert await pubsub_store.last_seq() == 2  # the order and its shipment
                assert pubsub_store.path.parent != tmp_path  # never in the test's own folder
                assert pubsub_clock.autojump_threshold == 0.05
                seen.append((pubsub_sqlite_bus, pubsub_store))

            @pytest.mark.asyncio
            async def test_closed_after():
                ((bus, store),) = seen
                assert bus.closed
                with pytest.raises(StoreUnavailableError, match="the store is closed"):
                    await store.append([OrderPlaced("B-1")])
            """
        )
        project.run().assert_outcomes(passed=2)

    def test_timeout_on_the_sqlite_bus_waits_for_real_idleness(self, project: UserProject) -> None:
        """With the store in use, a handler timeout still fires at its fake deadline,
        and a handler that awaits the database (its follow-ups, durably) is not timed
        out while the store works on its thread."""
        project.tests(
            """
            import asyncio
            import pytest
            from handlers import OrderPlaced, OrderShipped

            @pytest.mark.asyncio
            async def test_timeouts(pubsub_sqlite_bus, pubsub_clock):
                @pubsub_sqlite_bus.subscribe(OrderPlaced, name="busy", timeout=5)
                async def busy(event, ctx):
                    for n in range(10):
                        await ctx.publish(OrderShipped(f"{event.order_id}-{n}"))

                @pubsub_sqlite_bus.subscribe(OrderShipped, name="stuck", timeout=2)
                async def stuck(event):
                    if event.order_id == "B":
                        await asyncio.sleep(3600)

                busy_result = await asyncio.wait_for(
                    pubsub_sqlite_bus.publish_async(OrderPlaced("A")), 10
                )
                assert busy_result.ok, busy_result
                stuck_result = await asyncio.wait_for(
                    pubsub_sqlite_bus.publish_async(OrderShipped("B")), 10
                )
                assert [o.status for o in stuck_result.outcomes] == ["timed_out"]
            """
        )
        project.run().assert_outcomes(passed=1)


class TestWithoutPytestAsyncio:
    """The plugin loads without pytest-asyncio; its async fixtures say what is missing."""

    def test_async_fixture_fails_with_one_line(self, pytester: pytest.Pytester) -> None:
        """With pytest_asyncio not importable, the sync fixtures still work and an
        async fixture fails naming the package to install."""
        pytester.makeconftest(
            """
            import sys
            sys.modules["pytest_asyncio"] = None  # as if it were not installed
            pytest_plugins = ["plugins.pytest_plugin"]
            """
        )
        pytester.makepyfile(
            test_user="""
            def test_clock(pubsub_clock):
                assert pubsub_clock.monotonic() == 0

            def test_bus(pubsub_bus):
                pass
            """
        )
        result = pytester.runpytest_subprocess(
            "-p", "no:pubsub", "-p", "no:asyncio", "-p", "no:cacheprovider"
        )
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(
            [
                "*pubsub_bus is an async fixture of pubsub's pytest plugin and needs "
                "pytest-asyncio: pip install pytest-asyncio*"
            ]
        )
