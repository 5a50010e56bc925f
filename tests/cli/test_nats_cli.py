"""The commands on a ``nats://`` store, through the real ``pubsub`` command: the README's
walk-through (publish, events, replay, dlq, snapshot, check, stats) against JetStream,
``--json`` where it exists, credentials never shown, a dead server as one error line.

``pubsub run`` on JetStream (a group as a durable consumer shared by workers) belongs
to the JetStream consumer and is tested with it. Every test runs on a private server of
each nats-server binary found (2.9 and 2.15), never the shared one."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import CLI, EXAMPLES, Result, Watched, pubsub_process, spawn

sys.path.insert(0, str(Path(__file__).parents[1] / "plugins" / "nats"))
from nats_servers import NatsServer, binaries, missing, server_version

ORDERS = str(EXAMPLES / "orders.py")
PROJECTION = str(EXAMPLES / "projection.py")
SECRET = "s3cret-pw"


def _id(binary: str) -> str:
    try:
        return "nats-" + ".".join(map(str, server_version(binary)))
    except (OSError, RuntimeError):
        return Path(binary).name


@pytest.fixture(
    scope="module",
    params=[pytest.param(b, id=_id(b)) for b in binaries()] or [pytest.param(None, id="none")],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NatsServer]:
    binary: str | None = request.param
    if binary is None:
        missing("no nats-server binary found (PUBSUB_NATS_SERVER, the test extra, PATH)")
        raise AssertionError("unreachable")
    srv = NatsServer(binary, tmp_path_factory.mktemp("nats-cli"))
    try:
        srv.start()
    except RuntimeError as exc:
        missing(str(exc))
    try:
        yield srv
    finally:
        srv.stop()


class NatsCLI:
    """The in-process ``pubsub`` with ``PUBSUB_STORE`` set to a JetStream URL; every
    call checks that the URL's password appears in no output."""

    def __init__(self, cli: CLI, url: str) -> None:
        self.cli = cli
        self.url = url

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        result = self.cli(*args, input=input, env={"PUBSUB_STORE": self.url, **(env or {})})
        assert SECRET not in result.stdout + result.stderr
        return result


@pytest.fixture
def nats_cli(cli: CLI, server: NatsServer) -> NatsCLI:
    """A fresh namespace, given with user:password in the URL (a server without auth
    accepts them), so that every command shows they never appear."""
    host = server.url.removeprefix("nats://")
    return NatsCLI(cli, f"nats://alice:{SECRET}@{host}?ns=cli{uuid.uuid4().hex[:10]}")


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr
    return result


