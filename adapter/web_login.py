"""Signing people in to the adapter's own pages (the org admin page /portal/, the operator
dashboard /dashboard/) with Keycloak, and keeping the sign-in server-side.

The login is OpenID Connect's authorization code with PKCE through the public client
`keybridge-portal`; each page's blueprint gets the same four routes from `add_login_routes`
(`login`, `callback`, `logout`, `signed-out`), under its own prefix so Keycloak sends people
back to the page they came from. One sign-in serves both pages: each page decides on every
request, with Keycloak, whether the person may see it (org admin, operator).

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
(and every post also needs the page's CSRF token, `require_csrf`).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta
from urllib.parse import urlencode

from flask import Blueprint, Flask, current_app, has_request_context, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import delete, select

from .config import SESSION_SECRET_HOWTO, ConfigError
from .db import utcnow
from .errors import PermanentError, RetryableError
from .models import PortalSession

CLIENT_ID = "keybridge-portal"


class PortalCookie(SecureCookieSessionInterface):
    """Flask's signed cookie, Secure also whenever the request came in over https (directly or,
    with KEYBRIDGE_TRUSTED_PROXIES, as the proxy says)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or (has_request_context() and request.is_secure))

    def open_session(self, app: Flask, request):
        """Without the cookie (every webhook, API and health request), an empty session at once:
        building the signing serializer first is a third of an ingested webhook's Flask overhead,
        and a request with no Cookie header at all does not even parse cookies."""
        if app.secret_key and ("HTTP_COOKIE" not in request.environ or not request.cookies.get(self.get_cookie_name(app))):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session, response) -> None:
        """A session nobody touched (no cookie came, none is set): nothing to write, no cookie settings to read."""
        if not session and not session.modified and not session.accessed:
            return
        super().save_session(app, session, response)


def configure_cookie(app: Flask, settings) -> None:
    """Sign the session cookie with KEYBRIDGE_SESSION_SECRET and set its attributes (once per app).

    Raises ConfigError naming KEYBRIDGE_SESSION_SECRET when it is not set.
    """
    if isinstance(app.session_interface, PortalCookie):
        return
    if not settings.session_secret:
        raise ConfigError("KEYBRIDGE_SESSION_SECRET is not set: the org admin page (/portal) and the operator dashboard "
                          f"(/dashboard) sign their session cookie with it; {SESSION_SECRET_HOWTO}. Or set "
                          "KEYBRIDGE_PORTAL_ENABLED=false and KEYBRIDGE_DASHBOARD_ENABLED=false to run without the pages.")
    app.secret_key = settings.session_secret
    app.config.update(SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SECURE=settings.session_cookie_secure)
    app.session_interface = PortalCookie()


# -- the sign-ins, server-side -------------------------------------------------------------

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


# -- what a page asks ----------------------------------------------------------------------

class Refused(Exception):
    """A request the page answers with a message page: `text` says what to do, `status` is the HTTP status."""

    def __init__(self, text: str, status: int):
        super().__init__(text)
        self.text, self.status = text, status


def signed_in_user_id() -> str | None:
    """The Keycloak user id of this browser's live sign-in, or None (the stale token is dropped)."""
    record = find(_kb(), session.get("sid"))
    if record is None:
        session.pop("sid", None)
        return None
    return record.user_id


def require_csrf() -> None:
    """Every form post carries the page's CSRF token (made at sign-in, kept in the signed session)."""
    if not hmac.compare_digest(request.form.get("csrf", ""), session.get("csrf", "") or "-"):
        raise Refused("This form is out of date; reload the page and try again.", 400)


def csrf_token() -> str:
    return session["csrf"]


def _kb():
    return current_app.extensions["keybridge"]


# -- the routes ----------------------------------------------------------------------------

def add_login_routes(bp: Blueprint, home: str, message, signed_out_text: str) -> None:
    """Give `bp` its /login, /callback, /logout and /signed-out.

    `home` is the endpoint to land on after signing in; `message(title, text, status)` renders
    the page's message page; `signed_out_text` is what /signed-out says.
    """
    name = bp.name
    prefix = bp.url_prefix.rstrip("/") + "/"

    def callback_url() -> str:
        return url_for(f"{name}.callback", _external=True)

    def safe_next(target: str | None) -> str | None:
        return target if target and target.startswith(prefix) and not target.startswith("//") else None

    def login():
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        session["login"] = {"state": secrets.token_urlsafe(24), "verifier": verifier, "next": safe_next(request.args.get("next"))}
        query = {"client_id": CLIENT_ID, "response_type": "code", "scope": "openid", "redirect_uri": callback_url(),
                 "state": session["login"]["state"], "code_challenge": challenge, "code_challenge_method": "S256"}
        return redirect(f"{_kb().keycloak.openid_configuration()['authorization_endpoint']}?{urlencode(query)}")

    def callback():
        pending = session.pop("login", None)
        if pending is None or not hmac.compare_digest(request.args.get("state", ""), pending["state"]):
            return message("Sign-in expired", "Please sign in again.", 400)
        if "code" not in request.args:
            return message("Not signed in", request.args.get("error_description") or "Keycloak did not sign you in.", 401)
        try:
            tokens = _kb().keycloak.exchange_login_code(CLIENT_ID, request.args["code"], callback_url(), pending["verifier"])
            claims = _kb().keycloak.userinfo(tokens["access_token"])
        except (PermanentError, RetryableError) as exc:
            current_app.logger.warning("%s login failed: %s", name, exc)
            return message("Not signed in", "Keycloak could not confirm your sign-in; please try again.", 401)
        end(_kb(), session.get("sid"))  # a sign-in this browser had before ends here
        token = start(_kb(), claims["sub"], tokens.get("id_token"))
        session.clear()  # nothing from before the login survives it (no session fixation)
        session["sid"] = token
        session["csrf"] = secrets.token_urlsafe(24)
        return redirect(pending["next"] or url_for(home))

    def logout():
        """End the sign-in here (every copy of the cookie stops working), then Keycloak's session
        (RP-initiated logout: Keycloak comes back to this page's /signed-out)."""
        require_csrf()
        record = end(_kb(), session.get("sid"))
        session.clear()
        if record is None or not record.id_token:
            return signed_out()
        try:
            end_session = _kb().keycloak.openid_configuration()["end_session_endpoint"]
        except (PermanentError, RetryableError, KeyError) as exc:
            current_app.logger.warning("%s logout: Keycloak's end-session endpoint is unknown: %s", name, exc)
            return message("Signed out", "You are signed out of this page. Keycloak could not be reached: close the browser "
                                         "to end your Keycloak sign-in too.", 200)
        query = {"client_id": CLIENT_ID, "id_token_hint": record.id_token,
                 "post_logout_redirect_uri": url_for(f"{name}.signed_out", _external=True)}
        return redirect(f"{end_session}?{urlencode(query)}")

    def signed_out():
        return message("Signed out", signed_out_text, 200)

    bp.add_url_rule("/login", "login", login, methods=["GET"])
    bp.add_url_rule("/callback", "callback", callback, methods=["GET"])
    bp.add_url_rule("/logout", "logout", logout, methods=["POST"])
    bp.add_url_rule("/signed-out", "signed_out", signed_out, methods=["GET"])

    @bp.errorhandler(Refused)
    def _refused(exc: Refused):
        return message("Not done", exc.text, exc.status)

    @bp.errorhandler(RetryableError)
    def _keycloak_down(exc: RetryableError):
        current_app.logger.warning("%s: %s", name, exc)
        return message("Try again shortly", "Keycloak is not reachable at the moment; nothing was changed.", 503)
