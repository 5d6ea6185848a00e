"""Each vendor's documented payload in, the native events stored: one test per fixture, reading like data.

And per vendor: tampered, stale and replayed deliveries are refused (or are duplicates) and store nothing.
"""
from __future__ import annotations

import base64
import json

import pytest
import responses

from tests.unit.vendor_helpers import (DYNAMICS_SECRET, ESPO_ACCOUNT_WEBHOOK, as_json, dynamics_headers, espo_headers, fixture,
                                       native, pipedrive_headers, salesforce_headers, stored_counts, stored_events, vendor_settings)


@pytest.fixture
def settings(tmp_path):
    return vendor_settings(tmp_path)


def post(client, vendor: str, body: bytes, headers: dict, query: str = ""):
    return client.post(f"/webhooks/{vendor}{query}", data=body, headers=headers)


# --- Salesforce Outbound Messages ---------------------------------------------------------------

def test_salesforce_contact_notification_becomes_contact_upserted_and_invite(client, kb):
    r = post(client, "salesforce", fixture("salesforce/contact_invite_requested.xml"), salesforce_headers())
    assert r.status_code == 200 and b"<Ack>true</Ack>" in r.data and r.content_type.startswith("text/xml")
    assert native(kb) == [
        ("contact.invite_requested", {"contact_id": "0035e00000ZkM3hAAF", "email": "jane.doe@acme.example", "account_id": "0015e00000ZkM3hAAF",
                                      "first_name": "Jane", "last_name": "Doe", "roles": ["Buyer", "Billing Contact"], "org_admin": False}),
        ("contact.upserted", {"contact_id": "0035e00000ZkM3hAAF", "email": "jane.doe@acme.example", "account_id": "0015e00000ZkM3hAAF",
                              "first_name": "Jane", "last_name": "Doe", "phone": "(415) 555-0142", "roles": ["Buyer", "Billing Contact"],
                              "status": "active"}),
    ]
    event = stored_events(kb)[0]
    assert event.id == "salesforce:04l5e00000Gx7QzAAJ:contact.invite_requested"
    assert event.payload["timestamp"] == "2026-11-22T10:00:00Z"


def test_salesforce_account_and_lead_notifications_in_one_message(client, kb):
    r = post(client, "salesforce", fixture("salesforce/account_and_lead.xml"), salesforce_headers())
    assert r.status_code == 200 and b"<Ack>true</Ack>" in r.data
    assert native(kb) == [
        ("account.upserted", {"account_id": "0015e00000ZkM3hAAF", "name": "Acme Corporation", "domains": ["acme.example"],
                              "contract": {"status": "active", "starts_at": None, "ends_at": "2027-12-31T23:59:59Z"}}),
        ("lead.invite_requested", {"lead_id": "00Q5e00000AbCdEEAV", "email": "lee@prospect.example", "first_name": "Lee",
                                   "last_name": "Prospect", "company": "Prospect Ltd"}),
    ]


# --- Dynamics 365 / Dataverse ------------------------------------------------------------------

def test_dynamics_contact_create_becomes_contact_upserted_and_org_admin_invite(client, kb):
    r = post(client, "dynamics", fixture("dynamics/contact_create.json"), dynamics_headers())
    assert r.status_code == 200 and len(r.json["accepted"]) == 2
    contact = {"contact_id": "a1b2c3d4-0000-ef11-9f89-000d3a5a1f6c", "email": "jane.doe@contoso.example",
               "account_id": "0b3f1c2d-4e5f-ef11-9f89-000d3a5a1f6c", "first_name": "Jane", "last_name": "Doe"}
    assert native(kb) == [
        ("contact.invite_requested", {**contact, "roles": ["Decision Maker"], "org_admin": True}),
        ("contact.upserted", {**contact, "phone": "+44 20 7946 0000", "roles": ["Decision Maker"], "status": "active"}),
    ]
    assert stored_events(kb)[0].payload["timestamp"] == "2025-11-22T10:00:00Z"


