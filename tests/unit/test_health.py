"""Liveness, readiness, and a refused Keycloak credential said loudly: at start, in /readyz, on each job."""
from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import responses
from keycloak.exceptions import KeycloakAuthenticationError

from adapter import create_app
from adapter.errors import RetryableError
from adapter.keycloak import CredentialError, KeycloakGateway, _translate
from adapter.models import Job
from tests.conftest import envelope, signed_post

SECRET_VALUE = "s3cr3t-value-that-must-never-be-logged"
TOKEN_URL = "http://kc.test/realms/customers/protocol/openid-connect/token"
REFUSED = CredentialError("Keycloak refused the adapter's client credential (401) in realm customers: check "
                          "KEYBRIDGE_KEYCLOAK_CLIENT_ID and KEYBRIDGE_KEYCLOAK_CLIENT_SECRET")


def test_healthz_is_liveness_only(client, kb, keycloak):
    keycloak.token_refusal = REFUSED
    assert (client.get("/healthz").status_code, client.get("/healthz").json) == (200, {"status": "ok"})


def test_readyz_is_200_when_the_database_keycloak_and_a_worker_answer(client, kb, worker):
    worker.run_once()
    r = client.get("/readyz")
    assert (r.status_code, r.json) == (200, {"status": "ready", "checks": {"database": "ok", "keycloak": "ok", "worker": "ok"}})


def test_readyz_names_the_worker_when_none_has_run_or_it_went_silent(client, kb, worker, monkeypatch):
    r = client.get("/readyz")
    assert r.status_code == 503 and set(r.json["errors"]) == {"worker"} and "keybridge worker" in r.json["errors"]["worker"][0]
    worker.run_once()
    import time as clock

    later = clock.time() + 120
    monkeypatch.setattr("adapter.metrics.time.time", lambda: later)
    r = client.get("/readyz")
    assert r.status_code == 503 and "no worker heartbeat for 1" in r.json["errors"]["worker"][0]


def test_readyz_names_keycloak_when_the_adapters_credential_is_refused(client, kb, keycloak, worker):
    worker.run_once()
    keycloak.token_refusal = REFUSED
    r = client.get("/readyz")
    assert r.status_code == 503 and set(r.json["errors"]) == {"keycloak"}
    assert "KEYBRIDGE_KEYCLOAK_CLIENT_SECRET" in r.json["errors"]["keycloak"][0] and "keycloak" in r.json["message"]


def test_readyz_names_the_database_when_it_does_not_answer(client, kb, monkeypatch):
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    # a PostgreSQL nobody listens on: connecting fails, as when the database is down
    monkeypatch.setattr(kb.db, "Session", sessionmaker(create_engine("postgresql+psycopg://kb:pw@127.0.0.1:9/kb", connect_args={"connect_timeout": 2})))
    r = client.get("/readyz")
    assert r.status_code == 503 and {"database"} <= set(r.json["errors"]) and "keycloak" not in r.json["errors"]
    assert "KEYBRIDGE_DATABASE_URL" in r.json["errors"]["database"][0] and "pw" not in r.get_data(as_text=True)


@responses.activate
def test_the_gateway_reports_a_refused_credential_without_the_secret():
    responses.post(TOKEN_URL, status=401, json={"error": "unauthorized_client", "error_description": "Invalid client or Invalid client credentials"})
    gateway = KeycloakGateway("http://kc.test", "customers", "keybridge-adapter", SECRET_VALUE)
    with pytest.raises(CredentialError) as refused:
        gateway.check_credentials()
    assert "KEYBRIDGE_KEYCLOAK_CLIENT_SECRET" in str(refused.value) and SECRET_VALUE not in str(refused.value)


@responses.activate
def test_the_gateway_tells_an_unreachable_keycloak_from_a_refused_credential():
    gateway = KeycloakGateway("http://kc.test", "customers", "keybridge-adapter", SECRET_VALUE)
    with pytest.raises(RetryableError) as down:
        gateway.check_credentials()  # responses refuses the connection: nothing registered
    assert not isinstance(down.value, CredentialError) and "KEYBRIDGE_KEYCLOAK_URL" in str(down.value)


