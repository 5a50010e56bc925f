"""The quick-start example runs as the README says and shows its dead letter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class TestQuickstart:
    """The quick start's script, with a path and without one."""

    def test_runs_and_dead_letters_the_declined_order(self, tmp_path: Path) -> None:
        """The script commits three events, dead-letters the large order and keeps the file."""
        db = tmp_path / "demo.db"
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(db)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("seq 1: o-1 9.90 -> audit_log=ok, charge_card=ok")
        assert "charge_card=failed" in lines[1]
        assert any(line.startswith("dead letter 1: seq 2") for line in lines)
        assert lines[-2] == "audit saw 3 events; the log holds 3"
        assert lines[-1] == (
            f"the log is in {db}: browse it with '.venv/bin/pubsub events list --db {db}'"
        )
        assert db.exists()

    def test_readme_path_to_the_log(self, tmp_path: Path) -> None:
        """As the README says: run from the clone with no argument, the log stays in
        ./quickstart.db and 'pubsub events list --db quickstart.db' shows its events."""
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "quickstart.py")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[-1] == (
            "the log is in quickstart.db: browse it with "
            "'.venv/bin/pubsub events list --db quickstart.db'"
        )
        listing = subprocess.run(
            [sys.executable, "-m", "pubsub_cli", "events", "list", "--db", "quickstart.db"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"},
        )
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.count("quickstart.OrderPlaced") == 3
        assert "3 event(s)" in listing.stdout

    def test_script_names_match_pubsub_run(self, tmp_path: Path) -> None:
        """Run as a script, the quick start's handlers are named by the file's stem, so
        `pubsub dlq retry --app examples/quickstart.py` finds the dead letter's handler
        (it used to belong to '__main__.charge_card', "not loaded")."""
        db = tmp_path / "qs.db"
        script = str(ROOT / "examples" / "quickstart.py")
        run = subprocess.run(
            [sys.executable, script, str(db)], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
        assert "dead letter 1: seq 2 quickstart.charge_card" in run.stdout
        retry = subprocess.run(
            [sys.executable, "-m", "pubsub_cli", "dlq", "retry", "--all", "--app", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "PUBSUB_DB": str(db)},
        )
        assert retry.returncode == 0, retry.stderr
        assert "not loaded" not in retry.stderr + retry.stdout
        assert "failed again: ValueError: card declined" in retry.stdout
