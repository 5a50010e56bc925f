"""The JetStream store beyond the contract suite: its URL and credentials, the
configuration the server really applied, dead-letter idempotency and the resolution race
across connections, groups read from durable consumers, reads that touch no durable
consumer, headers, and what it says of itself (capabilities, durability, checks).

Every test runs on a private server of each nats-server binary found (2.9 and 2.15)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from nats_servers import NatsServer

from core.errors import DeadLetterNotFoundError, StoreUnavailableError
from core.events import Event
from core.store import (
    DeadLetter,
    DeadLetterReason,
    DeadLetterStatus,
    EventStore,
    SelfCheckingStore,
    StoreCapability,
    store_capabilities,
)
from plugins.nats import JetStreamEventStore, naming
from plugins.nats.url import parse_url

BOUND = 30  # seconds: a safety net against a hang, never a timed assertion


@dataclass(frozen=True, slots=True)
class Paid(Event, type_name="nats.test.paid"):
    order: str


@dataclass(frozen=True, slots=True)
class Refunded(Event, type_name="nats.test.refunded"):
    order: str


def letter(
    event_id: uuid.UUID, handler: str = "billing.charge", group: str | None = "g"
) -> DeadLetter:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return DeadLetter(
        event_id=event_id,
        event_type="nats.test.paid",
        handler=handler,
        reason=DeadLetterReason.EXHAUSTED,
        error_type="ValueError",
        message="boom",
        traceback="Traceback ...",
        attempts=3,
        first_failure_at=at,
        last_failure_at=at + timedelta(seconds=1),
        payload={"order": "o-1"},
        seq=1,
        group=group,
    )


@pytest.fixture
def url(nats_server: NatsServer, namespace: str) -> str:
    return f"{nats_server.url}?ns={namespace}"


@pytest.fixture
async def store(url: str) -> AsyncIterator[JetStreamEventStore]:
    opened = await asyncio.wait_for(JetStreamEventStore.open(url), BOUND)
    try:
        yield opened
    finally:
        await opened.aclose()


def _start(binary: str, spec: NatsServer, *extra: str) -> subprocess.Popen[bytes]:
    """A server of the test's own with ``extra`` arguments; returns once it is ready."""
    log = spec.store_dir / "server.log"
    args = [binary, "-a", "127.0.0.1", "-p", str(spec.port), "-sd", str(spec.store_dir)]
    args += ["-l", str(log), *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        if log.exists() and "Server is ready" in log.read_text(errors="replace"):
            return proc
        time.sleep(0.02)
    proc.kill()
    proc.wait(timeout=10)
    raise AssertionError(f"nats-server {' '.join(extra)} did not start")


async def bounded_open(url: str) -> JetStreamEventStore:
    return await asyncio.wait_for(JetStreamEventStore.open(url), BOUND)


class TestURL:
    """The URL's namespace, options and credentials; nothing secret is ever shown."""

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            pytest.param("nats://h:4222", "no namespace", id="no-ns"),
            pytest.param("nats://h:4222?ns=a.b", "namespace 'a.b' must be", id="bad-ns"),
            pytest.param("nats://h?ns=a&colour=red", "unknown option 'colour'", id="unknown"),
            pytest.param("nats://h?ns=a&dup_window=0", "dup_window='0' must be", id="window"),
            pytest.param("nats://h?ns=a&replicas=9", "replicas='9' must be 1 to 5", id="replicas"),
            pytest.param("nats://?ns=a", "no server", id="no-host"),
        ],
    )
    def test_bad_urls_are_one_line_errors(self, url: str, message: str) -> None:
        """A wrong URL is a StoreUnavailableError naming what is wrong."""
        with pytest.raises(StoreUnavailableError, match=message) as info:
            parse_url(url, {})
        assert "\n" not in str(info.value)

    def test_hosts_options_and_defaults(self) -> None:
        """Several hosts, a default port, and options read as numbers."""
        parsed = parse_url("nats://a,b:4333?ns=shop&dup_window=3600&replicas=3", {})
        assert parsed.servers == ("nats://a:4222", "nats://b:4333")
        assert (parsed.namespace, parsed.dup_window, parsed.replicas) == ("shop", 3600.0, 3)
        assert parsed.display == "nats://a:4222,b:4333?ns=shop&dup_window=3600&replicas=3"

    def test_consumer_options_pass_through(self) -> None:
        """The consumer's options are not the store's to check: they stay in the URL
        the store shows, for plugins.nats.consumer to read."""
        parsed = parse_url("nats://h?ns=a&ack_wait=30&max_deliver=5&ordered=1", {})
        assert parsed.display == "nats://h:4222?ns=a&ack_wait=30&max_deliver=5&ordered=1"

    def test_credentials_never_shown(self) -> None:
        """user:password in the URL, or a token from the environment, are used but never
        appear in the display URL, the repr, or an error about the URL."""
        parsed = parse_url("nats://alice:s3cret@h:4222?ns=a", {"PUBSUB_NATS_TOKEN": "tok-XYZ"})
        assert (parsed.credentials.user, parsed.credentials.password) == ("alice", "s3cret")
        assert parsed.credentials.token == "tok-XYZ"
        for text in (parsed.display, repr(parsed)):
            assert "s3cret" not in text
            assert "tok-XYZ" not in text
        with pytest.raises(StoreUnavailableError) as info:
            parse_url("nats://alice:s3cret@h:4222?ns=a&oops=1", {})
        assert "s3cret" not in str(info.value)
        assert "alice" not in str(info.value)

    def test_environment_credentials(self) -> None:
        """PUBSUB_NATS_USER/PASSWORD and PUBSUB_NATS_CREDS are read from the environment."""
        env = {
            "PUBSUB_NATS_USER": "bob",
            "PUBSUB_NATS_PASSWORD": "pw",
            "PUBSUB_NATS_CREDS": "/etc/x.creds",
        }
        creds = parse_url("nats://h?ns=a", env).credentials
        assert (creds.user, creds.password, creds.creds_file) == ("bob", "pw", "/etc/x.creds")
        assert creds.kind == "creds file"


