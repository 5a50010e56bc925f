"""Codec benchmark: microseconds per encode and per decode of one event.

Two events: a flat one (four scalar fields on top of the base's id, created_at and causal
ids) and a nested one (a list of line dataclasses, an optional nested dataclass, a dict
and a tuple). Encode is ``core.codec.encode``; decode is the replay path, a stored
record's ``decode`` (type name lookup, ``orjson.loads`` and building the instance).

Each figure is the median of ``--repeat`` timed batches of ``--number`` calls. The
machine may be shared: compare figures from one run, not across runs.

Run ``python benchmarks/codec.py`` (``--json`` for machine-readable output).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.codec import encode
from core.events import Event
from core.store import StoredEvent


@dataclass(frozen=True, slots=True)
class Flat(Event, type_name="bench.codec.flat"):
    order_id: str
    qty: int
    price: float
    paid: bool


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    qty: int
    price: float


@dataclass(frozen=True, slots=True)
class Address:
    street: str
    postcode: str | None = None


@dataclass(frozen=True, slots=True)
class Nested(Event, type_name="bench.codec.nested"):
    order_id: str
    lines: list[Line]
    address: Address | None
    totals: dict[str, int]
    pair: tuple[int, str]


def flat_event() -> Flat:
    return Flat("order-00000042", 3, 19.99, True)


def nested_event() -> Nested:
    return Nested(
        "order-00000042",
        [Line("SKU-00001", 1, 9.5), Line("SKU-00002", 2, 4.25), Line("SKU-00003", 5, 0.5)],
        Address("Main St 1", "1000"),
        {"net": 1999, "tax": 380},
        (7, "seven"),
    )


def record_of(event: Event) -> StoredEvent:
    now = datetime.now(UTC)
    return StoredEvent(
        seq=1,
        event_id=event.id,
        type_name=event.event_type,
        version=event.event_version,
        created_at=event.created_at,
        appended_at=now,
        payload=encode(event),
        correlation_id=event.correlation_id,
        causation_id=event.causation_id,
    )


def per_call_us(call: Callable[[], Any], number: int, repeat: int) -> float:
    """Median over ``repeat`` batches of the microseconds one call takes."""
    call()  # warm caches (decode plans) outside the timing
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        samples.append((time.perf_counter() - t0) / number * 1e6)
    return statistics.median(samples)


def run(number: int, repeat: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    for label, event in (("flat", flat_event()), ("nested", nested_event())):
        record = record_of(event)
        assert record.decode() == event, f"{label} does not round-trip"
        figures[f"{label}.encode_us"] = per_call_us(lambda e=event: encode(e), number, repeat)
        figures[f"{label}.decode_us"] = per_call_us(record.decode, number, repeat)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per timed batch")
    parser.add_argument("--repeat", type=int, default=15, help="timed batches per figure")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = run(args.number, args.repeat)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"median of {args.repeat} batches of {args.number:,} calls (µs per call)")
    for label in ("flat", "nested"):
        enc, dec = figures[f"{label}.encode_us"], figures[f"{label}.decode_us"]
        print(
            f"  {label:<7} encode {enc:6.2f} µs   decode {dec:6.2f} µs"
            f"   ({1e6 / dec:,.0f} decodes/s)"
        )


if __name__ == "__main__":
    main()