class TestWalkthrough:
    """The README's walk-through, on JetStream (``run`` aside, see the docstring)."""

    def test_publish_and_browse(self, nats_cli: NatsCLI) -> None:
        """publish a file then one event; events list/show; a re-import appends nothing."""
        doc = ok(
            nats_cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl"), "--json")
        ).json()
        assert [e["seq"] for e in doc["events"]] == [1, 2, 3, 4]
        one = ok(
            nats_cli(
                "publish",
                "OrderPlaced",
                "--app",
                ORDERS,
                "--json",
                "--data",
                '{"order_id": "A-5", "sku": "PEN", "total": "1.00"}',
            )
        ).json()
        assert one["events"][0]["seq"] == 5
        rows = ok(nats_cli("events", "list", "--json", "--limit", "0")).json_lines()
        assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
        assert rows[3]["type"] == "OrderShipped"
        shipped = ok(nats_cli("events", "list", "--json", "--type", "OrderShipped")).json_lines()
        assert [r["seq"] for r in shipped] == [4]
        shown = ok(nats_cli("events", "show", rows[1]["id"], "--json")).json()
        assert shown["event"]["seq"] == 2
        assert (
            ok(nats_cli("events", "show", "3", "--json")).json()["event"]["data"]["sku"] == "GHOST"
        )
        export = "".join(
            line + "\n"
            for line in ok(nats_cli("events", "list", "--json", "--limit", "0")).stdout.splitlines()
        )
        again = ok(
            nats_cli("publish", "--app", ORDERS, "--file", "-", "--json", input=export)
        ).json()
        assert (again["appended"], again["duplicates"]) == (0, 5)

    def test_replay_dlq_and_snapshots(self, nats_cli: NatsCLI) -> None:
        """replay --since / --from-seq dead-letters the GHOST order once (replayed twice,
        one entry); dlq show/retry/purge; snapshot create/list/restore; and no consumer
        group appears (replay moves none)."""
        ok(nats_cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl")))
        first = ok(nats_cli("replay", ORDERS, "--since", "10m", "--json")).json()
        assert (first["events"], first["dead_letters"]) == (4, 1)
        tail = ok(nats_cli("replay", ORDERS, "--from-seq", "3", "--json")).json()
        assert (tail["first_seq"], tail["last_seq"], tail["events"]) == (3, 4, 2)
        entries = ok(nats_cli("dlq", "list", "--json")).json()["entries"]
        assert [(e["id"], e["seq"], e["handler"]) for e in entries] == [
            (1, 3, "orders.reserve_stock")
        ]
        assert ok(nats_cli("dlq", "show", "1", "--json")).json()["message"].startswith("no stock")
        retried = ok(
            nats_cli(
                "dlq",
                "retry",
                "--all",
                "--app",
                ORDERS,
                "--json",
                env={"ORDERS_WAREHOUSE_OPEN": "1"},
            )
        ).json()
        assert (retried["resolved"], [e["resolved"] for e in retried["entries"]]) == (1, [True])
        assert ok(nats_cli("dlq", "list", "--json")).json()["entries"] == []
        assert ok(nats_cli("dlq", "purge", "--resolved", "--yes", "--json")).json()["purged"] == 1

        made = ok(nats_cli("snapshot", "create", PROJECTION, "--json")).json()
        assert [(s["id"], s["seq"]) for s in made["snapshots"]] == [(1, 4)]
        listed = ok(nats_cli("snapshot", "list", "--json")).json()
        assert [s["id"] for s in listed["snapshots"]] == [1]
        restored = ok(nats_cli("snapshot", "restore", PROJECTION, "--id", "1", "--json")).json()
        assert restored["replayed"] == 0

        stats = ok(nats_cli("stats", "--json")).json()
        assert stats["groups"] == []
        assert (stats["events"], stats["snapshots"]) == (4, 1)
        assert stats["types"] == {"OrderPlaced": 3, "OrderShipped": 1}

    def test_check_reports_the_server(self, nats_cli: NatsCLI, server: NatsServer) -> None:
        """check --json names the server version, the applied window and durability,
        and every payload verified; the URL it shows has no credentials."""
        ok(nats_cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl")))
        doc = ok(nats_cli("check", "--json")).json()
        assert doc["ok"] is True
        assert "alice" not in doc["store"]
        checks = {c["name"]: c for c in doc["checks"]}
        version = ".".join(map(str, server.version))
        assert checks["nats"]["detail"] == f"nats-server {version}"
        assert "duplicate_window 300s" in checks["stream"]["detail"]
        assert "sync_interval" in checks["durability"]["detail"]
        assert checks["checksums"]["detail"] == "4 payload(s) verified"

    def test_check_warns_on_a_short_window(self, nats_cli: NatsCLI) -> None:
        """A duplicate window shorter than the retry horizon is a warning: shown, and
        the store stays healthy (exit 0)."""
        url = nats_cli.url + "&dup_window=10&retry_horizon=60"
        ok(
            nats_cli(
                "publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl"), "--store", url
            )
        )
        doc = ok(nats_cli("check", "--quick", "--json", "--store", url)).json()
        [dedup] = [c for c in doc["checks"] if c["name"] == "dedup"]
        assert (dedup["ok"], dedup.get("warning")) == (True, True)
        assert "10s is shorter than the retry horizon 60s" in dedup["detail"]
        table = ok(nats_cli("check", "--quick", "--store", url))
        assert " warning " in table.stdout


async def _group_state(url: str, group: str, *, create: bool = False) -> tuple[int, int]:
    """(ack floor, pending + ack pending) of a durable consumer made the way a group's
    is (``naming.group_token``), created with two events acknowledged when asked."""
    from nats.js.api import AckPolicy, ConsumerConfig

    from plugins.nats import JetStreamEventStore, naming

    store = await asyncio.wait_for(JetStreamEventStore.open(url), 30)
    try:
        js, name = store.jetstream, naming.group_token(group)
        if create:
            await js.add_consumer(
                store.events_stream,
                ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT, ack_wait=60),
            )
            sub = await js.pull_subscribe_bind(consumer=name, stream=store.events_stream)
            for msg in await sub.fetch(2, timeout=5):
                await msg.ack_sync(timeout=5)
            await sub.unsubscribe()
        [info] = await store.groups()
        return info.checkpoint, info.lag
    finally:
        await store.aclose()


