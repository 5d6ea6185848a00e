"""The task registry: each kind of work declared once, beside its handler.

Two declarations, both decorators used in the handler's own module:

- ``@crm_event(type, schema=..., ordering_key=...)``: an inbound CRM event type. The
  webhook checks ``data`` against ``schema``; the inbox stores the event with one
  ``inbound_event`` job whose ordering key is ``ordering_key(data)`` (per CRM record, e.g.
  ``contact:C-42``: one record's events run one at a time, in the order received); the
  worker loads ``data`` with the schema and calls ``handler(kb, data, cause)``.
- ``@job(kind, ordering_key=..., retry=..., on_dead=...)``: work the adapter queues
  itself (Keycloak events, batch items, schedules). ``handler(kb, job)``;
  ``ordering_key(payload)``; ``on_dead(kb, job, error)`` runs once when the job becomes a
  dead letter (e.g. a batch item is settled as failed).

Everything the worker knows about a kind of work comes from here: what runs, how its
failures are retried (``RetryPolicy``; defaults from the settings) and what happens when
it gives up. The handler modules register on import; ``adapter.handlers`` imports them all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from marshmallow import Schema

from . import jobs
from .errors import PermanentError

INBOUND_EVENT = "inbound_event"  # the job kind of every stored CRM event; payload {"type": ...}


class NotRegistered(PermanentError):
    """No task is declared for this job kind or event type (a newer version queued it?)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long a failing task is retried before it is a dead letter, and the longest pause
    between tries; None takes KEYBRIDGE_JOB_RETRY_WINDOW_SECONDS / the retry max delay."""

    window_seconds: int | None = None
    max_delay_seconds: int | None = None

    def window(self, settings) -> int:
        return self.window_seconds if self.window_seconds is not None else settings.job_retry_window_seconds

    def max_delay(self, settings) -> int:
        return self.max_delay_seconds if self.max_delay_seconds is not None else settings.retry_max_delay_seconds


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class Task:
    """One kind of work: its name (job kind or CRM event type) and everything about it."""

    name: str
    handler: Callable
    schema: type[Schema] | None = None
    ordering_key: Callable[[dict], str | None] | None = None
    retry: RetryPolicy = DEFAULT_RETRY
    on_dead: Callable | None = None
    doc: str = field(default="", compare=False)

    def key_for(self, data: dict) -> str | None:
        """The ordering key of one piece of work (None: runs unordered, e.g. data the schema would refuse)."""
        if self.ordering_key is None:
            return None
        try:
            return self.ordering_key(data)
        except (KeyError, TypeError, AttributeError):
            return None


class Registry:
    """CRM event types and job kinds, each mapped to its Task."""

    def __init__(self):
        self.crm_events: dict[str, Task] = {}
        self.jobs: dict[str, Task] = {}

    def _add(self, table: dict[str, Task], task: Task) -> None:
        if task.name in table and table[task.name].handler is not task.handler:
            raise ValueError(f"{task.name} is declared twice ({table[task.name].handler.__module__} and {task.handler.__module__}); keep one.")
        table[task.name] = task

    def crm_event(self, event_type: str, *, schema: type[Schema], ordering_key: Callable[[dict], str | None],
                  retry: RetryPolicy = DEFAULT_RETRY):
        """Declare the handler of an inbound CRM event type (see the module docstring)."""

        def register(handler):
            self._add(self.crm_events, Task(event_type, handler, schema, ordering_key, retry, None, handler.__doc__ or ""))
            return handler

        return register

    def job(self, kind: str, *, ordering_key: Callable[[dict], str | None] | None = None,
            retry: RetryPolicy = DEFAULT_RETRY, on_dead: Callable | None = None):
        """Declare the handler of a job kind (see the module docstring)."""

        def register(handler):
            self._add(self.jobs, Task(kind, handler, None, ordering_key, retry, on_dead, handler.__doc__ or ""))
            return handler

        return register

    def event(self, event_type: str) -> Task | None:
        """The task of a CRM event type; None for a type this version does not know."""
        return self.crm_events.get(event_type)

    def schemas(self) -> dict[str, type[Schema]]:
        """Every inbound event type with its schema: the contract as this version reads it."""
        return {name: task.schema for name, task in self.crm_events.items()}

    def for_job(self, job) -> Task:
        """The task that decides how `job` is retried and what happens when it is dead.

        A stored CRM event's job follows its event type's declaration.
        """
        if job.kind == INBOUND_EVENT:
            event = self.crm_events.get((job.payload or {}).get("type", ""))
            if event is not None:
                return event
        task = self.jobs.get(job.kind)
        if task is None:
            raise NotRegistered(f"Unknown job kind {job.kind!r}: queued by another Keybridge version? Upgrade, then replay it.")
        return task

    def run(self, kb, job) -> str:
        """Run one job to completion; raises RetryableError or PermanentError on failure."""
        task = self.jobs.get(job.kind)
        if task is None:
            raise NotRegistered(f"Unknown job kind {job.kind!r}: queued by another Keybridge version? Upgrade, then replay it.")
        return task.handler(kb, job)

    def enqueue(self, session, kind: str, ref: str, payload: dict | None = None, run_at=None) -> bool:
        """Queue a job of a declared kind, ordered by its declared ordering key; False if (kind, ref) exists."""
        task = self.jobs.get(kind)
        if task is None:
            raise NotRegistered(f"No task is declared for job kind {kind!r}; declare it with @tasks.job beside its handler.")
        return jobs.enqueue(session, kind, ref, payload=payload, run_at=run_at, ordering_key=task.key_for(payload or {}))


REGISTRY = Registry()
crm_event = REGISTRY.crm_event
job = REGISTRY.job
enqueue = REGISTRY.enqueue
