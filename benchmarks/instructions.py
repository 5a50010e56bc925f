"""Instruction benchmark: what one event costs, counted in CPU instructions, which repeat
exactly from run to run on a shared, noisy machine where wall-clock figures do not.

Each case runs in a subprocess under valgrind's cachegrind
(``--tool=cachegrind --cache-sim=no``) twice, at two event counts (``--small``, default
2,000, and ``--large``, default 12,000); the "I refs" totals are read from valgrind's
report, and the cost per event is ``(I(large) - I(small)) / (large - small)``, so the
interpreter's start-up, imports and set-up cancel out. Cases, each with the event
prebuilt (made before the loop; both runs make ``--large`` events, so making them
cancels out too) and built per publish (made inside the loop):

* floor: ``await handler(event)``; ten direct awaits of ten handlers;
* pubsub: ``await bus.publish_async(event)`` with 1 and with 10 async handlers (default
  policy, metrics on, no store);
* blinker: ``await signal.send_async(event)`` with 1 and 10 async receivers, the event a
  plain ``@dataclass(frozen=True, slots=True)``;
* construction only: ``E(i)`` for a one-field pubsub event against the same plain
  frozen slots dataclass.

The table gives instructions per event, the ratio to the floor built the same way (ten
direct awaits for ten handlers) and the ratio to blinker built the same way with as many
receivers (for construction: to the plain dataclass). ``--json`` prints one JSON
document instead.

Run it with the interpreter to measure (valgrind must be on PATH; blinker importable by
that interpreter). The children run ``--python`` (default: this interpreter) with the
repository root on PYTHONPATH, so one virtual environment per interpreter holding
blinker, orjson and aiosqlite is enough, e.g.::

    python benchmarks/instructions.py
    $(pyenv root)/versions/3.12.1/bin/python -m venv /tmp/py312
    /tmp/py312/bin/pip install blinker orjson aiosqlite typer rich
    /tmp/py312/bin/python benchmarks/instructions.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

WAYS = ("prebuilt", "built per publish")
KINDS = (
    "floor: await handler(event)",
    "floor: ten direct awaits",
    "pubsub: publish_async, 1 async handler",
    "pubsub: publish_async, 10 async handlers",
    "blinker: send_async, 1 receiver",
    "blinker: send_async, 10 receivers",
)
CONSTRUCTION = ("construction: E(i), pubsub Event", "construction: plain frozen slots dataclass")
CASES = (*(f"{kind}, {way}" for kind in KINDS for way in WAYS), *CONSTRUCTION)

# What each case is compared with, (floor, blinker); None where it does not apply.
FLOOR = {
    "floor: await handler(event)": "floor: await handler(event)",
    "floor: ten direct awaits": "floor: ten direct awaits",
    "pubsub: publish_async, 1 async handler": "floor: await handler(event)",
    "pubsub: publish_async, 10 async handlers": "floor: ten direct awaits",
    "blinker: send_async, 1 receiver": "floor: await handler(event)",
    "blinker: send_async, 10 receivers": "floor: ten direct awaits",
}
BLINKER = {
    "pubsub: publish_async, 1 async handler": "blinker: send_async, 1 receiver",
    "pubsub: publish_async, 10 async handlers": "blinker: send_async, 10 receivers",
    "blinker: send_async, 1 receiver": "blinker: send_async, 1 receiver",
    "blinker: send_async, 10 receivers": "blinker: send_async, 10 receivers",
}

_I_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


# -- the child: one case, n events ------------------------------------------------------


def _child(case: str, n: int, prebuild: int) -> None:
    from core import Event, EventBus

    @dataclass(frozen=True, slots=True)
    class E(Event, type_name="bench.instructions.E"):
        n: int

    @dataclass(frozen=True, slots=True)
    class Plain:
        n: int

    if case in CONSTRUCTION:
        cls: Callable[[int], Any] = E if case == CONSTRUCTION[0] else Plain
        for i in range(n):
            cls(i)
        return

    kind, way = case.rsplit(", ", 1)
    built = way == "built per publish"
    make: Callable[[int], Any] = Plain if kind.startswith("blinker") else E

    async def handler(event: Any) -> None:
        return None

    async def main() -> None:
        call: Callable[[Any], Any]
        closers: list[Any] = []
        if kind == "floor: await handler(event)":
            call = handler
        elif kind == "floor: ten direct awaits":
            handlers = [_distinct() for _ in range(10)]

            async def ten(event: Any) -> None:
                for h in handlers:
                    await h(event)

            call = ten
        elif kind.startswith("pubsub"):
            bus = EventBus()
            count = 1 if "1 async handler" in kind else 10
            for i in range(count):
                bus.subscribe(E, name=f"h{i}")(_distinct())
            call = bus.publish_async
            closers.append(bus)
        else:
            import blinker

            signal = blinker.Signal()
            count = 1 if "1 receiver" in kind else 10
            for _ in range(count):
                signal.connect(_distinct(sender=True), weak=False)
            call = signal.send_async
        if built:
            for i in range(n):
                await call(make(i))
        else:
            # As many events built in both runs, so their making cancels out too.
            events = [make(i) for i in range(prebuild)]
            for event in events[:n]:
                await call(event)
        for bus in closers:
            await bus.aclose()

    asyncio.run(main())


def _distinct(*, sender: bool = False) -> Callable[[Any], Any]:
    """A fresh async no-op handler (blinker and pubsub both key receivers by identity)."""
    if sender:

        async def receiver(sender: Any) -> None:
            return None

        return receiver

    async def handler(event: Any) -> None:
        return None

    return handler


# -- the parent: run every case twice under cachegrind -------------------------------


def _instructions(python: str, case: str, n: int, prebuild: int) -> int:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env["PYTHONHASHSEED"] = "0"  # the same dict layouts in both runs
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            python,
            str(Path(__file__).resolve()),
            "--child",
            case,
            str(n),
            str(prebuild),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    found = _I_REFS.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"{case!r} at {n} events failed: {' / '.join(tail)}")
    return int(found.group(1).replace(",", ""))


def _python_version(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def run(python: str, small: int, large: int, jobs: int, cases: list[str]) -> dict[str, Any]:
    runs = [(case, n) for case in cases for n in (small, large)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        counts = list(pool.map(lambda job: _instructions(python, *job, large), runs))
    total = dict(zip(runs, counts, strict=True))
    per_event = {
        case: (total[case, large] - total[case, small]) / (large - small) for case in cases
    }
    rows: dict[str, dict[str, float | None]] = {}
    for case in cases:
        if case in CONSTRUCTION:
            floor = None
            blinker = per_event.get(CONSTRUCTION[1])
        else:
            kind, way = case.rsplit(", ", 1)
            floor = per_event.get(f"{FLOOR[kind]}, {way}")
            blinker_case = BLINKER.get(kind)
            blinker = per_event.get(f"{blinker_case}, {way}") if blinker_case else None
        value = per_event[case]
        rows[case] = {
            "instructions_per_event": value,
            "x_floor": value / floor if floor else None,
            "x_blinker": value / blinker if blinker else None,
        }
    return {
        "python": _python_version(python),
        "interpreter": python,
        "events": [small, large],
        "cases": rows,
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"instructions per event (cachegrind, {report['events'][0]:,} and "
        f"{report['events'][1]:,} events), Python {report['python']}",
        "x floor: against the floor built the same way (ten direct awaits for ten handlers); "
        "x blinker: against blinker built the same way with as many receivers "
        "(construction: against the plain dataclass)",
    ]
    header = f"{'case':62} {'instructions':>12} {'x floor':>8} {'x blinker':>9}"
    lines += [header, "-" * len(header)]
    for case, row in report["cases"].items():
        floor, blinker = row["x_floor"], row["x_blinker"]
        lines.append(
            f"{case:62} {row['instructions_per_event']:12,.0f} "
            f"{'-' if floor is None else f'{floor:.2f}x':>8} "
            f"{'-' if blinker is None else f'{blinker:.2f}x':>9}"
        )
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2_000, help="events in the first run")
    parser.add_argument("--large", type=int, default=12_000, help="events in the second run")
    parser.add_argument("--python", default=sys.executable, help="interpreter to measure")
    parser.add_argument("--jobs", type=int, default=1, help="valgrind runs at a time")
    parser.add_argument("--case", action="append", choices=CASES, help="only these cases")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    if args.large <= args.small:
        parser.error("--large must be greater than --small")
    if shutil.which("valgrind") is None:
        sys.stderr.write("error: valgrind is not on PATH (apt-get install valgrind)\n")
        return 1
    try:
        report = run(args.python, args.small, args.large, args.jobs, args.case or list(CASES))
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    if args.json:
        import json

        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print(render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
