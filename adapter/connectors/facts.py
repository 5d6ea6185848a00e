"""What an identity event tells a CRM record, in the connectors' common words.

Vendor connectors write the same facts into their own fields (the "outbound" part of
realm-config/vendors/<vendor>.json names them): registered_at, last_login_at, logins,
access_state and pending_approval. Events that carry none of them write nothing.
"""
from __future__ import annotations

FACT_NAMES = ("registered_at", "last_login_at", "logins", "access_state", "pending_approval")


def facts_of(body: dict) -> dict:
    """The facts one outbound event {type, timestamp, data} sets; empty for events no record field holds."""
    data, event_type = body["data"], body["type"]
    if event_type == "identity.registered":
        return {"registered_at": data.get("registered_at") or body["timestamp"], "pending_approval": False, "access_state": "enabled"}
    if event_type == "identity.activity":
        facts = {"logins": data.get("logins", 0)}
        if data.get("last_login_at"):
            facts["last_login_at"] = data["last_login_at"]
        return facts
    if event_type == "identity.access_changed":
        return {"access_state": "enabled" if data.get("enabled") else f"disabled: {data.get('reason', 'admin')}"}
    if event_type == "registration.pending_approval":
        return {"pending_approval": True}
    return {}


def is_registered_lead(body: dict) -> bool:
    """A lead that registered: sales should see it."""
    return body["type"] == "identity.registered" and bool(body["data"].get("lead_id"))


def as_fields(facts: dict, names: dict) -> dict:
    """The facts under the CRM's field names (facts without a configured field are left out)."""
    return {names[fact]: value for fact, value in facts.items() if names.get(fact)}
