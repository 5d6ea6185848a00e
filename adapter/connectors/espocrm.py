"""The EspoCRM connector: identity facts written on the Contact or Lead through EspoCRM's REST API.

`PUT api/v1/<Contact|Lead>/<id>` with the API user's key (X-Api-Key), the fields named in
realm-config/vendors/espocrm.json "outbound". Errors in the shared vocabulary
(ConnectorError.from_response: 429 and 5xx retried, other refusals permanent).
"""
from __future__ import annotations

from urllib.parse import quote

import requests

from ..errors import RetryableError
from ..vendor_mappings import load_mapping
from . import Connector, ConnectorError, register
from .facts import as_fields, facts_of, is_registered_lead


@register
class EspoCrmConnector(Connector):
    key = "espocrm"
    name = "EspoCRM (Contact / Lead fields)"

    def __init__(self, url: str, api_token: str, outbound: dict, timeout: float = 10.0):
        self.url, self.api_token, self.timeout = url.rstrip("/"), api_token, timeout
        self.fields = outbound.get("fields", {})
        self.lead_registered = outbound.get("lead_registered", {})
        self.session = requests.Session()

    @classmethod
    def from_settings(cls, settings) -> "EspoCrmConnector":
        return cls(settings.espocrm_url, settings.espocrm_api_token, load_mapping(settings.vendor_mapping_dir, "espocrm").get("outbound", {}))

    def deliver(self, event_id: str, body: dict) -> None:
        data = body["data"]
        entity = "Lead" if data.get("lead_id") else "Contact" if data.get("contact_id") else None
        values = as_fields(facts_of(body), self.fields)
        if entity is None or not values:
            return
        if is_registered_lead(body):
            values.update(self.lead_registered)
        record_id = data.get("lead_id") or data.get("contact_id")
        what = f"{body['type']} {event_id} on {entity} {record_id}"
        try:
            response = self.session.put(f"{self.url}/api/v1/{entity}/{quote(str(record_id), safe='')}", json=values, timeout=self.timeout,
                                        headers={"X-Api-Key": self.api_token}, allow_redirects=False)
        except requests.RequestException as exc:
            raise RetryableError(f"EspoCRM unreachable for {what}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ConnectorError.from_response(response, what)

    def check(self) -> list[str]:
        """Can the API user read the Contact and Lead field definitions, and do the fields exist?"""
        problems = []
        for entity in ("Contact", "Lead"):
            try:
                response = self.session.get(f"{self.url}/api/v1/Metadata", params={"key": f"entityDefs.{entity}.fields"},
                                            headers={"X-Api-Key": self.api_token}, timeout=self.timeout)
            except requests.RequestException as exc:
                return [f"EspoCRM at {self.url} does not answer ({type(exc).__name__}): check KEYBRIDGE_ESPOCRM_URL"]
            if response.status_code in (401, 403):
                return [f"EspoCRM refused the API key ({response.status_code}): check KEYBRIDGE_ESPOCRM_API_TOKEN and the API user's role"]
            if response.status_code != 200:
                return [f"EspoCRM answered {response.status_code} to a metadata read"]
            wanted = set(self.fields.values()) | (set(self.lead_registered) if entity == "Lead" else set())
            problems += [f"EspoCRM {entity} has no field {name!r}: create it (Entity Manager) or change realm-config/vendors/espocrm.json"
                         for name in sorted(wanted - set(response.json() or {}))]
        return problems
