"""On the real Keycloak: a wrong client secret is said at start, in /readyz and on each job, never silently retried."""
from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from adapter import create_app
from adapter.worker import Worker
from adapter.models import Job
from tests.conftest import envelope, signed_post

pytestmark = pytest.mark.integration
WRONG = "wrong-secret-wrong-secret-wrong-secret"


@pytest.fixture
def settings(keycloak, tmp_path):
    from adapter.config import Settings
    from tests.conftest import SECRET, SESSION_SECRET

    return Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'kb.db'}", webhook_secrets=[SECRET], session_secret=SESSION_SECRET,
                             keycloak_url=keycloak.url, keycloak_realm=keycloak.realm, keycloak_client_id=keycloak.client_id,
                             keycloak_client_secret=keycloak.client_secret, events_start="now")


def test_readyz_passes_with_the_adapters_own_credential(settings):
    app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
    Worker(app.extensions["keybridge"]).run_once()
    r = app.test_client().get("/readyz")
    app.extensions["keybridge"].db.dispose()
    assert (r.status_code, r.json["checks"]) == (200, {"database": "ok", "keycloak": "ok", "worker": "ok"})


def test_a_wrong_client_secret_fails_readiness_and_is_logged_at_start_and_on_each_job(settings, caplog):
    with caplog.at_level(logging.INFO):
        app = create_app({"KEYBRIDGE_SETTINGS": replace(settings, keycloak_client_secret=WRONG), "TESTING": True,
                          "KEYBRIDGE_STARTUP_CHECKS": True})
    kb = app.extensions["keybridge"]
    try:
        start_errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("web start-up check keycloak failed" in m and "KEYBRIDGE_KEYCLOAK_CLIENT_SECRET" in m for m in start_errors)

        client = app.test_client()
        r = client.get("/readyz")
        assert r.status_code == 503 and set(r.json["errors"]) == {"keycloak", "worker"}
        assert "KEYBRIDGE_KEYCLOAK_CLIENT_SECRET" in r.json["errors"]["keycloak"][0]
        assert client.get("/healthz").status_code == 200  # liveness is not readiness

        assert signed_post(client, envelope("account.upserted", {"account_id": "A-ready", "name": "Ready Ltd"})).status_code == 202
        caplog.clear()
        with caplog.at_level(logging.INFO):
            Worker(kb).run_jobs()
        job_errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and r.name == "adapter.worker"]
        assert len(job_errors) == 1 and "KEYBRIDGE_KEYCLOAK_CLIENT_SECRET" in job_errors[0] and "account.upserted" not in WRONG
        with kb.db.session() as s:
            assert [j.status for j in s.query(Job)] == ["queued"]  # kept for when the secret is fixed
        assert WRONG not in caplog.text and WRONG not in r.get_data(as_text=True)
    finally:
        kb.db.dispose()
