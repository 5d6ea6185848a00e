"""Identity facts out to HubSpot (hubspot-api-client's real HTTP calls, answered by a stand-in) and
Salesforce (simple-salesforce's real HTTP calls, recorded with `responses`), through the outbox."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import responses
from click.testing import CliRunner

from adapter import outbox
from adapter.connectors import ConnectorError, hubspot as hubspot_connector, salesforce as salesforce_connector
from adapter.errors import RetryableError
from tests.support.vendor_api import VendorApi
from tests.conftest import SECRET as CRM_SECRET
from tests.unit.vendor_helpers import vendor_settings

BATCH_UPDATE = "/crm/v3/objects/contacts/batch/update"
BATCH_UPSERT = "/crm/v3/objects/contacts/batch/upsert"
SF = "https://acme.my.salesforce.com"
COMPOSITE = f"{SF}/services/data/v59.0/composite"


def registered(lead_id=None, contact_id=None, email="lee@prospect.example", user_id="u-1"):
    data = {"user_id": user_id, "email": email, "via": "invitation", "registered_at": "2026-11-22T10:05:00Z"}
    data.update({"lead_id": lead_id} if lead_id else {"contact_id": contact_id, "account_id": "A-1"})
    return {"type": "identity.registered", "timestamp": "2026-11-22T10:05:01Z", "data": data}


def batch_ok(ids):
    now = "2026-11-22T10:05:02.000Z"
    return {"status": "COMPLETE", "startedAt": now, "completedAt": now,
            "results": [{"id": i, "properties": {}, "createdAt": now, "updatedAt": now, "archived": False} for i in ids]}


@pytest.fixture
def hubspot_api():
    api = VendorApi()
    yield api
    api.close()


@pytest.fixture
def hubspot(tmp_path, hubspot_api):
    settings = vendor_settings(tmp_path, hubspot_access_token="pat-na1-test-token", hubspot_api_url=hubspot_api.url, connector="hubspot")
    return hubspot_connector.HubSpotConnector.from_settings(settings)


# --- HubSpot ---------------------------------------------------------------------------------------

def test_a_registered_lead_is_visible_to_sales_in_hubspot(hubspot, hubspot_api):
    hubspot_api.on("POST", BATCH_UPDATE, 200, batch_ok(["1246978"]))
    hubspot.deliver("evt_1", registered(lead_id="1246978"))
    [call] = hubspot_api.calls("POST", BATCH_UPDATE)
    assert call.headers["Authorization"] == "Bearer pat-na1-test-token"
    assert call.body == {"inputs": [{"id": "1246978", "properties": {
        "keybridge_registered_at": "2026-11-22T10:05:00Z", "keybridge_pending_approval": "false", "keybridge_access_state": "enabled",
        "lifecyclestage": "salesqualifiedlead", "hs_lead_status": "OPEN"}}]}


def test_activity_and_access_become_contact_properties(hubspot, hubspot_api):
    hubspot_api.on("POST", BATCH_UPDATE, 200, batch_ok(["1246965"]))
    hubspot.deliver_many([
        ("evt_1", {"type": "identity.activity", "timestamp": "t", "data": {"user_id": "u", "contact_id": "1246965",
                                                                             "last_login_at": "2026-11-22T11:00:00Z", "logins": 3}}),
        ("evt_2", {"type": "identity.access_changed", "timestamp": "t", "data": {"user_id": "u", "contact_id": "1246965",
                                                                                   "enabled": False, "reason": "contract_inactive"}}),
        ("evt_3", {"type": "invitation.sent", "timestamp": "t", "data": {"contact_id": "1246965", "email": "x@y.example"}}),
    ])
    [call] = hubspot_api.calls("POST", BATCH_UPDATE)
    assert call.body == {"inputs": [{"id": "1246965", "properties": {
        "keybridge_last_login_at": "2026-11-22T11:00:00Z", "keybridge_logins": "3", "keybridge_access_state": "disabled: contract_inactive"}}]}


def test_batches_hold_at_most_100_contacts(hubspot, hubspot_api):
    hubspot_api.on("POST", BATCH_UPDATE, 200, batch_ok([]))
    hubspot.deliver_many([(f"evt_{i}", registered(contact_id=str(1000 + i), email=f"p{i}@acme.example")) for i in range(150)])
    sizes = [len(c.body["inputs"]) for c in hubspot_api.calls("POST", BATCH_UPDATE)]
    assert sizes == [100, 50]


def test_a_self_registration_pending_approval_is_upserted_by_email(hubspot, hubspot_api):
    hubspot_api.on("POST", BATCH_UPSERT, 200, batch_ok(["777"]))
    hubspot.deliver("evt_p", {"type": "registration.pending_approval", "timestamp": "t",
                              "data": {"user_id": "u", "email": "new@unknown.example", "company": "Unknown", "matched_account_id": None}})
    [call] = hubspot_api.calls("POST", BATCH_UPSERT)
    assert call.body == {"inputs": [{"id": "new@unknown.example", "idProperty": "email", "properties": {"keybridge_pending_approval": "true"}}]}


@pytest.mark.parametrize("policy, low, high", [("TEN_SECONDLY_ROLLING", 10, 10), ("SECONDLY", 1, 1)])
def test_hubspot_429_is_retried_after_the_policys_window(hubspot, hubspot_api, policy, low, high):
    hubspot_api.on("POST", BATCH_UPDATE, 429, {"status": "error", "message": "You have reached your limit.", "errorType": "RATE_LIMIT",
                                               "policyName": policy, "groupName": "privateapp"})
    with pytest.raises(RetryableError) as caught:
        hubspot.deliver("evt_1", registered(contact_id="1"))
    assert low <= caught.value.retry_after <= high and policy in str(caught.value)


def test_hubspot_daily_limit_waits_for_midnight():
    now = datetime(2026, 11, 22, 23, 0, 0, tzinfo=timezone.utc)
    assert hubspot_connector.retry_after_429({}, "DAILY", now=now) == 3605
    assert hubspot_connector.retry_after_429({"Retry-After": "7"}, "DAILY", now=now) == 7


def test_hubspot_5xx_is_retried_and_401_is_permanent_with_a_hint(hubspot, hubspot_api):
    hubspot_api.on("POST", BATCH_UPDATE, 502, {"status": "error", "message": "Bad gateway"})
    with pytest.raises(RetryableError):
        hubspot.deliver("evt_1", registered(contact_id="1"))
    hubspot_api.routes.clear()
    hubspot_api.on("POST", BATCH_UPDATE, 401, {"status": "error", "message": "Authentication credentials not found.",
                                               "category": "INVALID_AUTHENTICATION"})
    with pytest.raises(ConnectorError, match="KEYBRIDGE_HUBSPOT_ACCESS_TOKEN"):
        hubspot.deliver("evt_1", registered(contact_id="1"))


def test_outbox_delivers_through_hubspot_and_keeps_the_event_on_429(app, kb, hubspot, hubspot_api):
    kb.__dict__["connector"] = hubspot
    with kb.db.session() as s:
        outbox.record(s, "identity.registered", registered(lead_id="1246978")["data"], "reg:u-1")
    hubspot_api.on("POST", BATCH_UPDATE, 429, {"status": "error", "message": "limit", "policyName": "TEN_SECONDLY_ROLLING"})
    hubspot_api.on("POST", BATCH_UPDATE, 200, batch_ok(["1246978"]))
    first = outbox.deliver_due(kb.db, kb.connector, kb.settings)
    assert first.get("delivered", 0) == 0
    from tests.unit.fakes import make_everything_due

    make_everything_due(kb)
    second = outbox.deliver_due(kb.db, kb.connector, kb.settings)
    assert second["delivered"] == 1
    assert len(hubspot_api.calls("POST", BATCH_UPDATE)) == 2


# --- Salesforce --------------------------------------------------------------------------------------

@pytest.fixture
def salesforce(tmp_path):
    settings = vendor_settings(tmp_path, salesforce_instance_url=SF, salesforce_access_token="00Dxx!session", connector="salesforce")
    return salesforce_connector.SalesforceConnector.from_settings(settings)


def composite_ok(*refs):
    return {"compositeResponse": [{"body": {"id": "00Q5e00000AbCdEEAV", "success": True, "errors": [], "created": False},
                                   "httpHeaders": {}, "httpStatusCode": 200, "referenceId": r} for r in refs]}


@responses.activate
def test_a_registered_lead_is_upserted_with_a_task_for_sales_in_one_composite_request(salesforce):
    responses.post(COMPOSITE, json=composite_ok("e0", "e0task"))
    salesforce.deliver("evt_1", registered(lead_id="00Q5e00000AbCdEEAV"))
    [call] = responses.calls
    assert call.request.headers["Authorization"] == "Bearer 00Dxx!session"
    body = json.loads(call.request.body)
    assert body["allOrNone"] is True
    assert body["compositeRequest"] == [
        {"method": "PATCH", "url": "/services/data/v59.0/sobjects/Lead/Id/00Q5e00000AbCdEEAV", "referenceId": "e0",
         "body": {"Portal_Registered_At__c": "2026-11-22T10:05:00Z", "Portal_Pending_Approval__c": False, "Portal_Access__c": "enabled",
                  "Status": "Working - Contacted"}},
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Task", "referenceId": "e0task",
         "body": {"Subject": "Registered on the customer portal", "Priority": "High", "Status": "Not Started", "WhoId": "@{e0.id}",
                  "Description": "lee@prospect.example registered at 2026-11-22T10:05:00Z"}},
    ]


@responses.activate
def test_contact_activity_is_upserted_on_the_contact(salesforce):
    responses.post(COMPOSITE, json=composite_ok("e0"))
    salesforce.deliver("evt_2", {"type": "identity.activity", "timestamp": "t",
                                 "data": {"user_id": "u", "contact_id": "0035e00000ZkM3hAAF", "last_login_at": "2026-11-22T11:00:00Z", "logins": 4}})
    body = json.loads(responses.calls[0].request.body)
    assert body["compositeRequest"] == [{"method": "PATCH", "url": "/services/data/v59.0/sobjects/Contact/Id/0035e00000ZkM3hAAF",
                                         "referenceId": "e0", "body": {"Portal_Last_Login__c": "2026-11-22T11:00:00Z", "Portal_Logins__c": 4}}]


@responses.activate
def test_request_limit_exceeded_is_a_retry(salesforce):
    responses.post(COMPOSITE, status=403, json=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    with pytest.raises(RetryableError, match="REQUEST_LIMIT_EXCEEDED"):
        salesforce.deliver("evt_1", registered(contact_id="0035e00000ZkM3hAAF"))


@responses.activate
def test_a_refused_subrequest_is_permanent_and_names_salesforces_error(salesforce):
    responses.post(COMPOSITE, json={"compositeResponse": [
        {"body": [{"errorCode": "INVALID_FIELD", "message": "No such column 'Portal_Registered_At__c' on sobject of type Lead"}],
         "httpHeaders": {}, "httpStatusCode": 400, "referenceId": "e0"},
        {"body": [{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back since another operation in the same transaction failed."}],
         "httpHeaders": {}, "httpStatusCode": 400, "referenceId": "e0task"}]})
    with pytest.raises(ConnectorError, match="INVALID_FIELD: No such column"):
        salesforce.deliver("evt_1", registered(lead_id="00Q5e00000AbCdEEAV"))


@responses.activate
def test_an_expired_session_logs_in_again_on_the_next_attempt(tmp_path):
    logins = []

    def connect():
        from simple_salesforce import Salesforce

        logins.append(1)
        return Salesforce(instance_url=SF, session_id=f"session-{len(logins)}", version="59.0")

    connector = salesforce_connector.SalesforceConnector(connect, {"fields": {"logins": "Portal_Logins__c"}})
    responses.post(COMPOSITE, status=401, json=[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    responses.post(COMPOSITE, json=composite_ok("e0"))
    event = {"type": "identity.activity", "timestamp": "t", "data": {"contact_id": "003", "logins": 1}}
    with pytest.raises(RetryableError, match="session expired"):
        connector.deliver("evt", event)
    connector.deliver("evt", event)
    assert len(logins) == 2 and responses.calls[1].request.headers["Authorization"] == "Bearer session-2"


@pytest.mark.parametrize("connector, names", [("salesforce", "KEYBRIDGE_SALESFORCE_INSTANCE_URL"), ("hubspot", "KEYBRIDGE_HUBSPOT_ACCESS_TOKEN"),
                                              ("pipedrive", "KEYBRIDGE_PIPEDRIVE_API_URL"), ("espocrm", "KEYBRIDGE_ESPOCRM_API_TOKEN"),
                                              ("dynamics", "KEYBRIDGE_DYNAMICS_TENANT_ID")])
def test_a_connector_without_credentials_fails_at_start_naming_the_settings(tmp_path, connector, names):
    from adapter.config import ConfigError

    with pytest.raises(ConfigError, match=names):
        vendor_settings(tmp_path, connector=connector)
    with pytest.raises(ConnectorError, match="KEYBRIDGE_SALESFORCE_INSTANCE_URL"):
        salesforce_connector.connect(vendor_settings(tmp_path))


# --- keybridge connectors test ------------------------------------------------------------------------

def run_cli(monkeypatch, tmp_path, env: dict):
    from adapter.cli import main

    monkeypatch.setenv("KEYBRIDGE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return CliRunner().invoke(main, ["connectors", "test"])


def test_connectors_test_names_missing_hubspot_properties(monkeypatch, tmp_path, hubspot_api):
    hubspot_api.on("GET", "/crm/v3/properties/contacts", 200, {"results": [
        {"name": n, "label": n, "type": "string", "fieldType": "text", "groupName": "keybridge", "options": [],
         "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"}
        for n in ("keybridge_registered_at", "keybridge_last_login_at", "keybridge_logins", "keybridge_access_state",
                  "lifecyclestage", "hs_lead_status")]})
    result = run_cli(monkeypatch, tmp_path, {"KEYBRIDGE_CONNECTOR": "hubspot", "KEYBRIDGE_HUBSPOT_ACCESS_TOKEN": "pat-x",
                                             "KEYBRIDGE_HUBSPOT_API_URL": hubspot_api.url})
    assert result.exit_code == 1, result.output
    assert "keybridge_pending_approval" in result.output and "does not exist" in result.output


def test_connectors_test_says_when_the_token_is_refused(monkeypatch, tmp_path, hubspot_api):
    hubspot_api.on("GET", "/crm/v3/properties/contacts", 401, {"status": "error", "message": "Authentication credentials not found."})
    result = run_cli(monkeypatch, tmp_path, {"KEYBRIDGE_CONNECTOR": "hubspot", "KEYBRIDGE_HUBSPOT_ACCESS_TOKEN": "pat-x",
                                             "KEYBRIDGE_HUBSPOT_API_URL": hubspot_api.url})
    assert result.exit_code == 1 and "KEYBRIDGE_HUBSPOT_ACCESS_TOKEN" in result.output


@responses.activate
def test_connectors_test_passes_with_salesforce_fields_present(monkeypatch, tmp_path):
    fields = ["Portal_Registered_At__c", "Portal_Last_Login__c", "Portal_Logins__c", "Portal_Access__c", "Portal_Pending_Approval__c"]
    responses.get(f"{SF}/services/data/v59.0/sobjects/Contact/describe", json={"fields": [{"name": n} for n in fields]})
    responses.get(f"{SF}/services/data/v59.0/sobjects/Lead/describe", json={"fields": [{"name": n} for n in fields + ["Status"]]})
    result = run_cli(monkeypatch, tmp_path, {"KEYBRIDGE_CONNECTOR": "salesforce", "KEYBRIDGE_SALESFORCE_INSTANCE_URL": SF,
                                             "KEYBRIDGE_SALESFORCE_ACCESS_TOKEN": "00Dxx!session"})
    assert result.exit_code == 0, result.output
    assert "salesforce: OK" in result.output


def test_connectors_test_without_any_connector_says_what_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("KEYBRIDGE_CRM_EVENTS_URL", raising=False)
    monkeypatch.delenv("KEYBRIDGE_CONNECTOR", raising=False)
    result = run_cli(monkeypatch, tmp_path, {})
    assert result.exit_code == 1 and "KEYBRIDGE_CONNECTOR" in result.output


@responses.activate
def test_connectors_test_for_the_generic_webhook_says_when_the_url_redirects_or_is_down(monkeypatch, tmp_path):
    env = {"KEYBRIDGE_CRM_EVENTS_URL": "https://crm.example/hooks/keybridge", "KEYBRIDGE_CRM_EVENTS_SECRET": CRM_SECRET}
    monkeypatch.delenv("KEYBRIDGE_CONNECTOR", raising=False)
    responses.head("https://crm.example/hooks/keybridge", status=301, headers={"Location": "https://crm.example/hooks/keybridge/"})
    result = run_cli(monkeypatch, tmp_path, env)
    assert result.exit_code == 1 and "redirects to https://crm.example/hooks/keybridge/" in result.output
    responses.replace(responses.HEAD, "https://crm.example/hooks/keybridge", status=405)
    result = run_cli(monkeypatch, tmp_path, env)
    assert result.exit_code == 0 and "generic: OK" in result.output


# --- EspoCRM and Pipedrive ---------------------------------------------------------------------------

ESPO = "https://crm.initech.example"
PIPEDRIVE = "https://globex.pipedrive.com"


@pytest.fixture
def espocrm(tmp_path):
    from adapter.connectors import espocrm as espocrm_connector

    settings = vendor_settings(tmp_path, connector="espocrm", espocrm_url=ESPO, espocrm_api_token="espo-api-key-4d2")
    return espocrm_connector.EspoCrmConnector.from_settings(settings)


@pytest.fixture
def pipedrive(tmp_path):
    from adapter.connectors import pipedrive as pipedrive_connector

    settings = vendor_settings(tmp_path, connector="pipedrive", pipedrive_api_url=PIPEDRIVE, pipedrive_api_token="pd-api-token-77")
    return pipedrive_connector.PipedriveConnector.from_settings(settings)


@responses.activate
def test_espocrm_contact_registration_is_written_on_the_contact(espocrm):
    responses.put(f"{ESPO}/api/v1/Contact/6571a0c1d2e3f4a5b", json={"id": "6571a0c1d2e3f4a5b"})
    espocrm.deliver("evt_1", registered(contact_id="6571a0c1d2e3f4a5b"))
    [call] = responses.calls
    assert call.request.headers["X-Api-Key"] == "espo-api-key-4d2"
    assert json.loads(call.request.body) == {"cPortalRegisteredAt": "2026-11-22T10:05:00Z", "cPortalPendingApproval": False,
                                             "cPortalAccess": "enabled"}


@responses.activate
def test_espocrm_registered_lead_moves_to_in_process(espocrm):
    responses.put(f"{ESPO}/api/v1/Lead/lead1", json={"id": "lead1"})
    espocrm.deliver("evt_1", registered(lead_id="lead1"))
    assert json.loads(responses.calls[0].request.body)["status"] == "In Process"


@responses.activate
def test_espocrm_429_is_retried_after_its_retry_after_and_403_is_permanent(espocrm):
    responses.put(f"{ESPO}/api/v1/Contact/c1", status=429, headers={"Retry-After": "30"})
    with pytest.raises(RetryableError) as caught:
        espocrm.deliver("evt_1", registered(contact_id="c1"))
    assert caught.value.retry_after == 30
    responses.replace(responses.PUT, f"{ESPO}/api/v1/Contact/c1", status=403, body="Forbidden")
    with pytest.raises(ConnectorError):
        espocrm.deliver("evt_1", registered(contact_id="c1"))


@responses.activate
def test_pipedrive_registration_is_written_into_the_persons_custom_fields(pipedrive):
    responses.patch(f"{PIPEDRIVE}/api/v2/persons/42", json={"success": True, "data": {"id": 42}})
    pipedrive.deliver("evt_1", {"type": "identity.activity", "timestamp": "t",
                                "data": {"user_id": "u", "contact_id": "42", "last_login_at": "2026-11-22T11:00:00Z", "logins": 2}})
    [call] = responses.calls
    assert call.request.headers["x-api-token"] == "pd-api-token-77"
    assert json.loads(call.request.body) == {"custom_fields": {"portal_logins": 2, "portal_last_login_at": "2026-11-22T11:00:00Z"}}


@responses.activate
def test_pipedrive_events_without_facts_or_person_write_nothing(pipedrive):
    pipedrive.deliver("evt_1", {"type": "invitation.sent", "timestamp": "t", "data": {"contact_id": "42", "email": "p@globex.example"}})
    pipedrive.deliver("evt_2", registered(lead_id="L-1"))
    assert len(responses.calls) == 0


@responses.activate
def test_connectors_test_names_missing_pipedrive_fields(monkeypatch, tmp_path):
    responses.get(f"{PIPEDRIVE}/api/v1/personFields", json={"success": True, "data": [{"key": "portal_registered_at"}, {"key": "portal_logins"}]})
    result = run_cli(monkeypatch, tmp_path, {"KEYBRIDGE_CONNECTOR": "pipedrive", "KEYBRIDGE_PIPEDRIVE_API_URL": PIPEDRIVE,
                                             "KEYBRIDGE_PIPEDRIVE_API_TOKEN": "pd-api-token-77"})
    assert result.exit_code == 1 and "'portal_access'" in result.output and "'portal_logins'" not in result.output


DATAVERSE = "https://contoso.crm4.dynamics.com"
TOKEN_URL = "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"


@pytest.fixture
def dynamics(tmp_path):
    from adapter.connectors import dynamics as dynamics_connector

    settings = vendor_settings(tmp_path, connector="dynamics", dynamics_url=DATAVERSE, dynamics_tenant_id="tenant-1",
                               dynamics_client_id="app-1", dynamics_client_secret="app-secret-1")
    return dynamics_connector.DynamicsConnector.from_settings(settings)


@responses.activate
def test_dynamics_registration_patches_the_contact_row_with_a_client_credentials_token(dynamics):
    responses.post(TOKEN_URL, json={"token_type": "Bearer", "expires_in": 3599, "access_token": "eyJ0eXAi.dataverse"})
    row = "a1b2c3d4-0000-ef11-9f89-000d3a5a1f6c"
    responses.patch(f"{DATAVERSE}/api/data/v9.2/contacts({row})", status=204)
    dynamics.deliver("evt_1", registered(contact_id=row))
    dynamics.deliver("evt_2", {"type": "identity.access_changed", "timestamp": "t",
                               "data": {"user_id": "u", "contact_id": row, "enabled": False, "reason": "left_company"}})
    token_call, first, second = responses.calls
    assert "grant_type=client_credentials" in token_call.request.body and f"scope={DATAVERSE.replace(':', '%3A').replace('/', '%2F')}%2F.default" in token_call.request.body
    assert first.request.headers["Authorization"] == "Bearer eyJ0eXAi.dataverse" and first.request.headers["If-Match"] == "*"
    assert json.loads(first.request.body) == {"kb_portalregisteredon": "2026-11-22T10:05:00Z", "kb_portalpendingapproval": False,
                                              "kb_portalaccess": "enabled"}
    assert json.loads(second.request.body) == {"kb_portalaccess": "disabled: left_company"}  # the token is reused


@responses.activate
def test_dynamics_missing_row_is_permanent_and_a_refused_token_is_fetched_again(dynamics):
    responses.post(TOKEN_URL, json={"token_type": "Bearer", "expires_in": 3599, "access_token": "t1"})
    responses.patch(f"{DATAVERSE}/api/data/v9.2/contacts(c1)", status=401)
    with pytest.raises(RetryableError, match="new one is fetched"):
        dynamics.deliver("evt_1", registered(contact_id="c1"))
    responses.replace(responses.PATCH, f"{DATAVERSE}/api/data/v9.2/contacts(c1)", status=404,
                      json={"error": {"code": "0x80040217", "message": "contact With Id = c1 Does Not Exist"}})
    with pytest.raises(ConnectorError, match="Does Not Exist"):
        dynamics.deliver("evt_1", registered(contact_id="c1"))
    assert len([c for c in responses.calls if c.request.url == TOKEN_URL]) == 2


@responses.activate
def test_dynamics_wrong_app_credentials_are_named(dynamics):
    responses.post(TOKEN_URL, status=401, json={"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
    with pytest.raises(ConnectorError, match="KEYBRIDGE_DYNAMICS_TENANT_ID, _CLIENT_ID, _CLIENT_SECRET"):
        dynamics.deliver("evt_1", registered(contact_id="c1"))
