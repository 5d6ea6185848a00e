"""Property: whatever the order, repetition and delay of a set of CRM events, Keycloak ends in the
state of the newest event per record.

Real webhook endpoint, inbox, queue, handlers and worker; Keycloak faked at its boundary.
Hypothesis chooses, per record, a few successive states with distinct CRM times, then the
order they are delivered in, which are delivered twice (the same webhook-id again, or the
CRM retrying with a new one), where the worker runs in between, and when Keycloak is down.
"""
from __future__ import annotations

import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from adapter import create_app
from adapter.config import Settings
from adapter.worker import Worker
from tests.conftest import SECRET, SESSION_SECRET, signed_post
from tests.unit.fakes import FakeKeycloak, drain, make_everything_due

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
CONTACTS = ("C-1", "C-2")
# A database per example: in memory-backed storage where there is one (fsyncs dominate otherwise).
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None
ROLE_CHOICES = (["Buyer"], ["Technical Contact"], ["Buyer", "Billing Contact"])


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


account_state = st.fixed_dictionaries({"status": st.sampled_from(["active", "suspended", "expired"]),
                                       "name": st.sampled_from(["Acme", "Acme Corporation"])})
contact_state = st.fixed_dictionaries({"status": st.sampled_from(["active", "left"]),
                                       "first_name": st.sampled_from(["Jane", "Janet"]),
                                       "roles": st.sampled_from(ROLE_CHOICES)})


@st.composite
def histories(draw):
    """Per record 1-3 successive states at distinct CRM times (minutes after T0), as webhook bodies."""
    minutes = iter(draw(st.lists(st.integers(1, 500), min_size=9, max_size=9, unique=True)))
    events = []
    for state in draw(st.lists(account_state, min_size=1, max_size=3)):
        events.append((next(minutes), "account.upserted", {
            "account_id": "A-1", "name": state["name"], "contract": {"status": state["status"]}}))
    for contact_id in CONTACTS:
        for state in draw(st.lists(contact_state, min_size=1, max_size=3)):
            events.append((next(minutes), "contact.upserted", {
                "contact_id": contact_id, "email": f"{contact_id.lower()}@acme.example", "account_id": "A-1",
                "first_name": state["first_name"], "roles": state["roles"], "status": state["status"]}))
    return events


@st.composite
def deliveries(draw):
    """The events, then how they reach the adapter: order, repeats, worker passes and Keycloak outages."""
    events = draw(histories())
    order = draw(st.permutations(range(len(events))))
    plan = []
    for index in order:
        plan.append(("post", index, "first"))
        repeat = draw(st.sampled_from([None, None, "same_id", "new_id"]))
        if repeat:
            plan.append(("post", index, repeat))
        step = draw(st.sampled_from([None, None, "run", "run_while_down"]))
        if step:
            plan.append((step, None, None))
    return events, plan


def newest(events, event_type, key, value):
    mine = [e for e in events if e[1] == event_type and e[2][key] == value]
    return max(mine, key=lambda e: e[0])[2]


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries())
def test_keycloak_ends_in_the_state_of_the_newest_event_per_record(case):
    events, plan = case
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        settings = Settings.from_env({}, database_url=f"sqlite:///{Path(tmp) / 'kb.db'}", webhook_secrets=[SECRET], session_secret=SESSION_SECRET)
        app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
        kb = app.extensions["keybridge"]
        keycloak = kb.keycloak = FakeKeycloak()
        worker, client = Worker(kb), app.test_client()
        try:
            # Before the story: the account exists (oldest state) and both contacts registered earlier.
            signed_post(client, {"type": "account.upserted", "timestamp": iso(T0),
                                 "data": {"account_id": "A-1", "name": "Acme", "contract": {"status": "active"}}})
            drain(worker)
            (org_id,) = keycloak.organizations
            people = {}
            for contact_id in CONTACTS:
                people[contact_id] = keycloak.add_user(f"{contact_id.lower()}@acme.example", "J", "D", password=True,
                                                       crm_contact_id=[contact_id])
                keycloak.members[org_id].add(people[contact_id])
                keycloak.user_roles[people[contact_id]] |= {"offline_access"}  # not a business role: never touched

            ids = {}
            for step, index, how in plan:
                if step == "post":
                    minute, event_type, data = events[index]
                    webhook_id = ids.get(index) if how == "same_id" else None
                    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
                    ids.setdefault(index, webhook_id)
                    body = {"type": event_type, "timestamp": iso(T0 + timedelta(minutes=minute)), "data": data}
                    assert signed_post(client, body, webhook_id=webhook_id).status_code in (200, 202)
                elif step == "run":
                    worker.run_once()
                else:
                    keycloak.down = True
                    worker.run_once()
                    keycloak.down = False
            for _ in range(20):  # delays end: every retry comes due
                make_everything_due(kb)
                if not worker.run_once():
                    break
            drain(worker)

            account = newest(events, "account.upserted", "account_id", "A-1")
            org = keycloak.organizations[org_id]
            assert org["attributes"]["contract_status"] == [account["contract"]["status"]]
            assert org["name"] == account["name"]
            for contact_id, user_id in people.items():
                contact = newest(events, "contact.upserted", "contact_id", contact_id)
                user = keycloak.users[user_id]
                assert user["attributes"]["crm_status"] == [contact["status"]], contact_id
                if contact["status"] == "left":
                    assert user["enabled"] is False and not keycloak.can_log_in(user_id), f"{contact_id} left: no access"
                    assert user_id not in keycloak.members[org_id]
                else:
                    assert user_id in keycloak.members[org_id]
                    assert keycloak.can_log_in(user_id) is (account["contract"]["status"] == "active"), contact_id
                    assert user["enabled"] is True, "a contract never touches the flag"
                    assert user["firstName"] == contact["first_name"]
                    assert keycloak.user_roles[user_id] == kb.roles.business_roles_for(contact["roles"]) | {"offline_access"}
        finally:
            kb.db.dispose()


