"""Schemathesis against the served OpenAPI document: the CRM webhook and the operator API.

Cases are generated from /openapi.json (valid and invalid ones); webhook cases are signed by
a schemathesis `before_call` hook so they get past the signature check into the JSON and
schema checks, operator cases carry the bearer token. Every case must answer without a 5xx,
with a status its operation documents, and a refused case must store nothing (inbound_events
and jobs rows counted before and after).

The normal suite runs a short version; the long one (>= 1,000 cases) is

    KEYBRIDGE_FUZZ_EXAMPLES=200 scripts/test tests/fuzz

(generated cases per operation, plus schemathesis' coverage phase; the tally of cases per
operation, generation mode and status is printed at the end).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from sqlalchemy import func, select

from adapter import create_app
from adapter.config import Settings
from adapter.models import InboundEvent, Job
from adapter.webhooks.signatures import sign
from tests.conftest import SECRET, SESSION_SECRET

# The normal suite: 25 generated cases per operation. The long run also has schemathesis'
# coverage phase (every boundary and every kind of invalid value of each field).
EXAMPLES = int(os.environ.get("KEYBRIDGE_FUZZ_EXAMPLES", "25"))
LONG = "KEYBRIDGE_FUZZ_EXAMPLES" in os.environ
OPERATOR_TOKEN = "fuzz-operator-token"
TALLY: Counter = Counter()

_db_dir = Path(tempfile.mkdtemp(prefix="keybridge-fuzz-"))
APP = create_app({"TESTING": True, "KEYBRIDGE_SETTINGS": Settings.from_env(
    {}, database_url=os.environ.get("KEYBRIDGE_FUZZ_DATABASE_URL") or f"sqlite:///{_db_dir / 'fuzz.db'}",
    webhook_secrets=[SECRET], operator_token=OPERATOR_TOKEN, session_secret=SESSION_SECRET)})
KB = APP.extensions["keybridge"]

schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
schema.config.phases.coverage.enabled = LONG
VALID_ID = re.compile(r"[\x21-\x7e]{1,200}")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    """Sign webhook cases over the exact bytes sent (Standard Webhooks), with the current time."""
    if case.operation.path != "/webhooks/crm":
        return
    body = case.body
    if not isinstance(body, bytes):
        try:
            body = json.dumps(body).encode()
        except (TypeError, ValueError):
            return  # not JSON at all: it goes unsigned and must be a 401 that stores nothing
    headers = dict(case.headers or {})
    webhook_id = str(headers.get("webhook-id") or "msg")
    if VALID_ID.fullmatch(webhook_id):
        # keep the generated id's shape, but unique, so accepted cases are not all duplicates
        webhook_id = webhook_id[:160] + "-" + uuid.uuid4().hex
    case.body = body
    headers.update(sign(SECRET, webhook_id, body, int(time.time())))
    case.headers = headers


def stored() -> tuple[int, int]:
    with KB.db.session() as s:
        return s.scalar(select(func.count()).select_from(InboundEvent)), s.scalar(select(func.count()).select_from(Job))


@schema.include(tag="webhooks").parametrize()
@settings(max_examples=EXAMPLES * 4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_signed_crm_webhooks_never_fail_and_refusals_store_nothing(case):
    check(case)


@schema.include(tag="operator").parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_operator_api_never_fails_and_refusals_store_nothing(case):
    check(case)


def check(case) -> None:
    """Call the app with `case`: no 5xx, a documented status and error body, rows only for a 202."""
    mode = case.meta.generation.mode.value if case.meta else "explicit"  # before the hook's edits, which relabel it
    before = stored()
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"} if case.operation.path.startswith("/api/") else {}
    response = case.call(headers=headers)
    after = stored()
    outcome = str(response.status_code)
    same_method = case.method.lower() == case.operation.method.lower()
    if response.status_code in (200, 202) and case.operation.path == "/webhooks/crm" and same_method:
        outcome += " " + response.json()["status"]
    TALLY[(case.operation.path, mode, outcome)] += 1
    assert response.status_code < 500, f"{case.operation.method.upper()} {case.operation.path} answered {response.status_code}: {response.text[:500]}"
    if response.status_code == 202:
        assert after == (before[0] + 1, before[1] + 1), "an accepted event is stored with exactly one job"
    else:
        assert after == before, f"{response.status_code} stored something: {before} -> {after}"
    if not same_method:
        return  # schemathesis also tries other methods: 405, or Flask's automatic OPTIONS/HEAD answers
    documented = set(case.operation.definition.raw["responses"])
    assert str(response.status_code) in documented, f"{response.status_code} is not documented for {case.operation.path}: {response.text[:300]}"
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"code", "status", "message", "errors"} and body["code"] == response.status_code

