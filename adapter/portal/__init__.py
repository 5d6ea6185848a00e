"""The org admin page: what Keycloak's admin console cannot do for an admin of one organization.

`/portal/`, behind a Keycloak login (the public client `keybridge-portal`, authorization
code with PKCE; the sign-in is kept server-side, see web_login.py): an admin of a CRM
organization (a member of it in its own `admins` group, org_admins.py; checked with Keycloak
on every request, for that organization only) sees its members with their business roles,
invites someone, removes someone, or takes a business role away (delegation.py says why the
console cannot). Seeing their people and giving business roles happens in Keycloak's own
admin console, under the permissions delegation.py keeps.
"""
from __future__ import annotations

from flask import Blueprint, Flask, current_app, flash, redirect, render_template_string, request, session, url_for

from .. import delegation, org_admins, web_login
from ..keycloak import is_keycloak_id
from ..web_login import Refused as _Refused
from ..web_login import require_csrf as _require_csrf
from .pages import MEMBERS_PAGE, MESSAGE_PAGE

bp = Blueprint("portal", __name__, url_prefix="/portal")


def init_app(app: Flask) -> None:
    """Serve the page unless KEYBRIDGE_PORTAL_ENABLED is off; raises ConfigError without KEYBRIDGE_SESSION_SECRET."""
    settings = current_settings(app)
    if not settings.portal_enabled:
        return
    web_login.configure_cookie(app, settings)
    app.register_blueprint(bp)


def current_settings(app=None):
    return (app or current_app).extensions["keybridge"].settings


def _kb():
    return current_app.extensions["keybridge"]


def _page(template: str, status: int = 200, **context):
    return render_template_string(template, **context), status


def _message(title: str, text: str, status: int):
    return _page(MESSAGE_PAGE, status, title=title, text=text)


# -- logging in (web_login.py: Keycloak login, server-side sign-ins, CSRF) ----------------

web_login.add_login_routes(bp, "portal.members", _message, "You are signed out of the organization admin page.")


def _require_member_id(user_id: str) -> None:
    """Keycloak user ids are UUIDs; anything else (`..`, `a/b`, ...) is nobody, and never reaches Keycloak."""
    if not is_keycloak_id(user_id):
        raise _Refused("There is no such member in your organization.", 404)


# -- who is asking, for which organization ---------------------------------------------

def _admin_and_org():
    """(the signed-in admin as Keycloak knows them, the organization they act on); raises _Refused."""
    user_id = web_login.signed_in_user_id()
    if user_id is None:
        return None, None
    kb = _kb()
    admin = kb.keycloak.get_user(user_id)
    orgs = org_admins.administered_organizations(kb, user_id) if admin and admin.get("enabled", True) else []
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
