"""A Keycloak fact about a person linked to a CRM contact converges that contact in the contact's order: behind the
contact's own pending events (ordering key `contact:<id>`), never beside them under the person's key (`user:<id>`)."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from adapter.db import utcnow
from adapter.models import Job
from tests.unit.fakes import drain, outbox_events
from tests.unit.test_desired_state import INVITE, acme, deliver_at, has_access, post_at  # noqa: F401 (acme: a fixture)


def jobs_of(kb, kind: str) -> list[Job]:
    with kb.db.session() as session:
        return list(session.scalars(select(Job).where(Job.kind == kind).order_by(Job.id)))


def test_a_registration_converges_the_contact_behind_the_contacts_pending_event(client, kb, keycloak, worker, acme):
    deliver_at(client, worker, "contact.invite_requested", INVITE, "2026-11-22T10:00:00Z")
    (invitation,) = keycloak.pending_invitations()
    # The CRM changed the contact; its event waits for a retry (Keycloak was busy) when the registration is read.
    post_at(client, "contact.upserted", {**INVITE, "roles": ["Buyer", "Technical Contact"]}, "2026-11-22T10:05:00Z")
    with kb.db.session() as session:
        (waiting,) = session.scalars(select(Job).where(Job.kind == "inbound_event", Job.status == "queued"))
        waiting.run_at = utcnow() + timedelta(hours=1)
        waiting_key = waiting.ordering_key
    assert waiting_key == "contact:C-1"
    user_id, _ = keycloak.register_invited_user(invitation["id"])

    drain(worker)  # the registration is read; it is settled behind the contact's waiting event

    (settle,) = jobs_of(kb, "contact_registration")
    assert settle.ordering_key == "contact:C-1" and settle.status == "queued", \
        "the registration is settled in the contact's order, not under the person's key beside its pending event"
    assert "REGISTER" in settle.payload["cause"] and jobs_of(kb, "converge_record") == []
    assert outbox_events(kb, "identity.registered") == []

    with kb.db.session() as session:  # the retry is due: the event, the registration, then the convergence
        session.get(Job, waiting.id).run_at = utcnow()
    drain(worker)
    (event_job,) = [j for j in jobs_of(kb, "inbound_event") if j.id == waiting.id]
    (settle,), (converge,) = jobs_of(kb, "contact_registration"), jobs_of(kb, "converge_record")
    assert event_job.status == settle.status == converge.status == "done"
    assert event_job.id < settle.id and converge.ordering_key == "contact:C-1"
    assert converge.payload == {"kind": "contact", "crm_id": "C-1", "cause": converge.payload["cause"]}
    assert has_access(keycloak, user_id) and {"buyer", "technical_contact"} <= keycloak.user_roles[user_id]
    assert len(outbox_events(kb, "identity.registered")) == 1


def test_the_same_fact_read_twice_queues_one_convergence(client, kb, keycloak, worker, acme):
    from adapter.handlers import convergence

    deliver_at(client, worker, "contact.invite_requested", INVITE, "2026-11-22T10:00:00Z")
    (invitation,) = keycloak.pending_invitations()
    user_id, _ = keycloak.register_invited_user(invitation["id"])
    drain(worker)
    before = len(jobs_of(kb, "converge_record"))
    assert convergence.converge_person(kb, user_id, "keycloak event e-1 (VERIFY_EMAIL)") == "contact_convergence_queued"
    assert convergence.converge_person(kb, user_id, "keycloak event e-1 (VERIFY_EMAIL)") == "contact_convergence_queued"
    assert len(jobs_of(kb, "converge_record")) == before + 1
