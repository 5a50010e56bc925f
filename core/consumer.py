"""Consumer: the durable side of a bus, delivering a stored log to its handlers.

The bus knows how to dispatch one event (``Dispatcher.deliver``); a ``Consumer`` knows
where events come from and how progress is kept. The seam between them is narrow on
purpose: an engine that owns delivery itself (a broker's durable consumer shared by many
worker processes) implements ``Consumer`` with no lease and no local checkpoint.

``LogConsumer`` is the consumer of a log store (SQLite, memory): one live consumer per
group, held by a lease with a heartbeat; it catches up from the group's checkpoint,
follows new events, and moves the checkpoint as a low-water mark (only past events whose
dispatch finished, with the dead letters of those events, in one commit fenced by the
lease). Duplicates after a crash are bounded: an event is admitted only while fewer than
``max_in_flight`` events are past the committed checkpoint.

A store that owns delivery (``OwnsDelivery``: a broker whose durable consumer many
processes share) opens its own ``Consumer`` from the bus's ``ConsumerOptions``; the bus
then only appends on publish, and the group's workers (in this process or others)
dispatch what was appended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .clock import Clock, RandomSource
from .dlq import for_corrupt, for_undecodable
from .errors import ChecksumMismatchError, EventError, GroupLockedError
from .events import Event, EventRegistry
from .policies import HandlerPolicy
from .progress import GroupProgress
from .results import HandlerOutcome
from .store import NO_HEADERS, DeadLetter, EventStore, Lease, StoredEvent

__all__ = [
    "Consumer",
    "ConsumerOptions",
    "Delivered",
    "Dispatcher",
    "LogConsumer",
    "OwnsDelivery",
]


@dataclass(slots=True)
class Delivered:
    """What dispatching one stored event did: every outcome, the dead letters to record
    with the event's progress, and whether it finished (False when a handler was
    cancelled by shutdown: then the event must be delivered again)."""

    outcomes: list[HandlerOutcome[Any]]
    dead_letters: list[DeadLetter] = field(default_factory=list)
    finished: bool = True


class Dispatcher(Protocol):
    """What a bus offers its consumer."""

    @property
    def group(self) -> str: ...

    async def deliver(
        self,
        seq: int,
        event: Event,
        *,
        redelivery: bool,
        source: str,
        headers: Mapping[str, str] = NO_HEADERS,
    ) -> Delivered:
        """Dispatch a stored event to every matching handler (middleware included);
        ``headers`` are what was stored with it (``StoredEvent.headers``)."""
        ...

    def undeliverable(self, letter: DeadLetter) -> None:
        """Count a record that could not be decoded (its dead letter is ``letter``)."""
        ...

    def report(self, where: str, exc: BaseException) -> None:
        """An error of background work: logged and counted, never raised."""
        ...


class Consumer(Protocol):
    """The durable side of a bus (see the module docstring)."""

    @property
    def checkpoint(self) -> int:
        """The last sequence number the group has committed as finished."""
        ...

    @property
    def last_seq(self) -> int:
        """The highest sequence number this consumer has seen."""
        ...

    async def start(self) -> None:
        """Become the group's consumer (lease, checkpoint); does not catch up."""
        ...

    async def catch_up(self) -> int:
        """Dispatch every stored event this consumer has not seen; returns how many."""
        ...

    async def follow(self, stop: asyncio.Event, *, poll_interval: float = 0.2) -> None:
        """Dispatch new events as they are stored, until ``stop`` is set."""
        ...

    async def dispatch_appended(self, seq: int, event: Event) -> list[HandlerOutcome[Any]]:
        """Dispatch an event this bus has just appended (a live publish)."""
        ...

    async def aclose(self) -> None:
        """Commit what finished and give the group up (release the lease)."""
        ...

    @property
    def lost(self) -> GroupLockedError | None:
        """The error that took the group from this consumer (None while it has it, and
        always None for a consumer without a lease)."""
        ...


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    """What a bus tells the consumer it starts: the group and this consumer's name,
    how to decode, its clock and random source, the bus's task set (drain waits for
    the tasks in it, aclose cancels them), the in-flight bound, the lease and commit
    timing of a log consumer, and its handlers: their policies by name (a consumer
    whose engine redelivers needs their timeouts and retries) and the names of the
    handlers an event class is dispatched to."""

    group: str
    holder: str
    registry: EventRegistry
    clock: Clock
    tasks: set[asyncio.Task[Any]]
    rng: RandomSource | None = None
    max_in_flight: int = 256
    lease_ttl: float = 15.0
    commit_interval: float = 0.05
    policies: Mapping[str, HandlerPolicy] = field(default_factory=dict)
    handlers_for: Callable[[type[Event]], Sequence[str]] = lambda _cls: ()