def test_dynamics_deactivated_contact_has_left(client, kb):
    r = post(client, "dynamics", fixture("dynamics/contact_deactivated.json"), dynamics_headers(), query="")
    assert r.status_code == 200
    assert native(kb) == [
        ("contact.upserted", {"contact_id": "a1b2c3d4-0000-ef11-9f89-000d3a5a1f6c", "email": "jane.doe@contoso.example",
                              "account_id": "0b3f1c2d-4e5f-ef11-9f89-000d3a5a1f6c", "first_name": "Jane", "last_name": "Doe",
                              "phone": None, "status": "left"}),
    ]


def test_dynamics_webhook_key_in_the_query_authenticates_too(client, kb):
    r = post(client, "dynamics", fixture("dynamics/contact_create.json"), {"Content-Type": "application/json"}, query=f"?code={DYNAMICS_SECRET}")
    assert r.status_code == 200 and stored_counts(kb) == (2, 2)


# --- Pipedrive webhooks v2 ------------------------------------------------------------------------

def test_pipedrive_person_change_of_the_invite_field_invites(client, kb):
    r = post(client, "pipedrive", fixture("pipedrive/person_invite_requested.json"), pipedrive_headers())
    assert r.status_code == 200
    person = {"contact_id": "42", "email": "pat.jones@globex.example", "account_id": "7", "first_name": "Pat", "last_name": "Jones"}
    assert native(kb) == [
        ("contact.invite_requested", {**person, "roles": ["Buyer"], "org_admin": False}),
        ("contact.upserted", {**person, "phone": "+1 555 0100", "roles": ["Buyer"], "status": "active"}),
    ]
    assert stored_events(kb)[0].payload["timestamp"] == "2026-11-22T10:00:00Z"


def test_pipedrive_organization_create_becomes_account_upserted(client, kb):
    r = post(client, "pipedrive", fixture("pipedrive/organization_create.json"), pipedrive_headers())
    assert r.status_code == 200
    assert native(kb) == [
        ("account.upserted", {"account_id": "7", "name": "Globex Corporation", "domains": ["globex.example"],
                              "contract": {"status": "active", "ends_at": "2027-06-30T23:59:59Z"}}),
    ]


# --- EspoCRM --------------------------------------------------------------------------------------

def test_espocrm_contact_create_batch_invites(client, kb):
    body = fixture("espocrm/contact_create.json")
    r = post(client, "espocrm", body, espo_headers(body))
    assert r.status_code == 200
    contact = {"contact_id": "6571a0c1d2e3f4a5b", "email": "sam.carter@initech.example", "account_id": "6571a0b9e8d7c6b5a",
               "first_name": "Sam", "last_name": "Carter"}
    assert native(kb) == [
        ("contact.invite_requested", {**contact, "roles": ["Buyer", "Billing Contact"], "org_admin": False}),
        ("contact.upserted", {**contact, "phone": "+1 555 0199", "roles": ["Buyer", "Billing Contact"], "status": "active"}),
    ]


def test_espocrm_account_update_partial_record_is_ignored_and_full_one_applied(client, kb):
    body = fixture("espocrm/account_update.json")
    r = post(client, "espocrm", body, espo_headers(body, webhook_id=ESPO_ACCOUNT_WEBHOOK))
    assert r.status_code == 200
    assert [i["reason"] for i in r.json["ignored"]] == [
        "account.upserted: this update does not carry name; send the whole record (e.g. a post-image) to apply it"]
    assert native(kb) == [
        ("account.upserted", {"account_id": "6571a0b9e8d7c6b5b", "name": "Umbrella Corp", "domains": ["umbrella.example"],
                              "contract": {"status": "active", "ends_at": "2027-03-31T23:59:59Z"}}),
    ]


# --- refused: tampered, stale, replayed -----------------------------------------------------------