def test_a_401_from_the_token_endpoint_during_a_job_is_a_credential_error():
    exc = KeycloakAuthenticationError(error_message="Invalid client or Invalid client credentials", response_code=401,
                                      response_body=b'{"error":"unauthorized_client"}')
    assert isinstance(_translate(exc, "read an organization"), CredentialError)
    other = KeycloakAuthenticationError(error_message="HTTP 401 Unauthorized", response_code=401, response_body=b'{"error":"HTTP 401 Unauthorized"}')
    assert not isinstance(_translate(other, "read an organization"), CredentialError)


@responses.activate
def test_the_web_app_logs_an_error_naming_the_secret_variable_at_start(settings, caplog):
    responses.post(TOKEN_URL, status=401, json={"error": "unauthorized_client"})
    bad = replace(settings, keycloak_url="http://kc.test", keycloak_client_secret=SECRET_VALUE)
    with caplog.at_level(logging.ERROR):
        app = create_app({"KEYBRIDGE_SETTINGS": bad, "TESTING": True, "KEYBRIDGE_STARTUP_CHECKS": True})
    app.extensions["keybridge"].db.dispose()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("KEYBRIDGE_KEYCLOAK_CLIENT_SECRET" in r.getMessage() and "web" in r.getMessage() for r in errors)
    assert SECRET_VALUE not in caplog.text


def test_each_job_failing_on_a_refused_credential_logs_an_error_and_stays_queued(client, kb, keycloak, worker, caplog, monkeypatch):
    def refuse(*args, **kwargs):
        raise REFUSED

    monkeypatch.setattr(keycloak, "find_organization", refuse)
    for n in range(2):
        assert signed_post(client, envelope("account.upserted", {"account_id": f"A-{n}", "name": "Acme"})).status_code == 202
    with caplog.at_level(logging.INFO):
        worker.run_jobs()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all("KEYBRIDGE_KEYCLOAK_CLIENT_SECRET" in m for m in errors)
    with kb.db.session() as s:
        assert {j.status for j in s.query(Job)} == {"queued"}  # retried once the secret is fixed, nothing lost


def test_the_worker_logs_an_error_at_start_when_keycloak_refuses_it(kb, keycloak, worker, caplog):
    keycloak.token_refusal = REFUSED
    worker.stop()
    with caplog.at_level(logging.ERROR):
        worker.run_forever(idle_sleep=0)
    assert any("worker start-up check keycloak failed" in r.getMessage() and "KEYBRIDGE_KEYCLOAK_CLIENT_SECRET" in r.getMessage()
               for r in caplog.records if r.levelno == logging.ERROR)


def test_keybridge_health_worker_is_the_workers_container_check(kb, worker, settings, monkeypatch):
    """Exit 1 before this host's worker ran, 0 after a pass, 1 once its heartbeat is older than --max-age;
    a worker on another host does not make this one healthy."""
    import time as clock

    from click.testing import CliRunner

    from adapter import cli, metrics

    monkeypatch.setenv("KEYBRIDGE_DATABASE_URL", settings.database_url)
    run = lambda *args: CliRunner().invoke(cli.main, ["health", "worker", *args])  # noqa: E731

    metrics.beat(kb.db, "some-other-container:1")
    first = run()
    assert first.exit_code == 1 and "no worker on" in first.output and "has finished a pass yet" in first.output

    worker.run_once()
    ok = run()
    assert (ok.exit_code, "healthy" in ok.output) == (0, True)

    monkeypatch.setattr(clock, "time", lambda real=clock.time: real() + 90)
    stale = run()
    assert stale.exit_code == 1 and "has not finished a pass for 9" in stale.output and "more than 60" in stale.output
    assert run("--max-age", "120").exit_code == 0


def test_keybridge_health_worker_fails_when_the_database_cannot_be_read(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from adapter import cli

    monkeypatch.setenv("KEYBRIDGE_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    result = CliRunner().invoke(cli.main, ["health", "worker"])
    assert result.exit_code == 1 and "heartbeats not readable" in result.output
