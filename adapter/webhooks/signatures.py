"""Standard Webhooks signature checks, shared by every endpoint that takes them.

Several secrets may be configured at once (rotation): any one valid signature of
any of them is enough. The library also enforces its own 300 s window, so
KEYBRIDGE_WEBHOOK_TOLERANCE_SECONDS can only narrow it. Comparison is constant-time (standardwebhooks uses
hmac.compare_digest) and timestamps outside the tolerance are refused.
"""
from __future__ import annotations

import binascii
import time

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ..errors import ApiError


def verify_standard_webhook(secrets: list[str], headers, body: bytes, tolerance_seconds: int) -> None:
    """Return if the request is signed by one of `secrets`; raise ApiError(401) otherwise."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signature = headers.get("webhook-signature")
    missing = {h: ["Missing header."] for h, v in (("webhook-id", msg_id), ("webhook-timestamp", timestamp), ("webhook-signature", signature)) if not v}
    if missing:
        raise ApiError(401, "Request is not signed: send the Standard Webhooks headers webhook-id, webhook-timestamp and webhook-signature.", missing)
    if not secrets:
        raise ApiError(401, "No webhook secret is configured on the adapter (KEYBRIDGE_WEBHOOK_SECRETS); every request is refused until one is.")
    try:
        ts = int(timestamp)
    except ValueError:
        raise ApiError(401, "webhook-timestamp must be Unix seconds.", {"webhook-timestamp": ["Not an integer."]}) from None
    if abs(time.time() - ts) > tolerance_seconds:
        raise ApiError(401, f"webhook-timestamp is more than {tolerance_seconds} s away from the adapter's clock: sign each delivery with the current time and check the sender's clock.", {"webhook-timestamp": ["Outside the replay window."]})
    plain = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    for secret in secrets:
        try:
            Webhook(secret).verify(body, plain, json_parse=False)
            return
        except (WebhookVerificationError, ValueError, binascii.Error):
            # ValueError covers a malformed "v1,<sig>" entry and a body that is not UTF-8.
            continue
    raise ApiError(401, "webhook-signature does not match: sign '{webhook-id}.{webhook-timestamp}.{body}' with HMAC-SHA256 and the shared whsec_ secret.", {"webhook-signature": ["No valid signature."]})


def sign(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers that sign `body` the way the adapter expects (used by the CLI, the demo and connectors)."""
    from datetime import datetime, timezone

    ts = int(time.time()) if timestamp is None else timestamp
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=timezone.utc), body.decode("utf-8"))
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature, "content-type": "application/json"}
