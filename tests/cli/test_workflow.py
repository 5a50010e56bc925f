"""Tests of the commands that run handlers: ``run --once``, ``dlq``, ``replay``,
``snapshot``, ``stats`` and ``check``, in process against a real SQLite file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import CLI, EXAMPLES

ORDERS = str(EXAMPLES / "orders.py")
PROJECTION = str(EXAMPLES / "projection.py")
BIG = "99999999999999999999999"  # beyond SQLite's 64-bit INTEGER


def deliveries(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def handled(cli: CLI, tmp_path: Path) -> CLI:
    """The example orders published and handled once (one dead letter: the GHOST sku)."""
    r = cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl"))
    assert r.exit_code == 0, r.stderr
    r = cli("run", ORDERS, "--once", env={"ORDERS_LOG": str(tmp_path / "log.jsonl")})
    assert r.exit_code == 0, r.stderr
    return cli


class TestRunOnce:
    """run --once processes the backlog, saves the checkpoint and exits 0."""

    def test_backlog_then_nothing(self, handled: CLI, tmp_path: Path) -> None:
        """A second --once run handles nothing: the checkpoint was saved."""
        log = tmp_path / "log.jsonl"
        first = len(deliveries(log))
        assert first == 9  # audit x4, charge x3, reserve_stock x2 (GHOST failed)
        r = handled("run", ORDERS, "--once", env={"ORDERS_LOG": str(log)})
        assert r.exit_code == 0
        assert "caught up 0 event(s)" in r.stderr
        assert len(deliveries(log)) == first

    def test_inheritance_and_retry(self, handled: CLI, tmp_path: Path) -> None:
        """audit (base class) saw both types; charge succeeded on its second attempt."""
        rows = deliveries(tmp_path / "log.jsonl")
        assert {r["type"] for r in rows if r["handler"] == "audit"} == {
            "OrderPlaced",
            "OrderShipped",
        }
        assert {r["attempt"] for r in rows if r["handler"] == "charge"} == {2}

    def test_stdin_once(self, cli: CLI, tmp_path: Path) -> None:
        """--stdin --once publishes the lines through the bus and handles them."""
        lines = (EXAMPLES / "orders.jsonl").read_text()
        log = tmp_path / "log.jsonl"
        r = cli("run", ORDERS, "--once", "--stdin", input=lines, env={"ORDERS_LOG": str(log)})
        assert r.exit_code == 0, r.stderr
        assert len(deliveries(log)) == 9
        assert len(cli("events", "list", "--json").json_lines()) == 4

    def test_needs_target(self, cli: CLI) -> None:
        """run without TARGET is a usage error."""
        r = cli("run")
        assert (
            r.usage_error("pubsub run")
            == "error: TARGET: give at least one TARGET or --plugin NAME"
        )

    @pytest.mark.parametrize("group", ["", "  "])
    def test_empty_group(self, cli: CLI, group: str) -> None:
        """An empty --group is refused: no checkpoint is saved under an empty name."""
        r = cli("run", ORDERS, "--once", "--group", group)
        assert (
            r.usage_error("pubsub run") == "error: --group: a consumer group name cannot be empty"
        )
        assert not cli.db.exists()


class TestDLQ:
    """dlq list / show / retry / purge."""

    def test_list(self, handled: CLI) -> None:
        """The GHOST order's reservation is the one open entry."""
        doc = handled("dlq", "list", "--json").json()
        assert isinstance(doc, dict)
        entry = doc["entries"][0]
        assert {(e["handler"], e["seq"]) for e in doc["entries"]} == {("orders.reserve_stock", 3)}
        assert entry["handler"] == "orders.reserve_stock"
        assert entry["seq"] == 3
        assert entry["attempts"] == 2
        assert entry["status"] == "open"
        table = handled("dlq", "list")
        assert "orders.reserve_stock" in table.stdout

    def test_show(self, handled: CLI) -> None:
        """show has the payload and the traceback."""
        doc = handled("dlq", "show", "1", "--json").json()
        assert isinstance(doc, dict)
        assert doc["payload"]["sku"] == "GHOST"
        assert "WarehouseClosedError" in doc["traceback"]
        assert "Traceback" in handled("dlq", "show", "1").stdout

    def test_show_missing(self, handled: CLI) -> None:
        """An unknown id is one line, exit 1."""
        r = handled("dlq", "show", "42")
        assert r.exit_code == 1
        assert (
            r.error_line == "error: no dead letter with id 42: see 'pubsub dlq list --status all'"
        )

    def test_retry_fails_again_then_resolves(self, handled: CLI) -> None:
        """A retry that fails again keeps the entry open (exit 1 with --strict); once
        the cause is fixed it resolves, and the resolution is recorded."""
        r = handled("dlq", "retry", "1", "--app", ORDERS, "--strict")
        assert r.exit_code == 1
        assert "failed again" in r.error_line
        r = handled(
            "dlq", "retry", "--all", "--app", ORDERS, "--json", env={"ORDERS_WAREHOUSE_OPEN": "1"}
        )
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert isinstance(doc, dict)
        assert doc["resolved"] == 1
        entry = handled("dlq", "show", "1", "--json").json()
        assert isinstance(entry, dict)
        assert entry["status"] == "resolved"
        assert entry["resolution"].startswith("redriven by")
        assert entry["attempts"] == 3
        again = handled("dlq", "retry", "1", "--app", ORDERS, "--json").json()
        assert again["already_resolved"] == 1  # type: ignore[index]

    def test_retry_of_resolved_entry_is_not_counted_as_redriven(self, handled: CLI) -> None:
        """An entry resolved before is skipped, and the summary says so."""
        fixed = {"ORDERS_WAREHOUSE_OPEN": "1"}
        r = handled("dlq", "retry", "1", "--app", ORDERS, env=fixed)
        assert r.exit_code == 0, r.stderr
        assert "1 re-driven, 0 failed again" in r.stdout
        r = handled("dlq", "retry", "1", "--app", ORDERS, env=fixed)
        assert r.exit_code == 0, r.stderr
        assert "0 re-driven, 0 failed again, 1 already resolved (skipped)" in r.stdout

    def test_retry_needs_app(self, handled: CLI) -> None:
        """Re-driving without the handlers is a usage error."""
        r = handled("dlq", "retry", "1")
        assert r.usage_error("pubsub dlq retry") == (
            "error: --app: re-driving needs the handlers: pass --app TARGET (or --plugin NAME)"
        )

    @pytest.mark.parametrize(
        ("args", "line"),
        [
            (
                (),
                "error: nothing to retry: give dead-letter ids, or --all for every open one",
            ),
            (("1", "--all"), "error: give dead-letter ids or --all, not both"),
            (("0",), "error: ID: must be >= 1"),
            (("abc",), "error: ID: not an integer"),
        ],
    )
    def test_retry_which(self, handled: CLI, args: tuple[str, ...], line: str) -> None:
        """Neither ids nor --all, or both, or a bad id: one line that says which."""
        before = handled("dlq", "list", "--status", "all", "--json").json()
        r = handled("dlq", "retry", *args, "--app", ORDERS)
        assert r.usage_error("pubsub dlq retry") == line
        assert handled("dlq", "list", "--status", "all", "--json").json() == before

    @pytest.mark.parametrize(
        ("command", "args", "option"),
        [
            ("events list", ("--from-seq", BIG), "--from-seq"),
            ("events list", ("--limit", BIG), "--limit"),
            ("dlq list", ("--limit", BIG), "--limit"),
            ("dlq show", (BIG,), "ID"),
            ("dlq retry", (BIG, "--app", ORDERS), "ID"),
            ("replay", (ORDERS, "--to-seq", BIG), "--to-seq"),
            ("snapshot restore", (PROJECTION, "--id", BIG), "--id"),
        ],
    )
    def test_numbers_beyond_64_bits(
        self, handled: CLI, command: str, args: tuple[str, ...], option: str
    ) -> None:
        """Ids, sequence numbers and limits larger than the store's integers are usage
        errors instead of an OverflowError traceback from SQLite."""
        r = handled(*command.split(), *args)
        assert r.usage_error(f"pubsub {command}") == f"error: {option}: must be <= {2**63 - 1}"

    def test_purge_needs_yes_when_piped(self, handled: CLI) -> None:
        """Without a terminal, purge refuses unless --yes."""
        assert handled("dlq", "purge").exit_code == 2
        listed = handled("dlq", "list", "--json").json()["entries"]  # type: ignore[index]
        r = handled("dlq", "purge", "--yes", "--json")
        assert r.json() == {"purged": len(listed), "resolved_only": False}
        assert handled("dlq", "list", "--json", "--status", "all").json() == {"entries": []}

    def test_purge_resolved_only(self, handled: CLI) -> None:
        """--resolved keeps the open entries."""
        r = handled("dlq", "purge", "--resolved", "--yes")
        assert r.exit_code == 0
        assert "purged 0" in r.stdout


