"""The handlers of the worker-process tests (``pubsub run nats_worker_app.py``).

``work`` prints ``HANDLED <n> <pid> <redelivery>`` for each event (flushed); its timeout
(1 s) makes the derived ack wait short (2.25 s), so a killed worker's events come back
quickly. The environment shapes it: ``NW_DIE_AT=n`` kills this process (SIGKILL) in
the middle of handling event ``n``; ``NW_FAIL=1`` makes every call fail (two
in-process attempts, tiny backoff); ``NW_SLEEP`` is seconds of awaited I/O per event.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass

from core import Event, HandlerContext, Router
from core.policies import RetryPolicy

router = Router(name="nats-worker")

DIE_AT = int(os.environ.get("NW_DIE_AT", "-1"))
FAIL = os.environ.get("NW_FAIL") == "1"
SLEEP = float(os.environ.get("NW_SLEEP", "0"))


@dataclass(frozen=True, slots=True)
class Task(Event, type_name="tests.nats.worker.Task"):
    n: int


@router.subscribe(
    Task,
    name="work",
    timeout=1.0,
    retry=RetryPolicy(max_attempts=2, base=0.01, cap=0.02) if FAIL else RetryPolicy(1),
)
async def work(event: Task, ctx: HandlerContext[Task]) -> None:
    if event.n == DIE_AT:
        sys.stdout.write(f"DYING {event.n} {os.getpid()}\n")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if FAIL:
        sys.stdout.write(f"FAILING {event.n} {os.getpid()} {ctx.attempt}\n")
        sys.stdout.flush()
        raise RuntimeError(f"task {event.n} fails")
    if SLEEP:
        await asyncio.sleep(SLEEP)
    sys.stdout.write(f"HANDLED {event.n} {os.getpid()} {int(ctx.redelivery)}\n")
    sys.stdout.flush()
