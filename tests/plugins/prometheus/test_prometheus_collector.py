"""The Prometheus collector: what a bus records shows up as counters, histograms and
gauges (read back with prometheus-client's own text parser), labels are names only, two
collectors never share a series, and prometheus-client is imported only when used."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass

import orjson
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core import BreakerPolicy, Event, EventBus, OutcomeStatus, PluginLoadError, RetryPolicy
from core.entrypoints import load_plugin
from core.memory import MemoryEventStore
from core.testing import FakeClock
from plugins.prometheus import DURATION_BUCKETS, PrometheusMetrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics: PrometheusMetrics) -> Samples:
    """Every sample of the collector's exposition, parsed back from the text format."""
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@dataclass(frozen=True, slots=True)
class Sale(Event, type_name="tests.prometheus.Sale"):
    n: int = 0


@dataclass(frozen=True, slots=True)
class Refund(Event, type_name="tests.prometheus.Refund"):
    n: int = 0


SALE, REFUND = Sale.event_type, Refund.event_type


class TestThroughABus:
    async def test_outcomes_retries_dead_letters_and_durations(self) -> None:
        """Publishes per type, calls per outcome (ok, failed, timed_out, rejected),
        retries, dead letters and the duration histogram's count are what happened."""
        never = asyncio.Event()
        metrics = PrometheusMetrics()

        async def ok(event: Event) -> None:
            pass

        async def flaky(event: Sale) -> None:
            if event.n % 2:
                raise ValueError("odd")

        async def slow(event: Refund) -> None:
            await never.wait()

        async def broken(event: Refund) -> None:
            raise KeyError("x")

        async with EventBus(clock=FakeClock(), metrics=metrics) as bus:
            bus.subscribe(Event, name="ok")(ok)
            bus.subscribe(Sale, name="flaky", retry=RetryPolicy(max_attempts=2, base=0))(flaky)
            bus.subscribe(Refund, name="slow", timeout=0.01)(slow)
            bus.subscribe(Refund, name="broken", breaker=BreakerPolicy(failure_threshold=1))(broken)
            for n in range(4):
                await bus.publish_async(Sale(n))
            await bus.publish_async(Refund())
            await bus.publish_async(Refund())
        s = scrape(metrics)
        calls = "pubsub_handler_calls_total"
        assert value(s, "pubsub_events_published_total", type=SALE) == 4
        assert value(s, "pubsub_events_published_total", type=REFUND) == 2
        assert value(s, calls, handler="ok", type=SALE, outcome="ok") == 4
        assert value(s, calls, handler="ok", type=REFUND, outcome="ok") == 2
        assert value(s, calls, handler="flaky", type=SALE, outcome="ok") == 2
        assert value(s, calls, handler="flaky", type=SALE, outcome="failed") == 2
        assert value(s, "pubsub_handler_retries_total", handler="flaky", type=SALE) == 2
        assert value(s, "pubsub_dead_letters_total", handler="flaky", type=SALE) == 2
        assert value(s, calls, handler="slow", type=REFUND, outcome="timed_out") == 2
        assert value(s, calls, handler="broken", type=REFUND, outcome="failed") == 1
        assert value(s, calls, handler="broken", type=REFUND, outcome="rejected") == 1
        assert value(s, "pubsub_dead_letters_total", handler="broken", type=REFUND) == 2
        count = "pubsub_handler_duration_seconds_count"
        assert value(s, count, handler="flaky", type=SALE) == 4
        assert value(s, count, handler="slow", type=REFUND) == 2
        assert value(s, "pubsub_breaker_state", handler="broken") == 2  # open
        assert value(s, "pubsub_breaker_transitions_total", handler="broken", state="open") == 1

    async def test_a_worker_bus_counts_every_delivery(self) -> None:
        """On a bus with a store, even a lone plain handler's events are counted as
        published (the store path reports each dispatch to the collector)."""
        metrics = PrometheusMetrics()
        async with EventBus(MemoryEventStore(), metrics=metrics) as bus:
            bus.subscribe(Sale, name="lone")(_noop)
            for n in range(5):
                await bus.publish_async(Sale(n))
        s = scrape(metrics)
        assert value(s, "pubsub_events_published_total", type=SALE) == 5
        assert value(s, "pubsub_handler_calls_total", handler="lone", type=SALE, outcome="ok") == 5

    @pytest.mark.parametrize("handlers", [1, 3])
    @pytest.mark.parametrize("sync", [False, True])
    async def test_a_store_less_bus_counts_publishes_of_plain_handlers(
        self, handlers: int, sync: bool
    ) -> None:
        """Without a store, publishes to plain handlers (the lean paths: one awaited or
        called inline, several as tasks) reach the type counter once per event."""
        metrics = PrometheusMetrics()
        async with EventBus(metrics=metrics) as bus:
            for k in range(handlers):
                if sync:
                    bus.subscribe(Sale, name=f"lone{k}", inline=True)(lambda e: None)
                else:
                    bus.subscribe(Sale, name=f"lone{k}")(_noop)
            for n in range(3):
                await bus.publish_async(Sale(n))
        s = scrape(metrics)
        assert value(s, "pubsub_events_published_total", type=SALE) == 3
        for k in range(handlers):
            calls = value(
                s, "pubsub_handler_calls_total", handler=f"lone{k}", type=SALE, outcome="ok"
            )
            assert calls == 3

    async def test_breaker_gauge_follows_each_transition(self) -> None:
        """The breaker gauge reads 2 when open, 1 half-open, 0 closed again, and each
        transition is counted by the state it entered."""
        clock = FakeClock(autojump=False)
        metrics = PrometheusMetrics()
        fail = [True]

        async def guarded(event: Sale) -> None:
            if fail[0]:
                raise RuntimeError("down")

        policy = BreakerPolicy(failure_threshold=1, reset_timeout=10)
        async with EventBus(clock=clock, metrics=metrics) as bus:
            bus.subscribe(Sale, name="guarded", breaker=policy)(guarded)
            await bus.publish_async(Sale())
            assert value(scrape(metrics), "pubsub_breaker_state", handler="guarded") == 2
            clock.advance(10)
            fail[0] = False
            await bus.publish_async(Sale())  # the half-open probe succeeds
        s = scrape(metrics)
        assert value(s, "pubsub_breaker_state", handler="guarded") == 0
        transitions = "pubsub_breaker_transitions_total"
        for state in ("open", "half_open", "closed"):
            assert value(s, transitions, handler="guarded", state=state) == 1, state