class TestConnect:
    async def test_dead_server_is_one_line_error(
        self, nats_server: NatsServer, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """Nothing listening: a one-line StoreUnavailableError naming the host, and
        nothing printed by nats-py (no traceback)."""
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed again: nothing listens there
        with pytest.raises(StoreUnavailableError) as info:
            await asyncio.wait_for(
                JetStreamEventStore.open(f"nats://alice:pw@127.0.0.1:{port}?ns=x&timeout=2"),
                BOUND,
            )
        message = str(info.value)
        assert f"cannot connect to the NATS server at 127.0.0.1:{port}" in message
        assert "(credentials: user and password)" in message
        assert "pw@" not in message
        assert "\n" not in message
        out, err = capfd.readouterr()
        assert "Traceback" not in out + err

    async def test_wrong_password_is_refused(
        self, tmp_path_factory: pytest.TempPathFactory, nats_binary: str
    ) -> None:
        """A server that wants a user and password refuses others with one line that
        names the kind of credentials used, never their value; the right ones open."""
        spec = NatsServer(nats_binary, tmp_path_factory.mktemp("auth"))
        proc = await asyncio.to_thread(
            _start, nats_binary, spec, "-js", "--user", "u", "--pass", "right"
        )
        try:
            url = f"nats://u:wrong@127.0.0.1:{spec.port}?ns=x&timeout=3"
            with pytest.raises(StoreUnavailableError) as info:
                await asyncio.wait_for(JetStreamEventStore.open(url), BOUND)
            message = str(info.value)
            # The refusal, or (2.9 closes at once, racing its -ERR) the closed connection.
            assert (
                "authorization violation: check the credentials" in message
                or "a refusal of the credentials looks like this too" in message
            )
            assert "(credentials: user and password)" in message
            assert "wrong" not in message
            ok = await bounded_open(f"nats://u:right@127.0.0.1:{spec.port}?ns=x")
            try:
                assert ok.url == f"nats://127.0.0.1:{spec.port}?ns=x"
            finally:
                await ok.aclose()
        finally:
            proc.kill()
            proc.wait(timeout=10)

    async def test_server_without_jetstream(
        self, tmp_path_factory: pytest.TempPathFactory, nats_binary: str
    ) -> None:
        """A server started without -js: one line saying to start it with -js."""
        spec = NatsServer(nats_binary, tmp_path_factory.mktemp("nojs"))
        proc = await asyncio.to_thread(_start, nats_binary, spec)
        try:
            with pytest.raises(StoreUnavailableError, match="start it with -js"):
                await asyncio.wait_for(
                    JetStreamEventStore.open(f"nats://127.0.0.1:{spec.port}?ns=x&timeout=2"),
                    BOUND,
                )
        finally:
            proc.kill()
            proc.wait(timeout=10)

    def test_missing_extra_is_named(self) -> None:
        """Without nats-py, opening a nats:// store says which extra to install."""
        code = (
            "import sys, asyncio; sys.modules['nats'] = None\n"
            "from core.entrypoints import open_store\n"
            "from core.errors import StoreUnavailableError\n"
            "try:\n"
            "    asyncio.run(open_store('nats://127.0.0.1:1?ns=x'))\n"
            "except StoreUnavailableError as exc:\n"
            "    print(exc)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert "pip install 'pubsub-workbench[nats]'" in out.stdout

    def test_import_is_lazy(self) -> None:
        """Importing the plugin (what the entry point does) imports no nats-py."""
        code = "import sys, plugins.nats, core, pubsub_cli.app; print('nats' in sys.modules)"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert out.stdout.strip() == "False"


class TestServerConfig:
    """The configuration is read back: what the server did not apply is refused."""

    async def test_created_stream_has_the_asked_window(self, store: JetStreamEventStore) -> None:
        """The events stream is created with the URL's duplicate window, as echoed."""
        info = await store.jetstream.stream_info(store.events_stream)
        assert info.config.duplicate_window == pytest.approx(300)
        assert store.duplicate_window == pytest.approx(300)

    async def test_different_window_is_refused_then_updated(
        self, store: JetStreamEventStore, url: str
    ) -> None:
        """Re-binding with another window is refused naming both values; with update=1
        the stream is updated and the new value read back."""
        with pytest.raises(StoreUnavailableError, match=r"duplicate_window=300s \(asked 60s\)"):
            await bounded_open(f"{url}&dup_window=60")
        updated = await bounded_open(f"{url}&dup_window=60&update=1")
        try:
            assert updated.duplicate_window == pytest.approx(60)
            info = await updated.jetstream.stream_info(updated.events_stream)
            assert info.config.duplicate_window == pytest.approx(60)
        finally:
            await updated.aclose()

    async def test_compression_needs_a_newer_server(
        self, nats_server: NatsServer, namespace: str
    ) -> None:
        """compression=s2 is refused on 2.9 (which would ignore it) and applied, as read
        back, on 2.10+."""
        url = f"{nats_server.url}?ns={namespace}&compression=s2"
        if nats_server.version < (2, 10, 0):
            with pytest.raises(StoreUnavailableError, match=r"compression=s2 needs 2\.10\.0"):
                await bounded_open(url)
            return
        opened = await bounded_open(url)
        try:
            checks = {c.name: c.detail for c in await opened.self_checks()}
            assert "compression s2" in checks["stream"]
        finally:
            await opened.aclose()


class TestAppend:
    async def test_duplicate_takes_no_sequence(self, store: JetStreamEventStore) -> None:
        """A re-published id is acknowledged with its first seq; the next event takes
        the very next number (no gap)."""
        first = Paid("o-1")
        await store.append([first])
        again = await store.append([first, Paid("o-2")])
        assert [(r.seq, r.duplicate) for r in again] == [(1, True), (2, False)]
        assert await store.last_seq() == 2

    async def test_concurrent_appends_each_get_a_contiguous_run(
        self, store: JetStreamEventStore
    ) -> None:
        """Ten concurrent appends of twenty events: each call's events have twenty
        consecutive sequence numbers, and together they cover 1..200."""
        results = await asyncio.wait_for(
            asyncio.gather(
                *(store.append([Paid(f"{i}-{j}") for j in range(20)]) for i in range(10))
            ),
            BOUND,
        )
        for batch in results:
            seqs = [r.seq for r in batch]
            assert seqs == list(range(seqs[0], seqs[0] + 20))
        assert sorted(r.seq for batch in results for r in batch) == list(range(1, 201))

    async def test_headers_travel_with_the_event(self, store: JetStreamEventStore) -> None:
        """Per-event headers are stored as Pubsub-H-<name> headers of its message."""
        await store.append([Paid("o-1"), Paid("o-2")], headers=[{"traceparent": "00-ab"}, None])
        first = await store.jetstream.get_msg(store.events_stream, 1)
        second = await store.jetstream.get_msg(store.events_stream, 2)
        assert naming.user_headers(first.headers or {}) == {"traceparent": "00-ab"}
        assert naming.user_headers(second.headers or {}) == {}
        with pytest.raises(ValueError, match="one entry per event"):
            await store.append([Paid("o-3")], headers=[])

    async def test_types_with_dots_are_counted_by_name(self, store: JetStreamEventStore) -> None:
        """Per-subject counts map back to the exact type names."""
        await store.append([Paid("a"), Paid("b"), Refunded("a")])
        assert await store.count_by_type() == {"nats.test.paid": 2, "nats.test.refunded": 1}
        assert await store.count(types=["nats.test.refunded", "nats.test.refunded"]) == 1


class TestRead:
    async def test_read_stops_at_the_end_seen_at_start(self, store: JetStreamEventStore) -> None:
        """Events appended while a read runs are not part of it."""
        await store.append([Paid(f"o-{i}") for i in range(5)])
        seen = []
        async for record in store.read(batch_size=2):
            seen.append(record.seq)
            if record.seq == 1:
                await store.append([Paid("late")])
        assert seen == [1, 2, 3, 4, 5]
        assert await store.last_seq() == 6

    async def test_reads_leave_no_consumer(self, store: JetStreamEventStore) -> None:
        """A read, a scan and a count leave no consumer on the stream (never a durable
        one: replay and listings move no group)."""
        root = Paid("root")
        await store.append([root, Refunded("root", causation_id=root.id)])
        assert [r.seq async for r in store.read(types=["nats.test.refunded"])] == [2]
        assert [r.seq for r in await store.children(root.id)] == [2]
        assert (await store.get_by_id(root.id)) is not None
        infos = await store.jetstream.consumers_info(store.events_stream)
        assert infos == []

    async def test_since_with_from_seq(self, store: JetStreamEventStore) -> None:
        """since and from_seq together keep the later of both bounds."""
        await store.append([Paid("a"), Paid("b"), Paid("c")])
        second = await store.get(2)
        assert second is not None
        got = [r.seq async for r in store.read(since=second.appended_at, from_seq=3)]
        assert got == [3]


class TestGroups:
    async def test_groups_are_durable_consumers(self, store: JetStreamEventStore) -> None:
        """A durable consumer is a group: checkpoint = ack floor, lag = pending plus
        delivered-unacknowledged; an ephemeral reader is not listed."""
        from nats.js.api import AckPolicy, ConsumerConfig

        await store.append([Paid(f"o-{i}") for i in range(5)])
        name = naming.group_token("billing.workers")
        await store.jetstream.add_consumer(
            store.events_stream,
            ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT, ack_wait=60),
        )
        sub = await store.jetstream.pull_subscribe_bind(consumer=name, stream=store.events_stream)
        msgs = await sub.fetch(3, timeout=5)
        for msg in msgs[:2]:
            await msg.ack_sync(timeout=5)
        [info] = await store.groups()
        assert (info.group, info.checkpoint, info.lag) == ("billing.workers", 2, 3)
        assert await store.load_checkpoint("billing.workers") == 2
        assert await store.load_checkpoint("nobody") == 0
        await sub.unsubscribe()

    async def test_lease_calls_refuse(self, store: JetStreamEventStore) -> None:
        """The lease and checkpoint calls of SQLite's consumer refuse with one line
        that says why, and change nothing."""
        with pytest.raises(StoreUnavailableError, match="needs no lease"):
            await store.acquire_lease("g", "w", 10)
        with pytest.raises(StoreUnavailableError, match="commit_progress"):
            await store.commit_progress("g", 1, [letter(uuid.uuid4())])
        assert await store.count_dead_letters() == 0


class TestDeadLetters:
    async def test_add_is_idempotent_per_event_handler_group(
        self, store: JetStreamEventStore
    ) -> None:
        """The same (event, handler, group) again returns the stored id and adds none;
        another handler or group is another entry; ids count 1, 2, 3."""
        event_id = uuid.uuid4()
        first = await store.add_dead_letters([letter(event_id)])
        again = await store.add_dead_letters([letter(event_id)])
        other = await store.add_dead_letters(
            [letter(event_id, handler="billing.other"), letter(event_id, group=None)]
        )
        assert first == again == [1]
        assert other == [2, 3]
        assert await store.count_dead_letters() == 3

    async def test_crash_between_key_and_entry_is_completed(
        self, store: JetStreamEventStore
    ) -> None:
        """A writer that died after taking the idempotency key and before writing the
        entry: the next add of that letter completes the entry under the same id."""
        event_id = uuid.uuid4()
        entry = letter(event_id)
        key = f"k.{event_id}.{naming.token(entry.handler)}.{naming.token('g')}"
        kv = await store.jetstream.key_value(f"PUBSUB_{store.namespace}_DLQ")
        await kv.create(key, b"7")
        with pytest.raises(DeadLetterNotFoundError):
            await store.get_dead_letter(7)
        assert await store.add_dead_letters([entry]) == [7]
        assert (await store.get_dead_letter(7)).message == "boom"

    async def test_resolution_race_across_connections(
        self, store: JetStreamEventStore, url: str
    ) -> None:
        """Two processes' connections resolving the same entry at once: exactly one
        wins, and the entry records the winner's resolution."""
        [entry_id] = await store.add_dead_letters([letter(uuid.uuid4())])
        other = await bounded_open(url)
        try:
            at = datetime(2026, 5, 6, tzinfo=UTC)
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        s.resolve_dead_letter(entry_id, f"by {i}", at)
                        for i, s in enumerate([store, other] * 4)
                    )
                ),
                BOUND,
            )
        finally:
            await other.aclose()
        assert sorted(results) == [False] * 7 + [True]
        resolved = await store.get_dead_letter(entry_id)
        assert resolved.status is DeadLetterStatus.RESOLVED
        assert resolved.resolution == f"by {results.index(True)}"

    async def test_ids_are_unique_across_writers(
        self, store: JetStreamEventStore, url: str
    ) -> None:
        """Two connections adding letters concurrently never share an id."""
        other = await bounded_open(url)
        try:
            batches = await asyncio.wait_for(
                asyncio.gather(
                    *(s.add_dead_letters([letter(uuid.uuid4())]) for s in [store, other] * 5)
                ),
                BOUND,
            )
        finally:
            await other.aclose()
        ids = sorted(i for batch in batches for i in batch)
        assert ids == list(range(1, 11))

    async def test_purge_forgets_the_key(self, store: JetStreamEventStore) -> None:
        """After a purge the same letter is a new entry again (its key went with it)."""
        event_id = uuid.uuid4()
        [first] = await store.add_dead_letters([letter(event_id)])
        assert await store.purge_dead_letters() == 1
        [second] = await store.add_dead_letters([letter(event_id)])
        assert second != first
        assert [e.id for e in await store.list_dead_letters()] == [second]


