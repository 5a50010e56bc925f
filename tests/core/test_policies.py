"""Policies: timeouts, concurrency limits, retries with exact full-jitter backoff and the
circuit breaker, all driven by FakeClock and ScriptedRandom."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import pytest

from core import (
    BreakerOpenError,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    DeadLetterReason,
    Event,
    EventBus,
    HandlerPolicy,
    OutcomeStatus,
    RetryPolicy,
    current_dispatch,
)
from core.testing import FakeClock, ScriptedRandom


@dataclass(frozen=True, slots=True)
class Job(Event, type_name="tests.core.policies.Job"):
    n: int = 0


class Flaky:
    """Fails with ``error`` for the first ``failures`` calls, then succeeds."""

    def __init__(self, failures: int, error: type[Exception] = ValueError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.attempts: list[int] = []

    async def __call__(self, event: Job) -> None:
        self.calls += 1
        ctx = current_dispatch()
        assert ctx is not None
        self.attempts.append(ctx.attempt)
        if self.calls <= self.failures:
            raise self.error(f"call {self.calls}")


class TestRetryPolicy:
    def test_backoff_is_capped_exponential_full_jitter(self) -> None:
        """The n-th retry waits uniform(0, min(cap, base * multiplier ** (n - 1)))."""
        policy = RetryPolicy(max_attempts=5, base=0.1, multiplier=3.0, cap=0.5)
        rng = ScriptedRandom([0.5])
        delays = [policy.backoff(n, rng) for n in (1, 2, 3, 4)]
        assert rng.calls == [(0.0, 0.1), (0.0, pytest.approx(0.3)), (0.0, 0.5), (0.0, 0.5)]
        assert delays == [0.05, pytest.approx(0.15), 0.25, 0.25]

    @pytest.mark.parametrize(
        ("exc", "retryable"),
        [
            pytest.param(ConnectionError(), True, id="retry-on"),
            pytest.param(ConnectionResetError(), False, id="never-retry-subclass"),
            pytest.param(ValueError(), False, id="not-listed"),
        ],
    )
    def test_retryable(self, exc: Exception, retryable: bool) -> None:
        """An error is retried when it is in retry_on and not in never_retry."""
        policy = RetryPolicy(retry_on=(ConnectionError,), never_retry=(ConnectionResetError,))
        assert policy.retryable(exc) is retryable

    @pytest.mark.parametrize(
        "kwargs",
        [
            pytest.param({"max_attempts": 0}, id="no-attempts"),
            pytest.param({"base": -1.0}, id="negative-base"),
            pytest.param({"multiplier": 0.5}, id="shrinking"),
        ],
    )
    def test_invalid_retry_policy(self, kwargs: dict[str, float]) -> None:
        """Nonsensical retry settings are refused."""
        with pytest.raises(ValueError):
            RetryPolicy(**kwargs)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "kwargs",
        [
            pytest.param({"timeout": 0.0}, id="zero-timeout"),
            pytest.param({"max_concurrency": 0}, id="zero-concurrency"),
        ],
    )
    def test_invalid_handler_policy(self, kwargs: dict[str, float]) -> None:
        """A zero timeout or concurrency limit is refused."""
        with pytest.raises(ValueError):
            HandlerPolicy(**kwargs)  # type: ignore[arg-type]


class TestRetriesOnTheBus:
    async def test_exact_backoff_delays_then_exhausted(self) -> None:
        """Every attempt fails: the bus sleeps the exact jittered delays and dead-letters."""
        clock, rng = FakeClock(), ScriptedRandom([0.5, 1.0, 0.25])
        flaky = Flaky(failures=10)
        async with EventBus(clock=clock, rng=rng) as bus:
            policy = RetryPolicy(max_attempts=4, base=0.1, multiplier=2.0, cap=0.3)
            bus.subscribe(Job, name="flaky", retry=policy)(flaky)
            result = await bus.publish_async(Job())
            (letter,) = await bus.dead_letters.list_dead_letters()
        (outcome,) = result.outcomes
        assert rng.calls == [(0.0, 0.1), (0.0, 0.2), (0.0, 0.3)]
        assert clock.sleeps == [0.05, 0.2, 0.075]
        assert (outcome.status, outcome.attempts) == (OutcomeStatus.FAILED, 4)
        assert flaky.attempts == [1, 2, 3, 4]
        assert letter.reason is DeadLetterReason.EXHAUSTED
        assert letter.attempts == 4
        assert letter.message == "call 4"

    async def test_success_after_retries(self) -> None:
        """A handler that succeeds on its third attempt reports ok with three attempts."""
        clock = FakeClock()
        flaky = Flaky(failures=2)
        async with EventBus(clock=clock, rng=ScriptedRandom([1.0])) as bus:
            bus.subscribe(Job, name="flaky", retry=RetryPolicy(max_attempts=5, base=1.0))(flaky)
            result = await bus.publish_async(Job())
            assert await bus.dead_letters.count_dead_letters() == 0
        assert (result.outcomes[0].status, result.outcomes[0].attempts) == (OutcomeStatus.OK, 3)
        assert clock.sleeps == [1.0, 2.0]
        snap = bus.metrics.snapshot()["handlers"]["flaky"]
        assert (snap["retried"], snap["succeeded"], snap["failed"]) == (2, 1, 0)

    @pytest.mark.parametrize(
        "policy",
        [
            pytest.param(RetryPolicy(max_attempts=5, retry_on=(ConnectionError,)), id="retry-on"),
            pytest.param(RetryPolicy(max_attempts=5, never_retry=(KeyError,)), id="never-retry"),
        ],
    )
    async def test_non_retryable_error_gives_up_at_once(self, policy: RetryPolicy) -> None:
        """An error outside retry_on or inside never_retry is not retried."""
        clock = FakeClock()
        flaky = Flaky(failures=10, error=KeyError)
        async with EventBus(clock=clock) as bus:
            bus.subscribe(Job, name="flaky", retry=policy)(flaky)
            result = await bus.publish_async(Job())
            (letter,) = await bus.dead_letters.list_dead_letters()
        assert flaky.calls == 1
        assert clock.sleeps == []
        assert result.outcomes[0].attempts == 1
        assert letter.reason is DeadLetterReason.NOT_RETRYABLE

    async def test_timeouts_are_retried_and_the_last_is_reported(self) -> None:
        """Each attempt times out; the outcome is timed_out after max_attempts."""
        never = asyncio.Event()
        calls = 0

        async def stuck(event: Job) -> None:
            nonlocal calls
            calls += 1
            await never.wait()

        clock = FakeClock()
        async with EventBus(clock=clock) as bus:
            bus.subscribe(Job, name="stuck", timeout=0.01, retry=2)(stuck)
            result = await bus.publish_async(Job())
            (letter,) = await bus.dead_letters.list_dead_letters()
        assert calls == 2
        assert result.outcomes[0].status is OutcomeStatus.TIMED_OUT
        assert isinstance(result.outcomes[0].error, TimeoutError)
        assert letter.reason is DeadLetterReason.TIMEOUT
        assert letter.attempts == 2


class TestTimeout:
    async def test_handler_over_its_timeout_is_timed_out(self) -> None:
        """A handler awaiting forever with timeout=0.01 ends as timed_out, not hung."""
        never = asyncio.Event()

        async def stuck(event: Job) -> None:
            await never.wait()

        async with EventBus() as bus:
            bus.subscribe(Job, name="stuck", timeout=0.01)(stuck)
            result = await bus.publish_async(Job())
        (outcome,) = result.outcomes
        assert outcome.status is OutcomeStatus.TIMED_OUT
        assert outcome.attempts == 1
        assert bus.metrics.snapshot()["handlers"]["stuck"]["timed_out"] == 1

    async def test_fast_handler_under_a_timeout_is_ok(self) -> None:
        """A handler that finishes within its timeout reports ok."""

        async def quick(event: Job) -> None:
            await asyncio.sleep(0)

        async with EventBus() as bus:
            bus.subscribe(Job, name="quick", timeout=5.0)(quick)
            result = await bus.publish_async(Job())
        assert result.ok

    async def test_fake_clock_waits_for_a_sync_handler_in_the_executor(self) -> None:
        """The autojumping fake clock does not jump to a sync handler's timeout while the
        handler runs on its thread (the loop is idle then, but not waiting on time); the
        handler's own sleep on the clock still jumps at once."""
        clock = FakeClock()
        entered, release = threading.Event(), threading.Event()

        def blocking(event: Job) -> str:
            entered.set()
            assert release.wait(10)
            return "done"

        async def sleeper(event: Job) -> None:
            await clock.sleep(60)

        async with EventBus(clock=clock) as bus:
            bus.subscribe(Job, name="blocking", timeout=5.0)(blocking)
            bus.subscribe(Job, name="sleeper", timeout=120.0)(sleeper)
            publish = asyncio.ensure_future(bus.publish_async(Job()))
            for _ in range(500):  # far more loop turns than the clock needs to call idle
                await asyncio.sleep(0)
            assert entered.is_set()
            assert clock.monotonic() == 0.0
            release.set()
            result = await asyncio.wait_for(publish, 10)
        assert result.ok, result.outcomes
        assert clock.sleeps == [60]
        assert clock.monotonic() == 60.0
        assert [o.value for o in result.outcomes] == ["done", None]