class TestReplay:
    """replay re-dispatches a range and never moves the checkpoint or appends."""

    def test_replay_json(self, handled: CLI, tmp_path: Path) -> None:
        """The summary counts events and per-handler results; nothing is appended."""
        before = handled("stats", "--json").json()
        log = tmp_path / "replay.jsonl"
        r = handled("replay", ORDERS, "--since", "1h", "--json", env={"ORDERS_LOG": str(log)})
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert isinstance(doc, dict)
        assert doc["events"] == 4
        assert doc["handlers"]["orders.audit"] == {"ok": 4, "failed": 0}
        assert doc["handlers"]["orders.reserve_stock"]["failed"] == 1
        after = handled("stats", "--json").json()
        assert isinstance(before, dict)
        assert isinstance(after, dict)
        assert after["last_seq"] == before["last_seq"]
        assert after["groups"] == before["groups"]
        replayed = handled("dlq", "list", "--json").json()["entries"]  # type: ignore[index]
        assert [e["source"] for e in replayed][-1] == "replay"

    def test_handler_and_type(self, handled: CLI, tmp_path: Path) -> None:
        """--handler and --type narrow the replay."""
        log = tmp_path / "replay.jsonl"
        r = handled(
            "replay",
            ORDERS,
            "--type",
            "OrderShipped",
            "--handler",
            "orders.audit",
            "--json",
            env={"ORDERS_LOG": str(log)},
        )
        doc = r.json()
        assert doc["events"] == 1  # type: ignore[index]
        assert list(doc["handlers"]) == ["orders.audit"]  # type: ignore[index]
        assert [d["type"] for d in deliveries(log)] == ["OrderShipped"]

    def test_dry_run(self, handled: CLI, tmp_path: Path) -> None:
        """--dry-run prints the plan and dispatches nothing."""
        log = tmp_path / "replay.jsonl"
        r = handled(
            "replay", ORDERS, "--from-seq", "2", "--dry-run", "--json", env={"ORDERS_LOG": str(log)}
        )
        doc = r.json()
        assert isinstance(doc, dict)
        assert doc["dry_run"] is True
        assert (doc["first_seq"], doc["last_seq"], doc["events"]) == (2, 4, 3)
        placed = next(t for t in doc["types"] if t["type"] == "OrderPlaced")
        assert "orders.charge" in placed["handlers"]
        assert not log.exists()
        assert "replay plan" in handled("replay", ORDERS, "--dry-run").stdout

    def test_unknown_handler(self, handled: CLI) -> None:
        """An unknown --handler is one line naming the loaded handlers."""
        r = handled("replay", ORDERS, "--handler", "nope")
        assert r.exit_code == 1
        assert "no handler named 'nope'" in r.error_line

    def test_strict(self, handled: CLI) -> None:
        """--strict exits 1 when a handler failed."""
        assert handled("replay", ORDERS, "--strict").exit_code == 1

    def test_bad_since(self, handled: CLI) -> None:
        """A bad --since is a usage error."""
        r = handled("replay", ORDERS, "--since", "last week")
        assert r.usage_error("pubsub replay").startswith("error: --since: 'last week' is not")

    def test_inverted_sequence_range(self, handled: CLI, tmp_path: Path) -> None:
        """--from-seq after --to-seq is a usage error that says so; nothing is dispatched."""
        log = tmp_path / "replay.jsonl"
        r = handled(
            "replay", ORDERS, "--from-seq", "3", "--to-seq", "1", env={"ORDERS_LOG": str(log)}
        )
        line = r.usage_error("pubsub replay")
        assert line == "error: --from-seq 3 is after --to-seq 1: the sequence range is inverted"
        assert not log.exists()

    @pytest.mark.parametrize("command", [("replay", ORDERS), ("events", "list")])
    def test_inverted_time_range(self, handled: CLI, command: tuple[str, ...]) -> None:
        """--since later than --until is a usage error showing both resolved times."""
        r = handled(*command, "--since", "2030-01-02T00:00Z", "--until", "2030-01-01T00:00Z")
        line = r.usage_error(f"pubsub {command[0]}" + (" list" if command[0] == "events" else ""))
        assert re.fullmatch(
            r"error: --since '2030-01-02T00:00Z' \(2030-01-0[12] \d\d:\d\d:00\) is later than "
            r"--until '2030-01-01T00:00Z' \(20(29-12-31|30-01-0[12]) \d\d:\d\d:00\): "
            r"the time range is inverted",
            line,
        ), line

    def test_equal_times_are_not_inverted(self, handled: CLI) -> None:
        """--since equal to --until is a valid (if narrow) range."""
        r = handled(
            "replay", ORDERS, "--since", "2030-01-01T00:00Z", "--until", "2030-01-01T00:00Z"
        )
        assert r.exit_code == 0, r.stderr

    def test_empty_range_summary(self, handled: CLI, tmp_path: Path) -> None:
        """A valid range that selects nothing: a summary of 0 events, exit 0, no 'None'."""
        log = tmp_path / "replay.jsonl"
        r = handled("replay", ORDERS, "--from-seq", "30", env={"ORDERS_LOG": str(log)})
        assert r.exit_code == 0, r.stderr
        assert r.stdout.splitlines()[0] == (
            "replayed 0 events: no stored event matches the selection (the log ends at seq 4)"
        )
        assert "None" not in r.stdout
        assert not log.exists()
        doc = handled("replay", ORDERS, "--since", "2030-01-01", "--json").json()
        assert isinstance(doc, dict)
        assert (doc["events"], doc["first_seq"], doc["last_seq"]) == (0, None, None)

    def test_empty_range_dry_run(self, handled: CLI) -> None:
        """The plan of an empty range says it is empty instead of 'None .. None'."""
        r = handled("replay", ORDERS, "--from-seq", "30", "--dry-run")
        assert r.exit_code == 0, r.stderr
        assert (
            "sequence range   empty: no stored event matches the selection "
            "(the log ends at seq 4)" in r.stdout
        )
        assert "None" not in r.stdout


