"""`POST /webhooks/salesforce`: Salesforce Outbound Messages (SOAP).

A message holds up to 100 notifications, each with its own Id (the same on every
retry: the idempotency key) and one sObject with the fields chosen in Setup.
The sending org must be in KEYBRIDGE_SALESFORCE_ORGANIZATION_IDS, and, since an org id is
no secret, the endpoint URL configured in Salesforce should carry `?token=` one of
KEYBRIDGE_SALESFORCE_ENDPOINT_TOKENS (required once any is set); the SOAP `Ack`
(true) is answered only once every notification is stored, so Salesforce retries
anything not acknowledged. The XML is parsed with defusedxml (no entities, no DTDs).
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeXml
from defusedxml.common import DefusedXmlException
from flask import Response

from ..errors import ApiError
from . import dialects
from .dialects import Dialect, Outcome, constant_time_in
from .translation import Change, parse_time

log = logging.getLogger(__name__)

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
SOBJECT = "urn:sobject.enterprise.soap.sforce.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100
ACK = (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP}"><soapenv:Body>'
       f'<notificationsResponse xmlns="{OUTBOUND}"><Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>')


@dialects.register
class Salesforce(Dialect):
    key = "salesforce"
    name = "Salesforce Outbound Messages"

    def configured(self, settings) -> bool:
        return bool(settings.salesforce_organization_ids)

    def authenticate(self, settings, req, body: bytes) -> dict:
        if settings.salesforce_endpoint_tokens and not constant_time_in(req.args.get("token"), settings.salesforce_endpoint_tokens):
            raise ApiError(401, "The outbound message's endpoint URL must end in ?token= one of KEYBRIDGE_SALESFORCE_ENDPOINT_TOKENS.",
                           {"token": ["Missing or wrong."]})
        notifications = _notifications(body)
        org_id = _text(notifications.find(f"{{{OUTBOUND}}}OrganizationId"))
        if not org_id:
            raise ApiError(401, "The outbound message has no OrganizationId.", {"OrganizationId": ["Missing."]})
        allowed = {o[:15] for o in settings.salesforce_organization_ids}
        if not allowed:
            raise ApiError(401, "KEYBRIDGE_SALESFORCE_ORGANIZATION_IDS is empty: list the Salesforce org ids (Setup > Company Information) "
                                "allowed to send outbound messages; every message is refused until then.")
        # An 18-character id is the 15-character (case-sensitive) id plus a checksum.
        if org_id[:15] not in allowed:
            raise ApiError(401, f"Salesforce org {org_id} is not in KEYBRIDGE_SALESFORCE_ORGANIZATION_IDS.", {"OrganizationId": ["Not allowed."]})
        return {"organization_id": org_id, "notifications": notifications}

    def parse(self, settings, req, body: bytes, sender: dict) -> list:
        found = sender["notifications"].findall(f"{{{OUTBOUND}}}Notification")
        if len(found) > MAX_NOTIFICATIONS:
            raise ApiError(400, f"An outbound message holds at most {MAX_NOTIFICATIONS} notifications; this one has {len(found)}.")
        return [self._change(n, i) for i, n in enumerate(found)]

    def _change(self, notification: Element, index: int) -> Change:
        notification_id = _text(notification.find(f"{{{OUTBOUND}}}Id"))
        sobject = notification.find(f"{{{OUTBOUND}}}sObject")
        if not notification_id or sobject is None:
            raise ApiError(400, f"Notification {index} needs an Id and an sObject.", {f"Notification[{index}]": ["Id and sObject required."]})
        object_type = (sobject.get(f"{{{XSI}}}type") or "").split(":")[-1]
        attributes = {}
        for child in sobject:
            name = child.tag.split("}")[-1]
            attributes[name] = None if child.get(f"{{{XSI}}}nil") == "true" else (child.text or "")
        when = parse_time(attributes.get("LastModifiedDate")) or parse_time(attributes.get("SystemModstamp"))
        if when is None:
            log.warning("Salesforce notification %s carries no LastModifiedDate: add it to the outbound message's fields, "
                        "or an older change could win over a newer one", notification_id)
            when = datetime.now(timezone.utc)
        return Change(event_id=notification_id, object=object_type, record_id=attributes.get("Id") or "",
                      occurred_at=when, attributes=attributes, action="update", changed=None)

    def answer(self, outcome: Outcome):
        return Response(ACK, status=200, content_type="text/xml; charset=utf-8")


def _notifications(body: bytes) -> Element:
    try:
        root = SafeXml.fromstring(body)
    except (SafeXml.ParseError, DefusedXmlException, ValueError) as exc:
        raise ApiError(400, f"Not a Salesforce outbound message: the body is not safe, well-formed XML ({exc}).") from None
    notifications = root.find(f"{{{SOAP}}}Body/{{{OUTBOUND}}}notifications")
    if notifications is None:
        raise ApiError(400, "Not a Salesforce outbound message: expected soapenv:Envelope/soapenv:Body/notifications.")
    return notifications


def _text(element: Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""