class TestRecorders:
    def test_durations_land_in_their_buckets(self) -> None:
        """Each duration is counted in the first bucket at or above it and in every
        later one; count and sum cover all outcomes."""
        metrics = PrometheusMetrics()
        rec = metrics.for_handler("h", "T")
        rec.succeeded(0.0003)
        rec.failed(0.02, OutcomeStatus.FAILED)
        rec.failed(3.0, OutcomeStatus.TIMED_OUT)
        s = scrape(metrics)
        bucket = "pubsub_handler_duration_seconds_bucket"

        def le(bound: str) -> float | None:
            return value(s, bucket, handler="h", type="T", le=bound)

        assert (le("0.00025"), le("0.0005"), le("0.025"), le("5.0"), le("+Inf")) == (0, 1, 2, 3, 3)
        assert value(s, "pubsub_handler_duration_seconds_count", handler="h", type="T") == 3
        assert value(s, "pubsub_handler_duration_seconds_sum", handler="h", type="T") == (
            pytest.approx(3.0203)
        )
        calls = "pubsub_handler_calls_total"
        assert value(s, calls, handler="h", type="T", outcome="failed") == 1
        assert value(s, calls, handler="h", type="T", outcome="timed_out") == 1
        assert value(s, calls, handler="h", type="T", outcome="ok") == 1

    def test_custom_buckets(self) -> None:
        """``buckets=`` replaces the histogram's bounds."""
        metrics = PrometheusMetrics(buckets=(1.0, 2.0))
        metrics.for_handler("h", "T").succeeded(1.5)
        bounds = {
            dict(labels)["le"]
            for (name, labels) in scrape(metrics)
            if name == "pubsub_handler_duration_seconds_bucket"
        }
        assert bounds == {"1.0", "2.0", "+Inf"}
        assert len(DURATION_BUCKETS) > 2

    def test_buckets_are_sorted_and_need_one_bound(self) -> None:
        """Bounds given out of order are sorted (+Inf is always added, once); none at
        all is refused."""
        metrics = PrometheusMetrics(buckets=(2.0, 1.0, float("inf")))
        assert metrics.buckets == (1.0, 2.0)
        with pytest.raises(ValueError, match="at least one"):
            PrometheusMetrics(buckets=())

    def test_snapshot_is_a_plain_dict_of_the_counts(self) -> None:
        """snapshot() sums per handler and per type, and survives a JSON round trip."""
        metrics = PrometheusMetrics()
        metrics.for_event_type("T").published()
        rec = metrics.for_handler("h", "T")
        rec.succeeded(0.5)
        rec.retried()
        rec.failed(0.25, OutcomeStatus.REJECTED)
        rec.dead_lettered()
        snap = metrics.snapshot()
        row = snap["handlers"]["h"]
        assert (row["succeeded"], row["rejected"], row["retried"], row["dead_lettered"]) == (
            1,
            1,
            1,
            1,
        )
        assert row["duration"] == {"count": 2, "sum": 0.75}
        assert snap["event_types"]["T"]["published"] == 1
        assert snap["worker"] is None
        assert orjson.loads(orjson.dumps(snap)) == snap


