"""The Dynamics 365 / Dataverse connector: identity facts written on the contact or lead row (Web API).

An application user (app registration with client credentials) gets a token from Microsoft
Entra ID for `<environment URL>/.default`; each event is `PATCH api/data/v9.2/contacts(<id>)`
(or `leads(<id>)`) with `If-Match: *`, so a row that does not exist is never created. The
columns are named in realm-config/vendors/dynamics.json "outbound". Errors in the shared
vocabulary (ConnectorError.from_response); an expired token is fetched again.
"""
from __future__ import annotations

import time
from urllib.parse import quote

import requests

from ..errors import RetryableError
from ..vendor_mappings import load_mapping
from . import Connector, ConnectorError, register
from .facts import as_fields, facts_of, is_registered_lead

API = "api/data/v9.2"


@register
class DynamicsConnector(Connector):
    key = "dynamics"
    name = "Dynamics 365 / Dataverse (contact / lead columns)"

    def __init__(self, settings, outbound: dict, timeout: float = 15.0):
        self.url = settings.dynamics_url.rstrip("/")
        self.token_url = f"{settings.dynamics_authority_url.rstrip('/')}/{quote(settings.dynamics_tenant_id, safe='')}/oauth2/v2.0/token"
        self.client_id, self.client_secret = settings.dynamics_client_id, settings.dynamics_client_secret
        self.fields = outbound.get("fields", {})
        self.lead_registered = outbound.get("lead_registered", {})
        self.timeout = timeout
        self.session = requests.Session()
        self._token: tuple[str, float] | None = None

    @classmethod
    def from_settings(cls, settings) -> "DynamicsConnector":
        return cls(settings, load_mapping(settings.vendor_mapping_dir, "dynamics").get("outbound", {}))

    def _access_token(self) -> str:
        if self._token and self._token[1] > time.monotonic() + 60:
            return self._token[0]
        try:
            response = self.session.post(self.token_url, timeout=self.timeout, data={
                "grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret,
                "scope": f"{self.url}/.default"})
        except requests.RequestException as exc:
            raise RetryableError(f"Microsoft Entra ID unreachable for a Dataverse token: {type(exc).__name__}") from None
        if response.status_code != 200:
            error = ConnectorError.from_response(response, "the Dataverse token request")
            if isinstance(error, ConnectorError):
                error = ConnectorError(f"{error} — check KEYBRIDGE_DYNAMICS_TENANT_ID, _CLIENT_ID, _CLIENT_SECRET and that the app is an application user of the environment")
            raise error
        body = response.json()
        self._token = (body["access_token"], time.monotonic() + float(body.get("expires_in", 3600)))
        return self._token[0]

    def deliver(self, event_id: str, body: dict) -> None:
        data = body["data"]
        table = "leads" if data.get("lead_id") else "contacts" if data.get("contact_id") else None
        values = as_fields(facts_of(body), self.fields)
        if table is None or not values:
            return
        if is_registered_lead(body):
            values.update(self.lead_registered)
        row = data.get("lead_id") or data.get("contact_id")
        what = f"{body['type']} {event_id} on {table}({row})"
        headers = {"Authorization": f"Bearer {self._access_token()}", "If-Match": "*", "OData-MaxVersion": "4.0", "OData-Version": "4.0",
                   "Accept": "application/json"}
        try:
            response = self.session.patch(f"{self.url}/{API}/{table}({quote(str(row), safe='')})", json=values, headers=headers,
                                          timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise RetryableError(f"Dataverse unreachable for {what}: {type(exc).__name__}") from None
        if response.status_code == 401:
            self._token = None
            raise RetryableError(f"Dataverse refused the token for {what}; a new one is fetched on the next attempt")
        if response.status_code not in (200, 204):
            raise ConnectorError.from_response(response, what)

    def check(self) -> list[str]:
        """Can the app get a token and read the contact table's columns; do the columns exist?"""
        try:
            token = self._access_token()
            response = self.session.get(f"{self.url}/{API}/EntityDefinitions(LogicalName='contact')/Attributes",
                                        params={"$select": "LogicalName"}, headers={"Authorization": f"Bearer {token}"}, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 — reported to the operator
            return [f"Dynamics: {exc}"]
        if response.status_code != 200:
            return [f"Dataverse answered {response.status_code} to a metadata read: check KEYBRIDGE_DYNAMICS_URL and the application user's role"]
        columns = {a.get("LogicalName") for a in response.json().get("value", [])}
        return [f"Dataverse contact has no column {name!r}: create it or change realm-config/vendors/dynamics.json"
                for name in sorted(set(self.fields.values()) - columns)]
