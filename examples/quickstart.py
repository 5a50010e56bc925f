"""Quick start: an orders app on the embedded SQLite store, end to end in one script.

Publishes a few orders durably, lets a flaky handler fail into the dead-letter queue,
then prints the log position of each event, the handlers' outcomes and the DLQ.
Run it with ``python examples/quickstart.py [path/to/store.db]``; the log is kept in
``./quickstart.db`` by default (a second run appends three more orders), so that the
``pubsub`` command can browse it afterwards::

    .venv/bin/pubsub events list --db quickstart.db
    .venv/bin/pubsub dlq list --db quickstart.db
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from core import BreakerPolicy, Event, EventBus, RetryPolicy, Router, open_store


@dataclass(frozen=True, slots=True)
class OrderEvent(Event, type_name="quickstart.OrderEvent"):
    order_id: str


@dataclass(frozen=True, slots=True)
class OrderPlaced(OrderEvent, type_name="quickstart.OrderPlaced"):
    total: Decimal


router = Router()
audit: list[str] = []


@router.subscribe(OrderEvent)
async def audit_log(event: OrderEvent) -> None:
    """Receives every order event, subclasses included."""
    audit.append(f"{event.event_type} {event.order_id}")


@router.subscribe(
    OrderPlaced,
    retry=RetryPolicy(max_attempts=2, base=0.01),
    breaker=BreakerPolicy(failure_threshold=5),
)
async def charge_card(event: OrderPlaced) -> None:
    """Fails for large orders, which end in the dead-letter queue after two attempts."""
    if event.total > 100:
        raise ValueError(f"card declined for {event.total}")


async def main(path: Path) -> None:
    store = await open_store(f"sqlite:///{path}")
    try:
        bus = EventBus(store, group="quickstart")
        bus.include(router)  # before the bus starts: start() catches up with these handlers
        async with bus:
            for order_id, total in (("o-1", "9.90"), ("o-2", "250.00"), ("o-3", "42.00")):
                result = await bus.publish_async(OrderPlaced(order_id, Decimal(total)))
                statuses = ", ".join(f"{o.handler.rsplit('.', 1)[-1]}={o.status}" for o in result)
                print(f"seq {result.seq}: {order_id} {total} -> {statuses}")
        for letter in await store.list_dead_letters():
            print(f"dead letter {letter.id}: seq {letter.seq} {letter.handler} {letter.message}")
        print(f"audit saw {len(audit)} events; the log holds {await store.last_seq()}")
    finally:
        await store.aclose()
    shown = str(path) if path.is_absolute() or path.parent != Path() else path.name
    print(f"the log is in {shown}: browse it with '.venv/bin/pubsub events list --db {shown}'")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("quickstart.db")))
