"""Tests of the orders and shipping examples, written as a user writes them: with the
fixtures of pubsub's pytest plugin, which pytest loads by itself once pubsub is
installed (nothing to import, nothing to set up).

    .venv/bin/python -m pytest examples/test_orders.py

``pubsub_run`` runs a handlers file as ``pubsub run`` would load it, ``pubsub_recorder``
says what was published and handled, and ``pubsub_clock`` is a fake clock: the retry
below waits its backoff in no real time, and the clock shows exactly how long.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from orders import OrderEvent, OrderPlaced, OrderShipped, WarehouseClosedError, audit, charge
from shipping import OrderPlaced as ShippingOrderPlaced
from shipping import OrderShipped as ShippingOrderShipped

ORDERS = Path(__file__).with_name("orders.py")
SHIPPING = Path(__file__).with_name("shipping.py")


def placed(order_id: str, sku: str = "PEN") -> OrderPlaced:
    return OrderPlaced(order_id, sku=sku, total=Decimal("1.00"))


@pytest.mark.asyncio
async def test_charge_is_retried_after_the_gateway_fails(pubsub_run, pubsub_clock):
    """The first charge fails, the retry succeeds after its backoff (0.01 s, exactly)."""
    (result,) = await pubsub_run(ORDERS, [placed("A-1")])
    assert result.ok
    charged = next(o for o in result if o.handler == "orders.charge")
    assert charged.attempts == 2
    assert pubsub_clock.sleeps == [0.01]
    assert pubsub_clock.monotonic() == 0.01


@pytest.mark.asyncio
async def test_ghost_sku_is_dead_lettered(pubsub_run, pubsub_recorder, pubsub_bus):
    """A closed warehouse: reserve_stock gives up after two attempts, into the DLQ."""
    await pubsub_run(ORDERS, [placed("A-1"), placed("G-1", sku="GHOST")])
    (ghost,) = pubsub_recorder.received("orders.reserve_stock", OrderPlaced, status="failed")
    assert ghost.order_id == "G-1"
    (letter,) = await pubsub_bus.dead_letters.list_dead_letters()
    assert (letter.handler, letter.attempts) == ("orders.reserve_stock", 2)
    assert letter.error_type.endswith(WarehouseClosedError.__name__)


@pytest.mark.asyncio
async def test_open_warehouse_reserves_the_ghost(pubsub_run, pubsub_recorder, monkeypatch):
    """With ORDERS_WAREHOUSE_OPEN=1 every order is reserved."""
    monkeypatch.setenv("ORDERS_WAREHOUSE_OPEN", "1")
    results = await pubsub_run(ORDERS, [placed("G-1", sku="GHOST")])
    assert [r.ok for r in results] == [True]
    pubsub_recorder.received("orders.reserve_stock", OrderPlaced, count=1, status="ok")


@pytest.mark.asyncio
async def test_audit_sees_every_order_event(pubsub_run, pubsub_recorder):
    """audit subscribes to the base class: it receives placed and shipped orders."""
    await pubsub_run(ORDERS, [placed("A-1"), OrderShipped("A-1")])
    events = pubsub_recorder.received(audit, OrderEvent, count=2)
    assert [type(e) for e in events] == [OrderPlaced, OrderShipped]
    pubsub_recorder.received(charge, OrderPlaced, count=1)


@pytest.mark.asyncio
async def test_shipping_follow_up_is_stored_and_chained(
    pubsub_sqlite_bus, pubsub_store, pubsub_run
):
    """On a SQLite store the handler's follow-up is appended after the order, caused
    by it, and handled by notify."""
    order = ShippingOrderPlaced("A-1")
    (result,) = await pubsub_run(SHIPPING, [order], bus=pubsub_sqlite_bus)
    assert (result.seq, result.values) == (1, {"shipping.ship": 2})
    stored = await pubsub_store.get(2)
    shipped = stored.decode(pubsub_sqlite_bus.registry)
    assert isinstance(shipped, ShippingOrderShipped)
    assert shipped.causation_id == order.id
