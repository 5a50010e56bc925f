"""Typing: mypy --strict accepts the usage examples in tests/typing/api.py and rejects
exactly the marked lines of tests/typing/api_errors.py (Handler[E] catches a handler
subscribed to the wrong event type)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TYPING = ROOT / "tests" / "typing"
LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[tuple[int, str]]]:
    """Run mypy --strict once on both files; errors by file name as (line, code)."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--cache-dir",
            str(cache),
            str(TYPING / "api.py"),
            str(TYPING / "api_errors.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors: dict[str, set[tuple[int, str]]] = {"api.py": set(), "api_errors.py": set()}
    for line in proc.stdout.splitlines():
        match = LINE.match(line)
        assert match is not None or ": note:" in line, f"unexpected mypy output: {line}"
        if match is not None:
            name = Path(match["file"]).name
            errors.setdefault(name, set()).add((int(match["line"]), match["code"]))
    assert proc.returncode in (0, 1), proc.stderr
    return errors


def expected_errors() -> set[tuple[int, str]]:
    lines = (TYPING / "api_errors.py").read_text().splitlines()
    return {
        (number, m.group(1))
        for number, text in enumerate(lines, start=1)
        if (m := re.search(r"#\s*E:\s*([a-z-]+)", text))
    }


class TestTyping:
    def test_usage_examples_type_check(self, mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
        """api.py passes mypy --strict."""
        assert mypy_errors["api.py"] == set()

    def test_wrong_handler_types_are_rejected_on_the_marked_lines(
        self, mypy_errors: dict[str, set[tuple[int, str]]]
    ) -> None:
        """api_errors.py fails with arg-type exactly on the lines marked '# E:'."""
        expected = expected_errors()
        assert len(expected) == 5
        assert mypy_errors["api_errors.py"] == expected

    def test_no_other_file_has_errors(self, mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
        """mypy reports nothing outside the two example files (core included)."""
        assert set(mypy_errors) == {"api.py", "api_errors.py"}
