"""The operator dashboard: its funnel numbers, who may see it, and its actions, through Flask's test client.

Keycloak is faked at its boundary (tests/unit/fakes.py); invitations, registrations and logins
arrive the real way (signed webhooks, Keycloak's event log read by the worker).
"""
from __future__ import annotations

import re
import time
from dataclasses import replace
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update

from adapter import create_app
from adapter.config import ConfigError
from adapter.dashboard import funnel
from adapter.db import utcnow
from adapter.keycloak_events import CURSOR
from adapter.models import AuditEntry, Cursor, DailyLogin, InboundEvent, Invitation, Job
from tests.unit.fakes import deliver, drain

ACME = {"account_id": "A-1", "name": "Acme", "domains": ["acme.example"], "contract": {"status": "active"}}
GLOBEX = {"account_id": "A-2", "name": "Globex", "domains": ["globex.example"], "contract": {"status": "active"}}
DAY_MS = 86_400_000


def invite(client, worker, contact_id: str, email: str, account_id: str) -> None:
    deliver(client, worker, "contact.invite_requested", {"contact_id": contact_id, "email": email, "account_id": account_id,
                                                         "first_name": "F", "last_name": "L", "roles": ["Buyer"]})


def register(keycloak, worker, email: str) -> str:
    (invitation,) = keycloak.pending_invitations(email)
    user_id, _ = keycloak.register_invited_user(invitation["id"])
    drain(worker)
    return user_id


def login(keycloak, user_id: str, days_ago: int = 0) -> None:
    keycloak.add_event("LOGIN", user_id, {"username": user_id}, time_ms=int(time.time() * 1000) - days_ago * DAY_MS)


@pytest.fixture
def world(client, worker, kb, keycloak):
    """Acme: 3 invited, 2 registered (one logs in twice today, once yesterday; one never); Globex: 1 invited,
    registered, logged in 3 days ago; a lead invited; a self-registration at an unknown domain; an operator logs in."""
    for account in (ACME, GLOBEX):
        deliver(client, worker, "account.upserted", account)
    invite(client, worker, "C-1", "ann@acme.example", "A-1")
    invite(client, worker, "C-2", "bea@acme.example", "A-1")
    invite(client, worker, "C-3", "cid@acme.example", "A-1")
    invite(client, worker, "C-4", "gus@globex.example", "A-2")
    deliver(client, worker, "lead.invite_requested", {"lead_id": "L-1", "email": "lee@corp.example", "first_name": "Lee"})
    ann, bea = register(keycloak, worker, "ann@acme.example"), register(keycloak, worker, "bea@acme.example")
    gus = register(keycloak, worker, "gus@globex.example")
    stranger = keycloak.add_user("sol@unknown.example", "Sol", "Self", password=True)
    keycloak.add_event("REGISTER", stranger, {"email": "sol@unknown.example", "register_method": "form"})
    operator = keycloak.add_user("ops@keybridge.example", password=True)
    for user_id, days_ago in ((ann, 0), (ann, 0), (ann, 1), (gus, 3), (operator, 0)):
        login(keycloak, user_id, days_ago)
    with kb.db.session() as session:  # Keycloak's log is read from its beginning again (events already taken are skipped),
        session.get(Cursor, CURSOR).position = {"time_ms": 0, "floor_ms": 0}  # so the logins dated days ago are read too
    drain(worker)
    return {"ann": ann, "bea": bea, "gus": gus, "stranger": stranger, "operator": operator}


# -- the numbers ------------------------------------------------------------------------------

def test_the_funnel_counts_invited_registered_and_active_per_day_overall_and_per_account(kb, world):
    today = utcnow().date()
    numbers = funnel.compute(kb.db, 7)

    assert (numbers.start, numbers.end) == (today - timedelta(days=6), today)
    # Overall: 5 invitations (4 contacts, 1 lead); 3 accepted + 1 self-registration; ann and gus logged in
    # (the operator is nobody Keybridge invited or registered, so not part of the funnel).
    assert numbers.overall.totals == {"invited": 5, "registered": 4, "active": 2}
    assert numbers.accounts["A-1"].totals == {"invited": 3, "registered": 2, "active": 1}
    assert numbers.accounts["A-2"].totals == {"invited": 1, "registered": 1, "active": 1}
    assert set(numbers.accounts) == {"A-1", "A-2"}  # the lead and the unmatched registration have no account
    assert numbers.names == {"A-1": "Acme", "A-2": "Globex"}

    by_day = {day: (invited, registered, active) for day, invited, registered, active in numbers.overall.rows()}
    assert by_day[today] == (5, 4, 1)  # ann twice today: one active person
    assert by_day[today - timedelta(days=1)] == (0, 0, 1)
    assert by_day[today - timedelta(days=3)] == (0, 0, 1)
    assert numbers.accounts["A-2"].per_day["active"][-4:] == [1, 0, 0, 0]


