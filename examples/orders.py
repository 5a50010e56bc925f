"""Orders: an example of events with inheritance, a retried handler and a handler that
fails into the dead-letter queue.

    pubsub publish --app examples/orders.py OrderPlaced --data '{"order_id": "A-1", "sku": "BOOK", "total": "12.50"}'
    pubsub run examples/orders.py --once
    pubsub dlq list

* ``audit`` subscribes to the base class ``OrderEvent``, so it receives every order
  event (subscription by inheritance).
* ``charge`` fails on its first attempt (a flaky payment gateway) and succeeds on the
  retry its ``RetryPolicy`` allows.
* ``reserve_stock`` gives up on sku ``"GHOST"`` while the warehouse is closed: after its
  attempts the event lands in the DLQ. Set ``ORDERS_WAREHOUSE_OPEN=1`` and
  ``pubsub dlq retry --all --app examples/orders.py`` resolves it.

Every handled event is appended as a JSON line to the file ``ORDERS_LOG`` names (if
set), so that tests can count deliveries.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from decimal import Decimal

from core import Event, RetryPolicy, Router, current_dispatch

router = Router(name="orders")


@dataclass(frozen=True, slots=True)
class OrderEvent(Event, type_name="OrderEvent"):
    """Base of every order event."""

    order_id: str


@dataclass(frozen=True, slots=True)
class OrderPlaced(OrderEvent, type_name="OrderPlaced"):
    sku: str
    total: Decimal


@dataclass(frozen=True, slots=True)
class OrderShipped(OrderEvent, type_name="OrderShipped"):
    carrier: str = "post"


def _log(handler: str, event: OrderEvent) -> None:
    path = os.environ.get("ORDERS_LOG")
    if path:
        ctx = current_dispatch()
        line = {
            "handler": handler,
            "type": event.event_type,
            "id": str(event.id),
            "order_id": event.order_id,
            "attempt": ctx.attempt if ctx else None,
        }
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


@router.subscribe(OrderEvent, name="orders.audit")
async def audit(event: OrderEvent) -> None:
    """Receives OrderPlaced and OrderShipped: it subscribes to their base class."""
    _log("audit", event)


@router.subscribe(
    OrderPlaced, name="orders.charge", retry=RetryPolicy(max_attempts=3, base=0.01, cap=0.05)
)
async def charge(event: OrderPlaced) -> None:
    """A flaky gateway: the first attempt fails, the retry succeeds."""
    ctx = current_dispatch()
    if ctx is not None and ctx.attempt == 1 and not ctx.redelivery:
        raise ConnectionError(f"payment gateway timed out for order {event.order_id}")
    _log("charge", event)


class WarehouseClosedError(RuntimeError):
    """The warehouse cannot reserve this sku right now."""


@router.subscribe(
    OrderPlaced, name="orders.reserve_stock", retry=RetryPolicy(max_attempts=2, base=0.01)
)
async def reserve_stock(event: OrderPlaced) -> None:
    """Fails into the DLQ for sku GHOST unless ORDERS_WAREHOUSE_OPEN=1."""
    if event.sku == "GHOST" and os.environ.get("ORDERS_WAREHOUSE_OPEN") != "1":
        raise WarehouseClosedError(f"no stock of {event.sku!r} for order {event.order_id}")
    _log("reserve_stock", event)
