"""The org admin page's sign-ins, kept server-side so that signing out ends them everywhere.

The browser holds Flask's session cookie, signed with KEYBRIDGE_SESSION_SECRET (its own
secret, not derived from another), SameSite=Lax, HttpOnly, and Secure unless switched off
for plain-http development (or served over https, as a trusted proxy reports). It carries
a random token; the database keeps only the token's SHA-256, whose account it is, when it
expires and Keycloak's id token. Signing out deletes the row: a copy of the cookie taken
before then opens nothing.

Why Lax and not Strict: the login comes back from Keycloak as a top-level navigation from
Keycloak's site (another host in most deployments); a Strict cookie is not sent on it, so
the login state (OAuth `state`, PKCE verifier) would be missing and every login would fail.
Lax cookies go with top-level GETs only: cross-site form posts arrive without the session
(and every post also needs the page's CSRF token).
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import Flask, has_request_context, request
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import delete, select

from ..config import SESSION_SECRET_HOWTO, ConfigError
from ..db import utcnow
from ..models import PortalSession


class PortalCookie(SecureCookieSessionInterface):
    """Flask's signed cookie, Secure also whenever the request came in over https (directly or,
    with KEYBRIDGE_TRUSTED_PROXIES, as the proxy says)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or (has_request_context() and request.is_secure))


def configure_cookie(app: Flask, settings) -> None:
    """Sign the session cookie with KEYBRIDGE_SESSION_SECRET and set its attributes.

    Raises ConfigError naming KEYBRIDGE_SESSION_SECRET when it is not set.
    """
    if not settings.session_secret:
        raise ConfigError("KEYBRIDGE_SESSION_SECRET is not set: the org admin page (/portal) signs its session cookie "
                          f"with it; {SESSION_SECRET_HOWTO}. Or set KEYBRIDGE_PORTAL_ENABLED=false to run without the page.")
    app.secret_key = settings.session_secret
    app.config.update(SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SECURE=settings.session_cookie_secure)
    app.session_interface = PortalCookie()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(kb, user_id: str, id_token: str | None) -> str:
    """Record a sign-in; returns the token for the cookie. Expired sign-ins are cleared on the way."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with kb.db.session() as s:
        s.execute(delete(PortalSession).where(PortalSession.expires_at <= now))
        s.add(PortalSession(id=_digest(token), user_id=user_id, id_token=id_token, created_at=now,
                            expires_at=now + timedelta(seconds=kb.settings.portal_session_seconds)))
    return token


def find(kb, token: str | None) -> PortalSession | None:
    """The live sign-in the cookie's token belongs to; None when it ended, expired or never was."""
    if not token or not isinstance(token, str):
        return None
    with kb.db.session() as s:
        record = s.scalar(select(PortalSession).where(PortalSession.id == _digest(token)))
    return record if record is not None and record.expires_at > utcnow() else None


def end(kb, token: str | None) -> PortalSession | None:
    """End the sign-in (every copy of the cookie stops working); returns what it was, or None."""
    if not token or not isinstance(token, str):
        return None
    with kb.db.session() as s:
        record = s.scalar(select(PortalSession).where(PortalSession.id == _digest(token)))
        if record is not None:
            s.delete(record)
    return record