def test_daily_logins_are_counted_once_per_event_even_when_the_log_is_read_again(kb, keycloak, worker, world):
    with kb.db.session() as session:
        before = {(r.day, r.user_id): r.logins for r in session.scalars(select(DailyLogin))}
    drain(worker)  # the overlap re-read of the event log takes nothing twice
    with kb.db.session() as session:
        after = {(r.day, r.user_id): r.logins for r in session.scalars(select(DailyLogin))}
    assert after == before
    assert before[(utcnow().date(), world["ann"])] == 2


def test_only_the_period_counts(kb, world):
    with kb.db.session() as session:
        session.execute(update(Invitation).where(Invitation.crm_id == "C-3").values(sent_at=utcnow() - timedelta(days=40)))
    assert funnel.compute(kb.db, 30).accounts["A-1"].totals["invited"] == 2
    assert funnel.compute(kb.db, 90).accounts["A-1"].totals["invited"] == 3
    assert funnel.compute(kb.db, 7).accounts["A-2"].totals["active"] == 1
    assert funnel.compute(kb.db, 7, today=utcnow().date() + timedelta(days=5)).accounts["A-2"].totals["active"] == 0


def test_the_chart_says_its_numbers_in_words(client, kb, keycloak, world):
    client_csrf = sign_in(client, keycloak, world["operator"], operator=True)
    assert client_csrf
    page = client.get("/dashboard/?days=7").get_data(as_text=True)
    svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    assert 'role="img"' in svg and "<title id=\"funnel-chart-title\">Funnel per day, All accounts, last 7 days</title>" in svg
    assert "5 invited, 4 registered, 2 active." in svg
    assert f'data-day="{utcnow().date().isoformat()}" data-value="5"' in svg
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
    globex = client.get("/dashboard/?days=7&account=A-2").get_data(as_text=True)
    assert "Funnel per day, Globex, last 7 days" in globex and "1 invited, 1 registered, 1 active." in globex


# -- who may see it ---------------------------------------------------------------------------

def sign_in(client, keycloak, user_id: str, operator: bool = False) -> str:
    """Log in through the dashboard (Keycloak's side faked); returns the page's CSRF token."""
    if operator:
        keycloak.ensure_realm_roles(user_id, {"keybridge-operator"})
    location = client.get("/dashboard/login").headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert query["client_id"] == ["keybridge-portal"] and query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == ["http://localhost/dashboard/callback"]
    r = client.get(f"/dashboard/callback?state={query['state'][0]}&code={keycloak.login_code_for(user_id)}")
    assert r.status_code == 302 and r.headers["Location"] == "/dashboard/"
    with client.session_transaction() as session:
        return session["csrf"]


def test_nobody_signed_in_is_sent_to_the_login(client):
    r = client.get("/dashboard/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/dashboard/login?next=/dashboard/")


def test_an_operator_sees_the_dashboard(client, keycloak, world):
    sign_in(client, keycloak, world["operator"], operator=True)
    page = client.get("/dashboard/").get_data(as_text=True)
    for heading in ("Funnel: invited, registered, active", "Registrations waiting for approval (1)", "Dead letters (0)",
                    "Invitation batches", "Recent changes (audit)"):
        assert heading in page
    assert "sol@unknown.example" in page and "Signed in as ops@keybridge.example" in page


def test_an_org_admin_is_refused_and_losing_the_role_closes_the_page_at_once(client, keycloak, world):
    sign_in(client, keycloak, world["ann"])
    keycloak.ensure_realm_roles(world["ann"], {"org_admin"})
    r = client.get("/dashboard/")
    assert r.status_code == 403 and "realm role keybridge-operator" in r.get_data(as_text=True)

    other = client.application.test_client()
    sign_in(other, keycloak, world["operator"], operator=True)
    assert other.get("/dashboard/").status_code == 200
    keycloak.user_roles[world["operator"]].discard("keybridge-operator")
    assert other.get("/dashboard/").status_code == 403
    keycloak.group_roles = {"operators": {"keybridge-operator"}}  # the role through a group counts too
    keycloak.user_groups = {world["operator"]: {"operators"}}
    assert other.get("/dashboard/").status_code == 200