@runtime_checkable
class OwnsDelivery(Protocol):
    """A store whose engine delivers events itself (a durable consumer shared by any
    number of worker processes, no lease): the bus asks it for its consumer instead of
    running a ``LogConsumer``, and a publish on such a bus appends and returns."""

    def open_consumer(self, dispatcher: Dispatcher, options: ConsumerOptions) -> Consumer:
        """The group's consumer for ``dispatcher`` (not started yet)."""
        ...


class LogConsumer:
    """The consumer of a log store for one group (see the module docstring)."""

    def __init__(
        self,
        store: EventStore,
        dispatcher: Dispatcher,
        *,
        group: str,
        holder: str,
        registry: EventRegistry,
        clock: Clock,
        tasks: set[asyncio.Task[Any]],
        lease_ttl: float = 15.0,
        max_in_flight: int = 256,
        commit_interval: float = 0.05,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
        self._store = store
        self._dispatcher = dispatcher
        self.group = group
        self.holder = holder
        self._registry = registry
        self._clock = clock
        self._tasks = tasks  # the bus's: drain waits for them, aclose cancels them
        self.lease_ttl = lease_ttl
        self._max_in_flight = max_in_flight
        self._commit_interval = commit_interval

        self._lease: Lease | None = None
        self._lease_checked = 0.0  # the clock's time of the last successful renewal
        self._lost: GroupLockedError | None = None
        self._progress = GroupProgress(0)
        self._follow_pos = 0
        self._last_seq = 0
        self._redeliver_to = 0  # catch-up events up to here may have been seen before
        self._wakeup = asyncio.Event()
        self._urgent = False
        self._moved = asyncio.Event()  # a commit was attempted or an event finished
        self._commit_lock = asyncio.Lock()
        self._committer: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopping = False

    # -- what the bus reads --------------------------------------------------------

    @property
    def checkpoint(self) -> int:
        return self._progress.committed

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def lost(self) -> GroupLockedError | None:
        """The error that took this consumer's lease, once another consumer has it."""
        return self._lost

    @property
    def lease(self) -> Lease | None:
        return self._lease

    # -- start and stop ------------------------------------------------------------

    async def start(self) -> None:
        self._lease = await self._acquire_lease()
        self._lease_checked = self._clock.monotonic()
        checkpoint = await self._store.load_checkpoint(self.group)
        self._progress = GroupProgress(checkpoint)
        self._follow_pos = checkpoint
        self._last_seq = max(self._last_seq, checkpoint)
        if self._lease.previous_holder is not None:
            # The last holder stopped without giving the group up (it crashed or
            # stalled): what it stored up to now may have reached its handlers.
            self._redeliver_to = await self._store.last_seq()
        loop = asyncio.get_running_loop()
        self._committer = loop.create_task(self._commit_loop())
        self._heartbeat = loop.create_task(self._renew_lease())

    async def _acquire_lease(self) -> Lease:
        """Take the group's lease. Cancelled while the store is taking it, the lease
        is released as soon as the store has it, instead of being left to expire."""
        store = self._store
        taking = asyncio.ensure_future(store.acquire_lease(self.group, self.holder, self.lease_ttl))
        try:
            return await asyncio.shield(taking)
        except asyncio.CancelledError:

            def release(done: asyncio.Future[Lease]) -> None:
                if not done.cancelled() and done.exception() is None:
                    orphan = asyncio.ensure_future(store.release_lease(done.result()))
                    self._tasks.add(orphan)
                    orphan.add_done_callback(self._tasks.discard)

            taking.add_done_callback(release)
            self._tasks.add(taking)  # drain and aclose wait for it (and the release)
            taking.add_done_callback(self._tasks.discard)
            raise

    async def aclose(self) -> None:
        self._stopping = True
        if self._committer is not None:
            async with self._commit_lock:  # never cut a commit in half
                self._committer.cancel()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for helper in (self._committer, self._heartbeat):
            if helper is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
        try:
            await self._commit()
        finally:
            if self._lease is not None:
                try:
                    await self._store.release_lease(self._lease)
                finally:
                    self._lease = None

    # -- the lease -----------------------------------------------------------------

    async def _renew_lease(self) -> None:
        while self._lease is not None:
            await self._clock.sleep(self.lease_ttl / 3)
            await self._heartbeat_once()

    async def _heartbeat_once(self) -> None:
        """Renew the lease. When another consumer holds it (ours expired: this process
        stalled past the TTL), stop consuming at once: two live consumers of one group
        would both move its checkpoint."""
        if self._lease is None:
            return
        try:
            self._lease = await self._store.renew_lease(self._lease, self.lease_ttl)
            self._lease_checked = self._clock.monotonic()
        except GroupLockedError as exc:
            self._lose_lease(exc)
        except Exception as exc:  # reported; the next beat tries again before expiry
            self._dispatcher.report("lease heartbeat", exc)

    def _lose_lease(self, exc: GroupLockedError) -> None:
        self._dispatcher.report(
            f"lease of group {self.group!r} lost: this bus stopped consuming "
            "(its unfinished events are delivered again by the new holder)",
            exc,
        )
        self._lease = None
        self._lost = exc
        for task in list(self._tasks):
            task.cancel()

    async def _check_lease(self) -> None:
        """Before dispatching more: if the lease may have expired since it was last
        renewed (this process was stopped or starved past its TTL), renew it now, and
        stop if another consumer took the group meanwhile."""
        if self._lost is not None:
            raise self._lost
        if self._clock.monotonic() - self._lease_checked >= self.lease_ttl / 2:
            await self._heartbeat_once()
            if self._lost is not None:
                raise self._lost

    # -- delivering ----------------------------------------------------------------

    async def catch_up(self) -> int:
        if self._lost is not None:
            raise self._lost
        progress = self._progress
        count = 0
        while True:
            try:
                async for record in self._store.read(from_seq=self._follow_pos + 1):
                    await self._check_lease()
                    self._passed(record.seq)
                    if progress.seen(record.seq):
                        continue
                    await self._admit(record.seq)
                    self._start_record(record)
                    count += 1
                return count
            except ChecksumMismatchError as exc:
                if exc.seq <= self._follow_pos:
                    raise  # not past what we read: do not loop on it
                # A corrupt record is a dead letter like an undecodable one; the read
                # goes on after it (the rest of the log is intact).
                self._passed(exc.seq)
                if not progress.seen(exc.seq):
                    letter = for_corrupt(exc, group=self.group, source="live")
                    self._dispatcher.undeliverable(letter)
                    progress.start(exc.seq)
                    progress.finish(exc.seq, [letter])
                    self._schedule_commit()
                    count += 1

    def _passed(self, seq: int) -> None:
        if seq > self._follow_pos:
            self._follow_pos = seq
        if seq > self._last_seq:
            self._last_seq = seq

    async def _admit(self, seq: int) -> None:
        """Wait until ``seq`` is within ``max_in_flight`` of the committed checkpoint,
        so that a crash redelivers at most that many events."""
        progress = self._progress
        while seq - progress.committed > self._max_in_flight:
            if progress.dirty:  # finished work to commit: commit it now
                self._schedule_commit(urgent=True)
            # Woken by the next commit or the next finished event (a slow handler
            # holds the mark back: then this waits for it, without spinning).
            self._moved.clear()
            await self._moved.wait()
            if self._lost is not None:
                raise self._lost

    def _start_record(self, record: StoredEvent) -> None:
        self._progress.start(record.seq)  # before the task runs: follow must not redo it
        task = asyncio.get_running_loop().create_task(self._deliver_record(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_record(self, record: StoredEvent) -> None:
        try:
            event = record.decode(self._registry)
        except EventError as exc:
            letter = for_undecodable(record, exc, group=self.group, source="live")
            self._dispatcher.undeliverable(letter)
            self._progress.finish(record.seq, [letter])
            self._schedule_commit()
            self._moved.set()
            return
        await self._deliver(
            record.seq,
            event,
            redelivery=record.seq <= self._redeliver_to,
            headers=record.headers,
        )

    async def dispatch_appended(self, seq: int, event: Event) -> list[HandlerOutcome[Any]]:
        self._progress.start(seq)
        if seq > self._last_seq:
            self._last_seq = seq
        return await self._deliver(seq, event, redelivery=False)

    async def _deliver(
        self,
        seq: int,
        event: Event,
        *,
        redelivery: bool,
        headers: Mapping[str, str] = NO_HEADERS,
    ) -> list[HandlerOutcome[Any]]:
        progress = self._progress
        delivered: Delivered | None = None
        try:
            delivered = await self._dispatcher.deliver(
                seq, event, redelivery=redelivery, source="live", headers=headers
            )
            return delivered.outcomes
        finally:
            # A dispatch cut short (cancelled by aclose) stays unfinished, so the
            # checkpoint never passes it and the next consumer delivers it again.
            if delivered is not None and delivered.finished:
                letters = delivered.dead_letters
                if progress.finish(seq, letters) or letters:
                    self._schedule_commit(urgent=seq - progress.committed > self._max_in_flight)
                self._moved.set()

    async def follow(self, stop: asyncio.Event, *, poll_interval: float = 0.2) -> None:
        while not stop.is_set():
            await self.catch_up()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_interval)

    # -- committing ----------------------------------------------------------------

    def _schedule_commit(self, *, urgent: bool = False) -> None:
        if urgent:
            self._urgent = True
        self._wakeup.set()

    async def _commit_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            failed = False
            try:
                await self._commit()
            except GroupLockedError as exc:
                self._lose_lease(exc)
                self._moved.set()
                return
            except Exception as exc:  # reported; the next wake-up tries again
                self._dispatcher.report("checkpoint commit", exc)
                failed = True
            self._moved.set()
            if self._urgent and not failed:  # a failing store is not retried at once
                self._urgent = False
                continue
            await asyncio.sleep(self._commit_interval)

    async def _commit(self) -> None:
        progress = self._progress
        if not progress.dirty or self._lost is not None:
            return
        # One commit at a time, and aclose waits for the one in flight instead of
        # cancelling it: a commit cancelled after the store wrote it would put its
        # dead letters back and the next commit would write them a second time.
        async with self._commit_lock:
            mark = progress.mark
            letters = progress.take_letters()
            try:
                await self._commit_progress(mark, letters)
            except Exception:
                progress.requeue(mark, letters)
                raise
            progress.committed = max(progress.committed, mark)

    async def _commit_progress(self, mark: int, letters: Sequence[DeadLetter]) -> None:
        # Fenced: the store refuses it (GroupLockedError) unless this consumer still
        # holds the group's lease, checked inside the commit's own transaction.
        lease = self._lease
        if lease is None:
            raise self._lost or GroupLockedError(self.group, "nobody", 0.0)
        await self._store.commit_progress(self.group, mark, letters, lease=lease)
