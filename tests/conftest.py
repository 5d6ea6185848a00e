"""Shared fixtures: an app on a throw-away database, signed requests, a fake-free worker."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from adapter import create_app
from adapter.config import Settings
from adapter.webhooks.signatures import sign

SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLWtleWJyaWRnZS10ZXN0cw=="
OTHER_SECRET = "whsec_" + "b3RoZXItc2VjcmV0LWZvci1yb3RhdGlvbi10ZXN0cw=="
SESSION_SECRET = "unit-tests-portal-session-secret-0123456789"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'kb.db'}", webhook_secrets=[SECRET, OTHER_SECRET],
                             operator_token="op-token", session_secret=SESSION_SECRET)


@pytest.fixture
def app(settings):
    app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
    yield app
    app.extensions["keybridge"].db.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def kb(app):
    return app.extensions["keybridge"]


def envelope(event_type: str, data: dict) -> dict:
    return {"type": event_type, "timestamp": "2026-11-22T10:00:00Z", "data": data}


def signed_post(client, body, secret: str = SECRET, webhook_id: str | None = None, timestamp: int | None = None, headers=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = sign(secret, webhook_id or f"msg_{uuid.uuid4().hex}", raw, timestamp or int(time.time()))
    h.update(headers or {})
    return client.post("/webhooks/crm", data=raw, headers=h)