def tampered(body: bytes) -> bytes:
    return body.replace(b"jane.doe", b"mallory").replace(b"pat.jones", b"mallory").replace(b"sam.carter", b"mallory")


def test_salesforce_message_from_an_org_not_allowed_is_refused(client, kb):
    body = fixture("salesforce/contact_invite_requested.xml").replace(b"00D5e000000KQ2eEAG", b"00D5e000000XXXXEAG")
    r = post(client, "salesforce", body, salesforce_headers())
    assert r.status_code == 401 and "OrganizationId" in r.json["errors"] and stored_counts(kb) == (0, 0)


def test_salesforce_xml_bombs_are_refused_by_defusedxml(client, kb):
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&lol2;</soapenv:Body></soapenv:Envelope>')
    r = post(client, "salesforce", bomb, salesforce_headers())
    assert r.status_code == 400 and stored_counts(kb) == (0, 0)


def test_salesforce_redelivery_is_acknowledged_as_duplicate_and_stores_nothing_new(client, kb):
    body = fixture("salesforce/contact_invite_requested.xml")
    assert post(client, "salesforce", body, salesforce_headers()).status_code == 200
    r = post(client, "salesforce", body, salesforce_headers())
    assert r.status_code == 200 and b"<Ack>true</Ack>" in r.data and stored_counts(kb) == (2, 2)


@pytest.mark.parametrize("headers", [{}, {"X-Keybridge-Key": "wrong"}, {"X-Keybridge-Key": DYNAMICS_SECRET[:-1]}])
def test_dynamics_without_the_shared_secret_is_refused(client, kb, headers):
    r = post(client, "dynamics", fixture("dynamics/contact_create.json"), {"Content-Type": "application/json", **headers})
    assert r.status_code == 401 and stored_counts(kb) == (0, 0)


def test_dynamics_redelivery_is_a_duplicate(client, kb):
    body = fixture("dynamics/contact_create.json")
    post(client, "dynamics", body, dynamics_headers())
    r = post(client, "dynamics", body, dynamics_headers())
    assert r.json["status"] == "duplicate" and stored_counts(kb) == (2, 2)


@pytest.mark.parametrize("headers", [{}, pipedrive_headers(password="guess"), pipedrive_headers(user="admin"),
                                     {"Authorization": "Bearer abc"}, {"Authorization": "Basic !!!"}])
def test_pipedrive_without_the_basic_auth_credentials_is_refused(client, kb, headers):
    r = post(client, "pipedrive", fixture("pipedrive/person_invite_requested.json"), {"Content-Type": "application/json", **headers})
    assert r.status_code == 401 and "Authorization" in r.json["errors"] and stored_counts(kb) == (0, 0)


def test_pipedrive_retry_attempt_is_a_duplicate(client, kb):
    event = json.loads(fixture("pipedrive/person_invite_requested.json"))
    post(client, "pipedrive", as_json(event), pipedrive_headers())
    event["meta"]["attempt"] = 2
    r = post(client, "pipedrive", as_json(event), pipedrive_headers())
    assert r.json["status"] == "duplicate" and stored_counts(kb) == (2, 2)


def test_espocrm_tampered_payload_is_refused(client, kb):
    body = fixture("espocrm/contact_create.json")
    r = post(client, "espocrm", tampered(body), espo_headers(body))
    assert r.status_code == 401 and "Signature" in r.json["errors"] and stored_counts(kb) == (0, 0)


def test_espocrm_signature_of_an_unknown_webhook_or_secret_is_refused(client, kb):
    body = fixture("espocrm/contact_create.json")
    for headers in (espo_headers(body, webhook_id="unknownhook"), espo_headers(body, secret="not-the-secret"),
                    {"Signature": base64.b64encode(b"no-colon").decode()}, {}):
        r = post(client, "espocrm", body, {"Content-Type": "application/json", **headers})
        assert r.status_code == 401
    assert stored_counts(kb) == (0, 0)


