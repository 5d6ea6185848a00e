"""Shared bits of the vendor tests: settings with every vendor configured, and each vendor's way of signing."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

from sqlalchemy import select

from adapter.config import Settings
from adapter.models import InboundEvent, Job
from tests.conftest import OTHER_SECRET, SECRET, SESSION_SECRET

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

HUBSPOT_SECRET = "hs-client-secret-5f1e0c"
SALESFORCE_ORG = "00D5e000000KQ2eEAG"
DYNAMICS_SECRET = "dyn-shared-secret-7b0d91"
PIPEDRIVE_USER, PIPEDRIVE_PASSWORD = "keybridge", "pd-basic-password-2c4e"
ESPO_WEBHOOK, ESPO_SECRET = "6571a0c1d2e3f4a5c", "espo-secret-key-9a8b7c"
ESPO_ACCOUNT_WEBHOOK = "6571a0c1d2e3f4a5d"
DOCUMENTED_EXAMPLES_AGE = 20 * 365 * 24 * 3600


def vendor_settings(tmp_path, **overrides) -> Settings:
    values = dict(
        database_url=f"sqlite:///{tmp_path / 'kb.db'}", webhook_secrets=[SECRET, OTHER_SECRET], operator_token="op-token",
        session_secret=SESSION_SECRET,
        hubspot_client_secret=HUBSPOT_SECRET, salesforce_organization_ids=["00D5e000000KQ2e"],
        dynamics_secrets=["old-secret-being-rotated", DYNAMICS_SECRET], pipedrive_username=PIPEDRIVE_USER,
        pipedrive_password=PIPEDRIVE_PASSWORD,
        espocrm_webhook_secrets=[f"{ESPO_WEBHOOK}:Contact.create:{ESPO_SECRET}", f"{ESPO_ACCOUNT_WEBHOOK}:Account.update:{ESPO_SECRET}"],
        vendor_max_age_seconds=DOCUMENTED_EXAMPLES_AGE)  # the documented examples are old; the stale tests narrow this
    values.update(overrides)
    return Settings.from_env({}, **values)


def fixture(path: str) -> bytes:
    return (FIXTURES / path).read_bytes()


def hubspot_headers(body: bytes, uri: str = "http://localhost/webhooks/hubspot", timestamp: int | None = None,
                    secret: str = HUBSPOT_SECRET) -> dict:
    """Signed by HubSpot's own SDK (hubspot.utils.signature), the oracle for our check."""
    from hubspot.utils.signature import Signature

    ts = str(timestamp if timestamp is not None else int(time.time() * 1000))
    signature = Signature.get_signature(secret, body.decode(), "v3", http_uri=uri, http_method="POST", timestamp=ts)
    return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": ts, "X-HubSpot-Signature-Version": "v3",
            "Content-Type": "application/json"}


def espo_headers(body: bytes, webhook_id: str = ESPO_WEBHOOK, secret: str = ESPO_SECRET) -> dict:
    """EspoCRM's documented signature: base64_encode($webhookId . ':' . hash_hmac('sha256', $payload, $secretKey))."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Signature": base64.b64encode(f"{webhook_id}:{digest}".encode()).decode(), "Content-Type": "application/json"}


def pipedrive_headers(user: str = PIPEDRIVE_USER, password: str = PIPEDRIVE_PASSWORD) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(), "Content-Type": "application/json"}


def dynamics_headers(secret: str = DYNAMICS_SECRET) -> dict:
    return {"X-Keybridge-Key": secret, "Content-Type": "application/json"}


def salesforce_headers() -> dict:
    return {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


def stored_events(kb) -> list[InboundEvent]:
    with kb.db.session() as s:
        rows = s.scalars(select(InboundEvent).order_by(InboundEvent.id)).all()
        for r in rows:
            s.expunge(r)
        return rows


def stored_counts(kb) -> tuple[int, int]:
    with kb.db.session() as s:
        return len(s.scalars(select(InboundEvent)).all()), len(s.scalars(select(Job)).all())


def native(kb) -> list[tuple[str, dict]]:
    """The native events stored, as (type, data), in id order."""
    return [(e.type, e.payload["data"]) for e in stored_events(kb) if isinstance(e.payload.get("vendor"), dict)]


def as_json(data) -> bytes:
    return json.dumps(data).encode()