class TestSnapshots:
    """snapshot create / list / restore with the projection example."""

    def test_create_list_restore(self, handled: CLI) -> None:
        """create saves the state at the last seq; restore replays only what came after."""
        r = handled("snapshot", "create", PROJECTION, "--json")
        assert r.exit_code == 0, r.stderr
        (snap,) = r.json()["snapshots"]  # type: ignore[index]
        assert snap["name"] == "projections.revenue_by_sku"
        assert snap["seq"] == 4
        listed = handled("snapshot", "list", "--json").json()["snapshots"]  # type: ignore[index]
        assert [s["id"] for s in listed] == [1]
        handled(
            "publish",
            "--app",
            ORDERS,
            "OrderPlaced",
            "--data",
            '{"order_id": "A-9", "sku": "BOOK", "total": "7.50"}',
        )
        doc = handled("snapshot", "restore", PROJECTION, "--json").json()
        assert isinstance(doc, dict)
        assert doc["replayed"] == 1
        state = doc["state"]["projections.revenue_by_sku"]
        assert state["orders"] == 4
        assert state["revenue"]["BOOK"] == "20.00"

    def test_create_says_where_the_state_came_from(self, handled: CLI) -> None:
        """The first snapshot comes from the whole log; the next from that snapshot."""
        r = handled("snapshot", "create", PROJECTION)
        assert r.exit_code == 0, r.stderr
        assert "rebuilt from the whole log (4 event(s)): no previous snapshot" in r.stdout
        assert "previous snapshot and" not in r.stdout
        r = handled("snapshot", "create", PROJECTION)
        assert r.exit_code == 0, r.stderr
        assert "rebuilt from the previous snapshot and 0 later event(s)" in r.stdout

    def test_restore_by_id(self, handled: CLI) -> None:
        """--id picks a snapshot; an unknown id is one line, exit 1."""
        handled("snapshot", "create", PROJECTION)
        assert handled("snapshot", "restore", PROJECTION, "--id", "1").exit_code == 0
        r = handled("snapshot", "restore", PROJECTION, "--id", "7")
        assert r.exit_code == 1
        assert "no snapshot with id 7" in r.error_line

    def test_no_projection(self, handled: CLI) -> None:
        """A target without projections is one line, exit 1."""
        r = handled("snapshot", "create", ORDERS)
        assert r.exit_code == 1
        assert "no projection is loaded" in r.error_line


class TestStatsAndCheck:
    """stats and check read the store."""

    def test_stats(self, handled: CLI) -> None:
        """Counts per type, DLQ per handler and the group's checkpoint."""
        doc = handled("stats", "--json").json()
        assert isinstance(doc, dict)
        assert doc["types"] == {"OrderPlaced": 3, "OrderShipped": 1}
        assert list(doc["dlq"]["handlers"]) == ["orders.reserve_stock"]
        (group,) = doc["groups"]
        assert (group["group"], group["checkpoint"], group["lag"]) == ("default", 4, 0)
        assert "consumer groups" in handled("stats").stdout

    def test_check_healthy(self, handled: CLI) -> None:
        """A sound store checks ok, exit 0."""
        r = handled("check", "--json")
        assert r.exit_code == 0
        doc = r.json()
        assert isinstance(doc, dict)
        assert doc["ok"] is True
        assert any(c["name"] == "checksums" for c in doc["checks"])

    def test_check_missing(self, cli: CLI) -> None:
        """A missing store fails the check, exit 1."""
        r = cli("check", "--json")
        assert r.exit_code == 1
        assert r.json()["ok"] is False  # type: ignore[index]
