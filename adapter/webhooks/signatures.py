"""Standard Webhooks signature checks, shared by every endpoint that takes them.

`webhook-signature` holds space-separated `<version>,<base64 signature>` entries. Entries of
another version or that do not parse are skipped (a sender may add signatures of a scheme
we do not know); any one valid `v1` signature under any configured secret (rotation) is
enough. Comparisons are constant-time (hmac.compare_digest) and timestamps outside the
tolerance are refused.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from ..config import whsec_key
from ..errors import ApiError


def _signatures(header: str) -> list[bytes]:
    """The decoded v1 signatures of a webhook-signature header; malformed or other-version entries skipped."""
    found = []
    for entry in header.split():
        version, sep, encoded = entry.partition(",")
        if not sep or version != "v1":
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


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
    given = _signatures(signature)
    signed_content = f"{msg_id}.{timestamp}.".encode() + body
    valid = False
    for secret in secrets:
        expected = hmac.new(whsec_key(secret), signed_content, hashlib.sha256).digest()
        for candidate in given:
            # no early exit: the time taken does not tell which entry or secret matched
            valid |= hmac.compare_digest(expected, candidate)
    if not valid:
        raise ApiError(401, "webhook-signature does not match: send 'v1,<base64 HMAC-SHA256>' of '{webhook-id}.{webhook-timestamp}.{body}' with the shared whsec_ secret (several entries are separated by spaces).", {"webhook-signature": ["No valid signature."]})


def sign(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers that sign `body` the way the adapter expects (used by the CLI, the demo and connectors)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(whsec_key(secret), f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": "v1," + base64.b64encode(digest).decode(),
            "content-type": "application/json"}