class TestMaxConcurrency:
    @pytest.mark.parametrize("limit", [pytest.param(1, id="one"), pytest.param(3, id="three")])
    async def test_at_most_n_run_at_once_under_100_publishes(self, limit: int) -> None:
        """100 concurrent publishes never have more than max_concurrency handlers running."""
        gate = asyncio.Event()
        reached = asyncio.Event()
        running = peak = 0

        async def gated(event: Job) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            if running == limit:
                reached.set()
            await gate.wait()
            running -= 1

        async with EventBus() as bus:
            bus.subscribe(Job, name="gated", max_concurrency=limit)(gated)
            publishes = [asyncio.ensure_future(bus.publish_async(Job(i))) for i in range(100)]
            await reached.wait()
            for _ in range(5):  # every publish has had its turn to try to enter
                await asyncio.sleep(0)
            assert running == limit
            gate.set()
            results = await asyncio.gather(*publishes)
        assert peak == limit
        assert all(r.ok for r in results)


class TestCircuitBreakerUnit:
    def test_full_cycle(self) -> None:
        """closed -> open after N failures -> half-open after cool-down -> closed on success."""
        clock = FakeClock()
        changes: list[BreakerState] = []
        breaker = CircuitBreaker(
            BreakerPolicy(failure_threshold=2, reset_timeout=10.0), clock, changes.append
        )
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.state is BreakerState.CLOSED
        breaker.record_failure()
        assert breaker.state is BreakerState.OPEN
        assert not breaker.allow()
        clock.advance(9.999)
        assert not breaker.allow()
        clock.advance(0.001)
        assert breaker.state is BreakerState.HALF_OPEN
        assert breaker.allow()
        assert not breaker.allow()  # one probe only
        breaker.record_success()
        assert breaker.state is BreakerState.CLOSED
        assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]

    def test_failed_probe_reopens(self) -> None:
        """A failed half-open probe opens the breaker again for a full cool-down."""
        clock = FakeClock()
        breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1, reset_timeout=5.0), clock)
        breaker.record_failure()
        clock.advance(5.0)
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.state is BreakerState.OPEN
        clock.advance(4.0)
        assert not breaker.allow()
        clock.advance(1.0)
        assert breaker.allow()

    def test_success_resets_the_failure_count(self) -> None:
        """Only consecutive failures count towards opening."""
        breaker = CircuitBreaker(BreakerPolicy(failure_threshold=2), FakeClock())
        breaker.record_failure()
        breaker.record_success()
        breaker.record_failure()
        assert breaker.state is BreakerState.CLOSED
        assert breaker.consecutive_failures == 1


