"""Prometheus: the bus's metrics for Prometheus (extra ``prometheus``), registered as
the ``prometheus`` entry point of the ``pubsub.metrics`` group. prometheus-client is
imported only when a collector is made; ``pubsub run --metrics-addr`` serves it."""

from .address import DEFAULT_HOST as DEFAULT_HOST
from .address import ListenAddress as ListenAddress
from .address import parse_address as parse_address
from .collector import BREAKER_VALUES as BREAKER_VALUES
from .collector import DURATION_BUCKETS as DURATION_BUCKETS
from .collector import PrometheusMetrics as PrometheusMetrics
from .collector import WorkerReading as WorkerReading
from .server import MetricsServer as MetricsServer
from .server import MetricsServerError as MetricsServerError

__all__ = [
    "BREAKER_VALUES",
    "DEFAULT_HOST",
    "DURATION_BUCKETS",
    "ListenAddress",
    "MetricsServer",
    "MetricsServerError",
    "PrometheusMetrics",
    "WorkerReading",
    "parse_address",
]
