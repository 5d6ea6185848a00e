"""Logs: JSON lines on request, one request id from a webhook to its jobs, never a secret."""
from __future__ import annotations

import io
import json
import logging

import pytest

from adapter import logs
from adapter.config import Settings
from tests.conftest import SECRET, envelope, signed_post

ACCOUNT = {"account_id": "A-LOG", "name": "Acme", "domains": ["acme.example"], "contract": {"status": "active"}}


@pytest.fixture
def captured():
    """The root logger configured as a process would be, writing into a buffer."""
    stream = io.StringIO()

    def configure(**settings):
        logs.configure(Settings.from_env({}, **settings), stream=stream)
        return stream

    yield configure
    logs.configure()


def _json_lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_level_logger_and_message(captured):
    stream = captured(log_format="json", log_level="INFO")
    logging.getLogger("adapter.test").info("hello %s", "there")
    logging.getLogger("adapter.test").debug("not at INFO")
    [line] = _json_lines(stream)
    assert line["message"] == "hello there" and line["level"] == "INFO" and line["logger"] == "adapter.test"
    assert "time" in line


def test_the_request_id_follows_a_webhook_into_its_job_and_the_worker_logs(client, kb, keycloak, worker, captured):
    stream = captured(log_format="json", log_level="INFO", webhook_secrets=[SECRET])
    response = signed_post(client, envelope("account.upserted", ACCOUNT), headers={"X-Request-ID": "req-from-the-crm-42"})
    assert response.status_code == 202
    assert response.headers["X-Request-ID"] == "req-from-the-crm-42"
    worker.run_once()
    lines = _json_lines(stream)
    accepted = [l for l in lines if "accepted crm event" in l["message"]]
    ran = [l for l in lines if l["logger"] == "adapter.worker" and "inbound_event" in l["message"]]
    assert accepted and accepted[0]["request_id"] == "req-from-the-crm-42"
    assert ran and ran[0]["request_id"] == "req-from-the-crm-42" and ran[0]["job_id"]


def test_a_request_without_a_usable_id_gets_a_new_one(client):
    response = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces {\"json\": 1}"})
    rid = response.headers["X-Request-ID"]
    assert rid and " " not in rid and "{" not in rid


def test_secrets_and_tokens_never_reach_the_log(captured):
    stream = captured(log_format="text", operator_token="operator-token-value", keycloak_client_secret="kc-secret-value")
    log = logging.getLogger("adapter.test")
    log.warning("config %s and %s", "operator-token-value", "kc-secret-value")
    log.warning("header Authorization: Bearer abc.def-ghi and secret whsec_c2VjcmV0LXNlY3JldA==")
    log.warning("db postgresql+psycopg://kb:db-pass@db/kb; client_secret=hunter2&x=1")
    log.warning("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl")
    try:
        raise RuntimeError("failed with password=s3cr3t-value")
    except RuntimeError:
        log.exception("boom")
    text = stream.getvalue()
    for secret in ("operator-token-value", "kc-secret-value", "abc.def-ghi", "c2VjcmV0LXNlY3JldA", "db-pass",
                   "hunter2", "eyJzdWIiOiIxMjMifQ", "s3cr3t-value"):
        assert secret not in text, secret
    assert "boom" in text and "RuntimeError" in text


def test_a_bad_log_setting_names_the_variable():
    from adapter.config import ConfigError

    with pytest.raises(ConfigError, match="KEYBRIDGE_LOG_FORMAT"):
        Settings.from_env({"KEYBRIDGE_LOG_FORMAT": "xml"})
    with pytest.raises(ConfigError, match="KEYBRIDGE_LOG_LEVEL"):
        Settings.from_env({"KEYBRIDGE_LOG_LEVEL": "loud"})