def test_espocrm_redelivered_batch_is_a_duplicate(client, kb):
    body = fixture("espocrm/contact_create.json")
    post(client, "espocrm", body, espo_headers(body))
    r = post(client, "espocrm", body, espo_headers(body))
    assert r.json["status"] == "duplicate" and stored_counts(kb) == (2, 2)


def test_a_record_that_cannot_make_a_valid_event_is_422_naming_the_field_and_stores_nothing(client, kb):
    records = json.loads(fixture("espocrm/contact_create.json"))
    records.append({**records[0], "id": "6571a0c1d2e3f4a5z", "emailAddress": "not-an-address"})
    body = as_json(records)
    r = post(client, "espocrm", body, espo_headers(body))
    assert r.status_code == 422
    assert r.json["errors"]["events[1]"]["contact.upserted"]["email"] == ["Not a valid email address."]
    assert stored_counts(kb) == (0, 0)


STALE = {  # each vendor's documented example, a day older than the adapter accepts here (max age one hour)
    "salesforce": ("salesforce/contact_invite_requested.xml", lambda body: salesforce_headers()),
    "dynamics": ("dynamics/contact_create.json", lambda body: dynamics_headers()),
    "pipedrive": ("pipedrive/person_invite_requested.json", lambda body: pipedrive_headers()),
    "espocrm": ("espocrm/contact_create.json", espo_headers),
}


@pytest.mark.parametrize("vendor", sorted(STALE))
def test_a_stale_delivery_is_refused_and_stores_nothing(tmp_path, vendor):
    from adapter import create_app

    app = create_app({"KEYBRIDGE_SETTINGS": vendor_settings(tmp_path, vendor_max_age_seconds=3600), "TESTING": True})
    path, headers = STALE[vendor]
    body = fixture(path)
    r = post(app.test_client(), vendor, body, headers(body))
    assert r.status_code == 401 and "occurred_at" in r.json["errors"]
    assert stored_counts(app.extensions["keybridge"]) == (0, 0)
    app.extensions["keybridge"].db.dispose()


def test_unknown_vendor_is_404_naming_the_known_ones(client):
    r = client.post("/webhooks/zoho", data=b"{}")
    assert r.status_code == 404 and "hubspot" in r.json["message"]


def test_vendor_payloads_grow_fields_which_are_ignored(client, kb):
    event = json.loads(fixture("pipedrive/person_invite_requested.json"))
    event["data"]["brand_new_field"] = {"nested": True}
    event["meta"]["new_meta_field"] = "x"
    r = post(client, "pipedrive", as_json(event), pipedrive_headers())
    assert r.status_code == 200 and len(r.json["accepted"]) == 2


def test_the_mapping_can_be_overridden_per_vendor(tmp_path):
    from adapter import create_app
    from adapter.vendor_mappings import DEFAULT_MAPPING_DIR

    mapping = json.loads((DEFAULT_MAPPING_DIR / "pipedrive.json").read_text())
    mapping["kinds"]["contact"]["invite"] = {"field": "label_ids", "values": ["5"]}
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "pipedrive.json").write_text(json.dumps(mapping))
    app = create_app({"KEYBRIDGE_SETTINGS": vendor_settings(tmp_path, vendor_mapping_dir=str(tmp_path / "mappings")), "TESTING": True})
    event = json.loads(fixture("pipedrive/person_invite_requested.json"))
    r = post(app.test_client(), "pipedrive", as_json(event), pipedrive_headers())
    assert [t for t, _ in native(app.extensions["keybridge"])] == ["contact.upserted"]  # the invite now means label 5
    event["data"]["label_ids"] = [5]
    event["meta"]["id"] = "another-event"
    event["previous"] = {"label_ids": []}
    post(app.test_client(), "pipedrive", as_json(event), pipedrive_headers())
    assert "contact.invite_requested" in [t for t, _ in native(app.extensions["keybridge"])]
    assert r.status_code == 200
    app.extensions["keybridge"].db.dispose()


