"""The org admin page: the one place for what an admin of one organization does.

`/portal/`, behind a Keycloak login (the public client `keybridge-portal`, authorization
code with PKCE; the sign-in is kept server-side, see web_login.py): an admin of a CRM
organization (a member of it in its own `admins` group, org_admins.py; checked with Keycloak
on every request, for that organization only) sees its members with their business roles,
gives and takes business roles (only those: realm-config/role-mapping.json), invites
someone, removes someone, and sees the organization's pending invitations, which they can
send again or revoke. Keycloak's admin console keeps working for those who prefer it (seeing
people, giving roles; delegation.py says what it cannot do). Every form post carries the
page's CSRF token; every id in a URL is checked to be a Keycloak id and to belong to the
organization before anything is asked of Keycloak.

`/portal/welcome` is where an invited person lands after accepting their invitation
(handlers/landing.py): signed in, welcomed in the portal's look, then sent on to where
their invitation said.
"""
from __future__ import annotations

import functools

from flask import Blueprint, Flask, Response, current_app, flash, redirect, render_template_string, request, session, url_for

from .. import delegation, org_admins, web_login
from ..handlers import landing
from ..keycloak import is_keycloak_id
from ..web_login import Refused as _Refused
from ..web_login import require_csrf as _require_csrf
from .pages import LOGO_SVG, MEMBERS_PAGE, MESSAGE_PAGE, WELCOME_PAGE

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
    context.setdefault("tagline", "Organization admin")
    return render_template_string(template, **context), status


def _message(title: str, text: str, status: int):
    return _page(MESSAGE_PAGE, status, title=title, text=text)


# -- logging in (web_login.py: Keycloak login, server-side sign-ins, CSRF) ----------------

web_login.add_login_routes(bp, "portal.members", _message, "You are signed out of the organization admin page.")


def _require_member_id(user_id: str) -> None:
    """Keycloak user ids are UUIDs; anything else (`..`, `a/b`, ...) is nobody, and never reaches Keycloak."""
    if not is_keycloak_id(user_id):
        raise _Refused("There is no such member in your organization.", 404)


def _require_invitation_id(invitation_id: str) -> None:
    """Keycloak invitation ids are UUIDs too; anything else is no invitation of the organization."""
    if not is_keycloak_id(invitation_id):
        raise _Refused("There is no such invitation in your organization.", 404)