class TestSelfDescription:
    async def test_capabilities_are_declared(self, store: JetStreamEventStore) -> None:
        """The store declares none of the protocol's optional promises it cannot keep."""
        caps = store_capabilities(store)
        assert StoreCapability.DEDUP_FOREVER not in caps
        assert StoreCapability.LEASES not in caps
        assert StoreCapability.ID_INDEX not in caps
        assert isinstance(store, EventStore)
        assert isinstance(store, SelfCheckingStore)

    async def test_checks_warn_on_a_short_window(self, url: str) -> None:
        """A duplicate window shorter than the retry horizon is a warning row naming
        both; the server version row names the real server."""
        opened = await bounded_open(f"{url}&dup_window=30&retry_horizon=600")
        try:
            checks = {c.name: c for c in await opened.self_checks()}
        finally:
            await opened.aclose()
        assert checks["dedup"].warning
        assert checks["dedup"].ok
        assert "30s is shorter than the retry horizon 600s" in checks["dedup"].detail
        assert checks["nats"].detail.startswith("nats-server 2.")

    async def test_durability_names_the_sync_setting(self, store: JetStreamEventStore) -> None:
        """A single-replica stream's durability says what an acked event survives and
        that power loss needs sync_interval: always."""
        assert "kill -9" in store.durability
        assert "sync_interval: always" in store.durability