def test_stored_vendor_events_run_through_the_native_handlers(client, kb, worker, keycloak):
    """A vendor's account and contact end in Keycloak exactly as native webhooks would."""
    body = fixture("salesforce/account_and_lead.xml")
    post(client, "salesforce", body, salesforce_headers())
    post(client, "salesforce", fixture("salesforce/contact_invite_requested.xml"), salesforce_headers())
    for _ in range(5):
        worker.run_once()
    assert any(e["to"] == "jane.doe@acme.example" for e in keycloak.emails)
    assert any(e["to"] == "lee@prospect.example" for e in keycloak.emails)


def test_a_vendor_that_is_not_configured_needs_no_mapping_at_start(tmp_path):
    from adapter import create_app
    from adapter.config import Settings
    from tests.conftest import SESSION_SECRET

    settings = Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'kb.db'}", session_secret=SESSION_SECRET,
                                 vendor_mapping_dir=str(tmp_path / "empty"))
    import adapter.vendor_mappings as mappings

    real, mappings.DEFAULT_MAPPING_DIR = mappings.DEFAULT_MAPPING_DIR, tmp_path / "missing"  # an installed package without realm-config/
    try:
        app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
        app.extensions["keybridge"].db.dispose()
        with pytest.raises(ValueError, match=r"\.json not found: set KEYBRIDGE_VENDOR_MAPPING_DIR"):
            create_app({"KEYBRIDGE_SETTINGS": vendor_settings(tmp_path, vendor_mapping_dir=str(tmp_path / "empty")), "TESTING": True})
    finally:
        mappings.DEFAULT_MAPPING_DIR = real


def test_a_broken_mapping_file_fails_at_start_naming_it(tmp_path):
    from adapter import create_app

    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "espocrm.json").write_text('{"kinds": {"contact": {"objects": ["Contact"], "invite": {"values": ["true"]}}}}')
    with pytest.raises(ValueError, match=r"espocrm.json: kinds.contact.invite needs a \"field\""):
        create_app({"KEYBRIDGE_SETTINGS": vendor_settings(tmp_path, vendor_mapping_dir=str(tmp_path / "mappings")), "TESTING": True})


def test_salesforce_endpoint_token_is_required_once_configured(tmp_path):
    from adapter import create_app

    app = create_app({"KEYBRIDGE_SETTINGS": vendor_settings(tmp_path, salesforce_endpoint_tokens=["sf-endpoint-token-31"]), "TESTING": True})
    client, body = app.test_client(), fixture("salesforce/contact_invite_requested.xml")
    for query in ("", "?token=guess", "?token=sf-endpoint-token-3"):
        r = post(client, "salesforce", body, salesforce_headers(), query=query)
        assert r.status_code == 401 and "token" in r.json["errors"]
    assert stored_counts(app.extensions["keybridge"]) == (0, 0)
    assert post(client, "salesforce", body, salesforce_headers(), query="?token=sf-endpoint-token-31").status_code == 200
    app.extensions["keybridge"].db.dispose()


ESPO_URL = "https://crm.initech.example"
ESPO_CONTACT = f"{ESPO_URL}/api/v1/Contact/6571a0c1d2e3f4a5b"


def espo_read_back_app(tmp_path):
    from adapter import create_app

    settings = vendor_settings(tmp_path, espocrm_url=ESPO_URL, espocrm_api_token="espo-api-key-4d2",
                               espocrm_webhook_secrets=["6571a0c1d2e3f4a5c:Contact.update:espo-secret-key-9a8b7c"])
    return create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})


