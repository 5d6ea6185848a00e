"""`POST /webhooks/dynamics`: Dynamics 365 / Dataverse webhooks.

The body is a serialized `RemoteExecutionContext`: MessageName (Create, Update,
Delete), PrimaryEntityName, InputParameters' `Target` entity with the attributes
the operation set, PostEntityImages (register one to get the whole record on an
update), OperationCreatedOn. Authentication is a shared secret, compared in
constant time: the `X-Keybridge-Key` header (Dataverse "HttpHeader"
authentication) or the `code` query parameter ("WebhookKey"); any secret of
KEYBRIDGE_DYNAMICS_SECRETS (several during a rotation).
"""
from __future__ import annotations

from ..errors import ApiError
from . import dialects
from .dialects import Dialect, constant_time_in, occurred
from .translation import Change, Ignored, to_iso

HEADER = "X-Keybridge-Key"
QUERY = "code"


@dialects.register
class Dynamics(Dialect):
    key = "dynamics"
    name = "Dynamics 365 / Dataverse webhooks"

    def configured(self, settings) -> bool:
        return bool(settings.dynamics_secrets)

    def authenticate(self, settings, req, body: bytes) -> dict:
        if not settings.dynamics_secrets:
            raise ApiError(401, "KEYBRIDGE_DYNAMICS_SECRETS is not set; every Dataverse delivery is refused until it is.")
        offered = req.headers.get(HEADER) or req.args.get(QUERY)
        if not offered:
            raise ApiError(401, f"Not an authenticated Dataverse delivery: register the webhook with HttpHeader authentication "
                                f"({HEADER}: <secret>) or WebhookKey (the ?{QUERY}= parameter).", {HEADER: ["Missing."]})
        if not constant_time_in(offered, settings.dynamics_secrets):
            raise ApiError(401, f"The {HEADER} (or ?{QUERY}=) secret does not match KEYBRIDGE_DYNAMICS_SECRETS.", {HEADER: ["Wrong secret."]})
        return {}

    def parse(self, settings, req, body: bytes, sender: dict) -> list:
        context = dialects.json_body(body, "Dataverse")
        if not isinstance(context, dict) or "MessageName" not in context or "PrimaryEntityName" not in context:
            raise ApiError(400, "Not a Dataverse RemoteExecutionContext (MessageName, PrimaryEntityName, InputParameters ...).")
        message = context["MessageName"]
        operation = context.get("OperationId") or context.get("RequestId") or context.get("CorrelationId")
        event_id = f"{operation}:{context.get('PrimaryEntityId')}:{message}"
        if not operation:
            raise ApiError(400, "The context has no OperationId.", {"OperationId": ["Missing."]})
        action = {"Create": "create", "Update": "update", "Delete": "delete"}.get(message)
        if action is None:
            return [Ignored(event_id, f"message {message} is not used by Keybridge (register Create, Update or Delete)")]
        target = _parameter(context.get("InputParameters"), "Target")
        attributes: dict = {}
        for image in context.get("PostEntityImages") or []:
            attributes.update(_attributes((image or {}).get("value")))
        target_attributes = _attributes(target) if isinstance(target, dict) and "Attributes" in target else {}
        attributes.update(target_attributes)
        record_id = str(context.get("PrimaryEntityId") or (target or {}).get("Id") or "")
        attributes.setdefault(f"{context['PrimaryEntityName']}id", record_id)
        when = occurred(context.get("OperationCreatedOn") or attributes.get("modifiedon"), "OperationCreatedOn")
        return [Change(event_id=event_id, object=context["PrimaryEntityName"], record_id=record_id, occurred_at=when,
                       attributes=attributes, action=action,
                       changed=set(target_attributes) if action == "update" else None)]


def _parameter(pairs, name: str):
    for pair in pairs or []:
        if isinstance(pair, dict) and pair.get("key") == name:
            return pair.get("value")
    return None


def _attributes(entity) -> dict:
    """An Entity's Attributes as plain values: references as their Id, option sets and money as their Value."""
    if not isinstance(entity, dict):
        return {}
    return {pair["key"]: _plain(pair.get("value")) for pair in entity.get("Attributes") or [] if isinstance(pair, dict) and "key" in pair}


def _plain(value):
    if isinstance(value, dict):
        kind = str(value.get("__type", ""))
        if kind.startswith("EntityReference"):
            return value.get("Id")
        if kind.startswith("OptionSetValueCollection"):
            return [_plain(v) for v in value.get("Value") or []]
        if "Value" in value:
            return value["Value"]
        return value.get("Id")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and value.startswith("/Date("):
        return to_iso(value)
    return value
