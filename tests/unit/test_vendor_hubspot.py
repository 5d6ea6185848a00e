"""HubSpot in: v3 signatures checked against HubSpot's own SDK, thin events stored at once,
the record read through the HubSpot API (the SDK's real HTTP calls, answered by a stand-in) in the worker."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from adapter.models import Job
from tests.support.vendor_api import VendorApi
from tests.unit.vendor_helpers import fixture, hubspot_headers, native, stored_counts, stored_events, vendor_settings


@pytest.fixture
def hubspot_api():
    api = VendorApi()
    for name in ("contact_1246965", "contact_1246978"):
        record = json.loads(fixture(f"hubspot/api/{name}.json"))
        api.on("GET", f"/crm/v3/objects/contacts/{record['id']}", 200, record)
    company = json.loads(fixture("hubspot/api/company_5320081.json"))
    api.on("GET", "/crm/v3/objects/companies/5320081", 200, company)
    yield api
    api.close()


@pytest.fixture
def settings(tmp_path, hubspot_api):
    return vendor_settings(tmp_path, hubspot_access_token="pat-na1-test-token", hubspot_api_url=hubspot_api.url)


def deliver(client, body: bytes, **kwargs):
    return client.post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, **kwargs))


def test_signed_delivery_is_stored_thin_and_answered_at_once(client, kb, hubspot_api):
    r = deliver(client, fixture("hubspot/contact_invite_requested.json"))
    assert r.status_code == 200
    assert r.json["accepted"] == ["hubspot:3816279340", "hubspot:3816279480"]
    assert r.json["ignored"] == [{"id": "3816279341", "reason": "subscription deal.creation is not used by Keybridge"}]
    assert hubspot_api.requests == []  # nothing fetched in the request
    with kb.db.session() as s:
        assert sorted(j.kind for j in s.scalars(select(Job))) == ["vendor_read", "vendor_read"]


def test_the_worker_reads_each_record_and_stores_native_events(client, kb, worker, hubspot_api):
    deliver(client, fixture("hubspot/contact_invite_requested.json"))
    worker.run_jobs()
    got = {e.id: (e.type, e.payload["data"], e.payload["timestamp"]) for e in stored_events(kb) if not e.type.startswith("hubspot.")}
    occurred = "2016-05-02T19:11:47.945000Z"
    assert got == {
        "hubspot:3816279340:contact.upserted": ("contact.upserted", {
            "contact_id": "1246965", "email": "bh@hubspot.example", "account_id": "5320081", "first_name": "Brian", "last_name": "Halligan",
            "phone": "+1 617 555 0100", "roles": ["Buyer", "Technical Contact"], "status": "active"}, occurred),
        "hubspot:3816279340:contact.invite_requested": ("contact.invite_requested", {
            "contact_id": "1246965", "email": "bh@hubspot.example", "account_id": "5320081", "first_name": "Brian", "last_name": "Halligan",
            "roles": ["Buyer", "Technical Contact"], "org_admin": False}, occurred),
        "hubspot:3816279480:lead.invite_requested": ("lead.invite_requested", {
            "lead_id": "1246978", "email": "lee@prospect.example", "first_name": "Lee", "last_name": "Prospect", "company": "Prospect Ltd"}, occurred),
    }
    call = hubspot_api.calls("GET", "/crm/v3/objects/contacts/1246965")[0]
    assert call.headers["Authorization"] == "Bearer pat-na1-test-token"
    assert {"email", "keybridge_portal_invite", "lifecyclestage", "associatedcompanyid"} <= {p for v in call.query["properties"] for p in v.split(",")}


def test_company_contract_change_becomes_account_upserted(client, kb, worker, hubspot_api):
    deliver(client, fixture("hubspot/company_contract_changed.json"))
    worker.run_jobs()
    assert native(kb) == [("account.upserted", {
        "account_id": "5320081", "name": "HubSpot Example Inc.", "domains": ["hubspot.example"],
        "contract": {"status": "suspended", "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-12-31T23:59:59Z"}})]


def test_a_property_change_other_than_the_invite_does_not_invite(client, kb, worker, hubspot_api):
    events = json.loads(fixture("hubspot/contact_invite_requested.json"))[:1]
    events[0]["propertyName"], events[0]["propertyValue"] = "phone", "+1 617 555 0100"
    deliver(client, json.dumps(events).encode())
    worker.run_jobs()
    assert [t for t, _ in native(kb)] == ["contact.upserted"]


def test_a_record_deleted_before_the_fetch_changes_nothing(client, kb, worker, hubspot_api):
    events = json.loads(fixture("hubspot/contact_invite_requested.json"))[:1]
    events[0]["objectId"] = 999
    deliver(client, json.dumps(events).encode())
    worker.run_jobs()
    assert native(kb) == []
    with kb.db.session() as s:
        assert [j.status for j in s.scalars(select(Job))] == ["done"]


def test_hubspot_rate_limit_retries_the_fetch_as_its_policy_says(client, kb, worker, hubspot_api):
    hubspot_api.routes.pop(("GET", "/crm/v3/objects/contacts/1246965"))
    hubspot_api.on("GET", "/crm/v3/objects/contacts/1246965", 429, {
        "status": "error", "message": "You have reached your ten_secondly_rolling limit.", "errorType": "RATE_LIMIT",
        "correlationId": "c033cdaa-2c40-4a64-ae48-b4cec88dad24", "policyName": "TEN_SECONDLY_ROLLING", "groupName": "privateapp"})
    events = json.loads(fixture("hubspot/contact_invite_requested.json"))[:1]
    deliver(client, json.dumps(events).encode())
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    worker.run_jobs()
    with kb.db.session() as s:
        job = s.scalar(select(Job))
        assert job.status == "queued" and "TEN_SECONDLY_ROLLING" in job.last_error
        assert 9 <= (job.run_at - before).total_seconds() <= 12


def test_the_sdk_signature_and_ours_agree_on_a_uri_with_a_query(client, kb):
    body = fixture("hubspot/company_contract_changed.json")
    uri = "http://localhost/webhooks/hubspot?portal=33"
    r = client.post("/webhooks/hubspot?portal=33", data=body, headers=hubspot_headers(body, uri=uri))
    assert r.status_code == 200


def test_configured_public_url_is_what_is_signed_behind_a_proxy(tmp_path):
    from adapter import create_app

    public = "https://keybridge.example.com/webhooks/hubspot"
    app = create_app({"KEYBRIDGE_SETTINGS": vendor_settings(tmp_path, hubspot_webhook_url=public), "TESTING": True})
    body = fixture("hubspot/company_contract_changed.json")
    r = app.test_client().post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, uri=public))
    assert r.status_code == 200
    app.extensions["keybridge"].db.dispose()


def test_tampered_body_is_refused_and_nothing_stored(client, kb):
    body = fixture("hubspot/contact_invite_requested.json")
    headers = hubspot_headers(body)
    r = client.post("/webhooks/hubspot", data=body.replace(b"1246965", b"1246966"), headers=headers)
    assert r.status_code == 401 and "X-HubSpot-Signature-v3" in r.json["errors"]
    assert stored_counts(kb) == (0, 0)


def test_wrong_client_secret_is_refused(client, kb):
    r = deliver(client, fixture("hubspot/contact_invite_requested.json"), secret="another-apps-secret")
    assert r.status_code == 401 and stored_counts(kb) == (0, 0)


@pytest.mark.parametrize("age_ms", [5 * 60 * 1000 + 5000, -(5 * 60 * 1000 + 5000)])
def test_stale_or_future_timestamp_is_refused_even_when_signed(client, kb, age_ms):
    r = deliver(client, fixture("hubspot/contact_invite_requested.json"), timestamp=int(time.time() * 1000) - age_ms)
    assert r.status_code == 401 and "X-HubSpot-Request-Timestamp" in r.json["errors"]
    assert stored_counts(kb) == (0, 0)


def test_replay_within_the_window_is_a_duplicate(client, kb):
    body = fixture("hubspot/contact_invite_requested.json")
    headers = hubspot_headers(body)
    assert client.post("/webhooks/hubspot", data=body, headers=headers).json["status"] == "accepted"
    again = client.post("/webhooks/hubspot", data=body, headers=headers)
    assert again.status_code == 200 and again.json["status"] == "duplicate" and stored_counts(kb) == (2, 2)


def test_missing_headers_are_named(client, kb):
    r = client.post("/webhooks/hubspot", data=b"[]", headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and set(r.json["errors"]) == {"X-HubSpot-Signature-v3", "X-HubSpot-Request-Timestamp"}


def test_more_than_100_events_is_not_hubspot(client, kb):
    body = json.dumps([{"eventId": i, "subscriptionType": "contact.creation", "objectId": i, "occurredAt": int(time.time() * 1000)}
                       for i in range(101)]).encode()
    assert deliver(client, body).status_code == 400 and stored_counts(kb) == (0, 0)


def test_uri_escapes_hubspot_decodes_before_signing_are_decoded_and_others_kept():
    from adapter.webhooks.hubspot import v3_signature
    from hubspot.utils.signature import Signature

    body, ts = b"[]", "1700000000000"
    signed_by_hubspot = Signature.get_signature("s", "[]", "v3", http_uri="https://a.example/webhooks/hubspot?x=a:b&y=%20", timestamp=ts)
    assert v3_signature("s", "POST", "https://a.example/webhooks/hubspot?x=a%3Ab&y=%20", body, ts) == signed_by_hubspot


def test_what_was_read_is_stamped_with_the_records_last_update(client, kb, worker, hubspot_api):
    """Read later than the event happened, the record's newer state carries its own (later) time."""
    record = json.loads(fixture("hubspot/api/contact_1246965.json"))
    record["updatedAt"] = "2016-05-03T08:00:00.000Z"
    hubspot_api.routes.pop(("GET", "/crm/v3/objects/contacts/1246965"))
    hubspot_api.on("GET", "/crm/v3/objects/contacts/1246965", 200, record)
    deliver(client, json.dumps(json.loads(fixture("hubspot/contact_invite_requested.json"))[:1]).encode())
    worker.run_jobs()
    assert {e.payload["timestamp"] for e in stored_events(kb) if not e.type.startswith("hubspot.")} == {"2016-05-03T08:00:00Z"}


