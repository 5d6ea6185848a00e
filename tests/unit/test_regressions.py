"""Regressions: behaviours the adapter once got wrong, each found by a unit test before its fix."""
from __future__ import annotations

from dataclasses import replace

import pytest
import responses

from adapter import outbox
from adapter.roles import RoleMapping
from adapter.runtime import Keybridge
from tests.unit.fakes import drain, deliver
from tests.unit.fakes import all_jobs, invitation_row, make_everything_due, outbox_events

ACCOUNT = {"account_id": "A-1", "name": "Acme Corporation", "domains": ["acme.example"], "contract": {"status": "none"}}
INVITE = {"contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1", "roles": ["Buyer"]}
LEAD = {"lead_id": "L-1", "email": "lee@corp.example", "first_name": "Lee"}
CRM_URL = "https://crm.example/keybridge/events"
CRM_SECRET = "whsec_" + "Y3JtLWV2ZW50cy1zZWNyZXQtZm9yLXRoZS1vdXRib3g="


@pytest.fixture
def kb(settings, keycloak):
    kb = Keybridge(replace(settings, crm_events_url=CRM_URL, crm_events_secret=CRM_SECRET), keycloak=keycloak)
    yield kb
    kb.db.dispose()


# -- adapter/handlers/invitations.py: invite_lead -------------------------------------------

def test_a_lead_whose_invitation_email_failed_to_send_gets_it_on_the_retry(client, kb, keycloak, worker):
    """-> test_invitations.py. Bug: invite_lead sets status 'sending' before send_actions_email; when that call
    fails (Keycloak 503/down) the retry sees 'sending' and returns 'pending': the email is never sent."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as crm:
        crm.post(CRM_URL, status=200)
        keycloak.fail_next("send_actions_email")  # Keycloak answered 503: no email left
        deliver(client, worker, "lead.invite_requested", LEAD)
        assert keycloak.emails == [] and all_jobs(kb)[0].status == "queued"

        make_everything_due(kb)
        drain(worker)

    assert [m["kind"] for m in keycloak.emails_to("lee@corp.example")] == ["actions"]
    assert len(outbox_events(kb, "invitation.sent")) == 1


# -- adapter/handlers/invitations.py: invite_contact ----------------------------------------

def test_a_contact_removed_from_the_organization_can_be_invited_again(client, kb, keycloak, worker):
    """-> test_invitations.py. Bug: once the invitation row is 'accepted', invite_contact returns 'accepted'
    even when the user is no longer a member, so nothing is ever sent again (not even with resend)."""
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested", INVITE)
    (invitation,) = keycloak.pending_invitations()
    user_id, _ = keycloak.register_invited_user(invitation["id"])
    drain(worker)
    keycloak.members[invitation["organizationId"]].discard(user_id)  # an org admin removed her in Keycloak

    deliver(client, worker, "contact.invite_requested", {**INVITE, "resend": True})

    assert [m["kind"] for m in keycloak.emails_to("jane@acme.example")] == ["org_invite", "org_invite_existing"]


def test_after_an_invitation_expired_the_new_one_is_the_one_recorded(client, kb, keycloak, worker):
    """-> test_invitations.py. Bug: after sending, invite_contact stores fresh[0]['id'], the first invitation
    Keycloak lists for the email, which may be the expired one; a REGISTER carrying the new token_id is then
    only recognised through the email fallback."""
    deliver(client, worker, "account.upserted", ACCOUNT)
    deliver(client, worker, "contact.invite_requested", INVITE)
    (old,) = keycloak.pending_invitations()
    keycloak.invitations[old["id"]]["status"] = "EXPIRED"

    deliver(client, worker, "contact.invite_requested", INVITE)
    (new,) = keycloak.pending_invitations()

    assert new["id"] != old["id"]
    assert invitation_row(kb, "contact", "C-1").keycloak_invitation_id == new["id"]


# -- adapter/outbox.py: deliver_due ---------------------------------------------------------

def test_while_an_event_waits_for_its_retry_the_events_after_it_are_not_sent_ahead_of_it(kb, worker):
    """-> test_outbox.py. Bug: deliver_due only stops at a failing event within one pass; on the next pass the
    failing event is not due yet (backoff) and is not selected, so later events are delivered before it."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as crm:
        crm.post(CRM_URL, status=503)
        crm.post(CRM_URL, status=200)
        with kb.db.session() as s:
            outbox.record(s, "invitation.sent", {"contact_id": "C-1"}, "k1")
            outbox.record(s, "invitation.accepted", {"contact_id": "C-1"}, "k2")
        first, second = (e.id for e in outbox_events(kb))

        worker.run_once()  # first: 503, retry in 2 s
        worker.run_once()  # before that retry is due

        assert [c.request.headers["webhook-id"] for c in crm.calls] == [first]


# -- adapter/api.py + adapter/dead_letters.py: replay ----------------------------------------

def test_replaying_a_job_id_that_is_not_a_number_is_not_found(client):
    """-> test_operator_api.py. Bug: dead_letters.replay does int(item_id) inside the try that maps ValueError
    to 409, so /api/dead-letters/job/abc/replay answers 409 "invalid literal for int()"."""
    r = client.post("/api/dead-letters/job/abc/replay", headers={"Authorization": "Bearer op-token"})
    assert r.status_code == 404


# -- adapter/roles.py: RoleMapping.load ------------------------------------------------------

def test_a_malformed_role_mapping_names_the_file(tmp_path):
    """-> test_config_and_roles.py. Bug: RoleMapping.load lets json.JSONDecodeError through, so the start-up
    error says 'Expecting ...: line 1 column 14' without naming the file (its docstring promises it does)."""
    path = tmp_path / "role-mapping.json"
    path.write_text('{"crm_roles": {"Buyer": ["buyer"],}}')
    with pytest.raises(ValueError) as error:
        RoleMapping.load(path)
    assert str(path) in str(error.value)