class KeycloakWithManagedMembers(FakeKeycloak):
    """As Keycloak 26.7.3 does: registering through an organization invitation makes a MANAGED member,
    and removing a managed member deletes the user."""

    def register_invited_user(self, invitation_id, first_name="Jane", last_name="Doe"):
        org_id = self.invitations[invitation_id]["organizationId"]
        user_id, event = super().register_invited_user(invitation_id, first_name, last_name)
        self.members[org_id].add(user_id)
        self.managed_members.add((org_id, user_id))
        return user_id, event

    def remove_member(self, org_id, user_id):
        super().remove_member(org_id, user_id)
        if (org_id, user_id) in self.managed_members:
            self.managed_members.discard((org_id, user_id))
            self.users.pop(user_id, None)
            self.user_roles.pop(user_id, None)


@st.composite
def invitation_stories(draw):
    """Invitation requests and departures of one contact at distinct CRM times, delivered in any order,
    some twice, with the person registering through whatever link is open at some moment."""
    minutes = draw(st.lists(st.integers(1, 500), min_size=1, max_size=4, unique=True))
    events = [(m, draw(st.sampled_from(["invite", "left"]))) for m in minutes]
    order = draw(st.permutations(range(len(events))))
    plan = []
    for index in order:
        plan.append(("post", index))
        if draw(st.booleans()):
            plan.append(("post", index))
        plan.append(draw(st.sampled_from([("none", None), ("run", None), ("register", None)])))
    return events, plan


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invitation_stories())
def test_a_contact_who_left_last_has_no_access_and_no_open_link_whatever_the_order(story):
    events, plan = story
    email = "c-3@acme.example"
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        settings = Settings.from_env({}, database_url=f"sqlite:///{Path(tmp) / 'kb.db'}", webhook_secrets=[SECRET], session_secret=SESSION_SECRET)
        app = create_app({"KEYBRIDGE_SETTINGS": settings, "TESTING": True})
        kb = app.extensions["keybridge"]
        keycloak = kb.keycloak = KeycloakWithManagedMembers()
        worker, client = Worker(kb), app.test_client()
        try:
            signed_post(client, {"type": "account.upserted", "timestamp": iso(T0),
                                 "data": {"account_id": "A-1", "name": "Acme", "contract": {"status": "active"}}})
            drain(worker)
            (org_id,) = keycloak.organizations
            for step, index in plan:
                if step == "post":
                    minute, kind = events[index]
                    body = {"type": "contact.invite_requested" if kind == "invite" else "contact.upserted",
                            "timestamp": iso(T0 + timedelta(minutes=minute)),
                            "data": {"contact_id": "C-3", "email": email, "account_id": "A-1", "roles": ["Buyer"]}
                            if kind == "invite" else {"contact_id": "C-3", "email": email, "status": "left"}}
                    assert signed_post(client, body).status_code == 202
                elif step == "run":
                    worker.run_once()
                elif step == "register" and keycloak.pending_invitations(email):
                    keycloak.register_invited_user(keycloak.pending_invitations(email)[0]["id"])
            for _ in range(20):
                make_everything_due(kb)
                if not worker.run_once():
                    break
            drain(worker)

            newest = max(events)[1]
            user = keycloak.find_user_by_email(email)
            member = user is not None and user["id"] in keycloak.members[org_id]
            if newest == "left":
                assert keycloak.pending_invitations(email) == [], "no link left open"
                assert user is None or (not keycloak.can_log_in(user["id"]) and not member), "no access"
            else:
                registered = user is not None and member and keycloak.can_log_in(user["id"])
                assert registered or keycloak.pending_invitations(email), "invited: a link is open or they are in"
                if registered:
                    assert "buyer" in keycloak.user_roles[user["id"]]
                    assert user["attributes"].get("crm_status") == ["active"]
        finally:
            kb.db.dispose()
