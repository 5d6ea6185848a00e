"""The fast path of POST /webhooks/crm answers exactly as the Flask view would, and hands everything else to Flask.

Each case is sent twice: through the app (fast path first) and straight to Flask's own WSGI app
(the layer inside it), with the same headers and body; the answers must be the same.
"""
from __future__ import annotations

import json
import logging

import pytest
from werkzeug.test import Client

from adapter import metrics
from adapter.webhooks.fast_path import CrmWebhookFastPath
from tests.conftest import OTHER_SECRET, SECRET, envelope
from adapter.webhooks.signatures import sign

INVITE = {"contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1", "roles": ["Buyer"]}


def flask_only(app) -> Client:
    """A client of the layer inside the fast path: Flask answering as it did before the fast path existed."""
    layer = app.wsgi_app
    assert isinstance(layer, CrmWebhookFastPath)
    return Client(layer.wsgi_app)


def post(client, body: bytes, webhook_id: str, secret: str = SECRET, extra: dict | None = None):
    headers = {**sign(secret, webhook_id, body), **(extra or {})}
    return client.post("/webhooks/crm", data=body, headers=headers)


def answer(r) -> tuple:
    return r.status, r.get_data(), r.headers.get("Content-Type"), sorted(k for k, _ in r.headers)


def count(source: str, outcome: str) -> float:
    return metrics.WEBHOOKS.labels(source, outcome)._value.get()


@pytest.fixture
def flask_saw(app):
    """Paths of the requests Flask itself handled."""
    seen = []
    app.before_request(lambda: seen.append(__import__("flask").request.path))
    return seen


@pytest.mark.parametrize("case", ["accepted", "duplicate", "ignored"])
def test_success_is_answered_without_flask_and_exactly_as_flask_answers_it(app, client, flask_saw, case):
    event_type = "contact.renamed_someday" if case == "ignored" else "contact.invite_requested"
    body = json.dumps(envelope(event_type, INVITE)).encode()
    ids = ("msg_dup", "msg_dup") if case == "duplicate" else (f"msg_fast_{case}", f"msg_slow_{case}")
    if case == "duplicate":
        assert post(client, body, "msg_dup").status_code == 202
        flask_saw.clear()
    before = count("crm", case)

    fast = post(client, body, ids[0])
    assert flask_saw == [], "answered by the fast path"
    assert count("crm", case) == before + 1
    slow = post(flask_only(app), body, ids[1])
    assert flask_saw == ["/webhooks/crm"]

    expected = {"accepted": ("202 ACCEPTED", b'{"status":"accepted"}\n'), "duplicate": ("200 OK", b'{"status":"duplicate"}\n'),
                "ignored": ("200 OK", b'{"status":"ignored"}\n')}[case]
    assert answer(fast)[:2] == answer(slow)[:2] == expected
    assert answer(fast)[2:] == answer(slow)[2:], "the same content type and the same headers"


def test_the_first_accepted_answer_matches_flasks_first(app, client):
    """202 through the fast path; the same webhook straight to Flask is then a duplicate, as it must be."""
    body = json.dumps(envelope("contact.invite_requested", INVITE)).encode()
    fast = post(client, body, "msg_once")
    slow = post(flask_only(app), body, "msg_once")
    assert (fast.status_code, fast.get_data()) == (202, b'{"status":"accepted"}\n')
    assert (slow.status_code, slow.get_data()) == (200, b'{"status":"duplicate"}\n')
    other = post(flask_only(app), body, "msg_twice")
    assert (other.status_code, other.get_data(), other.headers["Content-Type"]) == (202, fast.get_data(), fast.headers["Content-Type"])


def test_a_request_id_is_echoed_and_in_the_log_line_or_made_when_missing(client, caplog):
    body = json.dumps(envelope("contact.invite_requested", INVITE)).encode()
    with caplog.at_level(logging.INFO, logger="adapter.inbox"):
        r = post(client, body, "msg_rid", extra={"X-Request-ID": "crm-req-42"})
    assert r.headers["X-Request-ID"] == "crm-req-42"
    (line,) = [rec for rec in caplog.records if "msg_rid" in rec.getMessage()]
    assert line.request_id == "crm-req-42"
    assert len(post(client, body, "msg_rid2").headers["X-Request-ID"]) == 32


@pytest.mark.parametrize("what", ["wrong secret", "bad json", "schema", "bad webhook-id"])
def test_every_refusal_is_flasks_own_answer(app, client, flask_saw, what):
    good = json.dumps(envelope("contact.invite_requested", INVITE)).encode()
    body, secret, webhook_id = {
        "wrong secret": (good, OTHER_SECRET.replace("whsec_", "whsec_AAAA"), "msg_r1"),
        "bad json": (b'{"type": ', SECRET, "msg_r2"),
        "schema": (json.dumps(envelope("contact.invite_requested", {"contact_id": "C-1"})).encode(), SECRET, "msg_r3"),
        "bad webhook-id": (good, SECRET, "msg with spaces"),
    }[what]
    fast = post(client, body, webhook_id, secret=secret)
    assert flask_saw == ["/webhooks/crm"], "Flask answered it"
    slow = post(flask_only(app), body, webhook_id, secret=secret)
    assert fast.status_code in (400, 401, 422) and answer(fast)[:3] == answer(slow)[:3]
    assert fast.json == slow.json


def test_a_body_over_the_limit_and_one_without_length_go_to_flask(app, client, flask_saw, settings):
    big = b"{" + b" " * (settings.max_body_bytes + 10) + b"}"
    assert post(client, big, "msg_big").status_code == 413
    assert flask_saw == ["/webhooks/crm"]
    body = json.dumps(envelope("contact.invite_requested", INVITE)).encode()

    from werkzeug.test import EnvironBuilder, run_wsgi_app

    environ = EnvironBuilder(path="/webhooks/crm", method="POST", data=body, headers=sign(SECRET, "msg_chunked", body)).get_environ()
    del environ["CONTENT_LENGTH"]  # sent chunked: the server says where the body ends
    environ["HTTP_TRANSFER_ENCODING"], environ["wsgi.input_terminated"] = "chunked", True
    _, status, _ = run_wsgi_app(app, environ)
    assert flask_saw == ["/webhooks/crm", "/webhooks/crm"]
    assert status == "202 ACCEPTED"


def test_other_paths_and_methods_are_flasks(client, flask_saw):
    assert client.get("/webhooks/crm").status_code == 405
    client.get("/healthz")
    assert flask_saw == ["/webhooks/crm", "/healthz"]


def test_when_storing_fails_flask_handles_the_failure_as_before(app, client, monkeypatch):
    """The database is down: the fast path's attempt fails, Flask tries once more and fails as it always did."""
    from sqlalchemy.exc import OperationalError

    from adapter import inbox

    calls = []

    def down(db, webhook_id, *args, **kwargs):
        calls.append(webhook_id)
        raise OperationalError("INSERT", {}, Exception("database is down"))

    monkeypatch.setattr(inbox, "store_event", down)
    body = json.dumps(envelope("contact.invite_requested", INVITE)).encode()
    with pytest.raises(OperationalError):  # TESTING: Flask lets it through instead of answering 500
        post(client, body, "msg_down")
    assert calls == ["msg_down", "msg_down"], "tried by the fast path, then by Flask"
    with pytest.raises(OperationalError):
        post(flask_only(app), body, "msg_down")
