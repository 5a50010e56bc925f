"""Handlers for ``benchmarks/replay.py``: one event type and a Router with one async
handler that only counts, so the replay figure measures the store and the bus."""

from __future__ import annotations

from dataclasses import dataclass

from core.events import Event
from core.routing import Router


@dataclass(frozen=True, slots=True)
class ReplayTick(Event, type_name="bench.replay_tick"):
    n: int
    sku: str
    qty: int
    amount_cents: int


router = Router(name="replay-bench")
seen = 0


@router.subscribe(ReplayTick)
async def count_tick(event: ReplayTick) -> None:
    global seen
    seen += 1
