"""Shipping: handlers that publish follow-up events on the bus that dispatches them.

    pubsub publish --app examples/shipping.py shipping.order_placed --data '{"order_id": "A-1"}'
    pubsub run examples/shipping.py --once
    pubsub events show 1

``ship`` takes a second parameter, a ``HandlerContext``, and publishes ``OrderShipped``
through it. Under ``pubsub run`` that is the worker's own bus: the follow-up is appended
to the log durably, caused by the order it answers (its causation id is the order's id,
its correlation id the chain's root) and handled by ``notify`` in the same worker.
``events show 1`` draws the chain. ``ship`` returns the follow-up's sequence number: a
handler's return value is its outcome's ``value``.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import Event, HandlerContext, Router

router = Router(name="shipping")


@dataclass(frozen=True, slots=True)
class OrderPlaced(Event, type_name="shipping.order_placed"):
    order_id: str


@dataclass(frozen=True, slots=True)
class OrderShipped(Event, type_name="shipping.order_shipped"):
    order_id: str
    carrier: str = "post"


@router.subscribe(OrderPlaced)
async def ship(event: OrderPlaced, ctx: HandlerContext[OrderPlaced]) -> int | None:
    """Ship the order and say so: a follow-up event on the dispatching bus."""
    shipped = await ctx.publish(OrderShipped(event.order_id))
    return shipped.seq


@router.subscribe(OrderShipped)
async def notify(event: OrderShipped) -> str:
    """Tell the customer (here: return the message)."""
    return f"order {event.order_id} left with {event.carrier}"