class TestReplayMovesNoGroup:
    def test_replay_since_selects_the_later_events_only(self, nats_cli: NatsCLI) -> None:
        """replay --since the append time of seq 5 replays exactly seq 5, and a group's
        durable consumer (ack floor 2, lag 3) is exactly as it was."""
        ok(nats_cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl")))
        ok(
            nats_cli(
                "publish",
                "OrderPlaced",
                "--app",
                ORDERS,
                "--data",
                '{"order_id": "A-8", "sku": "PEN", "total": "1.00"}',
            )
        )
        url = nats_cli.url
        assert asyncio.run(_group_state(url, "billing", create=True)) == (2, 3)
        fifth = ok(nats_cli("events", "show", "5", "--json")).json()["event"]["appended_at"]
        doc = ok(nats_cli("replay", ORDERS, "--since", fifth, "--json")).json()
        assert (doc["first_seq"], doc["last_seq"], doc["events"]) == (5, 5, 1)
        doc = ok(nats_cli("replay", ORDERS, "--from-seq", "4", "--json")).json()
        assert (doc["first_seq"], doc["last_seq"], doc["events"]) == (4, 5, 2)
        assert asyncio.run(_group_state(url, "billing")) == (2, 3)
        [group] = ok(nats_cli("stats", "--json")).json()["groups"]
        assert (group["group"], group["checkpoint"], group["lag"]) == ("billing", 2, 3)


class TestTail:
    def test_tail_follows_new_events(self, nats_cli: NatsCLI, tmp_path: Path) -> None:
        """events tail (a real process) prints the last events, then one published
        while it follows, and stops on SIGINT with exit 0."""
        ok(nats_cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl")))
        proc = Watched(
            spawn(
                "events",
                "tail",
                "--last",
                "1",
                "--poll",
                "0.05",
                cwd=tmp_path,
                env={"PUBSUB_STORE": nats_cli.url},
            )
        )
        try:
            proc.expect("following nats://", on="stderr")
            assert proc.expect("OrderShipped", on="stdout").startswith("4\t")
            ok(
                nats_cli(
                    "publish",
                    "OrderPlaced",
                    "--app",
                    ORDERS,
                    "--data",
                    '{"order_id": "A-7", "sku": "PEN", "total": "1.00"}',
                )
            )
            assert proc.expect("A-7", on="stdout").startswith("5\t")
            proc.proc.send_signal(signal.SIGINT)
            result = proc.finish()
        finally:
            if proc.proc.poll() is None:
                proc.proc.kill()
                proc.proc.wait(timeout=10)
        assert result.exit_code == 0, result.stderr
        assert SECRET not in result.stdout + result.stderr


class TestErrors:
    def test_read_commands_never_create_a_namespace(self, nats_cli: NatsCLI) -> None:
        """Read commands on a namespace that does not exist fail with one line and
        create nothing; publish creates it."""
        for command in (["events", "list"], ["stats"], ["dlq", "list"], ["check", "--quick"]):
            r = nats_cli(*command)
            assert r.exit_code == 1, (command, r.stdout)
            assert "does not exist on this server" in r.stderr, command
        ok(nats_cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl")))
        assert ok(nats_cli("stats", "--json")).json()["events"] == 4

    def test_dead_server_is_one_line(self, tmp_path: Path) -> None:
        """Nothing listening: exit 1 and one error line, no traceback, no password."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        r = pubsub_process(
            "stats", "--store", f"nats://bob:{SECRET}@127.0.0.1:{port}?ns=x&timeout=2", cwd=tmp_path
        )
        assert r.exit_code == 1
        assert r.error_line.startswith(
            f"error: store nats://127.0.0.1:{port}?ns=x&timeout=2: cannot connect"
        )
        assert "Traceback" not in r.stderr
        assert SECRET not in r.stderr + r.stdout

    def test_bad_url_is_one_line(self, cli: CLI) -> None:
        """A nats URL without a namespace: exit 1, one line saying to add ?ns=."""
        r = cli("stats", "--store", "nats://127.0.0.1:4?colour=1")
        assert r.exit_code == 1
        assert "unknown option 'colour'" in r.error_line
