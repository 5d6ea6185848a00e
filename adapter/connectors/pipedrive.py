"""The Pipedrive connector: identity facts written into a person's custom fields (API v2).

`PATCH api/v2/persons/<id>` with `{"custom_fields": {key: value}}` and the company's API
token (x-api-token); the custom field keys are named in realm-config/vendors/pipedrive.json
"outbound". Errors in the shared vocabulary (ConnectorError.from_response).
"""
from __future__ import annotations

from urllib.parse import quote

import requests

from ..errors import RetryableError
from ..vendor_mappings import load_mapping
from . import Connector, ConnectorError, register
from .facts import as_fields, facts_of


@register
class PipedriveConnector(Connector):
    key = "pipedrive"
    name = "Pipedrive (person custom fields)"

    def __init__(self, api_url: str, api_token: str, outbound: dict, timeout: float = 10.0):
        self.api_url, self.api_token, self.timeout = api_url.rstrip("/"), api_token, timeout
        self.fields = outbound.get("fields", {})
        self.session = requests.Session()

    @classmethod
    def from_settings(cls, settings) -> "PipedriveConnector":
        return cls(settings.pipedrive_api_url, settings.pipedrive_api_token, load_mapping(settings.vendor_mapping_dir, "pipedrive").get("outbound", {}))

    def deliver(self, event_id: str, body: dict) -> None:
        person_id = body["data"].get("contact_id")
        values = as_fields(facts_of(body), self.fields)
        if not person_id or not values:
            return
        what = f"{body['type']} {event_id} on person {person_id}"
        try:
            response = self.session.patch(f"{self.api_url}/api/v2/persons/{quote(str(person_id), safe='')}", json={"custom_fields": values},
                                          headers={"x-api-token": self.api_token}, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise RetryableError(f"Pipedrive unreachable for {what}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ConnectorError.from_response(response, what)

    def check(self) -> list[str]:
        """Does the token work, and do the person custom fields exist?"""
        try:
            response = self.session.get(f"{self.api_url}/api/v1/personFields", headers={"x-api-token": self.api_token}, timeout=self.timeout)
        except requests.RequestException as exc:
            return [f"Pipedrive at {self.api_url} does not answer ({type(exc).__name__}): check KEYBRIDGE_PIPEDRIVE_API_URL"]
        if response.status_code in (401, 403):
            return [f"Pipedrive refused the API token ({response.status_code}): check KEYBRIDGE_PIPEDRIVE_API_TOKEN"]
        if response.status_code != 200:
            return [f"Pipedrive answered {response.status_code} to a person fields read"]
        keys = {f.get("key") for f in (response.json().get("data") or [])}
        return [f"Pipedrive has no person field with key {key!r}: create it (Settings > Data fields) and put its key in realm-config/vendors/pipedrive.json"
                for key in sorted(set(self.fields.values()) - keys)]