@bp.get("/logo.svg")
def logo():
    """The portal's logo (the login theme's img/portal-logo.svg)."""
    return Response(LOGO_SVG, mimetype="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})


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
    business = set(kb.roles.business_roles)
    for member in sorted(kb.keycloak.organization_members(org["id"]), key=lambda m: (m.get("email") or "").lower()):
        held = kb.keycloak.user_realm_roles(member["id"]) & business
        people.append({"id": member["id"], "email": member.get("email") or member.get("username"),
                       "name": " ".join(p for p in (member.get("firstName"), member.get("lastName")) if p),
                       "roles": sorted(held), "can_give": sorted(business - held),
                       "admin": member["id"] in admins, "you": member["id"] == admin["id"]})
    return _page(MEMBERS_PAGE, org=org, people=people, admin=admin, csrf=session["csrf"],
                 invitations=delegation.pending_invitations(kb, org),
                 organizations=org_admins.administered_organizations(kb, admin["id"]))


@bp.get("/welcome")
def welcome():
    """Where an invited person lands after accepting (handlers/landing.py): signed in, welcomed, sent on.

    Keycloak appends its own `code`, `session_state` and `iss` for its `account` client: they are
    ignored (the adapter signs the person in with its own client)."""
    user_id = web_login.signed_in_user_id()
    if user_id is None:
        return redirect(url_for("portal.login", next=url_for("portal.welcome")))
    kb = _kb()
    user = kb.keycloak.get_user(user_id)
    if user is None or not user.get("enabled", True):
        raise _Refused("Your account is not active. Your account manager can help.", 403)
    destination, name = landing.destination(kb, user)
    return _page(WELCOME_PAGE, tagline="Welcome", destination=destination, destination_name=name, delay=3,
                 first_name=user.get("firstName"), organization=landing.organization_name(kb, user_id),
                 title="Welcome to the Customer Portal")


URL_IDS = {"user_id": _require_member_id, "invitation_id": _require_invitation_id}  # how each id in a URL is checked


def _form(view):
    """A form of the page: its CSRF token checked, every id in its URL checked (URL_IDS), then the
    signed-in admin and their organization found (the sign-in page when nobody is signed in).
    The view gets them first, view(admin, org, **url values), and returns the message to show
    on the member list, where the form goes back to."""
    @functools.wraps(view)
    def run(**values):
        _require_csrf()
        for name, value in values.items():
            if name in URL_IDS:
                URL_IDS[name](value)
        admin, org = _admin_and_org()
        if admin is None:
            return redirect(url_for("portal.login"))
        flash(view(admin, org, **values))
        return redirect(url_for("portal.members", org=org["id"]))
    return run


@bp.post("/invite")
@_form
def invite(admin, org):
    email = (request.form.get("email") or "").strip()
    if "@" not in email or len(email) > 320:
        raise _Refused("Give the email address of the person to invite.", 400)
    outcome = delegation.invite_member(_kb(), org, email, request.form.get("first_name") or None,
                                       request.form.get("last_name") or None, admin)
    return {"invited": f"{email} is invited: they got an email to choose their password.",
            "join_link_sent": f"{email} already has an account: they got an email to join {org['name']}.",
            "already_member": f"{email} is already a member.",
            "already_invited": f"{email} has an invitation waiting already."}[outcome]


@bp.post("/members/<user_id>/roles/<role>/take")
@_form
def take_role(admin, org, user_id: str, role: str):
    try:
        outcome = delegation.take_business_role(_kb(), org, user_id, role, admin)
    except ValueError as exc:
        raise _Refused(str(exc), 400) from None
    return f"{role} taken away." if outcome == "taken" else f"They did not hold {role}."


@bp.post("/members/<user_id>/roles/give")
@_form
def give_role(admin, org, user_id: str):
    role = request.form.get("role") or ""
    try:
        outcome = delegation.give_business_role(_kb(), org, user_id, role, admin)
    except ValueError as exc:
        raise _Refused(f"{exc} Choose one of the business roles offered next to the person.", 400) from None
    return f"{role} given." if outcome == "given" else f"They hold {role} already."


@bp.post("/invitations/<invitation_id>/resend")
@_form
def resend_invitation(admin, org, invitation_id: str):
    return _on_invitation(admin, org, invitation_id, delegation.resend_invitation, "The invitation was sent again.")


@bp.post("/invitations/<invitation_id>/revoke")
@_form
def revoke_invitation(admin, org, invitation_id: str):
    return _on_invitation(admin, org, invitation_id, delegation.revoke_invitation,
                          "The invitation is revoked: its link no longer works.")


def _on_invitation(admin, org, invitation_id: str, act, done: str) -> str:
    """Resend or revoke one of the organization's pending invitations (another organization's is no such invitation)."""
    if act(_kb(), org, invitation_id, admin) == "gone":
        raise _Refused("There is no such invitation in your organization, or it was answered or revoked already.", 404)
    return done


@bp.post("/members/<user_id>/remove")
@_form
def remove(admin, org, user_id: str):
    try:
        outcome = delegation.remove_member(_kb(), org, user_id, admin)
    except ValueError as exc:
        raise _Refused(str(exc), 400) from None
    if outcome == "not_member":
        raise _Refused("That person is not a member of your organization.", 404)
    return ("Removed: they are no longer a member and keep no business role." if outcome == "removed" else
            "Removed: they had joined through an invitation, so Keycloak deleted their account with the membership.")