class TestBreakerOnTheBus:
    async def test_open_breaker_refuses_then_recovers(self) -> None:
        """N failures open it; refused calls are rejected and dead-lettered; a probe closes it."""
        clock = FakeClock()
        flaky = Flaky(failures=3)
        async with EventBus(clock=clock) as bus:
            policy = BreakerPolicy(failure_threshold=3, reset_timeout=10.0)
            bus.subscribe(Job, name="guarded", breaker=policy)(flaky)
            for i in range(3):
                assert (await bus.publish_async(Job(i))).outcomes[0].status is OutcomeStatus.FAILED
            assert bus.breaker_state("guarded") is BreakerState.OPEN
            assert bus.metrics.snapshot()["handlers"]["guarded"]["breaker"] == "open"

            refused = (await bus.publish_async(Job(3))).outcomes[0]
            assert flaky.calls == 3  # the handler was not called
            assert refused.status is OutcomeStatus.REJECTED
            assert refused.attempts == 0
            assert isinstance(refused.error, BreakerOpenError)
            letters = await bus.dead_letters.list_dead_letters()
            assert [entry.reason for entry in letters][-1] is DeadLetterReason.BREAKER_OPEN

            clock.advance(10.0)
            assert bus.breaker_state("guarded") is BreakerState.HALF_OPEN
            assert (await bus.publish_async(Job(4))).ok
            assert bus.breaker_state("guarded") is BreakerState.CLOSED
            snap = bus.metrics.snapshot()["handlers"]["guarded"]
        assert snap["breaker"] == "closed"
        assert snap["rejected"] == 1
        assert snap["failed"] == 3
        assert snap["breaker_transitions"] == 3

    async def test_half_open_admits_exactly_the_configured_probes(self) -> None:
        """With half_open_max_calls=2, two concurrent probes run and the third is rejected."""
        clock = FakeClock()
        gate = asyncio.Event()
        failing = True
        calls = 0

        async def handler(event: Job) -> None:
            nonlocal calls
            calls += 1
            if failing:
                raise ValueError("down")
            await gate.wait()

        async with EventBus(clock=clock) as bus:
            policy = BreakerPolicy(failure_threshold=1, reset_timeout=1.0, half_open_max_calls=2)
            bus.subscribe(Job, name="probed", breaker=policy)(handler)
            await bus.publish_async(Job())
            failing = False
            clock.advance(1.0)
            probes = [asyncio.ensure_future(bus.publish_async(Job(i))) for i in range(3)]
            for _ in range(3):
                await asyncio.sleep(0)
            gate.set()
            results = await asyncio.gather(*probes)
        statuses = sorted(r.outcomes[0].status for r in results)
        assert statuses == [OutcomeStatus.OK, OutcomeStatus.OK, OutcomeStatus.REJECTED]
        assert calls == 3  # the first failure and two probes
        assert bus.breaker_state("probed") is BreakerState.CLOSED

    async def test_failed_probe_opens_again(self) -> None:
        """A failing half-open probe opens the breaker again and later calls are rejected."""
        clock = FakeClock()
        flaky = Flaky(failures=10)
        async with EventBus(clock=clock) as bus:
            policy = BreakerPolicy(failure_threshold=1, reset_timeout=2.0)
            bus.subscribe(Job, name="down", breaker=policy)(flaky)
            await bus.publish_async(Job())
            clock.advance(2.0)
            probe = (await bus.publish_async(Job())).outcomes[0]
            again = (await bus.publish_async(Job())).outcomes[0]
            assert bus.metrics.snapshot()["handlers"]["down"]["breaker"] == "open"
        assert probe.status is OutcomeStatus.FAILED
        assert again.status is OutcomeStatus.REJECTED
        assert flaky.calls == 2
