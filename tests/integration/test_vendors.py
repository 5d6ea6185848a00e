"""Real CRMs end to end on the real Keycloak: the vendor's own payload in, the invitation email out,
registration in Chromium, and the vendor's API called with the registration.

HubSpot: signed v3 deliveries (signatures made by HubSpot's SDK), records read and contact
properties written through hubspot-api-client's real HTTP calls (answered by a local stand-in).
Salesforce: an Outbound Message in, the SOAP Ack out, the registered lead upserted with a Task
for sales through simple-salesforce's real HTTP calls (recorded with `responses`).
"""
from __future__ import annotations

import json
import time

import pytest
import responses

from adapter import create_app
from adapter.worker import Worker
from tests.support import stack
from tests.support.vendor_api import VendorApi
from tests.unit.vendor_helpers import SALESFORCE_ORG, fixture, hubspot_headers, salesforce_headers

from .conftest import run_until, wait_for_mail
from .test_core_loop import register_through_invitation, set_password_through_invitation

pytestmark = pytest.mark.integration

HUBSPOT_SECRET = "hs-client-secret-5f1e0c"
SF = "https://acme.my.salesforce.com"


@pytest.fixture
def hubspot_api():
    api = VendorApi()
    yield api
    api.close()


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # one storage per vendor keeps the suite short
def test_hubspot_company_and_contact_in_invitation_out_registration_written_back(adapter_settings, hubspot_api, mail_dir, kc_admin, page, unique):
    settings = adapter_settings
    settings.hubspot_client_secret, settings.hubspot_access_token = HUBSPOT_SECRET, "pat-na1-e2e"
    settings.hubspot_api_url, settings.connector = hubspot_api.url, "hubspot"
    app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
    worker, client = Worker(app.extensions["keybridge"]), app.test_client()
    company_id, contact_id = f"9{int(unique, 16) % 10**9}", f"8{int(unique, 16) % 10**9}"
    email = f"brian.{unique}@hub-{unique}.example"
    stamp = "2026-11-22T10:00:00.000Z"
    hubspot_api.on("GET", f"/crm/v3/objects/companies/{company_id}", 200, {
        "id": company_id, "createdAt": stamp, "updatedAt": stamp, "archived": False,
        "properties": {"hs_object_id": company_id, "name": f"Hub {unique}", "domain": f"hub-{unique}.example",
                       "keybridge_contract_status": "active", "keybridge_contract_ends_at": "2030-12-31"}})
    hubspot_api.on("GET", f"/crm/v3/objects/contacts/{contact_id}", 200, {
        "id": contact_id, "createdAt": stamp, "updatedAt": stamp, "archived": False,
        "properties": {"hs_object_id": contact_id, "email": email, "firstname": "Brian", "lastname": "Hub", "associatedcompanyid": company_id,
                       "lifecyclestage": "customer", "keybridge_portal_invite": "true", "keybridge_roles": "Buyer"}})
    hubspot_api.on("POST", "/crm/v3/objects/contacts/batch/update", 200, {
        "status": "COMPLETE", "startedAt": stamp, "completedAt": stamp,
        "results": [{"id": contact_id, "properties": {}, "createdAt": stamp, "updatedAt": stamp, "archived": False}]})

    company_event = [{"eventId": now_ms(), "subscriptionId": 31, "portalId": 33, "appId": 1160452, "occurredAt": now_ms(),
                      "subscriptionType": "company.creation", "attemptNumber": 0, "objectId": int(company_id), "changeSource": "CRM_UI"}]
    body = json.dumps(company_event).encode()
    assert client.post("/webhooks/hubspot", data=body, headers=hubspot_headers(body, secret=HUBSPOT_SECRET)).status_code == 200
    org = run_until(worker, lambda: kc_admin.organization_of(company_id), what="the company's organization")
    assert org["attributes"]["contract_status"] == ["active"]

    contact_event = [{"eventId": now_ms() + 1, "subscriptionId": 25, "portalId": 33, "appId": 1160452, "occurredAt": now_ms(),
                      "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": int(contact_id),
                      "propertyName": "keybridge_portal_invite", "propertyValue": "true", "changeSource": "CRM_UI"}]
    body = json.dumps(contact_event).encode()
    headers = hubspot_headers(body, secret=HUBSPOT_SECRET)
    assert client.post("/webhooks/hubspot", data=body, headers=headers).json["status"] == "accepted"
    assert client.post("/webhooks/hubspot", data=body, headers=headers).json["status"] == "duplicate"  # HubSpot's retry

    mails = None
    deadline = time.time() + 90
    while time.time() < deadline and not mails:
        worker.run_once()
        mails = stack.read_mails(mail_dir, to=email)
        time.sleep(0.3)
    assert mails, "no invitation email for the HubSpot contact"
    register_through_invitation(page, mails[0].link, "Brian", "Hub")

    def written_back():
        return [c for c in hubspot_api.calls("POST", "/crm/v3/objects/contacts/batch/update")
                if c.body["inputs"][0]["properties"].get("keybridge_registered_at")]

    [call] = run_until(worker, written_back, what="the registration written to the HubSpot contact")
    assert call.body["inputs"][0]["id"] == contact_id
    assert call.body["inputs"][0]["properties"]["keybridge_access_state"] == "enabled"
    user = kc_admin.user_by_email(email)
    assert user["attributes"]["crm_contact_id"] == [contact_id]
    assert "buyer" in kc_admin.realm_roles(user["id"])
    assert len(wait_for_mail(mail_dir, to=email)) == 1
    app.extensions["keybridge"].db.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_salesforce_lead_in_soap_ack_out_registration_upserted_with_a_task(adapter_settings, mail_dir, kc_admin, page, unique, keycloak):
    settings = adapter_settings
    settings.salesforce_organization_ids = [SALESFORCE_ORG]
    settings.salesforce_instance_url, settings.salesforce_access_token, settings.connector = SF, "00Dxx!e2e", "salesforce"
    app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
    worker, client = Worker(app.extensions["keybridge"]), app.test_client()
    lead_id, email = f"00Q{unique[:12]}AAA", f"lee.{unique}@prospect-{unique}.example"
    message = fixture("salesforce/account_and_lead.xml").decode()
    lead_part = message[message.index("   <Notification>\n    <Id>04l5e00000Gx7R1AAJ"):message.index("  </notifications>")]
    message = message[:message.index("   <Notification>")] + lead_part + message[message.index("  </notifications>"):]
    message = (message.replace("04l5e00000Gx7R1AAJ", f"04l{unique[:12]}AAA").replace("00Q5e00000AbCdEEAV", lead_id)
               .replace("lee@prospect.example", email).replace("2026-11-22T10:01:00.000Z", time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())))

    r = client.post("/webhooks/salesforce", data=message.encode(), headers=salesforce_headers())
    assert r.status_code == 200 and b"<Ack>true</Ack>" in r.data

    with responses.RequestsMock(assert_all_requests_are_fired=False) as sf:
        sf.add_passthru(keycloak.url)
        sf.post(f"{SF}/services/data/v59.0/composite", json={"compositeResponse": [
            {"body": {"id": lead_id, "success": True, "errors": [], "created": False}, "httpHeaders": {}, "httpStatusCode": 200, "referenceId": "e0"},
            {"body": {"id": "00T5e00000XyZ1AAA", "success": True, "errors": []}, "httpHeaders": {}, "httpStatusCode": 201, "referenceId": "e0task"}]})
        mails = None
        deadline = time.time() + 90
        while time.time() < deadline and not mails:
            worker.run_once()
            mails = stack.read_mails(mail_dir, to=email)
            time.sleep(0.3)
        assert mails, "no invitation email for the Salesforce lead"
        set_password_through_invitation(page, mails[0].link)

        def upserted():
            return [json.loads(c.request.body) for c in sf.calls if c.request.url.endswith("/composite")]

        [composite] = run_until(worker, upserted, what="the registration upserted on the Salesforce lead")
    first, task = composite["compositeRequest"]
    assert first["url"] == f"/services/data/v59.0/sobjects/Lead/Id/{lead_id}"
    assert first["body"]["Portal_Access__c"] == "enabled" and first["body"]["Status"] == "Working - Contacted"
    assert task["body"]["WhoId"] == "@{e0.id}" and task["body"]["Subject"] == "Registered on the customer portal"
    user = kc_admin.user_by_email(email)
    assert user["attributes"]["crm_lead_id"] == [lead_id] and "lead" in kc_admin.realm_roles(user["id"])
    app.extensions["keybridge"].db.dispose()
