"""Tests of Ctrl-C during ``pubsub bench`` in a real process: one line says the bench was
interrupted and how far it got, nothing is reported as measured, the exit is 130."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from .conftest import Watched, spawn


class TestBenchInterrupted:
    """SIGINT while the bench publishes."""

    def test_one_line_and_130(self, tmp_path: Path) -> None:
        """A bench of some seconds, interrupted once it has announced itself (the
        signals are caught from that line on, so a signal after it is always reported,
        however little the bench has done)."""
        proc = Watched(spawn("bench", "--events", "2000000", cwd=tmp_path))
        try:
            proc.expect("bench: 2,000,000 events")
            proc.proc.send_signal(signal.SIGINT)
            r = proc.finish()
        finally:
            if proc.proc.poll() is None:
                proc.proc.kill()
        assert r.exit_code == 130, r.stderr
        last = r.stderr.splitlines()[-1]
        assert re.fullmatch(
            r"interrupted after [\d,]+ of 2,020,000 publishes: nothing measured "
            r"\(the bench reports only complete runs\)",
            last,
        ), r.stderr
        assert "Traceback" not in r.stderr
        assert r.stdout == ""