@responses.activate
def test_espocrm_contact_update_carrying_only_the_status_is_read_back_and_the_contact_has_left(tmp_path):
    app = espo_read_back_app(tmp_path)
    kb = app.extensions["keybridge"]
    responses.get(ESPO_CONTACT, json=json.loads(fixture("espocrm/api/Contact_6571a0c1d2e3f4a5b.json")))
    body = fixture("espocrm/contact_left_update.json")
    r = post(app.test_client(), "espocrm", body, espo_headers(body))
    assert r.status_code == 200 and len(responses.calls) == 0  # stored at once, read in the worker
    from adapter.worker import Worker

    Worker(kb).run_jobs()
    assert responses.calls[0].request.headers["X-Api-Key"] == "espo-api-key-4d2"
    assert native(kb) == [("contact.upserted", {
        "contact_id": "6571a0c1d2e3f4a5b", "email": "sam.carter@initech.example", "account_id": "6571a0b9e8d7c6b5a", "first_name": "Sam",
        "last_name": "Carter", "phone": "+1 555 0199", "roles": ["Buyer", "Billing Contact"], "status": "left"})]
    assert {e.payload["timestamp"] for e in stored_events(kb) if isinstance(e.payload.get("vendor"), dict)} == {"2026-11-23T08:15:00Z"}
    kb.db.dispose()


@responses.activate
def test_a_read_back_newer_than_the_change_wins_over_the_delivered_fields(tmp_path):
    """Left at 08:15, back to Active at 09:00: reading at 09:05 must not make the 08:15 'Left' the newest state."""
    app = espo_read_back_app(tmp_path)
    kb = app.extensions["keybridge"]
    now = json.loads(fixture("espocrm/api/Contact_6571a0c1d2e3f4a5b.json"))
    now.update(cPortalStatus="Active", modifiedAt="2026-11-23 09:00:00")
    responses.get(ESPO_CONTACT, json=now)
    body = fixture("espocrm/contact_left_update.json")
    post(app.test_client(), "espocrm", body, espo_headers(body))
    from adapter.worker import Worker

    Worker(kb).run_jobs()
    [(event_type, data)] = native(kb)
    assert data["status"] == "active"
    assert {e.payload["timestamp"] for e in stored_events(kb) if isinstance(e.payload.get("vendor"), dict)} == {"2026-11-23T09:00:00Z"}
    kb.db.dispose()


@responses.activate
def test_espocrm_read_back_refused_is_a_dead_letter_naming_the_setting_and_down_is_a_retry(tmp_path):
    from sqlalchemy import select

    from adapter.models import Job
    from adapter.worker import Worker

    app = espo_read_back_app(tmp_path)
    kb = app.extensions["keybridge"]
    responses.get(ESPO_CONTACT, status=503)
    body = fixture("espocrm/contact_left_update.json")
    post(app.test_client(), "espocrm", body, espo_headers(body))
    Worker(kb).run_jobs()
    with kb.db.session() as s:
        assert s.scalar(select(Job)).status == "queued"
    responses.replace(responses.GET, ESPO_CONTACT, status=401, json={"message": "Unauthorized"})
    from tests.unit.fakes import make_everything_due

    make_everything_due(kb)
    Worker(kb).run_jobs()
    with kb.db.session() as s:
        job = s.scalar(select(Job))
        assert job.status == "dead" and "KEYBRIDGE_ESPOCRM_API_TOKEN" in job.last_error
    kb.db.dispose()


def test_a_real_but_unused_event_answers_200_and_is_listed_as_ignored(client, kb):
    event = json.loads(fixture("pipedrive/person_invite_requested.json"))
    event["meta"].update(action="delete", id="delete-1")
    event["previous"], event["data"] = event["data"], None
    r = post(client, "pipedrive", as_json(event), pipedrive_headers())
    assert r.status_code == 200 and r.json["status"] == "ignored"
    assert "a deleted contact changes nothing" in r.json["ignored"][0]["reason"] and stored_counts(kb) == (0, 0)
    deal = json.loads(fixture("pipedrive/organization_create.json"))
    deal["meta"].update(entity="deal", id="deal-1")
    r = post(client, "pipedrive", as_json(deal), pipedrive_headers())
    assert r.status_code == 200 and r.json["ignored"][0]["reason"] == "deal create means nothing to Keybridge with the pipedrive mapping"
