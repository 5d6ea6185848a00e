"""POST /webhooks/crm: every answer of the contract, and nothing stored on a rejection."""
from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from adapter.models import InboundEvent, Job
from tests.conftest import OTHER_SECRET, envelope, signed_post

INVITE = {"contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1", "roles": ["Buyer"]}


def stored(kb) -> tuple[int, int]:
    with kb.db.session() as s:
        return s.scalar(select(func.count()).select_from(InboundEvent)), s.scalar(select(func.count()).select_from(Job))


def test_accepts_a_signed_event_and_stores_it_with_its_job(client, kb):
    r = signed_post(client, envelope("contact.invite_requested", INVITE), webhook_id="msg_1")
    assert (r.status_code, r.json) == (202, {"status": "accepted"})
    with kb.db.session() as s:
        event = s.get(InboundEvent, "msg_1")
        assert event.type == "contact.invite_requested" and event.payload["data"]["email"] == "jane@acme.example"
        job = s.scalar(select(Job))
        assert (job.kind, job.ref, job.status) == ("inbound_event", "msg_1", "queued")


def test_a_duplicate_webhook_id_changes_nothing(client, kb):
    body = envelope("contact.invite_requested", INVITE)
    assert signed_post(client, body, webhook_id="msg_dup").status_code == 202
    r = signed_post(client, body, webhook_id="msg_dup")
    assert (r.status_code, r.json) == (200, {"status": "duplicate"})
    assert stored(kb) == (1, 1)


def test_any_configured_secret_verifies_for_rotation(client, kb):
    assert signed_post(client, envelope("contact.invite_requested", INVITE), secret=OTHER_SECRET).status_code == 202


def test_several_signatures_in_the_header_one_valid_is_enough(client):
    body = json.dumps(envelope("contact.invite_requested", INVITE)).encode()
    from adapter.webhooks.signatures import sign
    from tests.conftest import SECRET

    h = sign(SECRET, "msg_multi", body)
    h["webhook-signature"] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " + h["webhook-signature"]
    assert client.post("/webhooks/crm", data=body, headers=h).status_code == 202