def test_a_bad_period_is_refused_naming_the_choices(client, keycloak, world):
    sign_in(client, keycloak, world["operator"], operator=True)
    r = client.get("/dashboard/?days=5")
    assert r.status_code == 400 and "days must be one of 7, 30, 90" in r.get_data(as_text=True)


def test_without_a_session_secret_the_pages_do_not_start_and_the_error_names_both_switches(settings):
    with pytest.raises(ConfigError, match="KEYBRIDGE_PORTAL_ENABLED=false and KEYBRIDGE_DASHBOARD_ENABLED=false"):
        create_app({"KEYBRIDGE_SETTINGS": replace(settings, session_secret="", portal_enabled=False), "TESTING": True})


# -- actions ----------------------------------------------------------------------------------

def test_approving_from_the_page_goes_the_operator_apis_way_and_is_audited_with_the_operator(client, kb, keycloak, worker, world):
    csrf = sign_in(client, keycloak, world["operator"], operator=True)
    stranger = world["stranger"]

    refused = client.post(f"/dashboard/registrations/{stranger}/decision", data={"decision": "approved", "account_id": "A-2"})
    assert refused.status_code == 400 and "out of date" in refused.get_data(as_text=True)
    wrong_role = client.post(f"/dashboard/registrations/{stranger}/decision",
                             data={"csrf": csrf, "decision": "approved", "account_id": "A-2", "roles": "Buyer; Wizard"})
    assert wrong_role.status_code == 400 and "CRM roles: Wizard is not in the role mapping" in wrong_role.get_data(as_text=True)
    no_account = client.post(f"/dashboard/registrations/{stranger}/decision", data={"csrf": csrf, "decision": "approved"})
    assert no_account.status_code == 400 and no_account.get_data(as_text=True).count("Account: choose") == 1

    r = client.post(f"/dashboard/registrations/{stranger}/decision",
                    data={"csrf": csrf, "decision": "approved", "account_id": "A-2", "roles": "Buyer"})
    assert r.status_code == 302
    with kb.db.session() as session:
        (event,) = session.scalars(select(InboundEvent).where(InboundEvent.source == "operator")).all()
        assert event.payload["data"] == {"decision": "approved", "user_id": stranger, "account_id": "A-2", "roles": ["Buyer"]}
        assert event.payload["operator"] == "dashboard:ops@keybridge.example"
        requested = session.scalar(select(AuditEntry).where(AuditEntry.action == "registration.decision_requested"))
        assert (requested.subject, requested.cause) == (f"user:{stranger}", "operator ops@keybridge.example (dashboard)")
        assert requested.details["actor_user_id"] == world["operator"] and requested.details["event_id"] == event.id
    drain(worker)
    assert "buyer" in keycloak.user_realm_roles(stranger)
    assert "Registrations waiting for approval (0)" in client.get("/dashboard/").get_data(as_text=True)
    again = client.post(f"/dashboard/registrations/{stranger}/decision", data={"csrf": csrf, "decision": "rejected"})
    assert again.status_code == 409 and "not waiting for a decision" in again.get_data(as_text=True)


def test_replaying_a_dead_letter_from_the_page_requeues_it_once_and_audits_the_operator(client, kb, keycloak, worker, world):
    csrf = sign_in(client, keycloak, world["operator"], operator=True)
    with kb.db.session() as session:
        job = session.scalar(select(Job).where(Job.kind == "inbound_event").order_by(Job.id))
        job.status, job.last_error = "dead", "RetryableError: Keycloak was down for a day"
        job_id = job.id
    page = client.get("/dashboard/").get_data(as_text=True)
    assert "Dead letters (1)" in page and "Keycloak was down for a day" in page

    r = client.post(f"/dashboard/dead-letters/job/{job_id}/replay", data={"csrf": csrf})
    assert r.status_code == 302
    with kb.db.session() as session:
        assert session.get(Job, job_id).status == "queued"
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "dead_letter.replayed"))
        assert (entry.subject, entry.cause, entry.details["actor_user_id"]) == (
            f"job:{job_id}", "operator ops@keybridge.example (dashboard)", world["operator"])
    twice = client.post(f"/dashboard/dead-letters/job/{job_id}/replay", data={"csrf": csrf})
    assert twice.status_code == 409 and "not dead" in twice.get_data(as_text=True)
    assert client.post("/dashboard/dead-letters/job/x/replay", data={"csrf": csrf}).status_code == 404
    assert client.post(f"/dashboard/dead-letters/job/{job_id}/replay", data={"csrf": "forged"}).status_code == 400
    drain(worker)
    with kb.db.session() as session:
        assert session.get(Job, job_id).status == "done"
