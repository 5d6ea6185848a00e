"""Where the CPU went: CPU seconds of processes and of the whole machine, read from /proc.

Shared by the benchmarks that print "where the CPU went" (Keycloak, Keybridge, PostgreSQL,
the load generator, others). Linux only; a process that is gone reads as absent (or 0.0).
"""
from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float | None:
    """User + system CPU seconds of one process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_by_pid(pids) -> dict[int, float]:
    """CPU seconds of each of `pids` still alive."""
    out = {}
    for pid in pids:
        seconds = cpu_of(pid)
        if seconds is not None:
            out[pid] = seconds
    return out


def cpu_total(pids) -> float:
    return sum(cpu_by_pid(pids).values())


def cpu_since(before: dict[int, float], pids) -> float:
    """CPU seconds since `before` of `pids` (read now): a process that started since counts whole (e.g. a
    database backend for a connection opened during the phase); one that ended since is not counted."""
    after = cpu_by_pid(pids)
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all CPUs; idle and iowait excluded)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / TICK


def postgres_pids() -> list[int]:
    """The PostgreSQL server and its backends (by process name, so not a command line that mentions postgres)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:  # it ended while the list was read
                continue
            if name == "postgres":
                out.append(int(entry.name))
    return out