def test_one_edit_of_several_properties_reads_the_record_once(client, kb, worker, hubspot_api):
    """HubSpot sends one event per changed property; the first read already shows them all."""
    first = json.loads(fixture("hubspot/contact_invite_requested.json"))[0]
    events = [dict(first, eventId=first["eventId"] + i, propertyName=name)
              for i, name in enumerate(["keybridge_portal_invite", "keybridge_roles", "phone"])]
    deliver(client, json.dumps(events).encode())
    worker.run_jobs()
    assert len(hubspot_api.calls("GET", "/crm/v3/objects/contacts/1246965")) == 1
    assert len([t for t, _ in native(kb) if t == "contact.invite_requested"]) == 1

    later = dict(first, eventId=first["eventId"] + 10, occurredAt=first["occurredAt"] + 86_400_000, propertyName="phone")
    deliver(client, json.dumps([later]).encode())
    worker.run_jobs()
    assert len(hubspot_api.calls("GET", "/crm/v3/objects/contacts/1246965")) == 2  # a change after that read: read again


def test_behind_a_trusted_proxy_the_forwarded_public_url_is_what_is_signed(tmp_path):
    from adapter import create_app

    app = create_app({"KEYBRIDGE_SETTINGS": vendor_settings(tmp_path, trusted_proxies=1), "TESTING": True})
    body = fixture("hubspot/company_contract_changed.json")
    headers = hubspot_headers(body, uri="https://keybridge.example.com/webhooks/hubspot")
    headers.update({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "keybridge.example.com"})
    assert app.test_client().post("/webhooks/hubspot", data=body, headers=headers).status_code == 200
    app.extensions["keybridge"].db.dispose()


def test_a_hubspot_429_reads_retry_after_like_every_other_crm_answer():
    """HubSpot's Retry-After goes through the shared parser: an HTTP-date works, garbage and
    nan fall back to HubSpot's own policy wait instead of raising or waiting forever."""
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from adapter.connectors.hubspot import SECONDLY_POLICIES, retry_after_429

    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    policy = next(iter(SECONDLY_POLICIES))
    assert retry_after_429({"Retry-After": format_datetime(now + timedelta(seconds=90), usegmt=True)}, policy, now) == 90
    assert retry_after_429({"Retry-After": "nan"}, policy, now) == SECONDLY_POLICIES[policy]
    assert retry_after_429({"Retry-After": "soon"}, policy, now) == SECONDLY_POLICIES[policy]
    assert retry_after_429({"Retry-After": "0"}, policy, now) == 1.0
