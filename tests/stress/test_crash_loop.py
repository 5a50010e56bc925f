"""The 500-kill crash loop as a test, marked ``slow``: the default run
(``.venv/bin/python -m pytest``) deselects it through ``-m "not slow"`` in the pytest
``addopts`` of pyproject.toml. Run it with

    .venv/bin/python -m pytest -m slow

(a few minutes). The 20-kill version runs in the default suite:
tests/plugins/test_sqlite_crash.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from crash_loop import main

ITERATIONS = 500


@pytest.mark.slow
def test_five_hundred_sigkills_lose_no_acknowledged_publish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """500 publishers SIGKILLed at random moments: every acknowledged publish is stored
    once, gap-free, integrity_check passes, and killed-and-restarted consumers handle
    every event (crash_loop.main exits 0 and says so)."""
    status = main(["--iterations", str(ITERATIONS), "--dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 0, f"{out}\n{err}"
    assert f"{ITERATIONS} kills: " in out
    assert f"{ITERATIONS} publisher kills" in out
    assert "all stored once, gap-free, every event handled" in out
    with capsys.disabled():
        print(f"\n{out.strip().splitlines()[-1]}")
