"""Typed usage examples of the core API, checked by ``mypy --strict`` and never run.

tests/core/test_typing.py type-checks this file (it must pass) and api_errors.py (each
line marked ``# E: <code>`` must fail with that code, and no other line may).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core import (
    BreakerPolicy,
    Event,
    EventBus,
    EventStore,
    Handler,
    HandlerOutcome,
    InMemoryMetrics,
    MemoryEventStore,
    MetricsCollector,
    PublishResult,
    RetryPolicy,
    Router,
    Subscription,
    current_dispatch,
)


@dataclass(frozen=True, slots=True)
class OrderPlaced(Event, type_name="typing.api.OrderPlaced"):
    order_id: str
    total: int = 0


@dataclass(frozen=True, slots=True)
class ExpressOrderPlaced(OrderPlaced, type_name="typing.api.ExpressOrderPlaced"):
    courier: str = "fast"


router = Router(name="orders")


@router.subscribe(OrderPlaced, retry=RetryPolicy(max_attempts=3), timeout=5.0)
async def reserve_stock(event: OrderPlaced) -> None:
    ctx = current_dispatch()
    attempt: int = ctx.attempt if ctx is not None else 1
    print(event.order_id, attempt)


@router.subscribe(ExpressOrderPlaced, name="audit")
def audit(event: OrderPlaced) -> None:
    """A handler of a base class fits a subscription to a subclass."""
    print(event.total)


async def everything(event: Event) -> None:
    print(event.event_type)


sub: Subscription[OrderPlaced] = router.add(OrderPlaced, everything, name="everything")
handler: Handler[ExpressOrderPlaced] = reserve_stock

CallNext = Callable[[Event], Awaitable[list[HandlerOutcome]]]


async def timing(event: Event, call_next: CallNext) -> list[HandlerOutcome]:
    return await call_next(event)


async def main() -> None:
    store: EventStore = MemoryEventStore()
    metrics: MetricsCollector = InMemoryMetrics()
    async with EventBus(store, metrics=metrics, raise_on_error=True) as bus:
        bus.include(router)
        bus.add_middleware(timing)

        @bus.subscribe(OrderPlaced, breaker=BreakerPolicy(failure_threshold=3))
        async def notify(event: OrderPlaced) -> None:
            print(event.order_id)

        result: PublishResult = await bus.publish_async(OrderPlaced("o-1", 10))
        seq: int | None = result.seq
        for outcome in result:
            print(outcome.handler, outcome.status.value, outcome.attempts, seq)
        snapshot = bus.metrics.snapshot()
        print(snapshot["handlers"])
