"""Outbound connectors: a base interface, a registry, one module per CRM.

A connector describes itself with class attributes (`key`, `name`) and turns one
identity event into a call on the CRM. All connectors share one error vocabulary:
`RetryableError` (timeouts, 5xx, 429 with its Retry-After, a redirect) or
`ConnectorError` (a refusal retrying cannot fix).
"""
from __future__ import annotations

import abc
import math
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import requests

from ..errors import PermanentError, RetryableError


class NotRegistered(LookupError):
    """No connector is registered under that key."""


class ConnectorError(PermanentError):
    """The CRM refused the event (4xx other than 408/429)."""

    @classmethod
    def from_response(cls, response: requests.Response, what: str) -> Exception:
        code = response.status_code
        if 300 <= code < 400:
            # Never followed: requests would turn the POST into a body-less GET and call it delivered.
            location = response.headers.get("Location", "(no Location header)")
            return RetryableError(
                f"CRM URL {response.url} redirects ({code} to {location}) for {what}; redirects are not followed. "
                "Configure the final URL (KEYBRIDGE_CRM_EVENTS_URL for the generic connector)."
            )
        if code in (408, 429) or code >= 500:
            delay = retry_after_seconds(response.headers.get("Retry-After"))
            return RetryableError(f"CRM answered {code} to {what}", retry_after=delay)
        return cls(f"CRM refused {what} ({code}): {response.text[:300]}")


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110 10.2.3).

    None for a missing or unreadable value (the caller's backoff applies). Not capped here:
    the caller caps it at its retry maximum (a year, or inf, must not park an event for good).
    """
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
    if math.isnan(seconds) or seconds < 0:
        return None
    return seconds


class Connector(abc.ABC):
    key: str = ""
    name: str = ""

    @abc.abstractmethod
    def deliver(self, event_id: str, body: dict) -> None:
        """Deliver one event; raise RetryableError or ConnectorError on failure."""

    def deliver_many(self, events: list[tuple[str, dict]]) -> None:
        """Deliver several (event id, body) in order; on failure the caller retries them all (at least once).

        One by one here; a connector whose CRM has batch calls (HubSpot, Salesforce) overrides it.
        """
        for event_id, body in events:
            self.deliver(event_id, body)


_registry: dict[str, type[Connector]] = {}


def register(cls: type[Connector]) -> type[Connector]:
    _registry[cls.key] = cls
    return cls


def get(key: str) -> type[Connector]:
    try:
        return _registry[key]
    except KeyError:
        raise NotRegistered(f"No connector {key!r}; known: {sorted(_registry)}") from None


def from_settings(settings) -> Connector | None:
    """The connector KEYBRIDGE_CONNECTOR names (generic when only KEYBRIDGE_CRM_EVENTS_URL is set), or None."""
    from . import dynamics, espocrm, generic, hubspot, pipedrive, salesforce  # noqa: F401  (they register themselves)

    key = settings.connector or ("generic" if settings.crm_events_url else "")
    return get(key).from_settings(settings) if key else None