@pytest.mark.parametrize("drop", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_signature_header_is_401_naming_it(client, kb, drop):
    body = json.dumps(envelope("contact.invite_requested", INVITE)).encode()
    from adapter.webhooks.signatures import sign
    from tests.conftest import SECRET

    h = sign(SECRET, "msg_x", body)
    del h[drop]
    r = client.post("/webhooks/crm", data=body, headers=h)
    assert r.status_code == 401
    assert set(r.json) == {"code", "status", "message", "errors"} and drop in r.json["errors"]
    assert stored(kb) == (0, 0)


def test_wrong_secret_is_401_and_stores_nothing(client, kb):
    r = signed_post(client, envelope("contact.invite_requested", INVITE), secret="whsec_" + "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==")
    assert r.status_code == 401 and "webhook-signature" in r.json["errors"]
    assert stored(kb) == (0, 0)


def test_tampered_body_is_401(client, kb):
    body = json.dumps(envelope("contact.invite_requested", INVITE)).encode()
    from adapter.webhooks.signatures import sign
    from tests.conftest import SECRET

    h = sign(SECRET, "msg_t", body)
    r = client.post("/webhooks/crm", data=body.replace(b"jane", b"evil"), headers=h)
    assert r.status_code == 401 and stored(kb) == (0, 0)


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_stale_or_future_timestamp_is_401(client, kb, skew):
    r = signed_post(client, envelope("contact.invite_requested", INVITE), timestamp=int(time.time()) + skew)
    assert r.status_code == 401 and "webhook-timestamp" in r.json["errors"]
    assert stored(kb) == (0, 0)


def test_garbage_signature_is_401_not_500(client, kb):
    r = signed_post(client, envelope("contact.invite_requested", INVITE), headers={"webhook-signature": "v1,%%%notbase64 garbage"})
    assert r.status_code == 401


def test_malformed_json_is_400(client, kb):
    r = signed_post(client, b'{"type": "contact.invite_requested", "data": {')
    assert r.status_code == 400 and r.json["code"] == 400 and "JSON" in r.json["message"]
    assert stored(kb) == (0, 0)


def test_unknown_type_is_200_ignored_and_not_stored(client, kb):
    r = signed_post(client, envelope("deal.closed", {"id": 1}))
    assert (r.status_code, r.json) == (200, {"status": "ignored"})
    assert stored(kb) == (0, 0)


def test_schema_errors_are_422_naming_each_field(client, kb):
    r = signed_post(client, envelope("contact.invite_requested", {"contact_id": "C-1", "email": "not-an-email", "colour": "red"}))
    assert r.status_code == 422
    errors = r.json["errors"]["data"]
    assert "email" in errors and "account_id" in errors and "colour" in errors
    assert stored(kb) == (0, 0)


def test_envelope_errors_are_422(client, kb):
    r = signed_post(client, {"type": "contact.invite_requested", "data": INVITE})
    assert r.status_code == 422 and "timestamp" in r.json["errors"]


def test_body_over_the_limit_is_413(settings, tmp_path):
    from adapter import create_app

    small = create_app({"KEYBRIDGE_SETTINGS": type(settings)(**{**settings.__dict__, "max_body_bytes": 200}), "TESTING": True})
    client = small.test_client()
    r = signed_post(client, envelope("contact.invite_requested", {**INVITE, "first_name": "x" * 500}))
    assert r.status_code == 413 and "KEYBRIDGE_MAX_BODY_BYTES" in r.json["message"]
    assert stored(small.extensions["keybridge"]) == (0, 0)


def test_batch_items_are_validated_with_their_single_form(client):
    items = [{"kind": "lead", "lead_id": "L-1", "email": "l@corp.example"}, {"kind": "contact", "contact_id": "C-2"}]
    r = signed_post(client, envelope("invitations.batch_requested", {"batch_id": "B-1", "items": items}))
    assert r.status_code == 422
    assert "1" in json.dumps(r.json["errors"]) and "account_id" in json.dumps(r.json["errors"])


@pytest.mark.parametrize("before", [
    "v1,%%%notbase64",          # malformed base64
    "v1",                       # no comma at all
    "v1,",                      # empty signature
    "v2,c2lnbmF0dXJl",          # an unknown version
    "v1a,AAAA,BBBB",            # garbage with extra commas
    "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # well-formed but wrong
])
def test_a_malformed_or_foreign_entry_before_the_valid_signature_does_not_hide_it(client, kb, before):
    body = json.dumps(envelope("contact.invite_requested", INVITE)).encode()
    from adapter.webhooks.signatures import sign
    from tests.conftest import SECRET

    h = sign(SECRET, "msg_multi_bad", body)
    h["webhook-signature"] = f"{before} {h['webhook-signature']}"
    r = client.post("/webhooks/crm", data=body, headers=h)
    assert (r.status_code, r.json) == (202, {"status": "accepted"})
    assert stored(kb) == (1, 1)


def test_only_malformed_entries_are_401_not_500(client, kb):
    r = signed_post(client, envelope("contact.invite_requested", INVITE), headers={"webhook-signature": "v1,%%% v1 v9,abc ,"})
    assert r.status_code == 401 and "webhook-signature" in r.json["errors"]
    assert stored(kb) == (0, 0)


def test_a_body_that_is_not_utf8_is_401_or_400_never_500(client, kb):
    body = b'{"type": "\xff\xfe"}'
    from adapter.webhooks.signatures import sign
    from tests.conftest import SECRET

    h = sign(SECRET, "msg_latin", b"{}")
    assert client.post("/webhooks/crm", data=body, headers=h).status_code == 401
    import base64, hashlib, hmac as _hmac
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    sig = base64.b64encode(_hmac.new(key, f"msg_latin.{h['webhook-timestamp']}.".encode() + body, hashlib.sha256).digest()).decode()
    h["webhook-signature"] = f"v1,{sig}"
    r = client.post("/webhooks/crm", data=body, headers=h)
    assert r.status_code == 400 and "body" in r.json["errors"]
    assert stored(kb) == (0, 0)


@pytest.mark.parametrize("depth", [33, 200, 5000, 100_000])
def test_deeply_nested_json_is_400_naming_the_limit_and_stores_nothing(client, kb, depth):
    deep = "[" * depth + "]" * depth
    raw = ('{"type": "contact.invite_requested", "timestamp": "2026-11-22T10:00:00Z", "data": {"contact_id": "C-1", '
           '"email": "jane@acme.example", "account_id": "A-1", "roles": ' + deep + '}}').encode()
    r = signed_post(client, raw)
    assert r.status_code == 400, r.json
    assert "levels deep" in r.json["message"] and r.json["errors"] == {"body": ["Nested too deeply."]}
    assert stored(kb) == (0, 0)


def test_nesting_up_to_the_limit_reaches_the_schema_check(client, kb):
    deep = "[" * 20 + "]" * 20
    raw = ('{"type": "contact.invite_requested", "timestamp": "2026-11-22T10:00:00Z", "data": {"contact_id": "C-1", '
           '"email": "jane@acme.example", "account_id": "A-1", "roles": ' + deep + '}}').encode()
    r = signed_post(client, raw)
    assert r.status_code == 422 and "roles" in r.json["errors"]["data"]


@pytest.mark.parametrize("webhook_id", ["x" * 201, "msg with space", "msg\x7f"])
def test_a_webhook_id_that_cannot_be_an_idempotency_key_is_400_naming_it(client, kb, webhook_id):
    r = signed_post(client, envelope("contact.invite_requested", INVITE), webhook_id=webhook_id)
    assert r.status_code == 400 and "webhook-id" in r.json["errors"]
    assert stored(kb) == (0, 0)


def test_storing_a_webhook_on_sqlite_is_two_inserts_in_one_transaction(client, kb):
    """The event and its job: no lookup first, no savepoint; a duplicate is skipped by the insert itself."""
    from sqlalchemy import event

    statements: list[str] = []

    def listener(conn, cursor, sql, *_):
        statements.append(" ".join(sql.split()[:3]))

    assert signed_post(client, envelope("contact.invite_requested", INVITE), webhook_id="msg_warm").status_code == 202
    event.listen(kb.db.engine, "before_cursor_execute", listener)
    try:
        assert signed_post(client, envelope("contact.invite_requested", INVITE), webhook_id="msg_two").status_code == 202
        assert statements == ["INSERT INTO inbound_events", "INSERT INTO jobs"]
        statements.clear()
        assert signed_post(client, envelope("contact.invite_requested", INVITE), webhook_id="msg_two").status_code == 200
        assert statements == ["INSERT INTO inbound_events"]
    finally:
        event.remove(kb.db.engine, "before_cursor_execute", listener)
    assert stored(kb) == (2, 2)
