"""The HubSpot connector: identity facts written as contact properties with hubspot-api-client.

What is written (property names from realm-config/vendors/hubspot.json "outbound"):
registered at, last login, logins (in the last activity report), access state and
pending approval. A lead that registered also gets the `lead_registered` properties
(lifecycle stage sales qualified lead, lead status OPEN), so sales sees it without
anyone typing it in. Updates go through the batch API, up to 100 contacts a call;
a person without a CRM id (a self-registration) is upserted by email.

HubSpot's 429 names the limit it hit (`policyName`): a secondly limit is retried a
few seconds later, the daily limit after midnight (UTC), per HubSpot's guidance;
timeouts and 5xx are retried, other refusals are permanent (dead letters).
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import urllib3
from urllib3.util.retry import Retry

from ..jobs import RetryableError
from ..vendor_mappings import load_mapping
from . import Connector, ConnectorError, register, retry_after_seconds
from .facts import as_fields, facts_of, is_registered_lead

log = logging.getLogger(__name__)

BATCH_LIMIT = 100
TIMEOUT = 10
SECONDLY_POLICIES = {"SECONDLY": 1.0, "TEN_SECONDLY_ROLLING": 10.0, "ONE_SECONDLY": 1.0}


class NotFound(LookupError):
    """HubSpot has no such record (deleted, or never existed)."""


class HubSpotApi:
    """The few HubSpot CRM calls Keybridge makes, with one error vocabulary."""

    def __init__(self, access_token: str, api_url: str = "https://api.hubapi.com"):
        from hubspot import HubSpot

        if not access_token:
            raise ConnectorError("KEYBRIDGE_HUBSPOT_ACCESS_TOKEN is not set: create a private app (or use the app's OAuth token) with "
                                 "crm.objects.contacts.read/write and crm.objects.companies.read, and put its access token there.")
        self.client = HubSpot(access_token=access_token, host=api_url.rstrip("/"), retry=Retry(total=0, raise_on_status=False))

    @classmethod
    def from_settings(cls, settings) -> "HubSpotApi":
        return cls(settings.hubspot_access_token, settings.hubspot_api_url)

    def read(self, obj: str, object_id: str, properties: list[str]) -> dict:
        """One contact or company with these properties; raises NotFound, RetryableError or ConnectorError."""
        api = self.client.crm.contacts.basic_api if obj == "contact" else self.client.crm.companies.basic_api
        record = self._call(f"read {obj} {object_id}", api.get_by_id, object_id, properties=properties, _request_timeout=TIMEOUT)
        return record.to_dict()

    def update_contacts(self, updates: dict[str, dict]) -> None:
        """Set properties on contacts by id, in batches of up to 100."""
        from hubspot.crm.contacts import BatchInputSimplePublicObjectBatchInput, SimplePublicObjectBatchInput

        items = list(updates.items())
        for start in range(0, len(items), BATCH_LIMIT):
            chunk = items[start:start + BATCH_LIMIT]
            body = BatchInputSimplePublicObjectBatchInput(inputs=[SimplePublicObjectBatchInput(id=i, properties=p) for i, p in chunk])
            result = self._call(f"batch update of {len(chunk)} contacts", self.client.crm.contacts.batch_api.update, body, _request_timeout=TIMEOUT)
            _raise_batch_errors(result, "batch update")

    def upsert_contacts_by_email(self, updates: dict[str, dict]) -> None:
        """Create or update contacts by email address, in batches of up to 100."""
        from hubspot.crm.contacts import BatchInputSimplePublicObjectBatchInputUpsert, SimplePublicObjectBatchInputUpsert

        items = list(updates.items())
        for start in range(0, len(items), BATCH_LIMIT):
            chunk = items[start:start + BATCH_LIMIT]
            body = BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
                SimplePublicObjectBatchInputUpsert(id=email, id_property="email", properties=p) for email, p in chunk])
            result = self._call(f"batch upsert of {len(chunk)} contacts", self.client.crm.contacts.batch_api.upsert, body, _request_timeout=TIMEOUT)
            _raise_batch_errors(result, "batch upsert")

    def contact_property_names(self) -> set[str]:
        result = self._call("list contact properties", self.client.crm.properties.core_api.get_all, "contacts", _request_timeout=TIMEOUT)
        return {p.name for p in result.results}

    def _call(self, what: str, fn, *args, **kwargs):
        from hubspot.crm.contacts.exceptions import ApiException as ContactsError
        from hubspot.crm.companies.exceptions import ApiException as CompaniesError
        from hubspot.crm.properties.exceptions import ApiException as PropertiesError

        try:
            return fn(*args, **kwargs)
        except (ContactsError, CompaniesError, PropertiesError) as exc:
            raise api_error(exc.status, exc.headers or {}, exc.body, what) from None
        except urllib3.exceptions.HTTPError as exc:
            raise RetryableError(f"HubSpot unreachable during {what}: {type(exc).__name__}") from None


def api_error(status: int, headers, body, what: str) -> Exception:
    """HubSpot's answer as NotFound, RetryableError (429 by policy, 5xx) or ConnectorError."""
    try:
        detail = json.loads(body or "{}")
    except (ValueError, TypeError):
        detail = {}
    message = detail.get("message") or str(body or "")[:300]
    if status == 404:
        return NotFound(f"HubSpot: {what}: {message}")
    if status == 429:
        return RetryableError(f"HubSpot rate limit ({detail.get('policyName', 'unknown policy')}) during {what}",
                              retry_after=retry_after_429(headers, detail.get("policyName")))
    if status in (408, 502, 503, 504) or status >= 500:
        return RetryableError(f"HubSpot answered {status} to {what}")
    if status in (401, 403):
        return ConnectorError(f"HubSpot refused {what} ({status}): {message}. Check KEYBRIDGE_HUBSPOT_ACCESS_TOKEN and its scopes "
                              "(crm.objects.contacts.read, crm.objects.contacts.write, crm.objects.companies.read).")
    return ConnectorError(f"HubSpot refused {what} ({status}): {message}")


