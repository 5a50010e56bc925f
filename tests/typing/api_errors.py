"""Handlers subscribed to an event type they cannot accept: mypy must reject each line
marked ``# E: <code>`` (checked by tests/core/test_typing.py), and nothing else."""

from __future__ import annotations

from dataclasses import dataclass

from core import Event, EventBus, Router


@dataclass(frozen=True, slots=True)
class Paid(Event, type_name="typing.errors.Paid"):
    amount: int


@dataclass(frozen=True, slots=True)
class Refunded(Event, type_name="typing.errors.Refunded"):
    reason: str


async def on_refund(event: Refunded) -> None:
    print(event.reason)


def on_refund_sync(event: Refunded) -> None:
    print(event.reason)


router = Router()
bus = EventBus()

router.subscribe(Paid)(on_refund)  # E: arg-type
bus.subscribe(Paid)(on_refund_sync)  # E: arg-type
router.add(Paid, on_refund)  # E: arg-type


@router.subscribe(Paid)  # E: arg-type
async def wrong_in_router(event: Refunded) -> None:
    print(event.reason)


@bus.subscribe(Paid, retry=3)  # E: arg-type
def wrong_on_bus(event: Refunded) -> None:
    print(event.reason)


@bus.subscribe(Paid)
async def right(event: Paid) -> None:
    print(event.amount)
