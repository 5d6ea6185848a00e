"""What admins do in Keycloak reaches the CRM as membership.changed, read from the admin event log once.

The in-memory Keycloak records admin events the way Keycloak does (`admin_maps_roles`,
`admin_changes_membership`); the worker reads them with its own durable cursor.
"""
from __future__ import annotations

import pytest

from adapter import admin_events
from adapter.worker import Worker
from adapter.models import Cursor
from adapter.runtime import Keybridge
from tests.unit.fakes import drain, deliver
from tests.unit.fakes import all_jobs, outbox_events

ACME = {"account_id": "A-1", "name": "Acme", "domains": ["acme.example"], "contract": {"status": "active"},
        "admin_contact": {"contact_id": "C-ADM", "email": "ada@acme.example"}}


@pytest.fixture
def settings(settings):
    settings.events_poll_seconds = 0.0
    return settings


def register(keycloak, worker, email: str) -> str:
    (invitation,) = keycloak.pending_invitations(email)
    user_id, _ = keycloak.register_invited_user(invitation["id"])
    drain(worker)
    return user_id


@pytest.fixture
def acme(client, keycloak, worker) -> dict:
    deliver(client, worker, "account.upserted", ACME)
    ada = register(keycloak, worker, "ada@acme.example")
    deliver(client, worker, "contact.invite_requested", {"contact_id": "C-1", "email": "bob@acme.example",
                                                          "account_id": "A-1", "roles": ["Buyer"]})
    bob = register(keycloak, worker, "bob@acme.example")
    (org,) = keycloak.organizations.values()
    return {"org": org["id"], "ada": ada, "bob": bob}


def changes(kb) -> list[dict]:
    return [e.data for e in outbox_events(kb, "membership.changed")]


def test_an_org_admin_giving_a_business_role_is_told_with_the_roles_now_and_the_actor(kb, keycloak, worker, acme):
    keycloak.admin_maps_roles(acme["ada"], acme["bob"], {"technical_contact"})
    drain(worker)
    assert changes(kb) == [{"account_id": "A-1", "user_id": acme["bob"], "contact_id": "C-1", "change": "roles_changed",
                            "roles": ["buyer", "technical_contact"], "actor": "ada@acme.example", "actor_user_id": acme["ada"]}]


def test_taking_the_last_business_role_is_told_with_no_roles(kb, keycloak, worker, acme):
    keycloak.admin_maps_roles(acme["ada"], acme["bob"], {"buyer"}, add=False)
    drain(worker)
    (change,) = changes(kb)
    assert (change["change"], change["roles"]) == ("roles_changed", [])


def test_each_admin_event_is_told_once_across_rereads_and_a_restart(settings, kb, keycloak, worker, acme):
    keycloak.admin_maps_roles(acme["ada"], acme["bob"], {"billing_admin"})
    drain(worker)
    assert admin_events.poll(kb) == 0  # inside the overlap: read again, taken already
    drain(worker)
    kb.db.dispose()
    restarted = Keybridge(settings, keycloak=keycloak)
    drain(Worker(restarted))
    assert len(changes(restarted)) == 1
    assert len(all_jobs(restarted, admin_events.JOB_KIND)) == 1
    restarted.db.dispose()


def test_role_changes_the_adapter_made_itself_or_of_other_roles_are_not_told(kb, keycloak, worker, acme):
    keycloak.admin_maps_roles(keycloak.SERVICE_ACCOUNT_ID, acme["bob"], {"billing_admin"})  # e.g. contact.upserted
    keycloak.admin_maps_roles(acme["ada"], acme["bob"], {"lead"})
    drain(worker)
    assert changes(kb) == []


def test_roles_of_someone_in_no_crm_organization_are_not_told(kb, keycloak, worker, acme):
    lee = keycloak.add_user("lee@prospect.example")
    keycloak.admin_maps_roles(acme["ada"], lee, {"member"})
    drain(worker)
    assert changes(kb) == []


