"""Holders: whether the holder of a consumer lease is a process that died on this host.

The bus names a lease holder ``"hostname:pid:token"``. A worker killed with ``kill -9``
cannot release its lease, and its successor used to be refused until the lease expired
(15 s by default). When the holder ran on this host, the store can tell at once whether
it is still alive: ``os.kill(pid, 0)`` fails with ``ProcessLookupError`` for a pid that
no longer exists. A pid can be reused by a later process, so the lease also keeps the
holder's start time (from ``/proc/<pid>/stat``, where there is one): a live process with
that pid but another start time is not the holder either.
"""

from __future__ import annotations

import os
import socket

__all__ = ["dead_on_this_host", "own_start_time", "start_time"]


def _pid_of(holder: str) -> int | None:
    """The pid of a ``hostname:pid:token`` holder running on this host, else None."""
    parts = holder.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return None
    pid = int(parts[1])
    return pid if pid > 0 else None


def start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``
    field 22); None where there is no /proc or no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3
    except (IndexError, ValueError):
        return None


def own_start_time(holder: str) -> int | None:
    """This process's start time when ``holder`` names this process, else None (a
    lease taken on behalf of another process records no start time)."""
    pid = _pid_of(holder)
    return start_time(pid) if pid == os.getpid() else None


def dead_on_this_host(holder: str, started: int | None) -> bool:
    """True when ``holder`` ran on this host and its process is gone: no process has its
    pid, or the one that has it started at another time than the holder (pid reuse)."""
    pid = _pid_of(holder)
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # a process of another user has that pid: compare start times
    except OSError:
        return False
    if started is None:
        return False
    now = start_time(pid)
    return now is not None and now != started
