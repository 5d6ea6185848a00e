"""The operator dashboard: how Keybridge is doing, and the operator's decisions, in a browser.

`/dashboard/`, behind the same Keycloak login as the org admin page (web_login.py), for
people with the realm role `keybridge-operator` (directly or through a group; checked with
Keycloak on every request; org
admins have /portal/ instead). It shows the funnel invited -> registered -> active over time,
overall and per account (funnel.py, charts.py), the registrations waiting for approval with
approve and reject (stored as a `registration.decided` operator event, exactly like the
operator API's), the dead letters with replay (dead_letters.py), the invitation batches with
their progress and the newest audit entries. Every form carries the page's CSRF token;
every action is audited with the operator as actor.
"""
from __future__ import annotations

from flask import Blueprint, Flask, current_app, flash, redirect, render_template_string, request, url_for
from marshmallow import ValidationError
from sqlalchemy import select

from .. import dead_letters, inbox, reports, web_login
from ..errors import ApiError
from ..events import RegistrationDecidedSchema
from ..handlers import audit, batches, self_service
from ..keycloak import is_keycloak_id
from ..models import Account, Batch, SelfRegistration
from ..web_login import Refused
from . import charts, funnel
from .pages import DASHBOARD_PAGE, MESSAGE_PAGE

OPERATOR_ROLE = "keybridge-operator"
PERIODS = (7, 30, 90)

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")


def init_app(app: Flask) -> None:
    """Serve the dashboard unless KEYBRIDGE_DASHBOARD_ENABLED is off; raises ConfigError without KEYBRIDGE_SESSION_SECRET."""
    settings = app.extensions["keybridge"].settings
    if not settings.dashboard_enabled:
        return
    web_login.configure_cookie(app, settings)
    app.register_blueprint(bp)


def _kb():
    return current_app.extensions["keybridge"]


def _message(title: str, text: str, status: int):
    return render_template_string(MESSAGE_PAGE, title=title, text=text), status


web_login.add_login_routes(bp, "dashboard.home", _message, "You are signed out of the Keybridge operator dashboard.")


def _operator() -> dict | None:
    """The signed-in operator as Keycloak knows them now; None when nobody is signed in; raises Refused for anyone else."""
    user_id = web_login.signed_in_user_id()
    if user_id is None:
        return None
    kb = _kb()
    user = kb.keycloak.get_user(user_id)
    if not user or not user.get("enabled", True) or OPERATOR_ROLE not in kb.keycloak.user_effective_realm_roles(user_id):
        raise Refused(f"This page is for Keybridge operators (realm role {OPERATOR_ROLE}). Organization admins manage "
                      "their people on /portal/; a Keycloak administrator can give you the operator role.", 403)
    return user


def _actor(user: dict) -> dict:
    return {"actor": user.get("email") or user.get("username"), "actor_user_id": user["id"], "via": "dashboard"}


def _when(iso: str | None) -> str:
    """'2026-11-30T07:32:56.334307Z' -> '2026-11-30 07:32:56' (the page says times are UTC)."""
    return iso[:19].replace("T", " ") if iso else ""


@bp.get("/")
def home():
    operator = _operator()
    if operator is None:
        return redirect(url_for("dashboard.login", next=request.full_path))
    kb = _kb()
    try:
        days = int(request.args.get("days", 30))
    except ValueError:
        days = 0
    if days not in PERIODS:
        raise Refused(f"days must be one of {', '.join(map(str, PERIODS))} (the period of the funnel).", 400)
    account = request.args.get("account") or None
    numbers = funnel.compute(kb.db, days)
    shown = numbers.series(account)
    with kb.db.session() as session:
        accounts = [{"account_id": a.account_id, "name": a.name} for a in session.scalars(select(Account).order_by(Account.name))]
        batch_ids = list(session.scalars(select(Batch.batch_id).order_by(Batch.created_at.desc()).limit(20)))
    label = next((a["name"] or a["account_id"] for a in accounts if a["account_id"] == account), account) if account else "All accounts"
    chart = charts.funnel_chart(shown, f"Funnel per day, {label}, last {days} days", "funnel-chart")
    return render_template_string(
        DASHBOARD_PAGE, operator=operator, csrf=web_login.csrf_token(), days=days, account=account, funnel=numbers,
        shown=shown, chart=chart, label=label, stages=funnel.STAGES, when=_when,
        pending=self_service.pending_registrations(kb, "pending"), accounts=accounts,
        crm_roles=sorted(kb.roles.crm_roles), dead=dead_letters.list_all(kb.db),
        batches=[batches.batch_status(kb, b, 0, 0) for b in batch_ids],
        audit=reports.audit_trail(kb, None, 50))


@bp.post("/registrations/<user_id>/decision")
def decide(user_id: str):
    """Approve (into an account, with CRM roles) or reject a registration: the operator API's path."""
    web_login.require_csrf()
    operator = _operator()
    if operator is None:
        return redirect(url_for("dashboard.login"))
    if not is_keycloak_id(user_id):
        raise Refused("There is no such registration.", 404)
    kb = _kb()
    roles = [r.strip() for r in (request.form.get("roles") or "").replace(",", ";").split(";") if r.strip()]
    unknown = kb.roles.unmapped(roles)
    if unknown:
        raise Refused(f"CRM roles: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not in the role mapping; "
                      f"use {', '.join(sorted(kb.roles.crm_roles))} (separated by ;), or none for the defaults.", 400)
    data = {"decision": request.form.get("decision"), "user_id": user_id,
            "account_id": (request.form.get("account_id") or "").strip() or None, "roles": roles}
    if data["decision"] == "approved" and not data["account_id"]:
        raise Refused("Account: choose the account the person joins.", 400)
    if data["decision"] == "rejected":
        data.pop("account_id"), data.pop("roles")
    try:
        loaded = RegistrationDecidedSchema().load(data)
    except ValidationError as exc:
        fields_ = "; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in exc.messages.items())
        raise Refused(f"The decision is not valid ({fields_}).", 400) from None
    with kb.db.session() as session:
        reg = session.get(SelfRegistration, user_id)
        email = reg.email if reg else user_id
        if reg is None or reg.status != "pending":
            raise Refused(f"{email} is not waiting for a decision (any more); reload the page.", 409)
    actor = _actor(operator)
    raw = {k: v for k, v in loaded.items() if v is not None}
    event_id = inbox.store_operator_event(kb.db, "registration.decided", raw, f"dashboard:{actor['actor']}")
    with kb.db.session() as session:
        audit.record(session, "registration.decision_requested", f"user:{user_id}", f"operator {actor['actor']} (dashboard)",
                     {**actor, "decision": loaded["decision"], "account_id": loaded.get("account_id"),
                      "roles": loaded.get("roles") or [], "event_id": event_id})
    flash(f"{email}: {'approval' if loaded['decision'] == 'approved' else 'rejection'} queued; it takes effect within seconds.")
    return redirect(url_for("dashboard.home"))


@bp.post("/dead-letters/<kind>/<item_id>/replay")
def replay(kind: str, item_id: str):
    web_login.require_csrf()
    operator = _operator()
    if operator is None:
        return redirect(url_for("dashboard.login"))
    try:
        dead_letters.replay(_kb().db, kind, item_id, actor=_actor(operator))
    except ApiError as exc:
        raise Refused(exc.message, exc.code) from None
    flash(f"{'Job' if kind == 'job' else 'Outbound event'} {item_id} is queued again.")
    return redirect(url_for("dashboard.home"))
