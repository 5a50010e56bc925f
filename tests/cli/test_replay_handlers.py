"""Tests of ``pubsub replay --handler`` with short names: the part after the last dot
chooses a handler when exactly one loaded handler has it."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import CLI, EXAMPLES

ORDERS = str(EXAMPLES / "orders.py")

# A second module with a handler named audit, for the ambiguous case.
LEDGER = """
from core import Router
from orders import OrderEvent

router = Router(name="ledger")


@router.subscribe(OrderEvent)
async def audit(event: OrderEvent) -> None:
    pass
"""


@pytest.fixture
def published(cli: CLI) -> CLI:
    r = cli("publish", "--app", ORDERS, "--file", str(EXAMPLES / "orders.jsonl"))
    assert r.exit_code == 0, r.stderr
    return cli


class TestShortHandlerName:
    """--handler audit means orders.audit when it is the only audit."""

    def test_short_name_replays_that_handler(self, published: CLI) -> None:
        """The short name selects the one handler whose name ends in it."""
        r = published("replay", ORDERS, "--handler", "audit", "--json")
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        assert isinstance(doc, dict)
        assert doc["handlers"] == {"orders.audit": {"ok": 4, "failed": 0}}

    def test_full_name_still_works(self, published: CLI) -> None:
        """The full name is taken as it is."""
        r = published("replay", ORDERS, "--handler", "orders.audit", "--json")
        assert r.exit_code == 0, r.stderr
        assert list(r.json()["handlers"]) == ["orders.audit"]  # type: ignore[index]

    def test_dry_run_uses_the_short_name(self, published: CLI) -> None:
        """The plan of a dry run lists the handler the short name chose."""
        r = published("replay", ORDERS, "--handler", "audit", "--dry-run", "--json")
        assert r.exit_code == 0, r.stderr
        types = r.json()["types"]  # type: ignore[index]
        assert {t["type"]: t["handlers"] for t in types} == {
            "OrderPlaced": ["orders.audit"],
            "OrderShipped": ["orders.audit"],
        }

    def test_ambiguous_short_name_is_a_usage_error(self, published: CLI, tmp_path: Path) -> None:
        """Two handlers named audit: exit 2, one line naming both candidates."""
        (tmp_path / "ledger.py").write_text(LEDGER)
        r = published(
            "replay",
            ORDERS,
            "ledger.py",
            "--app-dir",
            str(EXAMPLES),
            "--handler",
            "audit",
        )
        line = r.usage_error("pubsub replay")
        assert "'audit' is ambiguous" in line
        assert "'ledger.audit'" in line
        assert "'orders.audit'" in line

    def test_unknown_name_lists_the_loaded_ones(self, published: CLI) -> None:
        """A name no handler has is one error line listing the loaded handlers, exit 1."""
        r = published("replay", ORDERS, "--handler", "nope")
        assert r.exit_code == 1
        assert "no handler named 'nope' is loaded" in r.error_line
        assert "orders.audit" in r.error_line
