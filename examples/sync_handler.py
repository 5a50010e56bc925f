"""Sync handler: an example of a plain ``def`` handler. The bus runs it in a worker
thread so it never blocks the event loop (here it appends to a file, a blocking call).

    pubsub run examples/sync_handler.py --once

Each ``OrderPlaced`` becomes a CSV line in the file ``ORDERS_CSV`` names
(default ``orders.csv`` in the current folder).
"""

from __future__ import annotations

import os
import threading

from orders import OrderPlaced

from core import Router

router = Router(name="sync")


@router.subscribe(OrderPlaced, name="sync.write_csv")
def write_csv(event: OrderPlaced) -> None:
    """Blocking file I/O is fine here: sync handlers run in the executor."""
    path = os.environ.get("ORDERS_CSV", "orders.csv")
    thread = threading.current_thread().name
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{event.order_id},{event.sku},{event.total},{thread}\n")
