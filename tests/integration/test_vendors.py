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


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_dynamics_pipedrive_and_espocrm_each_invite_a_contact_who_registers(adapter_settings, crm, mail_dir, kc_admin, chromium, unique):
    """Each vendor's own deliveries create its account and invite its contact; all three register in Chromium and
    the CRM is told (these vendors have no connector yet: the generic signed webhook carries the registration)."""
    from tests.unit.vendor_helpers import DYNAMICS_SECRET, ESPO_SECRET, dynamics_headers, espo_headers, pipedrive_headers
    from tests.unit.vendor_helpers import PIPEDRIVE_PASSWORD, PIPEDRIVE_USER

    settings = adapter_settings
    settings.dynamics_secrets, settings.pipedrive_username, settings.pipedrive_password = [DYNAMICS_SECRET], PIPEDRIVE_USER, PIPEDRIVE_PASSWORD
    settings.espocrm_webhook_secrets = [f"hookaccount:Account.create:{ESPO_SECRET}", f"hookcontact:Contact.create:{ESPO_SECRET}"]
    app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
    worker, client = Worker(app.extensions["keybridge"]), app.test_client()
    people = {vendor: f"{vendor}.{unique}@{vendor}-{unique}.example" for vendor in ("dynamics", "pipedrive", "espocrm")}

    accounts, contacts, contact_posts = {}, {}, []
    accounts["dynamics"], (account_body, contact_body), contacts["dynamics"] = dynamics_deliveries(unique, people["dynamics"])
    assert client.post("/webhooks/dynamics", data=account_body, headers=dynamics_headers()).status_code == 200
    contact_posts.append(("/webhooks/dynamics", contact_body, dynamics_headers()))
    accounts["pipedrive"], (account_body, contact_body), contacts["pipedrive"] = pipedrive_deliveries(unique, people["pipedrive"])
    assert client.post("/webhooks/pipedrive", data=account_body, headers=pipedrive_headers()).status_code == 200
    contact_posts.append(("/webhooks/pipedrive", contact_body, pipedrive_headers()))
    accounts["espocrm"], ((hook_a, account_body), (hook_c, contact_body)), contacts["espocrm"] = espocrm_deliveries(unique, people["espocrm"])
    assert client.post("/webhooks/espocrm", data=account_body, headers=espo_headers(account_body, webhook_id=hook_a)).status_code == 200
    contact_posts.append(("/webhooks/espocrm", contact_body, espo_headers(contact_body, webhook_id=hook_c)))

    run_until(worker, lambda: all(kc_admin.organization_of(a) for a in accounts.values()), what="the three vendors' organizations")
    for path, body, headers in contact_posts:
        r = client.post(path, data=body, headers=headers)
        assert r.status_code == 200 and len(r.json["accepted"]) == 2, r.json

    run_until(worker, lambda: all(stack.read_mails(mail_dir, to=e) for e in people.values()), timeout=90, what="three invitation emails")
    for vendor, email in people.items():
        context = chromium.new_context()
        register_through_invitation(context.new_page(), stack.read_mails(mail_dir, to=email)[0].link, vendor.title(), "Person")
        context.close()

    def registered():
        got = {e["data"].get("contact_id") for e in crm.of_type("identity.registered")}
        return got >= set(contacts.values())

    run_until(worker, registered, what="identity.registered for the three vendors' contacts")
    for vendor, email in people.items():
        user = kc_admin.user_by_email(email)
        assert user["attributes"]["crm_contact_id"] == [contacts[vendor]], vendor
        org = kc_admin.organization_of(accounts[vendor])
        assert user["id"] in [m["id"] for m in kc_admin.get(f"/organizations/{org['id']}/members")], vendor
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
