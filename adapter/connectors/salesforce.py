"""The Salesforce connector: identity facts upserted on Contact / Lead with simple-salesforce.

Each event becomes a composite request (one round trip, all or none): an upsert of
the Contact or Lead by external id (default `Id`, i.e. the record the CRM event
named) with the fields of realm-config/vendors/salesforce.json "outbound"; a lead
that registered also gets the `lead_registered` fields and a Task for its owner,
so sales sees it. REQUEST_LIMIT_EXCEEDED (the org's API limit), timeouts and 5xx
are retried; an expired session is retried after a new login; other refusals are
permanent. A person without a CRM id (a self-registration) is not written: the
Lead it would need cannot be created idempotently.
"""
from __future__ import annotations

import logging

import requests

from ..jobs import RetryableError
from ..vendor_mappings import load_mapping
from . import Connector, ConnectorError, register
from .facts import as_fields, facts_of, is_registered_lead

log = logging.getLogger(__name__)

COMPOSITE_LIMIT = 25  # subrequests per composite request
RETRYABLE_CODES = {"REQUEST_LIMIT_EXCEEDED", "UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "API_CURRENTLY_DISABLED"}


def connect(settings):
    """A simple_salesforce.Salesforce from the settings: an access token, username + password, or client credentials."""
    from simple_salesforce import Salesforce

    common = {"version": settings.salesforce_api_version, "session": requests.Session()}
    if settings.salesforce_access_token and settings.salesforce_instance_url:
        return Salesforce(instance_url=settings.salesforce_instance_url, session_id=settings.salesforce_access_token, **common)
    if settings.salesforce_username and settings.salesforce_password:
        return Salesforce(username=settings.salesforce_username, password=settings.salesforce_password,
                          security_token=settings.salesforce_security_token, domain=settings.salesforce_domain, **common)
    if settings.salesforce_consumer_key and settings.salesforce_consumer_secret:
        return Salesforce(consumer_key=settings.salesforce_consumer_key, consumer_secret=settings.salesforce_consumer_secret,
                          domain=settings.salesforce_domain, **common)
    raise ConnectorError("Salesforce credentials are not set: give KEYBRIDGE_SALESFORCE_INSTANCE_URL + KEYBRIDGE_SALESFORCE_ACCESS_TOKEN, "
                         "or KEYBRIDGE_SALESFORCE_USERNAME + _PASSWORD (+ _SECURITY_TOKEN), or KEYBRIDGE_SALESFORCE_CONSUMER_KEY + "
                         "_CONSUMER_SECRET with KEYBRIDGE_SALESFORCE_DOMAIN (your My Domain, client credentials flow).")


@register
class SalesforceConnector(Connector):
    key = "salesforce"
    name = "Salesforce (Contact / Lead fields)"

    def __init__(self, connect_fn, outbound: dict, api_version: str = "59.0"):
        self._connect = connect_fn
        self._sf = None
        self.outbound = outbound
        self.fields = outbound.get("fields", {})
        self.api_version = api_version

    @classmethod
    def from_settings(cls, settings) -> "SalesforceConnector":
        return cls(lambda: connect(settings), load_mapping(settings.vendor_mapping_dir, "salesforce").get("outbound", {}),
                   settings.salesforce_api_version)

    @property
    def sf(self):
        if self._sf is None:
            try:
                self._sf = self._connect()
            except ConnectorError:
                raise
            except requests.RequestException as exc:
                raise RetryableError(f"Salesforce login unreachable: {type(exc).__name__}") from None
            except Exception as exc:  # noqa: BLE001 — SalesforceAuthenticationFailed and friends
                raise ConnectorError(f"Salesforce login failed: {exc}") from None
        return self._sf

    def deliver(self, event_id: str, body: dict) -> None:
        self.deliver_many([(event_id, body)])

    def deliver_many(self, events: list[tuple[str, dict]]) -> None:
        """Write several events' facts in composite requests of up to 25 subrequests (all or none each)."""
        subrequests = [s for i, (_, body) in enumerate(events) for s in self.subrequests_for(body, f"e{i}")]
        for start in range(0, len(subrequests), COMPOSITE_LIMIT):
            self._composite(subrequests[start:start + COMPOSITE_LIMIT])

    def subrequests_for(self, body: dict, ref: str) -> list[dict]:
        data, event_type, f = body["data"], body["type"], self.fields
        sobject = "Lead" if data.get("lead_id") else "Contact" if data.get("contact_id") else None
        if sobject is None:
            if facts_of(body):
                log.info("Salesforce: %s for %s has no contact or lead id; nothing to write", event_type, data.get("user_id"))
            return []
        values = as_fields(facts_of(body), f)
        if values and is_registered_lead(body):
            values.update(self.outbound.get("lead_registered", {}))
        if not values:
            return []
        external = self.outbound.get("lead_external_id" if sobject == "Lead" else "contact_external_id", "Id")
        record_id = data.get("lead_id") or data.get("contact_id")
        base = f"/services/data/v{self.api_version}/sobjects"
        out = [{"method": "PATCH", "url": f"{base}/{sobject}/{external}/{record_id}", "referenceId": ref, "body": values}]
        task = self.outbound.get("lead_registered_task")
        if event_type == "identity.registered" and sobject == "Lead" and task:
            out.append({"method": "POST", "url": f"{base}/Task", "referenceId": f"{ref}task",
                        "body": {**task, "WhoId": f"@{{{ref}.id}}", "Description": f"{data.get('email')} registered at {values.get(f.get('registered_at'), '')}"}})
        return out

    def _composite(self, subrequests: list[dict]) -> None:
        from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession

        payload = {"allOrNone": True, "compositeRequest": subrequests}
        try:
            result = self.sf.restful("composite", method="POST", json=payload, timeout=20)
        except SalesforceExpiredSession:
            self._sf = None  # log in again on the next attempt
            raise RetryableError("Salesforce session expired; logging in again on the next attempt") from None
        except SalesforceError as exc:
            raise salesforce_error(exc.status, exc.content, "composite request") from None
        except requests.RequestException as exc:
            raise RetryableError(f"Salesforce unreachable: {type(exc).__name__}") from None
        failures = [r for r in (result or {}).get("compositeResponse", []) if int(r.get("httpStatusCode", 200)) >= 400]
        real = [r for r in failures if not _codes(r.get("body")) <= {"PROCESSING_HALTED"}]
        if real:
            first = real[0]
            raise salesforce_error(int(first["httpStatusCode"]), first.get("body"), f"subrequest {first.get('referenceId')}")

    def check(self) -> list[str]:
        """What is wrong with the configured credentials and fields (empty when all is well)."""
        problems = []
        try:
            for sobject in ("Contact", "Lead"):
                described = {fd["name"] for fd in getattr(self.sf, sobject).describe()["fields"]}
                wanted = set(self.fields.values()) | (set(self.outbound.get("lead_registered", {})) if sobject == "Lead" else set())
                problems += [f"Salesforce {sobject} has no field {name!r}: create it (Setup > Object Manager) or change "
                             "realm-config/vendors/salesforce.json" for name in sorted(wanted - described)]
        except Exception as exc:  # noqa: BLE001 — reported to the operator
            problems.append(f"Salesforce: {exc}")
        return problems


def _codes(body) -> set[str]:
    if isinstance(body, list):
        return {str(e.get("errorCode")) for e in body if isinstance(e, dict)}
    return set()


def salesforce_error(status: int, content, what: str) -> Exception:
    """Salesforce's refusal as RetryableError (limits, locks, 5xx) or ConnectorError."""
    import json

    body = content
    if isinstance(content, (bytes, str)):
        try:
            body = json.loads(content)
        except ValueError:
            body = content
    codes = _codes(body)
    detail = "; ".join(f"{e.get('errorCode')}: {e.get('message')}" for e in body if isinstance(e, dict)) if isinstance(body, list) else str(body)[:300]
    if codes & RETRYABLE_CODES or status >= 500 or status in (408, 429):
        return RetryableError(f"Salesforce answered {status} to {what}: {detail}")
    return ConnectorError(f"Salesforce refused {what} ({status}): {detail}")
