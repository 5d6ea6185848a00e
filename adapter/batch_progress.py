"""What `keybridge invite --csv` shows while the worker handles the batch, and the per-row results file.

- A progress bar with the rows handled, the rate over the last seconds and the time left,
  redrawn in place on a terminal, one line per change otherwise (logs, CI).
- It stops waiting, with a message that says what to do, when no worker is running: the
  newest worker heartbeat (the one /readyz reads) is older than `worker_timeout` seconds, or
  there is none and none appears within a short grace. The batch stays stored: a worker
  started later handles it, and the same command (a no-op for a file already queued) follows it.
- `write_results` writes one line per CSV row: its row number, kind, CRM id, email, outcome
  and error (the outcome is `waiting` for a row not handled yet).
"""
from __future__ import annotations

import csv
import os
import time
from collections import deque

import click

from . import metrics
from .handlers import batches

START_GRACE_SECONDS = 10.0
RESULT_FIELDS = ("row", "kind", "id", "email", "outcome", "error")


class NoWorker(click.ClickException):
    """Nobody is handling the batch: the message says how to start a worker and follow the batch again."""


def render(done: int, total: int, rate: float | None, counts: dict, width: int = 24) -> str:
    """One line: bar, rows handled, percent, rate, time left, outcomes so far."""
    share = done / total if total else 1.0
    filled = int(round(share * width))
    bar = "#" * filled + "-" * (width - filled)
    if rate is None:
        speed = "  -- /s"
        left = "time left unknown"
    elif rate <= 0:
        speed = " 0.0 /s"
        left = "stalled" if done < total else "done"
    else:
        speed = f"{rate:5.1f} /s"
        left = "done" if done >= total else f"{_duration((total - done) / rate)} left"
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "waiting" and v)
    return f"[{bar}] {done}/{total} {share:4.0%}  {speed}  {left}" + (f"  ({outcomes})" if outcomes else "")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Rate:
    """Rows per second over the last `window` seconds of samples."""

    def __init__(self, window: float = 10.0):
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, done: int) -> float | None:
        self.samples.append((at, done))
        while len(self.samples) > 2 and self.samples[0][0] < at - self.window:
            self.samples.popleft()
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else None


def no_worker_message(batch_id: str, age: float | None, done: int, total: int) -> str:
    since = "no worker has ever run" if age is None else f"no worker has finished a pass for {int(age)} s"
    return (f"stopped waiting: {since}, so nobody is handling batch {batch_id} ({done}/{total} rows handled). "
            "The batch stays stored: start one with `keybridge worker` (check it with GET /readyz), then run the same "
            "`keybridge invite --csv` again to follow it (a file already queued is not queued twice), or ask "
            f"GET /api/batches/{batch_id}.")


def _pause(seconds: float) -> None:
    time.sleep(seconds)


def wait(kb, batch_id: str, total: int, worker_timeout: float = 60.0, poll_seconds: float = 1.0,
         out=None, clock=time.monotonic) -> dict:
    """Show progress until the batch is completed; returns its last status. Raises NoWorker (see the module)."""
    out = out or click.get_text_stream("stdout")
    tty = hasattr(out, "isatty") and out.isatty()
    started = clock()
    rate = Rate()
    last_line = None
    status = None
    while True:
        status = batches.batch_status(kb, batch_id, limit=0)
        done, size = (status["done"], status["total"]) if status else (0, total)
        line = render(done, size, rate.add(clock(), done), status["counts"] if status else {})
        if line != last_line:
            click.echo(("\r" + line + "\x1b[K") if tty else line, nl=not tty, file=out)
            last_line = line
        if status is not None and status["status"] == "completed":
            if tty:
                click.echo("", file=out)
            return status
        age = metrics.newest_heartbeat_age(kb.db)
        silent = age is None or age > worker_timeout
        if silent and (age is not None or clock() - started >= min(START_GRACE_SECONDS, worker_timeout)):
            if tty:
                click.echo("", file=out)
            raise NoWorker(no_worker_message(batch_id, age, done, size))
        _pause(poll_seconds)


def write_results(kb, batch_id: str, path: str, page: int = 1000) -> int:
    """One line per CSV row of the batch (RESULT_FIELDS); written whole or not at all. Returns the rows written."""
    tmp = f"{path}.partial"
    written = 0
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        offset = 0
        while True:
            status = batches.batch_status(kb, batch_id, offset=offset, limit=page)
            items = (status or {}).get("items") or []
            for item in items:
                writer.writerow({"row": item["index"] + 2, "kind": item["kind"], "id": item["id"], "email": item["email"],
                                 "outcome": item["outcome"] or "waiting", "error": item["error"] or ""})
            written += len(items)
            if len(items) < page:
                break
            offset += page
    os.replace(tmp, path)
    return written


def results_path_ok(path: str) -> None:
    """Fail before queueing anything when the results file cannot be written."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise click.BadParameter(f"cannot write {path}: {directory} is not a writable directory", param_hint="--results")