def retry_after_429(headers, policy: str | None, now: datetime | None = None) -> float:
    """Seconds to wait after a 429: Retry-After when given (seconds or an HTTP-date, read by the
    shared parser; the outbox caps it), else by HubSpot's policy name."""
    seconds = retry_after_seconds((headers or {}).get("Retry-After"), now)
    if seconds is not None:
        return max(1.0, seconds)
    if policy == "DAILY":
        now = now or datetime.now(timezone.utc)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=5, microsecond=0)
        return (midnight - now).total_seconds()
    return SECONDLY_POLICIES.get(policy or "", 10.0)


def _raise_batch_errors(result, what: str) -> None:
    errors = getattr(result, "errors", None) or []
    if errors:
        messages = "; ".join(f"{getattr(e, 'category', '')}: {getattr(e, 'message', e)}" for e in errors[:5])
        raise ConnectorError(f"HubSpot {what} refused {len(errors)} record(s): {messages}")


@register
class HubSpotConnector(Connector):
    key = "hubspot"
    name = "HubSpot (contact properties)"

    def __init__(self, api: HubSpotApi, outbound: dict):
        self.api = api
        self.props = outbound.get("properties", {})
        self.lead_registered = outbound.get("lead_registered", {})

    @classmethod
    def from_settings(cls, settings) -> "HubSpotConnector":
        return cls(HubSpotApi.from_settings(settings), load_mapping(settings.vendor_mapping_dir, "hubspot").get("outbound", {}))

    def deliver(self, event_id: str, body: dict) -> None:
        self.deliver_many([(event_id, body)])

    def deliver_many(self, events: list[tuple[str, dict]]) -> None:
        """Write several events' facts with as few batch calls as possible (later events win per contact)."""
        by_id: dict[str, dict] = {}
        by_email: dict[str, dict] = {}
        for _, body in events:
            target, properties = self.properties_for(body)
            if not properties:
                continue
            kind, key = target
            (by_id if kind == "id" else by_email).setdefault(key, {}).update(properties)
        if by_id:
            self.api.update_contacts(by_id)
        if by_email:
            self.api.upsert_contacts_by_email(by_email)

    def properties_for(self, body: dict) -> tuple[tuple[str, str], dict]:
        """Which contact ((id|email, value)) and which properties one identity event sets; no properties = nothing to write."""
        data = body["data"]
        crm_id = data.get("contact_id") or data.get("lead_id")
        target = ("id", str(crm_id)) if crm_id else ("email", data.get("email") or "")
        if not target[1]:
            return target, {}
        # HubSpot property values are strings ("true", "3").
        props = {name: str(value).lower() if isinstance(value, bool) else str(value) for name, value in as_fields(facts_of(body), self.props).items()}
        if props and is_registered_lead(body):
            props.update(self.lead_registered)
        return target, props

    def check(self) -> list[str]:
        """What is wrong with the configured credentials and properties (empty when all is well)."""
        try:
            existing = self.api.contact_property_names()
        except Exception as exc:  # noqa: BLE001 — reported to the operator
            return [f"HubSpot: {exc}"]
        wanted = set(self.props.values()) | set(self.lead_registered)
        return [f"HubSpot contact property {name!r} does not exist: create it (Settings > Properties) or change realm-config/vendors/hubspot.json"
                for name in sorted(wanted - existing)]
