"""Logging for the web processes and the worker: text or JSON lines, a level, a request id, no secrets.

- `KEYBRIDGE_LOG_FORMAT=json` writes one JSON object per line (python-json-logger) with
  `time`, `level`, `logger`, `message` and, when known, `request_id` and `job_id`;
  `text` (the default) is the classic one-line format.
- `KEYBRIDGE_LOG_LEVEL` (DEBUG, INFO, WARNING, ERROR; default INFO).
- Every web request has a request id: the caller's `X-Request-ID` when it is a plain token,
  else a new one; it is answered in `X-Request-ID`, stored on the jobs the request creates
  (jobs.enqueue reads `current_request_id()`), and set again while the worker runs them,
  so one id follows a webhook from its arrival to the Keycloak calls it causes.
- A redacting filter removes what must never be logged: `whsec_` secrets, bearer tokens,
  JWTs, passwords in URLs, and the configured secret values themselves.
"""
from __future__ import annotations

import contextvars
import logging
import re
import sys
import uuid

from pythonjsonlogger.json import JsonFormatter

REQUEST_ID = contextvars.ContextVar("keybridge_request_id", default=None)
JOB_ID = contextvars.ContextVar("keybridge_job_id", default=None)
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"
PATTERNS = [
    (re.compile(r"whsec_[A-Za-z0-9+/=]+"), "whsec_***"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "***jwt***"),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1***@"),
    (re.compile(r"(?i)((?:client_secret|password|secret|token)[\"']?\s*[=:]\s*[\"']?)[^\s&\"',}]+"), r"\1***"),
]


def current_request_id() -> str | None:
    return REQUEST_ID.get()


def request_id_from(header: str | None) -> str:
    """The caller's id when it is a plain token (so it can be searched for), else a new one."""
    return header if header and _VALID_ID.match(header) else uuid.uuid4().hex


class ContextFilter(logging.Filter):
    """Adds request_id/job_id to every record and removes secrets from its message."""

    def __init__(self, secrets: list[str] | None = None):
        super().__init__()
        self.secrets = sorted({s for s in (secrets or []) if s and len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        for pattern, replacement in PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        record.job_id = JOB_ID.get()
        parts = [f"request_id={record.request_id}"] if record.request_id else []
        parts += [f"job_id={record.job_id}"] if record.job_id else []
        record.context = f" [{' '.join(parts)}]" if parts else ""
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        record.msg, record.args = self.redact(message), None
        return True


def configure(settings=None, stream=None) -> None:
    """Set the root logger up once per process from the settings (format, level, secrets)."""
    fmt = getattr(settings, "log_format", "text") or "text"
    level = (getattr(settings, "log_level", "INFO") or "INFO").upper()
    secrets = []
    if settings is not None:
        from dataclasses import fields

        from .config import _is_secret

        for f in fields(settings):
            value = getattr(settings, f.name)
            if _is_secret(f.name) and value:
                secrets += value if isinstance(value, list) else [value]
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(job_id)s",
                                           rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter(secrets))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_keybridge", False)]:
        root.removeHandler(old)
    handler._keybridge = True  # noqa: SLF001 — ours, replaced when configured again
    root.addHandler(handler)
    root.setLevel(level)


def init_app(app) -> None:
    """Request ids for the web app (X-Request-ID in and out)."""
    from flask import g, request

    @app.before_request
    def _request_id():
        g.request_id_token = REQUEST_ID.set(request_id_from(request.headers.get("X-Request-ID")))

    @app.after_request
    def _answer_id(response):
        rid = REQUEST_ID.get()
        if rid:
            response.headers["X-Request-ID"] = rid
        return response

    @app.teardown_request
    def _forget(_exc):
        token = g.pop("request_id_token", None)
        if token is not None:
            REQUEST_ID.reset(token)
