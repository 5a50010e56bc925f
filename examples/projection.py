"""Projection: an example read model with snapshots — revenue per sku, built from
``OrderPlaced`` events, saved with ``pubsub snapshot create`` and rebuilt with
``pubsub snapshot restore`` from the latest snapshot plus the events after it.

    pubsub snapshot create examples/projection.py
    pubsub snapshot restore examples/projection.py --show-state
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from orders import OrderPlaced

from core import Router

router = Router(name="projections")


class RevenueBySku:
    """A projection: a handler object with ``snapshot()`` and ``restore()``."""

    def __init__(self) -> None:
        self.revenue: dict[str, Decimal] = {}
        self.orders = 0

    async def __call__(self, event: OrderPlaced) -> None:
        self.revenue[event.sku] = self.revenue.get(event.sku, Decimal(0)) + event.total
        self.orders += 1

    def snapshot(self) -> dict[str, Any]:
        return {"orders": self.orders, "revenue": {k: str(v) for k, v in self.revenue.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.orders = int(state.get("orders", 0))
        self.revenue = {k: Decimal(v) for k, v in state.get("revenue", {}).items()}


revenue = RevenueBySku()
router.add(OrderPlaced, revenue, name="projections.revenue_by_sku")
