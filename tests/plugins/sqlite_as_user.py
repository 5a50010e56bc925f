"""As-user child: opens a SQLite store, reads it and tries one append, and prints what
happened as one JSON object. tests/plugins/test_sqlite_permissions.py runs it as another
user (root may write any file, so a permission test must not run as root).

    python sqlite_as_user.py URL

prints {"open": ERROR, "seqs": [...], "read": ERROR, "append": ERROR, "readonly": bool},
each ERROR null or {"type": ..., "message": ...}.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlite_events import Tick

from plugins.sqlite import open_sqlite_store


def error(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)}


async def attempt(url: str) -> dict[str, Any]:
    out: dict[str, Any] = {"open": None, "seqs": None, "read": None, "append": None}
    try:
        store = await open_sqlite_store(url)
    except Exception as exc:
        out["open"] = error(exc)
        return out
    async with store:
        out["readonly"] = store.readonly
        try:
            out["seqs"] = [record.seq async for record in store.read()]
        except Exception as exc:
            out["read"] = error(exc)
        try:
            await store.append([Tick(99)])
        except Exception as exc:
            out["append"] = error(exc)
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(attempt(sys.argv[1]))))
