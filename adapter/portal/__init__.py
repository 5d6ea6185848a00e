"""The org admin page: what Keycloak's admin console cannot do for an admin of one organization.

`/portal/`, behind a Keycloak login (the public client `keybridge-portal`, authorization
code with PKCE; the sign-in is kept server-side, see sessions.py): an admin of a CRM
organization (a member of it in its own `admins` group, org_admins.py; checked with Keycloak
on every request, for that organization only) sees its members with their business roles,
invites someone, removes someone, or takes a business role away (delegation.py says why the
console cannot). Seeing their people and giving business roles happens in Keycloak's own
admin console, under the permissions delegation.py keeps.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import urlencode

from flask import Blueprint, Flask, current_app, flash, redirect, render_template_string, request, session, url_for

from .. import delegation, org_admins
from ..jobs import PermanentError, RetryableError
from ..keycloak import is_keycloak_id
from . import sessions
from .pages import MEMBERS_PAGE, MESSAGE_PAGE

CLIENT_ID = "keybridge-portal"

bp = Blueprint("portal", __name__, url_prefix="/portal")


def init_app(app: Flask) -> None:
    """Serve the page unless KEYBRIDGE_PORTAL_ENABLED is off; raises ConfigError without KEYBRIDGE_SESSION_SECRET."""
    settings = current_settings(app)
    if not settings.portal_enabled:
        return
    sessions.configure_cookie(app, settings)
    app.register_blueprint(bp)


def current_settings(app=None):
    return (app or current_app).extensions["keybridge"].settings


def _kb():
    return current_app.extensions["keybridge"]


def _page(template: str, status: int = 200, **context):
    return render_template_string(template, **context), status


def _message(title: str, text: str, status: int):
    return _page(MESSAGE_PAGE, status, title=title, text=text)


# -- logging in -------------------------------------------------------------------------

@bp.get("/login")
def login():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    session["login"] = {"state": secrets.token_urlsafe(24), "verifier": verifier, "next": _safe_next(request.args.get("next"))}
    query = {"client_id": CLIENT_ID, "response_type": "code", "scope": "openid", "redirect_uri": _callback_url(),
             "state": session["login"]["state"], "code_challenge": challenge, "code_challenge_method": "S256"}
    return redirect(f"{_kb().keycloak.openid_configuration()['authorization_endpoint']}?{urlencode(query)}")


@bp.get("/callback")
def callback():
    pending = session.pop("login", None)
    if pending is None or not hmac.compare_digest(request.args.get("state", ""), pending["state"]):
        return _message("Sign-in expired", "Please sign in again.", 400)
    if "code" not in request.args:
        return _message("Not signed in", request.args.get("error_description") or "Keycloak did not sign you in.", 401)
    try:
        tokens = _kb().keycloak.exchange_login_code(CLIENT_ID, request.args["code"], _callback_url(), pending["verifier"])
        claims = _kb().keycloak.userinfo(tokens["access_token"])
    except (PermanentError, RetryableError) as exc:
        current_app.logger.warning("portal login failed: %s", exc)
        return _message("Not signed in", "Keycloak could not confirm your sign-in; please try again.", 401)
    sessions.end(_kb(), session.get("sid"))  # a sign-in this browser had before ends here
    token = sessions.start(_kb(), claims["sub"], tokens.get("id_token"))
    session.clear()  # nothing from before the login survives it (no session fixation)
    session["sid"] = token
    session["csrf"] = secrets.token_urlsafe(24)
    return redirect(pending["next"] or url_for("portal.members"))


@bp.post("/logout")
def logout():
    """End the sign-in here (every copy of the cookie stops working), then Keycloak's session
    (RP-initiated logout: Keycloak comes back to /portal/signed-out)."""
    _require_csrf()
    record = sessions.end(_kb(), session.get("sid"))
    session.clear()
    if record is None or not record.id_token:
        return signed_out()
    try:
        end_session = _kb().keycloak.openid_configuration()["end_session_endpoint"]
    except (PermanentError, RetryableError, KeyError) as exc:
        current_app.logger.warning("portal logout: Keycloak's end-session endpoint is unknown: %s", exc)
        return _message("Signed out", "You are signed out of this page. Keycloak could not be reached: close the browser "
                                      "to end your Keycloak sign-in too.", 200)
    query = {"client_id": CLIENT_ID, "id_token_hint": record.id_token,
             "post_logout_redirect_uri": url_for("portal.signed_out", _external=True)}
    return redirect(f"{end_session}?{urlencode(query)}")


@bp.get("/signed-out")
def signed_out():
    return _message("Signed out", "You are signed out of the organization admin page.", 200)


def _callback_url() -> str:
    return url_for("portal.callback", _external=True)


def _safe_next(target: str | None) -> str | None:
    return target if target and target.startswith("/portal/") and not target.startswith("//") else None


def _require_csrf() -> None:
    if not hmac.compare_digest(request.form.get("csrf", ""), session.get("csrf", "") or "-"):
        raise _Refused("This form is out of date; reload the page and try again.", 400)


def _require_member_id(user_id: str) -> None:
    """Keycloak user ids are UUIDs; anything else (`..`, `a/b`, ...) is nobody, and never reaches Keycloak."""
    if not is_keycloak_id(user_id):
        raise _Refused("There is no such member in your organization.", 404)


class _Refused(Exception):
    def __init__(self, text: str, status: int):
        super().__init__(text)
        self.text, self.status = text, status


@bp.errorhandler(_Refused)
def _refused(exc: _Refused):
    return _message("Not done", exc.text, exc.status)


@bp.errorhandler(RetryableError)
def _keycloak_down(exc: RetryableError):
    current_app.logger.warning("portal: %s", exc)
    return _message("Try again shortly", "Keycloak is not reachable at the moment; nothing was changed.", 503)


# -- who is asking, for which organization ---------------------------------------------

def _admin_and_org():
    """(the signed-in admin as Keycloak knows them, the organization they act on); raises _Refused."""
    signed_in = sessions.find(_kb(), session.get("sid"))
    if signed_in is None:
        session.pop("sid", None)
        return None, None
    kb = _kb()
    admin = kb.keycloak.get_user(signed_in.user_id)
    orgs = org_admins.administered_organizations(kb, signed_in.user_id) if admin and admin.get("enabled", True) else []
    if not orgs:
        raise _Refused("This page is for the admins of a customer organization. Your account manager can make you one.", 403)
    wanted = request.values.get("org")
    org = next((o for o in orgs if o["id"] == wanted), None) if wanted else orgs[0]
    if org is None:
        raise _Refused("You are not an admin of that organization.", 403)
    return admin, org


@bp.get("/")
def members():
    admin, org = _admin_and_org()
    if admin is None:
        return redirect(url_for("portal.login", next=request.full_path))
    kb = _kb()
    people = []
    admins = org_admins.admin_ids(kb, org["id"])
    for member in sorted(kb.keycloak.organization_members(org["id"]), key=lambda m: (m.get("email") or "").lower()):
        roles = kb.keycloak.user_realm_roles(member["id"])
        people.append({"id": member["id"], "email": member.get("email") or member.get("username"),
                       "name": " ".join(p for p in (member.get("firstName"), member.get("lastName")) if p),
                       "roles": sorted(roles & set(kb.roles.business_roles)),
                       "admin": member["id"] in admins, "you": member["id"] == admin["id"]})
    console = f"{kb.keycloak.openid_configuration()['issuer'].rsplit('/realms/', 1)[0]}/admin/{kb.settings.keycloak_realm}/console/"
    return _page(MEMBERS_PAGE, org=org, people=people, admin=admin, csrf=session["csrf"], console=console,
                 organizations=org_admins.administered_organizations(kb, admin["id"]))


@bp.post("/invite")
def invite():
    _require_csrf()
    admin, org = _admin_and_org()
    if admin is None:
        return redirect(url_for("portal.login"))
    email = (request.form.get("email") or "").strip()
    if "@" not in email or len(email) > 320:
        raise _Refused("Give the email address of the person to invite.", 400)
    outcome = delegation.invite_member(_kb(), org, email, request.form.get("first_name") or None,
                                       request.form.get("last_name") or None, admin)
    flash({"invited": f"{email} is invited: they got an email to choose their password.",
           "join_link_sent": f"{email} already has an account: they got an email to join {org['name']}.",
           "already_member": f"{email} is already a member.",
           "already_invited": f"{email} has an invitation waiting already."}[outcome])
    return redirect(url_for("portal.members", org=org["id"]))


@bp.post("/members/<user_id>/roles/<role>/take")
def take_role(user_id: str, role: str):
    _require_csrf()
    _require_member_id(user_id)
    admin, org = _admin_and_org()
    if admin is None:
        return redirect(url_for("portal.login"))
    try:
        outcome = delegation.take_business_role(_kb(), org, user_id, role, admin)
    except ValueError as exc:
        raise _Refused(str(exc), 400) from None
    flash(f"{role} taken away." if outcome == "taken" else f"They did not hold {role}.")
    return redirect(url_for("portal.members", org=org["id"]))


@bp.post("/members/<user_id>/remove")
def remove(user_id: str):
    _require_csrf()
    _require_member_id(user_id)
    admin, org = _admin_and_org()
    if admin is None:
        return redirect(url_for("portal.login"))
    try:
        outcome = delegation.remove_member(_kb(), org, user_id, admin)
    except ValueError as exc:
        raise _Refused(str(exc), 400) from None
    if outcome == "not_member":
        raise _Refused("That person is not a member of your organization.", 404)
    flash("Removed: they are no longer a member and keep no business role." if outcome == "removed" else
          "Removed: they had joined through an invitation, so Keycloak deleted their account with the membership.")
    return redirect(url_for("portal.members", org=org["id"]))
