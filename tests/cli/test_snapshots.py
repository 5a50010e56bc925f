"""Tests of ``pubsub snapshot restore``: it says how many events it replayed after the
snapshot, and ``--id`` restores that snapshot rather than the latest one."""

from __future__ import annotations

import pytest

from .conftest import CLI, EXAMPLES

ORDERS = str(EXAMPLES / "orders.py")
PROJECTION = str(EXAMPLES / "projection.py")


def place(cli: CLI, order_id: str, sku: str, total: str) -> None:
    data = f'{{"order_id": "{order_id}", "sku": "{sku}", "total": "{total}"}}'
    r = cli("publish", "--app", ORDERS, "OrderPlaced", "--data", data)
    assert r.exit_code == 0, r.stderr


@pytest.fixture
def two_snapshots(cli: CLI) -> CLI:
    """Snapshot 1 at seq 4 (three orders), snapshot 2 at seq 5 (four), then a sixth
    event that no snapshot holds."""
    r = cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl"))
    assert r.exit_code == 0, r.stderr
    assert cli("snapshot", "create", PROJECTION).exit_code == 0
    place(cli, "A-5", "BOOK", "10.00")
    assert cli("snapshot", "create", PROJECTION).exit_code == 0
    place(cli, "A-6", "PEN", "1.00")
    return cli


class TestRestore:
    def test_latest_by_default(self, two_snapshots: CLI) -> None:
        """Without --id the latest snapshot is loaded and one later event replayed."""
        doc = two_snapshots("snapshot", "restore", PROJECTION, "--json").json()
        assert isinstance(doc, dict)
        assert [(s["id"], s["seq"]) for s in doc["snapshots"]] == [(2, 5)]
        assert doc["replayed"] == 1
        assert doc["state"]["projections.revenue_by_sku"]["orders"] == 5

    def test_named_id(self, two_snapshots: CLI) -> None:
        """--id 1 loads the older snapshot and replays both events after it, reaching
        the same state as the latest one."""
        doc = two_snapshots("snapshot", "restore", PROJECTION, "--id", "1", "--json").json()
        assert isinstance(doc, dict)
        assert [(s["id"], s["seq"]) for s in doc["snapshots"]] == [(1, 4)]
        assert doc["replayed"] == 2
        state = doc["state"]["projections.revenue_by_sku"]
        assert state == {
            "orders": 5,
            "revenue": {"BOOK": "22.50", "PEN": "3.20", "GHOST": "99.00"},
        }

    def test_prints_how_many_were_replayed(self, two_snapshots: CLI) -> None:
        """The table names the snapshot and the caption the events replayed after it."""
        r = two_snapshots("snapshot", "restore", PROJECTION, "--id", "1")
        assert r.exit_code == 0, r.stderr
        assert "replayed 2 event(s) after the snapshot(s)" in r.stdout
        assert "projections.revenue_by_sku" in r.stdout

    def test_create_reports_what_it_rebuilt(self, two_snapshots: CLI) -> None:
        """create rebuilds from the latest snapshot plus the events after it and saves
        the new snapshot at the last of them."""
        doc = two_snapshots("snapshot", "create", PROJECTION, "--json").json()
        assert isinstance(doc, dict)
        assert doc["replayed"] == 1
        assert [(s["id"], s["seq"]) for s in doc["snapshots"]] == [(3, 6)]
