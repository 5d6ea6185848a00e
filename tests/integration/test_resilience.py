"""Keycloak or the CRM down: nothing is lost, and what kept failing can be replayed."""
from __future__ import annotations

import socket

import pytest
import requests
from sqlalchemy import select

from adapter.config import Settings
from adapter.worker import Worker
from adapter.models import Job, OutboxEvent
from adapter.runtime import Keybridge
from tests.conftest import envelope, signed_post

from .conftest import run_until, wait_for_mail

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_keycloak_down_webhooks_accepted_then_processed_when_back(adapter_settings, crm, mail_dir, kc_admin, unique):
    from adapter import create_app

    down = Settings(**{**adapter_settings.__dict__, "keycloak_url": f"http://127.0.0.1:{closed_port()}"})
    app = create_app({"KEYBRIDGE_SETTINGS": down, "TESTING": True})
    client = app.test_client()
    account_id, email = f"ACC-{unique}", f"down.{unique}@down-{unique}.example"
    assert signed_post(client, envelope("account.upserted", {"account_id": account_id, "name": f"Down {unique}",
                                                             "contract": {"status": "active"}})).status_code == 202
    assert signed_post(client, envelope("contact.invite_requested", {"contact_id": f"CON-{unique}", "email": email,
                                                                     "account_id": account_id})).status_code == 202
    down_worker = Worker(app.extensions["keybridge"])
    down_worker.run_once()
    with app.extensions["keybridge"].db.session() as s:
        jobs = s.scalars(select(Job).where(Job.kind == "inbound_event")).all()
        assert jobs and all(j.status == "queued" and j.attempts >= 1 and "unreachable" in j.last_error for j in jobs[:1])
        for j in jobs:  # do not wait out the backoff in a test
            j.run_at = j.created_at
    app.extensions["keybridge"].db.dispose()

    back = Worker(Keybridge(adapter_settings))
    run_until(back, lambda: crm.of_type("invitation.sent"), what="invitation after Keycloak came back")
    assert len(wait_for_mail(mail_dir, to=email)) == 1
    assert kc_admin.organization_of(account_id) is not None


def test_crm_down_events_wait_then_go_dead_and_replay(adapter_settings, adapter, worker, crm, unique):
    from adapter import dead_letters

    crm.fail_with = 503
    client = adapter.test_client()
    signed_post(client, envelope("lead.invite_requested", {"lead_id": f"LEAD-{unique}", "email": f"x.{unique}@gmail.com"}))
    kb = adapter.extensions["keybridge"]
    run_until(worker, lambda: _outbox(kb)[0].attempts >= 1 if _outbox(kb) else None, what="a failed delivery")
    event = _outbox(kb)[0]
    assert event.status == "pending" and "503" in event.last_error and crm.events == []

    # Past the retry window it becomes a dead letter an operator can see...
    kb.settings.outbox_retry_window_seconds = 0
    with kb.db.session() as s:
        s.get(OutboxEvent, event.seq).next_attempt_at = event.created_at
    worker.run_once()
    listed = dead_letters.list_all(kb.db)
    assert [(d["kind"], d["id"]) for d in listed] == [("outbound", event.id)]

    # ...and replay once the CRM is back: delivered with the same event id.
    crm.fail_with = None
    kb.settings.outbox_retry_window_seconds = 3600
    dead_letters.replay(kb.db, "outbound", event.id)
    run_until(worker, lambda: crm.of_type("invitation.skipped"), what="replayed delivery")
    assert crm.headers[0]["webhook-id"] == event.id


def _outbox(kb):
    with kb.db.session() as s:
        return s.scalars(select(OutboxEvent).order_by(OutboxEvent.seq)).all()


def test_adapter_client_holds_only_the_roles_it_needs(keycloak):
    token = requests.post(f"{keycloak.url}/realms/{keycloak.realm}/protocol/openid-connect/token", data={
        "grant_type": "client_credentials", "client_id": keycloak.client_id, "client_secret": keycloak.client_secret}, timeout=30)
    token.raise_for_status()
    h = {"Authorization": f"Bearer {token.json()['access_token']}"}
    base = f"{keycloak.url}/admin/realms/{keycloak.realm}"
    assert requests.get(f"{base}/users", headers=h, params={"max": 1}, timeout=30).status_code == 200
    # No client administration, no other realm (realm settings: test_least_privilege.py).
    assert requests.post(f"{base}/clients", headers=h, json={"clientId": "intruder"}, timeout=30).status_code == 403
    clients = requests.get(f"{base}/clients", headers=h, params={"clientId": "customer-portal"}, timeout=30)
    if clients.status_code == 200 and clients.json():
        portal = clients.json()[0]["id"]
        assert requests.put(f"{base}/clients/{portal}", headers=h, json={**clients.json()[0], "publicClient": False},
                            timeout=30).status_code == 403
    assert requests.get(f"{keycloak.url}/admin/realms/master/users", headers=h, timeout=30).status_code in (401, 403)
    assert requests.post(f"{keycloak.url}/admin/realms", headers=h, json={"realm": "intruder"}, timeout=30).status_code in (401, 403)