class TestIsolationAndCardinality:
    async def test_two_collectors_never_share_a_series(self) -> None:
        """Two collectors in one process each count their own bus, and neither writes
        to prometheus-client's global registry."""
        a, b = PrometheusMetrics(), PrometheusMetrics()
        async with EventBus(MemoryEventStore(), metrics=a) as bus_a:
            bus_a.subscribe(Sale, name="h")(_noop)
            await bus_a.publish_async(Sale())
        async with EventBus(MemoryEventStore(), metrics=b) as bus_b:
            bus_b.subscribe(Sale, name="h")(_noop)
            for _ in range(3):
                await bus_b.publish_async(Sale())
        assert value(scrape(a), "pubsub_events_published_total", type=SALE) == 1
        assert value(scrape(b), "pubsub_events_published_total", type=SALE) == 3
        assert REGISTRY.get_sample_value("pubsub_events_published_total", {"type": SALE}) is None

    async def test_labels_are_names_never_ids(self) -> None:
        """Labels carry only type, handler, outcome (and bucket, breaker state, group);
        no event id appears anywhere, and more events add no series."""
        metrics = PrometheusMetrics()
        ids: list[str] = []

        async def flaky(event: Sale) -> None:
            if event.n % 3 == 0:
                raise ValueError(f"event {event.id} failed")

        async with EventBus(MemoryEventStore(), metrics=metrics) as bus:
            bus.subscribe(Sale, name="flaky", retry=RetryPolicy(max_attempts=2, base=0))(flaky)
            for n in range(6):
                event = Sale(n)
                ids.append(str(event.id))
                await bus.publish_async(event)
            await metrics.refresh(bus)
            series_before = set(scrape(metrics))
            for n in range(6, 60):
                event = Sale(n)
                ids.append(str(event.id))
                await bus.publish_async(event)
            await metrics.refresh(bus)
        samples = scrape(metrics)
        assert set(samples) == series_before
        names = {key for _, labels in samples for key, _ in labels}
        assert names <= {"type", "handler", "outcome", "le", "state", "group"}
        text = generate_latest(metrics.registry).decode()
        assert not any(event_id in text for event_id in ids)
        assert value(samples, "pubsub_events_published_total", type=SALE) == 60


class TestPlugin:
    def test_the_entry_point_is_the_collector(self) -> None:
        """The ``prometheus`` entry point of ``pubsub.metrics`` loads PrometheusMetrics."""
        assert load_plugin("pubsub.metrics", "prometheus") is PrometheusMetrics

    def test_prometheus_client_is_imported_only_when_a_collector_is_made(self) -> None:
        """Importing core, the command line and the plugin, and loading the entry point,
        import no prometheus_client; making a collector does."""
        code = (
            "import sys, core, pubsub_cli.app, plugins.prometheus\n"
            "from core.entrypoints import load_plugin\n"
            "factory = load_plugin('pubsub.metrics', 'prometheus')\n"
            "print('prometheus_client' in sys.modules)\n"
            "factory()\n"
            "print('prometheus_client' in sys.modules)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert out.stdout.split() == ["False", "True"]

    def test_missing_extra_says_what_to_install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without prometheus-client a collector cannot be made: a PluginLoadError
        that names the extra to install."""
        monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
        with pytest.raises(PluginLoadError, match=r"pip install 'pubsub-workbench\[prometheus\]'"):
            PrometheusMetrics()


async def _noop(event: Event) -> None:
    return None
