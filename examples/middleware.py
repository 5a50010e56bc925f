"""Middleware: an example of ``async def mw(event, call_next)`` around dispatch. The
module exposes a configured ``EventBus``; ``pubsub run examples/middleware.py:bus``
takes its subscriptions and its middleware onto the command line's store.

    pubsub run examples/middleware.py:bus --once

``timing`` reports how long each event's handlers took, and how many failed, on
standard error.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable, Sequence

from orders import OrderEvent

from core import Event, EventBus, HandlerOutcome, Router

router = Router(name="middleware-example")
seen: list[str] = []


@router.subscribe(OrderEvent, name="middleware.remember")
async def remember(event: OrderEvent) -> None:
    seen.append(event.order_id)


async def timing(
    event: Event, call_next: Callable[[Event], Awaitable[Sequence[HandlerOutcome]]]
) -> Sequence[HandlerOutcome]:
    """Time the handlers of one event and report failures."""
    start = time.perf_counter()
    outcomes = await call_next(event)
    failed = sum(not o.ok for o in outcomes)
    took = (time.perf_counter() - start) * 1e3
    print(
        f"middleware: {event.event_type} {event.id} took {took:.2f} ms, "
        f"{len(outcomes)} handler(s), {failed} failed",
        file=sys.stderr,
        flush=True,
    )
    return outcomes


bus = EventBus()
bus.include(router)
bus.add_middleware(timing)
