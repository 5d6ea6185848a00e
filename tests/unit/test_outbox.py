"""Identity events to the CRM: signed, at least once, in order, with dead letters an operator can replay.

The CRM endpoint is faked with `responses`; the signature is checked with the
standardwebhooks library itself, as a CRM integrator would."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
import requests
import responses
from click.testing import CliRunner
from sqlalchemy import update
from standardwebhooks.webhooks import Webhook

from adapter import outbox
from adapter.cli import main as keybridge_cli
from adapter.db import utcnow
from adapter.worker import Worker
from adapter.models import Job, OutboxEvent
from adapter.runtime import Keybridge
from tests.unit.fakes import FakeKeycloak, all_jobs, make_everything_due, outbox_events

CRM_URL = "https://crm.example/keybridge/events"
CRM_SECRET = "whsec_" + "Y3JtLWV2ZW50cy1zZWNyZXQtZm9yLXRoZS1vdXRib3g="


@pytest.fixture
def settings(settings):
    return replace(settings, crm_events_url=CRM_URL, crm_events_secret=CRM_SECRET, outbox_retry_window_seconds=3600)


@pytest.fixture
def kb(settings):
    kb = Keybridge(settings, keycloak=FakeKeycloak())
    yield kb
    kb.db.dispose()


@pytest.fixture
def crm():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def owe(kb, event_type="invitation.sent", key=None, **data) -> str:
    """Record one identity event owed to the CRM; returns its event id."""
    data = data or {"contact_id": "C-1", "email": "jane@acme.example", "account_id": "A-1"}
    with kb.db.session() as s:
        outbox.record(s, event_type, data, key or f"{event_type}:{json.dumps(data, sort_keys=True)}")
    return outbox_events(kb)[-1].id


def the_event(kb, event_id) -> OutboxEvent:
    (event,) = [e for e in outbox_events(kb) if e.id == event_id]
    return event


def posted(crm) -> list[tuple[str, dict]]:
    """(webhook-id, body) of every POST the CRM received."""
    return [(c.request.headers["webhook-id"], json.loads(c.request.body)) for c in crm.calls]


def seconds_until(when) -> float:
    return (when - utcnow()).total_seconds()


# -- delivery ---------------------------------------------------------------------------

def test_events_are_posted_to_the_crm_signed_with_its_secret(kb, worker, crm):
    crm.post(CRM_URL, status=204)
    event_id = owe(kb, "identity.registered", user_id="u-1", email="jane@acme.example", contact_id="C-1",
                   account_id="A-1", via="invitation", registered_at="2026-11-22T10:00:00Z")

    worker.run_once()

    (call,) = crm.calls
    headers = dict(call.request.headers)
    verified = Webhook(CRM_SECRET).verify(call.request.body, headers)  # raises if the signature is wrong
    assert set(verified) == {"type", "timestamp", "data"}
    assert verified["type"] == "identity.registered"
    assert verified["data"] == {"user_id": "u-1", "email": "jane@acme.example", "contact_id": "C-1", "account_id": "A-1",
                                "via": "invitation", "registered_at": "2026-11-22T10:00:00Z"}
    assert verified["timestamp"].endswith("Z")
    assert headers["webhook-id"] == event_id and event_id.startswith("evt_")
    assert headers["content-type"] == "application/json"
    event = the_event(kb, event_id)
    assert (event.status, event.attempts, event.last_error) == ("delivered", 1, None) and event.delivered_at


def test_a_signature_made_with_another_secret_does_not_verify(kb, worker, crm):
    from standardwebhooks.webhooks import WebhookVerificationError

    crm.post(CRM_URL, status=200)
    owe(kb)
    worker.run_once()
    (call,) = crm.calls
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "c29tZS1vdGhlci1zZWNyZXQtbm90LXRoZS1jcm1z").verify(call.request.body, dict(call.request.headers))


def test_the_same_fact_recorded_twice_is_owed_once(kb):
    with kb.db.session() as s:
        assert outbox.record(s, "invitation.sent", {"contact_id": "C-1"}, "invitation.sent:contact:C-1:1") is True
    with kb.db.session() as s:
        assert outbox.record(s, "invitation.sent", {"contact_id": "C-1"}, "invitation.sent:contact:C-1:1") is False
    assert len(outbox_events(kb)) == 1


def test_events_are_delivered_in_the_order_they_were_recorded(kb, worker, crm):
    crm.post(CRM_URL, status=200)
    ids = [owe(kb, "invitation.sent", contact_id=f"C-{n}") for n in range(5)]
    worker.run_once()
    assert [wid for wid, _ in posted(crm)] == ids


def test_without_a_crm_url_events_wait_in_the_outbox(settings, crm):
    kb = Keybridge(replace(settings, crm_events_url=""), keycloak=FakeKeycloak())
    owe(kb)
    Worker(kb).run_once()
    assert len(crm.calls) == 0 and [e.status for e in outbox_events(kb)] == ["pending"]
    kb.db.dispose()


# -- retries ----------------------------------------------------------------------------

def test_a_crm_answering_503_gets_the_event_again_later_with_the_same_id(kb, worker, crm):
    crm.post(CRM_URL, status=503)
    crm.post(CRM_URL, status=200)
    event_id = owe(kb)

    worker.run_once()
    event = the_event(kb, event_id)
    assert (event.status, event.attempts) == ("pending", 1)
    assert 1 <= seconds_until(event.next_attempt_at) <= 2.5
    assert "503" in event.last_error

    make_everything_due(kb)
    worker.run_once()

    first, second = posted(crm)
    assert first == second and first[0] == event_id  # same webhook-id, same body: the CRM can dedupe
    assert the_event(kb, event_id).status == "delivered"


def test_backoff_grows_with_each_failed_attempt(kb, worker, crm):
    crm.post(CRM_URL, status=502)
    event_id = owe(kb)
    delays = []
    for _ in range(3):
        worker.run_once()
        delays.append(seconds_until(the_event(kb, event_id).next_attempt_at))
        make_everything_due(kb)
    assert 1 < delays[0] <= 2 and 3 < delays[1] <= 4 and 7 < delays[2] <= 8


def test_while_an_event_fails_the_events_after_it_wait(kb, worker, crm):
    crm.post(CRM_URL, status=503)
    crm.post(CRM_URL, status=200)
    first = owe(kb, "invitation.sent", contact_id="C-1")
    second = owe(kb, "invitation.accepted", contact_id="C-1")

    worker.run_once()
    assert [wid for wid, _ in posted(crm)] == [first]
    assert the_event(kb, second).attempts == 0

    make_everything_due(kb)
    worker.run_once()
    assert [wid for wid, _ in posted(crm)] == [first, first, second]


def test_an_unreachable_crm_is_retried(kb, worker, crm):
    crm.post(CRM_URL, body=requests.ConnectionError("connection refused"))
    event_id = owe(kb)
    worker.run_once()
    event = the_event(kb, event_id)
    assert event.status == "pending" and seconds_until(event.next_attempt_at) > 0
    assert "unreachable" in event.last_error


def test_a_429_with_retry_after_is_honoured(kb, worker, crm):
    crm.post(CRM_URL, status=429, headers={"Retry-After": "120"})
    event_id = owe(kb)
    worker.run_once()
    event = the_event(kb, event_id)
    assert event.status == "pending" and 118 <= seconds_until(event.next_attempt_at) <= 120.5


def test_a_400_refusal_is_a_dead_letter_at_once_and_does_not_block_the_next_event(kb, worker, crm):
    crm.post(CRM_URL, status=400, json={"error": "unknown contact"})
    crm.post(CRM_URL, status=200)
    refused = owe(kb, contact_id="C-404")
    fine = owe(kb, contact_id="C-1")

    worker.run_once()

    event = the_event(kb, refused)
    assert (event.status, event.attempts) == ("dead", 1) and "400" in event.last_error and "unknown contact" in event.last_error
    assert the_event(kb, fine).status == "delivered"


def test_an_event_still_failing_after_the_retry_window_is_a_dead_letter(kb, worker, crm):
    crm.post(CRM_URL, status=503)
    event_id = owe(kb)
    with kb.db.session() as s:
        s.execute(update(OutboxEvent).values(window_started_at=utcnow() - timedelta(seconds=3601)))

    worker.run_once()

    assert the_event(kb, event_id).status == "dead"


def test_a_replayed_dead_letter_is_sent_again_with_the_same_id(kb, worker, crm):
    crm.post(CRM_URL, status=400)
    crm.post(CRM_URL, status=200)
    event_id = owe(kb)
    worker.run_once()
    assert the_event(kb, event_id).status == "dead"

    with kb.db.session() as s:
        outbox.replay(s, event_id)
    assert (the_event(kb, event_id).status, the_event(kb, event_id).attempts) == ("pending", 0)
    worker.run_once()

    assert [wid for wid, _ in posted(crm)] == [event_id, event_id]
    assert the_event(kb, event_id).status == "delivered"


def test_a_replay_gives_the_event_a_fresh_retry_window(kb, worker, crm):
    crm.post(CRM_URL, status=503)
    event_id = owe(kb)
    with kb.db.session() as s:
        s.execute(update(OutboxEvent).values(window_started_at=utcnow() - timedelta(hours=2)))
    worker.run_once()
    with kb.db.session() as s:
        outbox.replay(s, event_id)
    worker.run_once()
    assert the_event(kb, event_id).status == "pending"  # retried, not dead again at once


def test_only_dead_letters_can_be_replayed(kb):
    event_id = owe(kb)
    with kb.db.session() as s, pytest.raises(ValueError, match="not dead"):
        outbox.replay(s, event_id)
    with kb.db.session() as s, pytest.raises(LookupError):
        outbox.replay(s, "evt_unknown")


# -- redirects, Retry-After -------------------------------------------------------------

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirecting_crm_url_is_a_failure_and_the_redirect_is_not_followed(kb, worker, crm, status):
    moved = "https://crm.example/v2/keybridge/events"
    crm.post(CRM_URL, status=status, headers={"Location": moved})
    crm.get(moved, status=200)
    crm.post(moved, status=200)
    event_id = owe(kb)

    worker.run_once()

    assert [(c.request.method, c.request.url) for c in crm.calls] == [("POST", CRM_URL)]
    event = the_event(kb, event_id)
    assert (event.status, event.attempts) == ("pending", 1) and seconds_until(event.next_attempt_at) > 0
    assert "redirects" in event.last_error and moved in event.last_error
    assert "KEYBRIDGE_CRM_EVENTS_URL" in event.last_error  # says what to fix


def test_a_crm_url_that_keeps_redirecting_ends_as_a_dead_letter_saying_why(kb, worker, crm):
    crm.post(CRM_URL, status=301, headers={"Location": "https://crm.example/elsewhere"})
    event_id = owe(kb)
    with kb.db.session() as s:
        s.execute(update(OutboxEvent).values(window_started_at=utcnow() - timedelta(seconds=3601)))

    worker.run_once()

    event = the_event(kb, event_id)
    assert event.status == "dead" and "redirects" in event.last_error and "final URL" in event.last_error


def http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now), usegmt=True)


@pytest.mark.parametrize("retry_after, low, high", [
    ("31536000", 299, 300.5),          # a year: capped at the retry maximum (300 s)
    ("1e12", 299, 300.5),              # too large for a timedelta: capped, not an error
    ("inf", 299, 300.5),
    (lambda: http_date(120), 115, 121),        # the HTTP-date form
    (lambda: http_date(10 ** 9), 299, 300.5),  # a date far ahead: capped too
    (lambda: http_date(-60), 0.5, 1.5),        # a date already past: soon, but not in a tight loop
    ("0", 0.5, 1.5),
    ("soon", 1, 2.5),                  # garbage: ignored, the backoff applies
    ("nan", 1, 2.5),
    ("-30", 1, 2.5),
])
def test_retry_after_is_capped_at_the_retry_maximum_and_accepts_an_http_date(kb, worker, crm, retry_after, low, high):
    retry_after = retry_after() if callable(retry_after) else retry_after
    crm.post(CRM_URL, status=503, headers={"Retry-After": retry_after})
    event_id = owe(kb)

    started = utcnow()
    worker.run_once()
    finished = utcnow()

    event = the_event(kb, event_id)
    assert (event.status, event.attempts) == ("pending", 1)
    # The delay counts from the CRM's answer, which came between `started` and `finished`
    # (a loaded machine can take a while over the rest of the pass).
    assert (event.next_attempt_at - started).total_seconds() >= low
    assert (event.next_attempt_at - finished).total_seconds() <= high


def test_a_huge_retry_after_does_not_make_every_pass_send_the_event_again(kb, worker, crm):
    crm.post(CRM_URL, status=429, headers={"Retry-After": "1e12"})
    owe(kb)
    for _ in range(3):
        worker.run_once()
    assert len(crm.calls) == 1


# -- order per CRM record, several workers --------------------------------------------------

def test_a_failing_event_holds_back_only_the_later_events_of_the_same_record(kb, worker, crm):
    crm.post(CRM_URL, status=503)
    crm.post(CRM_URL, status=200)
    c1_sent = owe(kb, "invitation.sent", contact_id="C-1")
    c1_accepted = owe(kb, "invitation.accepted", contact_id="C-1")
    c2_sent = owe(kb, "invitation.sent", contact_id="C-2")

    worker.run_once()

    assert [wid for wid, _ in posted(crm)] == [c1_sent, c2_sent]
    assert the_event(kb, c1_accepted).attempts == 0 and the_event(kb, c1_accepted).status == "pending"
    make_everything_due(kb)
    worker.run_once()
    assert [wid for wid, _ in posted(crm)] == [c1_sent, c2_sent, c1_sent, c1_accepted]


def test_events_recorded_before_records_were_tracked_keep_their_overall_order(kb, worker, crm):
    crm.post(CRM_URL, status=503)
    crm.post(CRM_URL, status=200)
    first = owe(kb, contact_id="C-1")
    second = owe(kb, contact_id="C-2")
    with kb.db.session() as s:
        s.execute(update(OutboxEvent).values(subject=None))  # rows written by an older Keybridge

    worker.run_once()

    assert [wid for wid, _ in posted(crm)] == [first]
    make_everything_due(kb)
    worker.run_once()
    assert [wid for wid, _ in posted(crm)] == [first, first, second]


class SlowCrm:
    """The connector boundary: while it sends the first event, `meanwhile()` runs (another worker's pass)."""

    def __init__(self, meanwhile=None):
        self.sent: list[tuple[str, str]] = []
        self.meanwhile = meanwhile

    def deliver(self, event_id, body):
        self.sent.append((event_id, body["data"].get("contact_id")))
        if self.meanwhile:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()


def test_a_second_worker_does_not_overtake_an_event_of_the_same_record_being_sent(kb, settings):
    c1_sent = owe(kb, "invitation.sent", contact_id="C-1")
    c1_accepted = owe(kb, "invitation.accepted", contact_id="C-1")
    c2_sent = owe(kb, "invitation.sent", contact_id="C-2")
    other_worker = SlowCrm()
    first_worker = SlowCrm(meanwhile=lambda: outbox.deliver_due(kb.db, other_worker, settings))

    # Each worker takes a bounded set: the first takes C-1's first event, then the second worker polls.
    counts = outbox.deliver_due(kb.db, first_worker, settings, limit=1)

    assert counts["delivered"] == 1
    assert other_worker.sent == [(c2_sent, "C-2")]  # C-1's next event waits for the one in flight
    outbox.deliver_due(kb.db, first_worker, settings)
    assert first_worker.sent == [(c1_sent, "C-1"), (c1_accepted, "C-1")]
    assert {e.status for e in outbox_events(kb)} == {"delivered"}
    assert [e.attempts for e in outbox_events(kb)] == [1, 1, 1]


def test_a_worker_that_died_while_sending_leaves_its_events_to_the_next_one_after_a_short_lease(kb, settings):
    owe(kb, contact_id="C-1")

    def killed():
        raise KeyboardInterrupt  # stands in for the process dying mid-call: nothing after this runs

    with pytest.raises(KeyboardInterrupt):
        outbox.deliver_due(kb.db, SlowCrm(meanwhile=killed), settings)
    survivor = SlowCrm()
    outbox.deliver_due(kb.db, survivor, settings)
    assert survivor.sent == []  # still leased by the dead worker
    (event,) = outbox_events(kb)
    assert 0 < seconds_until(event.leased_until) <= outbox.LEASE.total_seconds() + 1

    with kb.db.session() as s:
        s.execute(update(OutboxEvent).values(leased_until=utcnow() - timedelta(seconds=1)))
    outbox.deliver_due(kb.db, survivor, settings)
    assert len(survivor.sent) == 1 and outbox_events(kb)[0].status == "delivered"


# -- the operator's command line ----------------------------------------------------------

@pytest.fixture
def cli(settings):
    runner = CliRunner()
    env = {"KEYBRIDGE_DATABASE_URL": settings.database_url}
    return lambda *args: runner.invoke(keybridge_cli, list(args), env=env)


def test_dead_letters_list_shows_what_kept_failing(kb, worker, crm, cli):
    assert cli("dead-letters", "list").output.strip().endswith("no dead letters")
    crm.post(CRM_URL, status=400)
    event_id = owe(kb)
    with kb.db.session() as s:
        s.add(Job(kind="inbound_event", ref="msg_gone", status="dead", attempts=3, last_error="PermanentError: refused"))
    worker.run_once()

    result = cli("dead-letters", "list")

    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith(("job", "outbound"))]
    assert len(lines) == 2
    assert "inbound_event msg_gone" in lines[0] and "attempts=3" in lines[0] and "refused" in lines[0]
    assert event_id in lines[1] and "invitation.sent" in lines[1] and "attempts=1" in lines[1]


