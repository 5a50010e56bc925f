"""Store: ``JetStreamEventStore``, the ``EventStore`` on NATS JetStream.

Open it with ``await open_nats_store("nats://host:4222?ns=NAME")`` or through
``core.entrypoints.open_store`` (the URL's options and credentials: ``plugins.nats.url``).
What it keeps where (``plugins.nats.naming`` and ``layout``): the events in the stream
``PUBSUB_<ns>_EVENTS`` (the stream sequence is ``seq``), snapshots in
``PUBSUB_<ns>_SNAPSHOTS``, dead letters in the bucket ``PUBSUB_<ns>_DLQ`` (``dlq``).

How it keeps the protocol's promises, and where it cannot:

- ``append`` publishes each event with ``Nats-Msg-Id`` = its id, pipelined: one call's
  messages are written back to back (so they get contiguous sequence numbers, as the
  server handles one connection's messages in order), then their acknowledgements are
  awaited together, within ``timeout``. A re-published id within the stream's duplicate
  window is acknowledged as a duplicate with its original sequence and uses none; past
  the window it is stored again (declared: no ``DEDUP_FOREVER``).
- Reads go through ephemeral consumers (``reading``), never a durable one; ``get`` is a
  direct message get; ``get_by_id`` and ``children`` scan the log (no ``ID_INDEX``).
- A consumer group is a durable consumer that JetStream itself keeps (the consumer side
  of this plugin, ``open_consumer``): there is no lease and no checkpoint written by the
  store (no ``LEASES``, no ``ATOMIC_PROGRESS``). ``load_checkpoint`` and ``groups``
  read the durable consumers' state; the lease and ``commit_progress`` calls refuse with
  a message that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import orjson

from core.codec import encode
from core.errors import StoreUnavailableError
from core.events import Event
from core.store import (
    AppendResult,
    DeadLetter,
    GroupInfo,
    Lease,
    Snapshot,
    StoreCapability,
    StoreCheck,
    StoredEvent,
    check_headers,
    check_read_args,
    int64,
)

from . import naming
from .connection import bounded, bounded_steps, connect
from .dlq import JetStreamDeadLetterQueue, open_bucket
from .layout import Applied, dlq_bucket, ensure_stream, events_config, snapshots_config
from .reading import RawRecord, scan
from .url import NatsStoreURL, parse_url

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.client import JetStreamContext

__all__ = ["JetStreamEventStore", "open_nats_store"]

T = TypeVar("T")

_SNAPSHOT_NAME = "Pubsub-Snapshot"
_SNAPSHOT_SEQ = "Pubsub-Snapshot-Seq"
_SNAPSHOT_CREATED = "Pubsub-Created"
# The default fsync interval of a nats-server (its ``sync_interval``); clients cannot
# read the setting, so the durability sentence names the default and the way out.
_DEFAULT_SYNC = "2 min"


def _version(client: Client) -> tuple[int, int, int]:
    v = client.connected_server_version
    return (int(v.major or 0), int(v.minor or 0), int(v.patch or 0))


def durability_sentence(replicas: int) -> str:
    """What an acknowledged event survives on a stream of ``replicas`` copies."""
    if replicas <= 1:
        return (
            "survives a nats-server crash (kill -9); power loss only with sync_interval: "
            f"always on the server (2.10+; by default it fsyncs every {_DEFAULT_SYNC})"
        )
    tolerated = (replicas - 1) // 2
    return (
        f"survives server crashes, and the loss of {tolerated} of its {replicas} replica "
        "servers at once; power loss of more only with sync_interval: always (2.10+)"
    )


class JetStreamEventStore(JetStreamDeadLetterQueue):
    """A durable event log, dead letters and snapshots on NATS JetStream. Create it with
    ``await JetStreamEventStore.open(url)``; close it with ``aclose()`` or ``async with``.

    For the JetStream consumer (``plugins.nats.consumer``): ``namespace``,
    ``connection`` (the nats-py client), ``jetstream`` (its JetStream context),
    ``server_version`` and ``events_stream`` are public."""

    capabilities: frozenset[StoreCapability] = frozenset()

    def __init__(
        self,
        parsed: NatsStoreURL,
        client: Client,
        js: JetStreamContext,
        *,
        server_version: tuple[int, int, int],
        events: Applied,
        snapshots: Applied,
        kv: Any,
    ) -> None:
        super().__init__(
            js, kv, dlq_bucket(parsed.namespace), location=parsed.display, timeout=parsed.timeout
        )
        self._parsed = parsed
        self.namespace = parsed.namespace
        self.connection = client
        self.jetstream = js
        self.server_version = server_version
        self.events_stream = naming.events_stream(parsed.namespace)
        self.snapshots_stream = naming.snapshots_stream(parsed.namespace)
        self._events = events
        self._snapshots = snapshots
        self._send = asyncio.Lock()
        self._closed = False

    # -- opening and closing ----------------------------------------------------------

    @classmethod
    async def open(cls, url: str) -> JetStreamEventStore:
        """Connect, and bind to (or create) the namespace's streams and bucket; a
        one-line ``StoreUnavailableError`` when the server is away, refuses, or did not
        apply the configuration the URL asks for."""
        try:
            import nats  # noqa: F401
        except ImportError:
            raise StoreUnavailableError(
                parse_url(url).display,
                "the nats extra is not installed: pip install 'pubsub-workbench[nats]'",
            ) from None
        parsed = parse_url(url)
        client = await connect(parsed)
        try:
            js = client.jetstream(timeout=parsed.timeout)
            version = _version(client)
            await _require_jetstream(js, parsed)
            events = await ensure_stream(js, events_config(parsed), parsed, version)
            snapshots = await ensure_stream(js, snapshots_config(parsed), parsed, version)
            kv = await open_bucket(
                js,
                dlq_bucket(parsed.namespace),
                replicas=parsed.replicas,
                location=parsed.display,
                timeout=parsed.timeout,
            )
        except BaseException:
            await _close(client)
            raise
        return cls(
            parsed,
            client,
            js,
            server_version=version,
            events=events,
            snapshots=snapshots,
            kv=kv,
        )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await _close(self.connection)

    async def __aenter__(self) -> JetStreamEventStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def open_consumer(self, dispatcher: Any, options: Any) -> Any:
        """The JetStream consumer of a group on this store (JetStream owns delivery)."""
        from .consumer import open_consumer  # type: ignore[import-not-found,unused-ignore]

        return open_consumer(self, dispatcher, options)

    # -- what it is -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._parsed.display

    @property
    def durability(self) -> str:
        return durability_sentence(self._events.replicas)

    @property
    def duplicate_window(self) -> float:
        """Seconds the server answers a re-published event id as a duplicate."""
        return self._events.duplicate_window

    async def _call(self, aw: Awaitable[T], what: str) -> T:
        if self._closed:
            raise StoreUnavailableError(self.url, "the store is closed; open it again")
        return await bounded(aw, location=self.url, what=what, timeout=self._parsed.timeout)

    async def self_checks(self) -> list[StoreCheck]:
        """The server's version, what it applied to the streams, durability, and the
        duplicate window against the publishers' retry horizon."""
        p = self._parsed
        e = self._events
        applied = (
            f"{e.stream}: duplicate_window {e.duplicate_window:g}s, replicas {e.replicas}, "
            f"storage {e.storage}, compression {e.compression} (read back from the server)"
        )
        checks = [
            StoreCheck("nats", True, "nats-server " + ".".join(map(str, self.server_version))),
            StoreCheck("stream", True, applied),
            StoreCheck("durability", True, self.durability),
        ]
        window = e.duplicate_window
        if window < p.retry_horizon:
            checks.append(
                StoreCheck(
                    "dedup",
                    True,
                    f"duplicate window {window:g}s is shorter than the retry horizon "
                    f"{p.retry_horizon:g}s: a publish retried later than {window:g}s after "
                    "the first try is stored twice; raise dup_window in the URL (with "
                    "&update=1) or retry sooner",
                    warning=True,
                )
            )
        else:
            checks.append(
                StoreCheck(
                    "dedup",
                    True,
                    f"duplicate window {window:g}s covers the retry horizon {p.retry_horizon:g}s "
                    "(an event id is a duplicate only within the window)",
                )
            )
        return checks

    # -- the log ----------------------------------------------------------------------

    async def append(
        self,
        events: Sequence[Event],
        *,
        headers: Sequence[Mapping[str, str] | None] | None = None,
    ) -> list[AppendResult]:
        """Publish ``events`` in order, pipelined; returns once the server acknowledged
        every one (stored), or raises ``StoreUnavailableError`` within ``timeout``.
        ``headers`` (one mapping or None per event) travel as ``Pubsub-H-<name>``."""
        checked = check_headers(headers, len(events))  # refuses the call before any write
        payloads = [encode(e) for e in events]  # an encode error refuses the whole call
        if not events:
            return []
        if self._closed:
            raise StoreUnavailableError(self.url, "the store is closed; open it again")
        ns = self.namespace
        futures: list[asyncio.Future[Any]] = []
        publish = self.jetstream.publish_async
        stream = self.events_stream
        try:
            async with (
                self._send,  # one call's messages back to back: contiguous seqs
                bounded_steps(
                    location=self.url, what="appending events", timeout=self._parsed.timeout
                ) as step,
            ):
                for i, (event, payload) in enumerate(zip(events, payloads, strict=True)):
                    hdrs = naming.event_headers(
                        event.id,
                        event.event_type,
                        event.event_version,
                        event.created_at,
                        payload,
                        event.correlation_id,
                        event.causation_id,
                        extra=checked[i] if checked is not None else None,
                    )
                    step()  # each send may wait (nats-py's pending limit): bounded alone
                    subject = naming.events_subject(ns, event.event_type)
                    futures.append(await publish(subject, payload, headers=hdrs, stream=stream))
            acks = await self._acks(futures)
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()
        return [
            AppendResult(int(ack.seq), event.id, duplicate=bool(ack.duplicate))
            for ack, event in zip(acks, events, strict=True)
        ]

    async def _acks(self, futures: list[asyncio.Future[Any]]) -> list[Any]:
        """The acknowledgements, waiting as long as they keep coming: a wait fails when
        none arrived for ``timeout`` seconds (a server that died or stalled)."""
        import nats.errors

        pending: set[asyncio.Future[Any]] = set(futures)
        timeout = self._parsed.timeout
        while pending:
            done, pending = await asyncio.wait(pending, timeout=timeout)
            if not done:
                stored = len(futures) - len(pending)
                raise StoreUnavailableError(
                    self.url,
                    f"appending events: no acknowledgement from the NATS server within "
                    f"{timeout:g} s ({stored} of {len(futures)} acknowledged; the others "
                    "may or may not be stored: appending them again is safe within the "
                    f"duplicate window of {self.duplicate_window:g}s)",
                )
        try:
            return [f.result() for f in futures]
        except nats.errors.Error as exc:
            from .connection import describe

            raise StoreUnavailableError(self.url, f"appending events: {describe(exc)}") from None

    async def _state(self, subjects: bool = False) -> Any:
        async def info() -> Any:
            return await self.jetstream.stream_info(
                self.events_stream,
                subjects_filter=naming.events_subjects(self.namespace) if subjects else None,
            )

        return (await self._call(info(), f"reading stream {self.events_stream}")).state

    def _record(self, raw: RawRecord) -> StoredEvent:
        return naming.stored_event(raw.seq, raw.data, raw.headers, raw.appended_at)

    async def read(
        self,
        *,
        from_seq: int = 1,
        to_seq: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[StoredEvent]:
        """Records in sequence order up to the last one stored when the read began."""
        check_read_args(from_seq, to_seq, limit, batch_size)
        if limit == 0 or (types is not None and not types):
            return
        wanted = None if types is None else frozenset(types)
        state = await self._state()
        end = int(state.last_seq)
        if to_seq is not None:
            end = min(end, to_seq)
        start = max(from_seq, int(state.first_seq), 1)
        if start > end:
            return
        several: list[str] | None = None
        if wanted is not None and len(wanted) == 1:
            subject = naming.events_subject(self.namespace, next(iter(wanted)))
        else:
            subject = naming.events_subjects(self.namespace)
            if wanted is not None and self.server_version >= (2, 10, 0):
                # Several filters on one consumer: 2.10+ (2.9 ignores the field, so it
                # is never sent there; the records are filtered here in any case).
                several = sorted(naming.events_subject(self.namespace, t) for t in wanted)
        emitted = 0
        records = scan(
            self.jetstream,
            self.events_stream,
            subject,
            location=self.url,
            timeout=self._parsed.timeout,
            start_seq=start,
            start_time=since if since is not None and from_seq <= 1 else None,
            end_seq=end,
            batch_size=batch_size,
            subjects=several,
        )
        # Closed at once when the read ends early (limit, until): its consumer goes too.
        async with contextlib.aclosing(records):
            async for raw in records:
                if raw.seq < start or (since is not None and raw.appended_at < since):
                    continue
                if until is not None and raw.appended_at > until:
                    return
                record = self._record(raw)
                if wanted is not None and record.type_name not in wanted:
                    continue
                yield record
                emitted += 1
                if limit is not None and emitted >= limit:
                    return

    async def get(self, seq: int) -> StoredEvent | None:
        import nats.js.errors

        int64("seq", seq)
        if seq < 1:
            return None

        async def get() -> Any:
            try:
                return await self.jetstream.get_msg(self.events_stream, seq)
            except nats.js.errors.NotFoundError:
                return None

        msg = await self._call(get(), "reading an event")
        if msg is None or msg.time is None:
            return None
        return naming.stored_event(
            seq, bytes(msg.data or b""), dict(msg.headers or {}), msg.time.astimezone(UTC)
        )

    async def get_by_id(self, event_id: UUID) -> StoredEvent | None:
        """A scan of the log (JetStream keeps no index by message id past the window)."""
        wanted = str(event_id)
        records = self._scan_events()
        async with contextlib.aclosing(records):
            async for raw in records:
                if raw.headers.get(naming.HEADER_MSG_ID) == wanted:
                    return self._record(raw)
        return None

    async def _scan_events(self) -> AsyncGenerator[RawRecord, None]:
        state = await self._state()
        if int(state.last_seq) < 1:
            return
        records = scan(
            self.jetstream,
            self.events_stream,
            naming.events_subjects(self.namespace),
            location=self.url,
            timeout=self._parsed.timeout,
            start_seq=max(1, int(state.first_seq)),
            end_seq=int(state.last_seq),
        )
        async with contextlib.aclosing(records):
            async for raw in records:
                yield raw

    async def last_seq(self) -> int:
        return int((await self._state()).last_seq)

    async def count(self, *, types: Sequence[str] | None = None) -> int:
        if types is None:
            return int((await self._state()).messages)
        counts = await self.count_by_type()
        return sum(counts.get(t, 0) for t in set(types))

    async def count_by_type(self) -> dict[str, int]:
        state = await self._state(subjects=True)
        prefix = naming.events_subject(self.namespace, "")[: -len(naming.token(""))]
        counts: dict[str, int] = {}
        for subject, n in (state.subjects or {}).items():
            if subject.startswith(prefix) and n:
                counts[naming.untoken(subject[len(prefix) :])] = int(n)
        return counts

    async def children(self, event_id: UUID) -> list[StoredEvent]:
        """A scan of the log for records caused by ``event_id``."""
        wanted = str(event_id)
        return [
            self._record(raw)
            async for raw in self._scan_events()
            if raw.headers.get(naming.HEADER_CAUSATION) == wanted
        ]

    # -- consumer groups: JetStream's durable consumers -------------------------------

    async def load_checkpoint(self, group: str) -> int:
        """The group's acknowledgement floor: every event up to it is acknowledged."""
        import nats.js.errors

        async def info() -> Any:
            try:
                return await self.jetstream.consumer_info(
                    self.events_stream, naming.group_token(group)
                )
            except nats.js.errors.NotFoundError:
                return None

        found = await self._call(info(), f"reading consumer group {group!r}")
        return 0 if found is None else int(found.ack_floor.stream_seq or 0)

    async def groups(self) -> list[GroupInfo]:
        """Every durable consumer of the events stream: its ack floor, and as lag the
        events not yet delivered plus those delivered and not acknowledged."""
        infos = await self._call(
            self.jetstream.consumers_info(self.events_stream), "listing consumer groups"
        )
        out = []
        for info in infos:
            durable = info.config.durable_name
            if not durable:
                continue  # an ephemeral reader, not a group
            out.append(
                GroupInfo(
                    naming.untoken(durable),
                    int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0,
                    int(info.num_pending or 0) + int(info.num_ack_pending or 0),
                )
            )
        return sorted(out, key=lambda g: g.group)

    def _no_leases(self, what: str) -> StoreUnavailableError:
        return StoreUnavailableError(
            self.url,
            f"{what}: a JetStream group needs no lease and keeps no store checkpoint (its "
            "durable consumer acknowledges each event, shared by any number of workers); "
            "workers run on the store's JetStream consumer (open_consumer) instead",
        )

    async def commit_progress(
        self,
        group: str,
        seq: int,
        dead_letters: Sequence[DeadLetter] = (),
        *,
        lease: Lease | None = None,
    ) -> None:
        raise self._no_leases("commit_progress")

    async def acquire_lease(self, group: str, holder: str, ttl: float) -> Lease:
        raise self._no_leases("acquire_lease")

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        raise self._no_leases("renew_lease")

    async def release_lease(self, lease: Lease) -> None:
        raise self._no_leases("release_lease")

    # -- snapshots: messages of the snapshots stream, the sequence is the id ----------

    async def save_snapshot(self, name: str, seq: int, state: Mapping[str, Any]) -> Snapshot:
        int64("seq", seq)
        created = datetime.now(UTC)
        hdrs = {
            _SNAPSHOT_NAME: name,
            _SNAPSHOT_SEQ: str(seq),
            _SNAPSHOT_CREATED: created.isoformat(),
        }
        data = orjson.dumps(state)
        ack = await self._call(
            self.jetstream.publish(
                naming.snapshots_subject(self.namespace, name),
                data,
                headers=hdrs,
                stream=self.snapshots_stream,
                timeout=self._parsed.timeout,
            ),
            "saving a snapshot",
        )
        return Snapshot(int(ack.seq), name, seq, orjson.loads(data), created)

    @staticmethod
    def _snapshot(snapshot_id: int, data: bytes, headers: Mapping[str, str]) -> Snapshot:
        return Snapshot(
            snapshot_id,
            headers[_SNAPSHOT_NAME],
            int(headers[_SNAPSHOT_SEQ]),
            orjson.loads(data),
            datetime.fromisoformat(headers[_SNAPSHOT_CREATED]),
        )

    async def list_snapshots(self, name: str | None = None) -> list[Snapshot]:
        subject = (
            naming.snapshots_subjects(self.namespace)
            if name is None
            else naming.snapshots_subject(self.namespace, name)
        )
        return [
            self._snapshot(raw.seq, raw.data, raw.headers)
            async for raw in scan(
                self.jetstream,
                self.snapshots_stream,
                subject,
                location=self.url,
                timeout=self._parsed.timeout,
            )
        ]

    async def latest_snapshot(self, name: str) -> Snapshot | None:
        mine = await self.list_snapshots(name)
        return max(mine, key=lambda s: (s.seq, s.id)) if mine else None

    async def load_snapshot(self, snapshot_id: int) -> Snapshot | None:
        import nats.js.errors

        int64("snapshot_id", snapshot_id)
        if snapshot_id < 1:
            return None

        async def get() -> Any:
            try:
                return await self.jetstream.get_msg(self.snapshots_stream, snapshot_id)
            except nats.js.errors.NotFoundError:
                return None

        msg = await self._call(get(), "loading a snapshot")
        if msg is None:
            return None
        return self._snapshot(snapshot_id, bytes(msg.data or b""), dict(msg.headers or {}))


async def _require_jetstream(js: JetStreamContext, parsed: NatsStoreURL) -> None:
    """A clear error when the server runs without JetStream (no ``-js``)."""
    import nats.errors
    import nats.js.errors

    try:
        await asyncio.wait_for(js.account_info(), parsed.timeout)
    except (
        TimeoutError,
        nats.errors.NoRespondersError,
        nats.js.errors.ServiceUnavailableError,
    ):
        raise StoreUnavailableError(
            parsed.display,
            "the NATS server answers, but not its JetStream API: start it with -js "
            "(or enable JetStream for this account)",
        ) from None
    except nats.errors.Error as exc:
        from .connection import describe

        raise StoreUnavailableError(parsed.display, f"JetStream: {describe(exc)}") from None


async def _close(client: Client) -> None:
    try:
        await asyncio.wait_for(client.close(), 5)
    except (TimeoutError, Exception):  # the server is gone: nothing left to flush
        return


async def open_nats_store(url: str) -> JetStreamEventStore:
    """The ``pubsub.stores`` factory for ``nats://``."""
    return await JetStreamEventStore.open(url)
