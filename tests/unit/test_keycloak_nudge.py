"""POST /internal/keycloak-nudge: signed wake-ups from Keycloak's extension make the worker read the logs at once."""
from __future__ import annotations

import json
import time

import pytest

from adapter import nudges
from adapter.config import ConfigError, Settings
from adapter.worker import Worker
from adapter.webhooks.signatures import sign
from tests.conftest import SECRET, SESSION_SECRET

NUDGE_SECRET = "whsec_" + "bnVkZ2Utc2VjcmV0LWZvci1rZXlicmlkZ2UtdGVzdHM="
BODY = json.dumps({"type": "keycloak.nudge", "time_ms": 1, "count": 1, "event_types": ["REGISTER"]}).encode()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'kb.db'}", webhook_secrets=[SECRET],
                             nudge_secret=NUDGE_SECRET, events_poll_seconds=3600.0, session_secret=SESSION_SECRET)


def nudge(client, secret: str = NUDGE_SECRET, body: bytes = BODY, timestamp: int | None = None, msg_id: str = "nudge_1"):
    return client.post("/internal/keycloak-nudge", data=body, headers=sign(secret, msg_id, body, timestamp or int(time.time())))


class CountingKeycloak:
    """Counts reads of both event logs (the boundary the worker polls)."""

    def __init__(self, fake):
        self.fake, self.reads = fake, 0

    def __getattr__(self, name):
        return getattr(self.fake, name)

    def user_events(self, *args, **kwargs):
        self.reads += 1
        return self.fake.user_events(*args, **kwargs)


def test_a_signed_nudge_is_accepted_and_recorded(client, kb):
    before = nudges.latest(kb.db)
    r = nudge(client)
    assert (r.status_code, r.json) == (202, {"status": "accepted"})
    assert nudges.latest(kb.db) not in ("", before)


def test_a_nudge_makes_an_idle_worker_read_the_event_log_at_once(client, kb, keycloak):
    counting = CountingKeycloak(keycloak)
    kb.keycloak = counting
    worker = Worker(kb)
    worker.run_once(force_poll=False)  # first pass reads (the poll is due at start)
    reads = counting.reads
    worker.run_once(force_poll=False)
    assert counting.reads == reads, "no nudge, poll interval of an hour: no read"
    assert nudge(client).status_code == 202
    worker.run_once(force_poll=False)
    assert counting.reads == reads + 1, "the nudge made the worker read now"
    worker.run_once(force_poll=False)
    assert counting.reads == reads + 1, "one nudge, one read"
    assert nudge(client, msg_id="nudge_2").status_code == 202
    assert nudge(client, msg_id="nudge_3").status_code == 202
    worker.run_once(force_poll=False)
    assert counting.reads == reads + 2, "nudges between two passes are one read"


def test_wrong_secret_unsigned_and_stale_nudges_are_refused_and_change_nothing(client, kb):
    assert nudge(client, secret=SECRET).status_code == 401, "the CRM's webhook secret is not the nudge secret"
    assert client.post("/internal/keycloak-nudge", data=BODY).status_code == 401
    stale = nudge(client, timestamp=int(time.time()) - 3600)
    assert stale.status_code == 401 and "webhook-timestamp" in stale.json["errors"]
    assert nudges.latest(kb.db) == ""


def test_a_large_body_is_refused(client, kb):
    body = b"{" + b" " * 5000 + b"}"
    r = nudge(client, body=body)
    assert r.status_code == 413 and "4096" in r.json["message"]
    assert nudges.latest(kb.db) == ""


def test_without_a_nudge_secret_the_endpoint_says_what_to_set(tmp_path):
    from adapter import create_app

    settings = Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'x.db'}", portal_enabled=False,
                             dashboard_enabled=False)
    app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
    try:
        r = nudge(app.test_client())
        assert r.status_code == 401 and "KEYBRIDGE_NUDGE_SECRET" in r.json["message"]
    finally:
        app.extensions["keybridge"].db.dispose()


def test_nudge_secret_must_be_a_whsec_value():
    with pytest.raises(ConfigError, match="KEYBRIDGE_NUDGE_SECRET"):
        Settings.from_env({"KEYBRIDGE_NUDGE_SECRET": "plain-text"})
    assert Settings.from_env({"KEYBRIDGE_NUDGE_SECRET": NUDGE_SECRET}).nudge_secret == NUDGE_SECRET


def test_a_nudge_stores_no_body(client, kb):
    nudge(client)
    with kb.db.session() as session:
        from adapter.models import Cursor

        assert set(session.get(Cursor, nudges.NAME).position) == {"id", "at_ms"}
