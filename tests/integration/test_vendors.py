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

    mails = run_until(worker, lambda: stack.read_mails(mail_dir, to=email), timeout=90, what="the HubSpot contact's invitation email")
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
        mails = run_until(worker, lambda: stack.read_mails(mail_dir, to=email), timeout=90, what="the Salesforce lead's invitation email")
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


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def dynamics_deliveries(unique: str, email: str) -> tuple[str, list[bytes], str]:
    """A Dataverse account Create and a contact Create (kb_portalinvite), from the documented context shape."""
    account_id, contact_id = f"0b3f{unique[:4]}-4e5f-ef11-9f89-{unique[:10]}00", f"a1b2{unique[:4]}-0000-ef11-9f89-{unique[:10]}00"
    created = f"/Date({now_ms()})/"
    contact = json.loads(fixture("dynamics/contact_create.json"))
    account = json.loads(fixture("dynamics/contact_create.json"))
    account.update(PrimaryEntityName="account", PrimaryEntityId=account_id, OperationId=f"op-account-{unique}", OperationCreatedOn=created)
    account["InputParameters"][0]["value"].update(LogicalName="account", Id=account_id, Attributes=[
        {"key": "name", "value": f"Contoso {unique}"}, {"key": "websiteurl", "value": f"https://www.contoso-{unique}.example"},
        {"key": "kb_contractstatus", "value": {"__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 100000000}},
        {"key": "accountid", "value": account_id}])
    contact.update(PrimaryEntityId=contact_id, OperationId=f"op-contact-{unique}", OperationCreatedOn=created)
    attributes = contact["InputParameters"][0]["value"]["Attributes"]
    for pair in attributes:
        if pair["key"] == "emailaddress1":
            pair["value"] = email
        elif pair["key"] == "contactid":
            pair["value"] = contact_id
        elif pair["key"] == "parentcustomerid":
            pair["value"]["Id"] = account_id
    return account_id, [json.dumps(account).encode(), json.dumps(contact).encode()], contact_id


def pipedrive_deliveries(unique: str, email: str) -> tuple[str, list[bytes], str]:
    org_id, person_id = str(int(unique[:6], 16)), str(int(unique[4:10], 16))
    organization = json.loads(fixture("pipedrive/organization_create.json"))
    organization["data"].update(id=int(org_id), name=f"Globex {unique}")
    organization["data"]["custom_fields"]["domains"]["value"] = f"globex-{unique}.example"
    organization["meta"].update(entity_id=org_id, id=f"org-{unique}", timestamp=_now_iso())
    person = json.loads(fixture("pipedrive/person_invite_requested.json"))
    person["data"].update(id=int(person_id), org_id=int(org_id))
    person["data"]["emails"][0]["value"] = email
    person["meta"].update(entity_id=person_id, id=f"person-{unique}", timestamp=_now_iso())
    return org_id, [json.dumps(organization).encode(), json.dumps(person).encode()], person_id


def espocrm_deliveries(unique: str, email: str) -> tuple[str, list[tuple[str, bytes]], str]:
    account_id, contact_id = f"acc{unique}", f"con{unique}"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    account = [{"id": account_id, "name": f"Initech {unique}", "website": f"initech-{unique}.example", "cContractStatus": "Active",
                "createdAt": stamp, "modifiedAt": stamp}]
    contact = json.loads(fixture("espocrm/contact_create.json"))
    contact[0].update(id=contact_id, emailAddress=email, accountId=account_id, createdAt=stamp, modifiedAt=stamp)
    return account_id, [("hookaccount", json.dumps(account).encode()), ("hookcontact", json.dumps(contact).encode())], contact_id


VENDOR_APIS = {  # what each connector calls with the registration (recorded with `responses`)
    "dynamics": ("PATCH", "https://contoso.crm4.dynamics.com/api/data/v9.2/contacts({id})", "kb_portalregisteredon"),
    "pipedrive": ("PATCH", "https://globex.pipedrive.com/api/v2/persons/{id}", "custom_fields"),
    "espocrm": ("PUT", "https://crm.initech.example/api/v1/Contact/{id}", "cPortalRegisteredAt"),
}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("vendor", sorted(VENDOR_APIS))
def test_dynamics_pipedrive_and_espocrm_invitation_registration_and_the_vendor_api_told(
        vendor, adapter_settings, mail_dir, kc_admin, page, unique, keycloak):
    """The vendor's own deliveries create its account and invite its contact, who registers in Chromium;
    the vendor's connector writes the registration on the contact through the vendor's API."""
    from tests.unit.vendor_helpers import (DYNAMICS_SECRET, ESPO_SECRET, PIPEDRIVE_PASSWORD, PIPEDRIVE_USER, dynamics_headers,
                                           espo_headers, pipedrive_headers)

    settings = adapter_settings
    settings.connector = vendor
    settings.dynamics_secrets, settings.pipedrive_username, settings.pipedrive_password = [DYNAMICS_SECRET], PIPEDRIVE_USER, PIPEDRIVE_PASSWORD
    settings.espocrm_webhook_secrets = [f"hookaccount:Account.create:{ESPO_SECRET}", f"hookcontact:Contact.create:{ESPO_SECRET}"]
    settings.dynamics_url, settings.dynamics_tenant_id = "https://contoso.crm4.dynamics.com", "tenant-e2e"
    settings.dynamics_client_id, settings.dynamics_client_secret = "app-e2e", "app-secret-e2e"
    settings.pipedrive_api_url, settings.pipedrive_api_token = "https://globex.pipedrive.com", "pd-token-e2e"
    settings.espocrm_url, settings.espocrm_api_token = "https://crm.initech.example", "espo-key-e2e"
    app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
    worker, client = Worker(app.extensions["keybridge"]), app.test_client()
    email = f"{vendor}.{unique}@{vendor}-{unique}.example"

    if vendor == "dynamics":
        account_id, (account_body, contact_body), contact_id = dynamics_deliveries(unique, email)
        account_post, contact_post = (account_body, dynamics_headers()), (contact_body, dynamics_headers())
    elif vendor == "pipedrive":
        account_id, (account_body, contact_body), contact_id = pipedrive_deliveries(unique, email)
        account_post, contact_post = (account_body, pipedrive_headers()), (contact_body, pipedrive_headers())
    else:
        account_id, ((hook_a, account_body), (hook_c, contact_body)), contact_id = espocrm_deliveries(unique, email)
        account_post = (account_body, espo_headers(account_body, webhook_id=hook_a))
        contact_post = (contact_body, espo_headers(contact_body, webhook_id=hook_c))

    method, url, field = VENDOR_APIS[vendor]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as api:
        api.add_passthru(keycloak.url)
        api.post("https://login.microsoftonline.com/tenant-e2e/oauth2/v2.0/token",
                 json={"token_type": "Bearer", "expires_in": 3599, "access_token": "eyJ0eXAi.e2e"})
        api.add(method, url.format(id=contact_id), status=204 if vendor == "dynamics" else 200, json=None if vendor == "dynamics" else {"id": contact_id})

        assert client.post(f"/webhooks/{vendor}", data=account_post[0], headers=account_post[1]).status_code == 200
        run_until(worker, lambda: kc_admin.organization_of(account_id), what=f"the {vendor} account's organization")
        r = client.post(f"/webhooks/{vendor}", data=contact_post[0], headers=contact_post[1])
        assert r.status_code == 200 and len(r.json["accepted"]) == 2, r.json
        mails = run_until(worker, lambda: stack.read_mails(mail_dir, to=email), timeout=90, what=f"the {vendor} contact's invitation")
        register_through_invitation(page, mails[0].link, vendor.title(), "Person")

        def written_back():
            return [json.loads(c.request.body) for c in api.calls if c.request.method == method and c.request.url == url.format(id=contact_id)]

        [written] = run_until(worker, written_back, what=f"the registration written through the {vendor} API")
    assert field in written and "enabled" in json.dumps(written)
    user = kc_admin.user_by_email(email)
    assert user["attributes"]["crm_contact_id"] == [contact_id]
    org = kc_admin.organization_of(account_id)
    assert user["id"] in [m["id"] for m in kc_admin.get(f"/organizations/{org['id']}/members")]
    app.extensions["keybridge"].db.dispose()


def test_concurrent_redeliveries_store_each_event_once_on_postgresql(postgres_url, tmp_path):
    """HubSpot retries while the first delivery is still being stored: every copy answers 200, each event is stored once."""
    import threading

    from sqlalchemy import func, select

    from adapter.models import InboundEvent, Job
    from tests.unit.vendor_helpers import vendor_settings

    settings = vendor_settings(tmp_path, database_url=stack.create_database(postgres_url), hubspot_client_secret=HUBSPOT_SECRET)
    app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
    events = [{"eventId": 9_000_000 + i, "subscriptionType": "contact.propertyChange", "objectId": 1000 + i, "occurredAt": now_ms(),
               "propertyName": "keybridge_portal_invite", "propertyValue": "true", "portalId": 33} for i in range(50)]
    body = json.dumps(events).encode()
    headers = hubspot_headers(body, secret=HUBSPOT_SECRET)
    start, answers = threading.Barrier(8), []

    def deliver():
        client = app.test_client()
        start.wait()
        answers.append(client.post("/webhooks/hubspot", data=body, headers=headers).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 8
    kb = app.extensions["keybridge"]
    with kb.db.session() as s:
        assert s.scalar(select(func.count()).select_from(InboundEvent)) == 50
        assert s.scalar(select(func.count()).select_from(Job)) == 50
    kb.db.dispose()
