"""Consumer: a consumer group as one JetStream durable pull consumer, shared by every
worker process bound to it (no lease, no local checkpoint).

A group is the durable ``group_token(group)`` on the namespace's events stream, filtered
to the namespace's events subjects, with explicit acks, a finite delivery cap
(``max_deliver``, never JetStream's unlimited default), an ack wait longer than the
slowest handler's timeout x attempts (plus its backoff) and as short as that allows, and
a bounded number of unacknowledged messages (``max_ack_pending``; 1 in ordered mode).
Starting a worker creates the durable or binds to it; the config the server echoes back
is compared with the one wanted, field by field, because nats-py keeps an old config
silently when re-binding and a 2.9 server silently drops fields it does not know: a
difference is refused with one line naming the fields (or applied with
``update_consumer=1``).

Each worker fetches at most ``max_in_flight`` messages at a time (its window: what a
killed worker holds back from the others for one ack wait) and dispatches each one as a
task of the bus. A delivery's outcome decides the message's fate:

* every handler succeeded: ``ack``;
* a handler failed after its in-process retries, its policy retries, and this was not
  the last delivery: ``nak`` with the policy's next backoff as the delay (the event goes
  to whichever worker fetches it next, and every handler of the event runs again:
  delivery is at least once);
* a final failure (the last delivery, a failure that must not retry, a record that does
  not decode): the dead letters are written first (idempotent per event, handler and
  group), then ``term``; if the dead-letter write fails, ``nak`` with a delay instead, so
  no failure is lost;
* a delivery cut short (shutdown, cancellation): ``nak`` without delay; never ``ack``.

While a handler runs longer than a third of the ack wait the worker sends
``in_progress`` (a progress signal) every third of it, so a long handler keeps its
event. A worker that dies at its last delivery leaves the message unacknowledged: when
the ack wait runs out the server gives up on it and publishes a max-deliveries
advisory, which the group's live workers listen for (one of them, a queue group): it
fetches the event by its stream sequence and writes its dead letters. Every wait on the
server (acks, fetches, info, message reads) is bounded: a dead server must not hang a
worker.

Ordering: none across workers, and none within a worker either (its window runs
concurrently). ``ordered=1`` allows one unacknowledged message per group
(``max_ack_pending=1``): one event at a time, in stream order, across all workers.
Partitioning by key is not implemented.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlsplit
from uuid import UUID

from core.consumer import ConsumerOptions, Dispatcher
from core.dlq import for_corrupt, for_undecodable, qualified_name
from core.errors import ChecksumMismatchError, EventError, StoreError, StoreUnavailableError
from core.events import Event
from core.policies import HandlerPolicy
from core.results import Failure, HandlerOutcome, OutcomeStatus
from core.store import DeadLetter, DeadLetterQueue, DeadLetterReason, StoredEvent

from .naming import events_subjects, group_token, stored_event

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.api import ConsumerConfig, ConsumerInfo
    from nats.js.client import JetStreamContext

__all__ = [
    "JetStreamConsumer",
    "JetStreamConsumerError",
    "JetStreamConsumerSettings",
    "MaxDeliveriesError",
    "advisory_subject",
    "ensure_consumer",
    "open_consumer",
    "wanted_config",
]

T = TypeVar("T")

ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
_NO_TIMEOUT_ACK_WAIT = 30.0  # some handler has no timeout: in_progress keeps its event
_MIN_ACK_WAIT = 2.0
_COMPARED = (
    "ack_policy",
    "ack_wait",
    "deliver_policy",
    "filter_subject",
    "max_ack_pending",
    "max_deliver",
    "metadata",
)


class JetStreamConsumerError(StoreError):
    """Raised when a group's durable consumer cannot be used as wanted: its config on
    the server differs from the one this worker needs (``update_consumer=1`` applies
    it), the server did not apply a field, or a setting is out of range. Connection
    problems are StoreUnavailableError."""

    def __init__(self, group: str, problem: str) -> None:
        self.group = group
        self.problem = problem
        super().__init__(f"JetStream consumer of group {group!r}: {problem}")


class MaxDeliveriesError(Exception):
    """The error a dead letter records when JetStream gave up on an event after its
    delivery cap without an outcome (the worker of the last delivery stopped)."""


def _positive(name: str, value: str, kind: Callable[[str], T]) -> T:
    try:
        parsed = kind(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not isinstance(parsed, int | float) or not parsed > 0 or not math.isfinite(parsed):
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return parsed


def _flag(name: str, value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{name} must be 1 or 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class JetStreamConsumerSettings:
    """A group's delivery settings (the ``nats://`` URL's query options of the same
    names). ``ack_wait`` None: derived from the handlers' policies. ``max_in_flight``
    is one worker's window (None: the bus's ``max_in_flight``, at most 64)."""

    ack_wait: float | None = None
    max_deliver: int = 5
    max_ack_pending: int = 1000
    max_in_flight: int | None = None
    ordered: bool = False
    update_consumer: bool = False
    fetch_wait: float = 1.0
    op_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.max_deliver < 1 or self.max_ack_pending < 1:
            raise ValueError("max_deliver and max_ack_pending must be >= 1")
        if self.ack_wait is not None and self.ack_wait < 0.1:
            raise ValueError(f"ack_wait must be >= 0.1 s, got {self.ack_wait!r}")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {self.max_in_flight!r}")

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> JetStreamConsumerSettings:
        """The settings a URL query names (other options are the store's: ignored)."""
        values: dict[str, Any] = {}
        if "ack_wait" in query:
            values["ack_wait"] = _positive("ack_wait", query["ack_wait"], float)
        for name in ("max_deliver", "max_ack_pending", "max_in_flight"):
            if name in query:
                values[name] = _positive(name, query[name], int)
        for name in ("ordered", "update_consumer"):
            if name in query:
                values[name] = _flag(name, query[name])
        return cls(**values)

    @classmethod
    def from_url(cls, url: str) -> JetStreamConsumerSettings:
        return cls.from_query(dict(parse_qsl(urlsplit(url).query, keep_blank_values=True)))


def advisory_subject(stream: str, durable: str) -> str:
    """Where the server announces a message of ``durable`` that hit its delivery cap."""
    return f"{ADVISORY}.{stream}.{durable}"


def handler_budget(policy: HandlerPolicy) -> float | None:
    """The longest one delivery of a handler can take under its policy (every attempt
    timing out, every backoff at its ceiling); None without a timeout."""
    if policy.timeout is None:
        return None
    retry = policy.retry
    backoff = sum(
        min(retry.cap, retry.base * retry.multiplier ** (n - 1))
        for n in range(1, retry.max_attempts)
    )
    return policy.timeout * retry.max_attempts + backoff


def derived_ack_wait(policies: Mapping[str, HandlerPolicy]) -> tuple[float, str | None]:
    """The ack wait the handlers need, and the handler that needs the most (None when
    no handler has a budget: then a default, and in_progress keeps long handlers)."""
    worst: tuple[float, str | None] = (0.0, None)
    for name, policy in policies.items():
        budget = handler_budget(policy)
        if budget is None:
            return (_NO_TIMEOUT_ACK_WAIT, None)
        if budget > worst[0]:
            worst = (budget, name)
    if worst[1] is None:
        return (_NO_TIMEOUT_ACK_WAIT, None)
    return (max(_MIN_ACK_WAIT, round(worst[0] * 1.25 + 1.0, 3)), worst[1])


def wanted_config(
    group: str,
    namespace: str,
    settings: JetStreamConsumerSettings,
    policies: Mapping[str, HandlerPolicy],
    server_version: tuple[int, int, int],
) -> ConsumerConfig:
    """The durable consumer config a group's workers need (see the module docstring)."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    needed, worst = derived_ack_wait(policies)
    ack_wait = needed
    if settings.ack_wait is not None:
        budget = handler_budget(policies[worst]) if worst is not None else None
        if budget is not None and settings.ack_wait <= budget:
            policy = policies[worst] if worst is not None else HandlerPolicy()
            raise JetStreamConsumerError(
                group,
                f"ack_wait={settings.ack_wait:g}s is not longer than handler {worst!r} "
                f"can take (timeout {policy.timeout:g}s x {policy.retry.max_attempts} "
                f"attempt(s) + backoff = {budget:g}s): raise ack_wait or lower the timeout",
            )
        ack_wait = settings.ack_wait
    durable = group_token(group)
    config = ConsumerConfig(
        name=durable,
        durable_name=durable,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=settings.max_deliver,
        filter_subject=events_subjects(namespace),
        max_ack_pending=1 if settings.ordered else settings.max_ack_pending,
    )
    if server_version >= (2, 10, 0):
        # Consumer metadata (2.10+): what pubsub made it for, shown by `nats consumer info`.
        config.metadata = {"pubsub-group": group, "pubsub-ordered": str(settings.ordered)}
    return config


def _differences(wanted: ConsumerConfig, actual: ConsumerConfig) -> list[str]:
    out: list[str] = []
    for name in _COMPARED:
        want = getattr(wanted, name)
        if want is None:
            continue
        have = getattr(actual, name)
        if name == "metadata" and isinstance(have, dict):
            # The server adds its own keys (_nats.*): compare ours only.
            have = {k: v for k, v in have.items() if k in want}
        if isinstance(want, float) and isinstance(have, int | float):
            same = abs(want - have) < 1e-6
        else:
            same = want == have
        if not same:
            shown_want = getattr(want, "value", want)
            shown_have = getattr(have, "value", have)
            out.append(f"{name} {shown_have!r} (wanted {shown_want!r})")
    return out


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    group: str,
    wanted: ConsumerConfig,
    *,
    server_version: tuple[int, int, int],
    update: bool = False,
    timeout: float = 5.0,
) -> ConsumerInfo:
    """Create the group's durable or bind to it, and return what the server echoes
    back, refusing (JetStreamConsumerError) any field that differs from ``wanted``."""
    from nats.js.errors import BadRequestError, NotFoundError

    durable = wanted.durable_name
    assert durable is not None
    version = ".".join(map(str, server_version))
    created = False
    info: ConsumerInfo
    try:
        info = await js.consumer_info(stream, durable, timeout=timeout)
    except NotFoundError:
        try:
            info = await js.add_consumer(stream, config=wanted, timeout=timeout)
            created = True
        except BadRequestError:  # another worker created it first: compare with that
            info = await js.consumer_info(stream, durable, timeout=timeout)
    diffs = _differences(wanted, info.config)
    if diffs and not created and update:
        info = await js.add_consumer(stream, config=wanted, timeout=timeout)
        created = True
        diffs = _differences(wanted, info.config)
    if diffs and created:
        raise JetStreamConsumerError(
            group,
            f"server {version} did not apply {', '.join(diffs)}: this setting needs a "
            "newer server (pubsub check lists what it applies)",
        )
    if diffs:
        raise JetStreamConsumerError(
            group,
            f"durable {durable!r} on {stream} exists with {', '.join(diffs)}: start every "
            "worker of a group with the same handlers and options, or add "
            "update_consumer=1 to the store URL to apply this worker's",
        )
    return info


async def _bounded(work: Coroutine[Any, Any, T], timeout: float) -> T:
    return await asyncio.wait_for(work, timeout)


@dataclass(slots=True)
class _InFlight:
    msg: Msg
    started: float
    progressed: float = field(default=0.0)


class JetStreamConsumer:
    """One worker of a group on its durable pull consumer (see the module docstring).
    Implements ``core.consumer.Consumer``."""

    def __init__(
        self,
        *,
        connection: Client,
        jetstream: JetStreamContext,
        stream: str,
        namespace: str,
        dead_letters: DeadLetterQueue,
        dispatcher: Dispatcher,
        options: ConsumerOptions,
        settings: JetStreamConsumerSettings | None = None,
        server_version: tuple[int, int, int] | None = None,
    ) -> None:
        self._nc = connection
        self._js = jetstream
        self.stream = stream
        self.namespace = namespace
        self._dlq = dead_letters
        self._dispatcher = dispatcher
        self._options = options
        self.settings = settings or JetStreamConsumerSettings()
        self._version = server_version
        self.group = options.group
        self.durable = group_token(options.group)
        window = self.settings.max_in_flight or min(options.max_in_flight, 64)
        self.window = 1 if self.settings.ordered else window
        self._rng = options.rng or random.Random()
        self.config: ConsumerConfig | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._advisories: Any = None
        self._progress_task: asyncio.Task[None] | None = None
        self._in_flight: dict[int, _InFlight] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._checkpoint = 0
        self._last_seq = 0
        self._closing = False
        self._late: set[asyncio.Future[Any]] = set()  # follow's last fetch, its naks

    # -- what the bus reads ----------------------------------------------------------

    @property
    def checkpoint(self) -> int:
        """The group's ack floor (every event up to it is acked or terminated), as last
        read from the server."""
        return self._checkpoint

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def lost(self) -> None:
        return None  # no lease to lose: the server shares the group among its workers

    @property
    def ack_wait(self) -> float:
        assert self.config is not None
        assert self.config.ack_wait is not None
        return self.config.ack_wait

    @property
    def max_deliver(self) -> int:
        assert self.config is not None
        assert self.config.max_deliver is not None
        return self.config.max_deliver

    # -- start and stop --------------------------------------------------------------

    async def start(self) -> None:
        version = self._version or _version_of(self._nc)
        wanted = wanted_config(
            self.group, self.namespace, self.settings, self._options.policies, version
        )
        timeout = self.settings.op_timeout
        try:
            info = await ensure_consumer(
                self._js,
                self.stream,
                self.group,
                wanted,
                server_version=version,
                update=self.settings.update_consumer,
                timeout=timeout,
            )
            self.config = info.config
            self._note_info(info)
            self._sub = await _bounded(
                self._js.pull_subscribe_bind(durable=self.durable, stream=self.stream), timeout
            )
            self._advisories = await _bounded(
                self._nc.subscribe(
                    advisory_subject(self.stream, self.durable),
                    queue=f"pubsub-dlq-{self.durable}",
                    cb=self._on_advisory,
                ),
                timeout,
            )
        except (JetStreamConsumerError, StoreError):
            raise
        except Exception as exc:
            raise StoreUnavailableError(
                f"nats stream {self.stream}", f"cannot bind consumer {self.durable!r}: {exc}"
            ) from exc
        self._progress_task = asyncio.get_running_loop().create_task(self._progress_loop())

    async def aclose(self) -> None:
        """Stop fetching and listening; what is still unacknowledged (the bus drained or
        cancelled its deliveries first) is redelivered to the group's other workers."""
        self._closing = True
        self._room.set()
        # A fetch left running by follow ends within its wait; what it brought is
        # nak'ed before the subscription goes.
        deadline = self.settings.fetch_wait + self.settings.op_timeout
        while self._late:
            done, _ = await asyncio.wait(set(self._late), timeout=deadline)
            if not done:
                break
        if self._progress_task is not None:
            self._progress_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._progress_task
        for sub in (self._advisories, self._sub):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await _bounded(sub.unsubscribe(), self.settings.op_timeout)
        self._advisories = self._sub = None
        with contextlib.suppress(Exception):  # the last acks and naks reach the server
            await _bounded(self._nc.flush(), self.settings.op_timeout)
            info = await self._js.consumer_info(
                self.stream, self.durable, timeout=self.settings.op_timeout
            )
            self._note_info(info)  # the checkpoint the worker reports when it stops

    # -- fetching --------------------------------------------------------------------

    async def _wait_room(self) -> int:
        """Wait until half the window is free (so that each fetch asks for a batch, not
        for one message per round trip); the free room, 0 once closing."""
        busiest = self.window - (self.window + 1) // 2
        while len(self._in_flight) > busiest and not self._closing:
            self._room.clear()
            await self._room.wait()
        return 0 if self._closing else max(0, self.window - len(self._in_flight))

    async def _fetch(self, batch: int, wait: float) -> list[Msg]:
        """Up to ``batch`` messages, waiting at most ``wait`` seconds for the first one;
        an idle fetch is an empty list, not an error."""
        from nats.errors import ConnectionClosedError
        from nats.errors import TimeoutError as NatsTimeout

        sub = self._sub
        if sub is None or batch < 1:
            return []
        try:
            return await _bounded(sub.fetch(batch, timeout=wait), wait + self.settings.op_timeout)
        except (NatsTimeout, TimeoutError):
            return []
        except ConnectionClosedError as exc:
            raise StoreUnavailableError(
                f"nats stream {self.stream}", "the connection to the server is closed"
            ) from exc
        except Exception as exc:  # a reconnect, a server error: reported, tried again
            self._dispatcher.report(f"fetch from {self.durable!r}", exc)
            await self._options.clock.sleep(min(wait, 0.5))
            return []

    def _start(self, msgs: Sequence[Msg]) -> None:
        loop = asyncio.get_running_loop()
        now = self._options.clock.monotonic()
        tasks = self._options.tasks
        for msg in msgs:
            seq = msg.metadata.sequence.stream
            if seq > self._last_seq:
                self._last_seq = seq
            self._in_flight[id(msg)] = _InFlight(msg, now)
            task = loop.create_task(self._handle(msg))
            tasks.add(task)  # the bus's: drain waits for it, aclose cancels it
            task.add_done_callback(tasks.discard)

    async def catch_up(self) -> int:
        """Dispatch what the group had not been delivered when asked (the consumer's
        pending count then); returns how many messages this worker started. Deliveries
        still running when it returns are the bus's tasks (``drain`` waits for them)."""
        if self._sub is None or self._closing:
            return 0
        # Nothing new may still leave redeliveries (naks, expired ack waits) to fetch:
        # one fetch looks for them.
        pending, delivered = await self._pending()
        target = delivered + pending
        count = 0
        while room := await self._wait_room():  # 0 once closing
            msgs = await self._fetch(room, min(self.settings.fetch_wait, 0.25))
            if not msgs:
                if not pending or not (await self._pending())[0]:
                    return count
                continue
            self._start(msgs)
            count += len(msgs)
            if any(
                m.metadata.sequence.stream >= target or m.metadata.num_pending == 0 for m in msgs
            ):
                return count
        return count

    async def follow(self, stop: asyncio.Event, *, poll_interval: float = 0.2) -> None:
        """Fetch and dispatch until ``stop`` is set. A fetch still waiting then is left to
        finish: what it brings is nak'ed at once (for the other workers)."""
        wait = max(poll_interval, self.settings.fetch_wait)
        while not stop.is_set() and not self._closing:
            if not await _first(self._wait_room(), stop):
                return
            room = max(1, self.window - len(self._in_flight))
            fetching = asyncio.ensure_future(self._fetch(room, wait))
            if not await _first(fetching, stop, cancel=False):
                self._late.add(fetching)
                fetching.add_done_callback(self._nak_late)
                return
            self._start(fetching.result())

    def _nak_late(self, fetching: asyncio.Future[list[Msg]]) -> None:
        self._late.discard(fetching)
        if fetching.cancelled() or fetching.exception() is not None:
            return
        for msg in fetching.result():
            task = asyncio.ensure_future(self._settle(msg, "nak"))
            self._late.add(task)
            task.add_done_callback(self._late.discard)

    async def dispatch_appended(self, seq: int, event: Event) -> list[HandlerOutcome[Any]]:
        """Nothing is dispatched inline: the group's workers fetch what was appended."""
        return []

    # -- one delivery ----------------------------------------------------------------

    async def _handle(self, msg: Msg) -> None:
        key = id(msg)
        try:
            await self._deliver(msg)
        except asyncio.CancelledError:
            # Shut down mid-delivery: another worker (or the next run) gets it now.
            await self._settle(msg, "nak")
            raise
        except Exception as exc:  # never lose a message to a bug here: redeliver it
            self._dispatcher.report(f"delivery of {self.durable!r}", exc)
            await self._settle(msg, "nak", delay=1.0)
        finally:
            self._in_flight.pop(key, None)
            self._room.set()

    async def _deliver(self, msg: Msg) -> None:
        meta = msg.metadata
        seq = meta.sequence.stream
        deliveries = meta.num_delivered
        try:
            record = stored_event(seq, msg.data, msg.headers or {}, meta.timestamp)
            event = record.decode(self._options.registry)
        except ChecksumMismatchError as exc:
            await self._undeliverable(msg, for_corrupt(exc, group=self.group, source="live"))
            return
        except (EventError, KeyError, ValueError) as exc:
            letter = for_undecodable(_raw_record(seq, msg), exc, group=self.group, source="live")
            await self._undeliverable(msg, letter)
            return
        delivered = await self._dispatcher.deliver(
            seq, event, redelivery=deliveries > 1, source="live", headers=record.headers
        )
        if not delivered.finished:
            await self._settle(msg, "nak")
            return
        failures = [o for o in delivered.outcomes if isinstance(o, Failure)]
        if not failures:
            if any(o.status is not OutcomeStatus.OK for o in delivered.outcomes):
                await self._settle(msg, "nak")  # an outcome without a failure: not done
            else:
                await self._settle(msg, "ack")
            return
        last = deliveries >= self.max_deliver
        again = [] if last else [f for f in failures if self._redeliverable(f)]
        letters = self._final_letters(delivered.dead_letters, failures, again, deliveries)
        if letters and not await self._write(letters):
            await self._settle(msg, "nak", delay=self._delay(failures, deliveries))
            return
        if again:
            await self._settle(msg, "nak", delay=self._delay(again, deliveries))
        else:
            await self._settle(msg, "term")

    def _redeliverable(self, failure: Failure) -> bool:
        """Does the handler's policy retry this failure (so JetStream redelivers it)?"""
        policy = self._options.policies.get(failure.handler)
        if policy is None or policy.retry.max_attempts <= 1:
            return False
        retry = policy.retry
        if failure.reason is DeadLetterReason.TIMEOUT:
            return retry.retry_timeouts
        if failure.reason is DeadLetterReason.BREAKER_OPEN:
            return True
        if failure.reason is DeadLetterReason.EXHAUSTED:
            return failure.error is not None and retry.retryable(failure.error)
        return False

    def _delay(self, failures: Sequence[Failure], deliveries: int) -> float:
        """The redelivery delay: the longest next backoff of the failed handlers'
        policies, counting every in-process attempt of the deliveries so far."""
        delay = 0.0
        for failure in failures:
            policy = self._options.policies.get(failure.handler)
            if policy is None:
                continue
            if failure.reason is DeadLetterReason.BREAKER_OPEN and policy.breaker is not None:
                delay = max(delay, policy.breaker.reset_timeout)
                continue
            retry_number = deliveries * policy.retry.max_attempts
            delay = max(delay, policy.retry.backoff(retry_number, self._rng))
        return delay

    def _final_letters(
        self,
        letters: Sequence[DeadLetter],
        failures: Sequence[Failure],
        again: Sequence[Failure],
        deliveries: int,
    ) -> list[DeadLetter]:
        retried = {f.handler for f in again}
        out: list[DeadLetter] = []
        for letter in letters:
            if letter.handler in retried:
                continue
            policy = self._options.policies.get(letter.handler)
            per_delivery = policy.retry.max_attempts if policy is not None else 1
            # The attempts of the earlier deliveries count too.
            attempts = (deliveries - 1) * per_delivery + letter.attempts
            out.append(replace(letter, attempts=attempts))
        return out

    async def _undeliverable(self, msg: Msg, letter: DeadLetter) -> None:
        self._dispatcher.undeliverable(letter)
        if await self._write([letter]):
            await self._settle(msg, "term")
        else:
            await self._settle(msg, "nak", delay=1.0)

    async def _write(self, letters: Sequence[DeadLetter]) -> bool:
        try:
            await _bounded(self._dlq.add_dead_letters(letters), self.settings.op_timeout)
        except Exception as exc:
            self._dispatcher.report("dead letters of a JetStream delivery", exc)
            return False
        return True

    async def _settle(self, msg: Msg, how: str, *, delay: float = 0.0) -> None:
        """``ack``, ``nak`` (with a delay) or ``term`` the message; a failure is reported
        (the server redelivers after the ack wait)."""
        # A publish on the connection: it is buffered for the client's flusher and never
        # waits on the server (a dead connection raises at once).
        try:
            if how == "ack":
                await msg.ack()
            elif how == "term":
                await msg.term()
            else:
                await msg.nak(delay=delay if delay > 0 else None)
        except Exception as exc:
            self._dispatcher.report(f"{how} of a message of {self.durable!r}", exc)

    # -- progress and the delivery-cap advisory --------------------------------------

    async def _progress_loop(self) -> None:
        """Every third of the ack wait: ``in_progress`` for each delivery running longer
        than that, and a fresh ack floor."""
        clock = self._options.clock
        every = self.ack_wait / 3
        while not self._closing:
            await clock.sleep(every)
            now = clock.monotonic()
            for item in list(self._in_flight.values()):
                if now - max(item.started, item.progressed) >= every * 0.99:
                    item.progressed = now
                    with contextlib.suppress(Exception):
                        await _bounded(item.msg.in_progress(), self.settings.op_timeout)
            if self._sub is not None:
                try:
                    info = await _bounded(self._sub.consumer_info(), self.settings.op_timeout)
                except Exception:  # info is for statistics: the next tick tries again
                    continue
                self._note_info(info)

    async def _pending(self) -> tuple[int, int]:
        """The group's count of messages not yet delivered, and the stream sequence of
        the last one delivered (from the server)."""
        assert self._sub is not None
        info: ConsumerInfo = await _bounded(self._sub.consumer_info(), self.settings.op_timeout)
        self._note_info(info)
        delivered = info.delivered.stream_seq if info.delivered is not None else 0
        return (info.num_pending or 0, delivered)

    def _note_info(self, info: ConsumerInfo) -> None:
        if info.ack_floor is not None:
            self._checkpoint = max(self._checkpoint, info.ack_floor.stream_seq)
        if info.delivered is not None:
            self._last_seq = max(self._last_seq, info.delivered.stream_seq)

    async def _on_advisory(self, advisory: Msg) -> None:
        try:
            body = json.loads(advisory.data)
            seq = int(body["stream_seq"])
            deliveries = int(body.get("deliveries", self.max_deliver))
        except (ValueError, KeyError, TypeError) as exc:
            self._dispatcher.report("a max-deliveries advisory that does not parse", exc)
            return
        try:
            letters = await self._capped_letters(seq, deliveries)
            if letters and not await self._write(letters):
                return
        except Exception as exc:
            self._dispatcher.report(f"max-deliveries advisory for seq {seq}", exc)

    async def _capped_letters(self, seq: int, deliveries: int) -> list[DeadLetter]:
        """The dead letters of an event JetStream gave up on: one per handler it is
        dispatched to here (each had no outcome), or one of ``<decode>``."""
        raw = await _bounded(self._js.get_msg(self.stream, seq), self.settings.op_timeout)
        appended = raw.time or datetime.now(UTC)
        headers = {k: str(v) for k, v in (raw.headers or {}).items()}
        try:
            record = stored_event(seq, raw.data or b"", headers, appended)
            event = record.decode(self._options.registry)
        except ChecksumMismatchError as exc:
            return [for_corrupt(exc, group=self.group, source="live")]
        except (EventError, KeyError, ValueError) as exc:
            fallback = _record_of(seq, raw.data or b"", headers, appended)
            return [for_undecodable(fallback, exc, group=self.group, source="live")]
        error = MaxDeliveriesError(
            f"JetStream gave up on seq {seq} after {deliveries} deliveries without an "
            "outcome (the worker of the last one stopped): redrive it when the cause is fixed"
        )
        now = datetime.now(UTC)
        try:
            payload = event.to_dict()
        except Exception:
            payload = {"repr": repr(event)}
        return [
            DeadLetter(
                event_id=event.id,
                event_type=event.event_type,
                handler=name,
                reason=DeadLetterReason.EXHAUSTED,
                error_type=qualified_name(error),
                message=str(error),
                traceback="",
                attempts=deliveries,
                first_failure_at=now,
                last_failure_at=now,
                payload=payload,
                seq=seq,
                group=self.group,
                source="live",
            )
            for name in self._options.handlers_for(type(event))
        ]


async def _first(
    work: Coroutine[Any, Any, Any] | asyncio.Future[Any],
    stop: asyncio.Event,
    *,
    cancel: bool = True,
) -> bool:
    """Wait for ``work`` or ``stop``: True when the work finished first (its error is
    raised). Otherwise the work is cancelled (or, with ``cancel=False``, left running)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        stopper.cancel()
    if task.done():
        task.result()
        return True
    if cancel:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return False


def _version_of(nc: Client) -> tuple[int, int, int]:
    version = nc.connected_server_version
    return (version.major, version.minor, version.patch)


def _record_of(
    seq: int, data: bytes, headers: Mapping[str, str], appended: datetime
) -> StoredEvent:
    """What is known of a message that does not decode (for its dead letter)."""
    try:
        event_id = UUID(headers.get("Nats-Msg-Id", ""))
    except ValueError:
        event_id = UUID(int=0)
    try:
        version = int(headers.get("Pubsub-Version", "1"))
    except ValueError:
        version = 1
    return StoredEvent(
        seq=seq,
        event_id=event_id,
        type_name=headers.get("Pubsub-Type", "?"),
        version=version,
        created_at=appended,
        appended_at=appended,
        payload=data,
    )


def _raw_record(seq: int, msg: Msg) -> StoredEvent:
    return _record_of(seq, msg.data, msg.headers or {}, msg.metadata.timestamp)


def open_consumer(
    store: Any, dispatcher: Dispatcher, options: ConsumerOptions
) -> JetStreamConsumer:
    """The consumer a JetStream store opens for a bus (``OwnsDelivery.open_consumer``):
    the store's connection, stream, namespace and dead-letter queue, with the settings
    of its URL's query (``ack_wait``, ``max_deliver``, ``max_ack_pending``,
    ``max_in_flight``, ``ordered``, ``update_consumer``)."""
    try:
        settings = JetStreamConsumerSettings.from_url(store.url)
    except ValueError as exc:
        raise JetStreamConsumerError(options.group, str(exc)) from None
    return JetStreamConsumer(
        connection=store.connection,
        jetstream=store.jetstream,
        stream=store.events_stream,
        namespace=store.namespace,
        dead_letters=store,
        dispatcher=dispatcher,
        options=options,
        settings=settings,
        server_version=tuple(store.server_version),
    )
