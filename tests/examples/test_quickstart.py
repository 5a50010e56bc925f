"""The quick-start example runs as the README says and shows its dead letter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class TestQuickstart:
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
        assert lines[-1] == "audit saw 3 events; the log holds 3"
        assert db.exists()
