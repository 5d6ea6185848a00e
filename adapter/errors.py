"""The adapter's error vocabulary.

- `RetryableError` / `PermanentError`: how any piece of work (a job, a Keycloak or CRM
  call) failed, which decides whether it is tried again or becomes a dead letter;
- `ApiError`: one error body everywhere, {"code": int, "status": str, "message": str,
  "errors": {field: [messages]}}.
"""
from __future__ import annotations

from http import HTTPStatus

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException


class RetryableError(Exception):
    """A passing failure (a service down, a timeout, a 5xx, a 429): try again later.

    `retry_after` (seconds) overrides the backoff when the remote side said when.
    """

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """A failure that retrying cannot fix (bad data, a refusal): straight to the dead letters."""


class ApiError(Exception):
    """An HTTP error answered with the shared body; `errors` maps fields to messages."""

    def __init__(self, code: int, message: str, errors: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.errors = errors or {}

    def response(self):
        body = {"code": self.code, "status": HTTPStatus(self.code).phrase, "message": self.message, "errors": self.errors}
        return jsonify(body), self.code


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, lambda e: e.response())

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        message = e.description or HTTPStatus(e.code).phrase
        if e.code == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"Request body is larger than the configured limit of {limit} bytes (KEYBRIDGE_MAX_BODY_BYTES); split the batch or raise the limit."
        return ApiError(e.code or 500, message).response()
