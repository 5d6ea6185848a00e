"""The generic connector: POST each event, Standard-Webhooks-signed, to one configured URL."""
from __future__ import annotations

import json

import requests

from ..errors import RetryableError
from ..webhooks.signatures import sign
from . import Connector, ConnectorError, register


@register
class GenericWebhookConnector(Connector):
    key = "generic"
    name = "Signed webhook (Standard Webhooks)"

    def __init__(self, url: str, secret: str, timeout: float = 10.0):
        if not secret:
            raise ValueError("KEYBRIDGE_CRM_EVENTS_SECRET is required when KEYBRIDGE_CRM_EVENTS_URL is set: the CRM must be able to check where events come from.")
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.session = requests.Session()

    @classmethod
    def from_settings(cls, settings) -> "GenericWebhookConnector":
        return cls(settings.crm_events_url, settings.crm_events_secret)

    def deliver(self, event_id: str, body: dict) -> None:
        raw = json.dumps(body, separators=(",", ":")).encode()
        try:
            response = self.session.post(self.url, data=raw, headers=sign(self.secret, event_id, raw), timeout=self.timeout,
                                         allow_redirects=False)
        except requests.RequestException as exc:
            raise RetryableError(f"CRM endpoint unreachable: {type(exc).__name__}") from exc
        if not 200 <= response.status_code < 300:
            raise ConnectorError.from_response(response, f"{body['type']} {event_id}")