def test_dead_letters_replay_requeues_an_outbound_event_which_is_then_delivered(kb, worker, crm, cli):
    crm.post(CRM_URL, status=400)
    crm.post(CRM_URL, status=200)
    event_id = owe(kb)
    worker.run_once()

    result = cli("dead-letters", "replay", "outbound", event_id)

    assert result.exit_code == 0, result.output
    assert f"requeued outbound {event_id}" in result.output
    worker.run_once()
    assert the_event(kb, event_id).status == "delivered"
    assert [wid for wid, _ in posted(crm)] == [event_id, event_id]


def test_dead_letters_replay_all_jobs(kb, cli):
    with kb.db.session() as s:
        s.add_all([Job(kind="inbound_event", ref=f"msg_{n}", status="dead") for n in range(2)])
    result = cli("dead-letters", "replay", "job", "--all")
    assert result.exit_code == 0, result.output
    assert result.output.count("requeued job") == 2
    assert {j.status for j in all_jobs(kb)} == {"queued"}


def test_dead_letters_replay_of_a_live_event_is_refused_with_a_reason(kb, cli):
    event_id = owe(kb)
    result = cli("dead-letters", "replay", "outbound", event_id)
    assert result.exit_code == 1 and "not dead" in result.output
    assert the_event(kb, event_id).status == "pending"
