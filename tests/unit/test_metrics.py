"""/metrics: what an operator's Prometheus reads from the web app and the worker."""
from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapter import metrics
from adapter.db import utcnow
from adapter.models import Job, OutboxEvent
from adapter.worker import Worker
from tests.conftest import envelope, signed_post

ACCOUNT = {"account_id": "A-1", "name": "Acme", "domains": ["acme.example"], "contract": {"status": "active"}}


def scrape(client) -> dict[tuple, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return _samples(response.get_data(as_text=True))


def _samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_webhooks_are_counted_by_source_and_outcome(client):
    before = scrape(client)
    body = envelope("account.upserted", ACCOUNT)
    assert signed_post(client, body, webhook_id="msg_metrics_1").status_code == 202
    assert signed_post(client, body, webhook_id="msg_metrics_1").status_code == 200  # duplicate
    assert signed_post(client, body, secret="whsec_" + "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==").status_code == 401
    after = scrape(client)
    for outcome, delta in (("accepted", 1), ("duplicate", 1), ("refused_401", 1)):
        assert value(after, "keybridge_webhooks_total", source="crm", outcome=outcome) \
            - value(before, "keybridge_webhooks_total", source="crm", outcome=outcome) == delta, outcome


def test_queue_outbox_and_dead_letters_come_from_the_database(client, kb):
    with kb.db.session() as session:
        old = utcnow().replace(microsecond=0)
        session.add(Job(kind="inbound_event", ref="r1", payload={}, status="queued", run_at=old - _seconds(120)))
        session.add(Job(kind="batch_item", ref="b:1", payload={}, status="dead"))
        session.add(OutboxEvent(id="evt_1", type="identity.registered", data={}, dedupe_key="k1", status="pending",
                                created_at=old - _seconds(300)))
        session.add(OutboxEvent(id="evt_2", type="identity.registered", data={}, dedupe_key="k2", status="dead"))
    samples = scrape(client)
    assert value(samples, "keybridge_jobs", kind="inbound_event", status="queued") == 1
    assert value(samples, "keybridge_dead_letters", kind="job") == 1
    assert value(samples, "keybridge_dead_letters", kind="outbound") == 1
    assert value(samples, "keybridge_outbound_events", status="pending") == 1
    assert 119 <= value(samples, "keybridge_oldest_due_job_age_seconds") < 200
    assert 299 <= value(samples, "keybridge_outbound_lag_seconds") < 400


def test_a_worker_pass_counts_jobs_keycloak_calls_and_leaves_a_heartbeat(client, kb, keycloak):
    worker = Worker(kb)
    assert signed_post(client, envelope("account.upserted", ACCOUNT)).status_code == 202
    before = scrape(client)
    worker.run_once()
    after = scrape(client)
    assert value(after, "keybridge_jobs_run_total", kind="inbound_event", outcome="done") \
        - value(before, "keybridge_jobs_run_total", kind="inbound_event", outcome="done") == 1
    beats = [k for k in after if k[0] == "keybridge_worker_heartbeat_age_seconds"]
    assert beats and after[beats[0]] < 5
    assert metrics.newest_heartbeat_age(kb.db) < 5


def test_keycloak_calls_are_timed_and_failures_counted_by_operation():
    from adapter.errors import RetryableError
    from adapter.keycloak import keycloak_call

    @keycloak_call("do something")
    def find_thing():
        raise ConnectionError("refused")

    before = metrics.KEYCLOAK_ERRORS.labels("find_thing", "retryable")._value.get()
    with pytest.raises(RetryableError):
        find_thing()
    assert metrics.KEYCLOAK_ERRORS.labels("find_thing", "retryable")._value.get() == before + 1
    text = _samples(urllib_free_exposition())
    assert value(text, "keybridge_keycloak_request_seconds_count", operation="find_thing") >= 1


def test_the_worker_serves_its_own_metrics(kb, free_port):
    metrics.serve_worker_metrics(kb.db, free_port)
    deadline = time.time() + 5
    while True:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{free_port}/metrics", timeout=2).read().decode()
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    assert "keybridge_jobs_run_total" in body and "keybridge_dead_letters" in body


def urllib_free_exposition() -> str:
    from prometheus_client import generate_latest

    registry = metrics.CollectorRegistry()
    registry.register(metrics.KEYCLOAK_SECONDS)
    return generate_latest(registry).decode()


def _seconds(n):
    from datetime import timedelta

    return timedelta(seconds=n)


@pytest.fixture
def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
