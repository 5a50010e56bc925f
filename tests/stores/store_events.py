"""Store events: the event classes and fake wall clock the store contract suite uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from core.events import Event


@dataclass(frozen=True, slots=True)
class OrderPlaced(Event, type_name="contract.order_placed"):
    order_id: str
    total: int = 0


@dataclass(frozen=True, slots=True)
class OrderShipped(Event, type_name="contract.order_shipped", version=2):
    order_id: str


@dataclass(frozen=True, slots=True)
class ExpressOrderPlaced(OrderPlaced, type_name="contract.express_order_placed"):
    """A subclass: reads by type can include it when the caller asks for subtypes."""

    courier: str = "bike"


class WallClock:
    """A wall clock (seconds since the epoch) that moves only when told to."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def failure_time() -> datetime:
    return datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
