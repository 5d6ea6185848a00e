"""Every query parameter of the operator API is checked: a bad one is a 400 naming it, never a silent default."""
from __future__ import annotations

import pytest

from adapter.handlers import audit

AUTH = {"Authorization": "Bearer op-token"}


@pytest.fixture
def trail(kb):
    with kb.db.session() as s:
        for i in range(5):
            audit.record(s, "test.entry", "account:A-1", f"test {i}")


def test_audit_limit_minus_one_is_refused_instead_of_returning_everything(client, trail):
    r = client.get("/api/audit?limit=-1", headers=AUTH)
    assert r.status_code == 400 and "limit" in r.json["errors"] and "limit" in r.json["message"]


@pytest.mark.parametrize("query, parameter", [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"), ("limit=1.5", "limit"), ("limit=", "limit"),
    ("limit=%207", "limit"), ("limit=1&limit=2", "limit"), ("subject=", "subject"), ("colour=red", "colour"),
])
def test_a_bad_audit_query_parameter_is_400_naming_it(client, trail, query, parameter):
    r = client.get(f"/api/audit?{query}", headers=AUTH)
    assert r.status_code == 400, r.json
    assert parameter in r.json["errors"] and set(r.json) == {"code", "status", "message", "errors"}


@pytest.mark.parametrize("limit, shown", [(1, 1), (3, 3), (1000, 5)])
def test_a_valid_audit_limit_is_honoured(client, trail, limit, shown):
    r = client.get(f"/api/audit?subject=account:A-1&limit={limit}", headers=AUTH)
    assert r.status_code == 200 and len(r.json["entries"]) == shown


@pytest.mark.parametrize("query, parameter", [
    ("offset=-1", "offset"), ("limit=0", "limit"), ("limit=10001", "limit"), ("offset=x", "offset"), ("page=2", "page"),
])
def test_a_bad_batch_query_parameter_is_400_naming_it(client, query, parameter):
    r = client.get(f"/api/batches/B-1?{query}", headers=AUTH)
    assert r.status_code == 400 and parameter in r.json["errors"]


@pytest.mark.parametrize("query, code", [("status=pending", 200), ("status=all", 200), ("status=approved", 200),
                                         ("status=maybe", 400), ("status=", 400)])
def test_the_registrations_status_is_one_of_the_known_ones(client, query, code):
    r = client.get(f"/api/registrations?{query}", headers=AUTH)
    assert r.status_code == code
    if code == 400:
        assert "status" in r.json["errors"]


@pytest.mark.parametrize("item_id", ["99999999999999999999999", "²", "1.0", "-1"])
def test_a_job_id_that_is_no_number_is_404_not_500(client, item_id):
    r = client.post(f"/api/dead-letters/job/{item_id}/replay", headers=AUTH)
    assert r.status_code == 404 and "id" in r.json["errors"]


def test_a_decision_body_nested_too_deeply_is_400_not_500(client):
    body = '{"decision": "approved", "roles": ' + "[" * 5000 + "]" * 5000 + "}"
    r = client.post("/api/registrations/u-1/decision", data=body, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400 and "body" in r.json["errors"]


def test_a_decision_naming_another_user_in_its_body_is_refused(client):
    r = client.post("/api/registrations/u-1/decision", json={"decision": "approved", "user_id": "u-2", "account_id": "A"}, headers=AUTH)
    assert r.status_code == 422 and "user_id" in r.json["errors"]