def test_someone_made_org_admin_in_the_console_gets_the_delegated_permissions(kb, keycloak, worker, acme):
    assert not keycloak.grants(acme["bob"], "Users", acme["ada"], "view")
    keycloak.admin_maps_roles("realm-admin", acme["bob"], {"org_admin"})
    drain(worker)
    assert keycloak.grants(acme["bob"], "Users", acme["ada"], "view")
    keycloak.admin_maps_roles("realm-admin", acme["bob"], {"org_admin"}, add=False)
    drain(worker)
    assert not keycloak.grants(acme["bob"], "Users", acme["ada"], "view")


def test_a_member_removed_by_an_admin_is_told_loses_business_roles_and_visibility(kb, keycloak, worker, acme):
    keycloak.admin_changes_membership("realm-admin-in-master", acme["org"], acme["bob"], add=False)
    drain(worker)
    (change,) = changes(kb)
    assert (change["change"], change["user_id"], change["roles"], change["actor"]) == \
        ("removed", acme["bob"], [], "keycloak-admin:realm-admin-in-master")
    assert keycloak.user_roles[acme["bob"]] & {"buyer", "member"} == set()
    assert not keycloak.grants(acme["ada"], "Users", acme["bob"], "view")


def test_a_member_added_by_an_admin_is_told_and_becomes_visible_to_the_org_admins(kb, keycloak, worker, acme):
    cy = keycloak.add_user("cy@acme.example")
    keycloak.admin_changes_membership(acme["ada"], acme["org"], cy)
    drain(worker)
    assert [(c["change"], c["user_id"], c["actor"]) for c in changes(kb)] == [("added", cy, "ada@acme.example")]
    assert keycloak.grants(acme["ada"], "Users", cy, "view")


def test_memberships_the_adapter_changed_update_permissions_but_tell_nothing_more(kb, keycloak, worker, acme):
    cy = keycloak.add_user("cy@acme.example")
    keycloak.admin_changes_membership(keycloak.SERVICE_ACCOUNT_ID, acme["org"], cy)  # e.g. contact.upserted moved them
    drain(worker)
    assert changes(kb) == []
    assert keycloak.grants(acme["ada"], "Users", cy, "view")


def test_keycloak_down_while_reading_the_admin_log_loses_nothing(kb, keycloak, worker, acme):
    keycloak.admin_maps_roles(acme["ada"], acme["bob"], {"technical_contact"})
    keycloak.fail_next("admin_events")
    worker.run_once()
    assert changes(kb) == []
    drain(worker)
    assert [c["change"] for c in changes(kb)] == ["roles_changed"]


def test_a_busy_log_is_read_page_by_page(kb, keycloak, worker, acme):
    for _ in range(admin_events.PAGE + 3):
        keycloak.add_admin_event("UPDATE", "USER", f"users/{acme['bob']}", "someone")  # not asked for, but a page full of them
    keycloak.admin_log[:] = [dict(e, resourceType="REALM_ROLE_MAPPING") for e in keycloak.admin_log]
    keycloak.admin_maps_roles(acme["ada"], acme["bob"], {"technical_contact"})
    drain(worker)
    assert [c["change"] for c in changes(kb)] == ["roles_changed"]


def test_history_before_the_adapter_started_reading_is_not_replayed(client, settings, keycloak):
    from dataclasses import replace

    keycloak.add_admin_event("CREATE", "REALM_ROLE_MAPPING", "users/u-1/role-mappings/realm", "x", [{"name": "buyer"}], time_ms=1_000)
    kb = Keybridge(replace(settings, events_start="now"), keycloak=keycloak)
    assert admin_events.poll(kb) == 0
    with kb.db.session() as session:
        assert session.get(Cursor, admin_events.CURSOR).position["floor_ms"] > 1_000
    kb.db.dispose()


def test_a_managed_member_removed_by_an_admin_is_told_as_deleted(kb, keycloak, worker, acme):
    """Keycloak deletes a MANAGED member (one who registered through an invitation) with the membership."""
    event = keycloak.admin_changes_membership("realm-admin", acme["org"], acme["bob"], add=False)
    event["details"] = {"email": "bob@acme.example", "username": "bob@acme.example"}
    keycloak.users.pop(acme["bob"])
    drain(worker)
    (change,) = changes(kb)
    assert (change["change"], change["user_id"], change["roles"], change["identity_deleted"]) == ("removed", acme["bob"], [], True)
