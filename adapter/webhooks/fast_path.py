"""`POST /webhooks/crm` without Flask's request machinery, for the common case.

A CRM sends webhooks in bursts (a batch, a re-sync, a bulk edit). Verifying, validating and
storing one costs the adapter about 0.3 ms of CPU; Flask's request context, hooks and
response objects around that cost about 0.15 ms more (bench/README.md). This WSGI middleware
answers a native webhook itself with the view's own step (`crm.accept`) and the view's own
answer: the same status and body, `X-Request-ID`, the webhook metric, the request id in the
log lines.

Only success is answered here. Anything else goes to Flask, with the body already read, and
Flask answers it exactly as it always did: another path or method, no Content-Length or a
body over KEYBRIDGE_MAX_BODY_BYTES (Flask's 413), and every refusal or failure of `accept`
(a bad signature, JSON or schema, the database down). So the contract's error answers stay
in one place, and repeating `accept` there is safe: it has stored nothing when it raises
(the store is its last step, and idempotent by webhook-id).
"""
from __future__ import annotations

import io

from werkzeug.datastructures import EnvironHeaders
from werkzeug.http import HTTP_STATUS_CODES

from .. import logs, metrics
from . import crm

PATH = "/webhooks/crm"
STATUS_LINES = {code: f"{code} {HTTP_STATUS_CODES[code].upper()}" for code, _ in crm.ANSWERS.values()}


class CrmWebhookFastPath:
    """The innermost WSGI layer of the web app for `POST /webhooks/crm` (see the module's docstring)."""

    def __init__(self, wsgi_app, kb, max_body_bytes: int):
        self.wsgi_app = wsgi_app
        self.kb = kb
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return self.wsgi_app(environ, start_response)
        if not 0 <= length <= self.max_body_bytes:
            return self.wsgi_app(environ, start_response)
        body = environ["wsgi.input"].read(length)
        token = logs.REQUEST_ID.set(logs.request_id_from(environ.get("HTTP_X_REQUEST_ID")))
        try:
            status = crm.accept(self.kb, EnvironHeaders(environ), body)
        except Exception:  # noqa: BLE001 — Flask answers it, as it answers every refusal
            environ["wsgi.input"] = io.BytesIO(body)
            return self.wsgi_app(environ, start_response)
        else:
            request_id = logs.REQUEST_ID.get()
        finally:
            logs.REQUEST_ID.reset(token)
        metrics.WEBHOOKS.labels("crm", status).inc()
        code, answer = crm.ANSWERS[status]
        start_response(STATUS_LINES[code], [("Content-Type", "application/json"), ("Content-Length", str(len(answer))),
                                            ("X-Request-ID", request_id)])
        return [answer]
