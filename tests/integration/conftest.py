"""Fixtures for tests against the real Keycloak, mail sink, PostgreSQL and Chromium.

The test stack (tests/support/stack.py) is started once per session, or reused when
it is already running; each test uses its own adapter database and unique CRM ids.
"""
from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from adapter import create_app
from adapter.config import Settings
from adapter.worker import Worker
from tests.conftest import SECRET
from tests.support import stack

CRM_SECRET = "whsec_" + "Y3JtLXJlY2VpdmVyLXNlY3JldC1mb3ItdGVzdHM="
SESSION_SECRET = secrets.token_urlsafe(32)


@pytest.fixture(scope="session")
def mail_dir():
    return stack.ensure_mail_sink()


@pytest.fixture(scope="session")
def keycloak(mail_dir):
    return stack.ensure_keycloak()


@pytest.fixture(scope="session")
def postgres_url():
    return stack.ensure_postgres()


class CrmReceiver:
    """A stand-in CRM: verifies each outbound event with the vendor library and keeps it."""

    def __init__(self):
        self.events: list[dict] = []
        self.headers: list[dict] = []
        self.fail_with: int | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if receiver.fail_with:
                    self.send_response(receiver.fail_with)
                    self.end_headers()
                    return
                try:
                    Webhook(CRM_SECRET).verify(body, dict(self.headers))
                except WebhookVerificationError:
                    self.send_response(401)
                    self.end_headers()
                    return
                receiver.events.append(json.loads(body))
                receiver.headers.append(dict(self.headers))
                self.send_response(204)
                self.end_headers()

            def do_GET(self):  # noqa: N802 — stands in for the demo service's OAuth callback page
                body = b"<html><body><h1>Signed in to the demo service</h1></body></html>"
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/crm-events"
        self.callback = f"{self.base}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_type(self, event_type: str) -> list[dict]:
        return [e for e in self.events if e["type"] == event_type]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def crm():
    receiver = CrmReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keybridge.db'}"
    return stack.create_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def adapter_settings(keycloak, crm, database_url) -> Settings:
    return Settings.from_env(
        {},
        database_url=database_url,
        webhook_secrets=[SECRET],
        keycloak_url=keycloak.url,
        keycloak_realm=keycloak.realm,
        keycloak_client_id=keycloak.client_id,
        keycloak_client_secret=keycloak.client_secret,
        keycloak_delegation_client_id=keycloak.delegation_client_id,
        keycloak_delegation_client_secret=keycloak.delegation_client_secret,
        crm_events_url=crm.url,
        crm_events_secret=CRM_SECRET,
        events_start="now",
        events_poll_seconds=0.0,
        # The test stack's own session secret, fresh per run; its pages are served over plain http.
        session_secret=SESSION_SECRET,
        session_cookie_secure=False,
    )


@pytest.fixture
def adapter(adapter_settings):
    app = create_app({"KEYBRIDGE_SETTINGS": adapter_settings, "TESTING": True})
    yield app
    app.extensions["keybridge"].db.dispose()


@pytest.fixture
def worker(adapter):
    return Worker(adapter.extensions["keybridge"])


def run_until(worker: Worker, condition, timeout: float = 60.0, what: str = "condition"):
    """Run worker passes until `condition()` is truthy; fail naming `what` on timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        worker.run_once()
        result = condition()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for_mail(mail_dir, to: str, timeout: float = 30.0, count: int = 1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        mails = stack.read_mails(mail_dir, to=to)
        if len(mails) >= count:
            return mails
        time.sleep(0.3)
    raise AssertionError(f"no mail to {to} within {timeout}s")


class KeycloakAdminView:
    """Checks made as the master admin, independent of the adapter's own gateway."""

    def __init__(self, kc):
        self.base = f"{kc.url}/admin/realms/{kc.realm}"
        token = requests.post(f"{kc.url}/realms/master/protocol/openid-connect/token", data={
            "grant_type": "password", "client_id": "admin-cli", "username": kc.admin_user, "password": kc.admin_password}, timeout=30)
        token.raise_for_status()
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def get(self, path: str, **params):
        r = requests.get(self.base + path, headers=self.headers, params=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def user_by_email(self, email: str) -> dict | None:
        users = self.get("/users", email=email, exact="true")
        return users[0] if users else None

    def realm_roles(self, user_id: str) -> set[str]:
        return {r["name"] for r in self.get(f"/users/{user_id}/role-mappings/realm")}

    def organization_of(self, account_id: str) -> dict | None:
        orgs = self.get("/organizations", q=f"crm_account_id:{account_id}", exact="true", briefRepresentation="false")
        return orgs[0] if orgs else None


@pytest.fixture
def kc_admin(keycloak):
    return KeycloakAdminView(keycloak)


@pytest.fixture
def unique():
    return uuid.uuid4().hex[:10]


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=stack.chromium_executable(), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextlib.contextmanager
def served(adapter, port: int = 0, public: bool = False):
    """The adapter served over HTTP on loopback (`port` 0: a free one; keybridge-portal accepts any
    loopback port); yields its URL. `public`: the adapter also knows it as its public URL (where
    invited people land, handlers/landing.py)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, adapter, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    if public:
        adapter.extensions["keybridge"].settings.public_url = url
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


def save_screenshot(page, name: str, **options) -> None:
    """A picture for test-artifacts/ (documentation, not an assertion). A page still navigating on a busy
    machine can keep Chromium from drawing a frame for half a minute: then there is no picture, and a
    warning says so, instead of a failure of a test whose assertions are elsewhere."""
    from pathlib import Path

    from playwright.sync_api import Error as PlaywrightError

    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    try:
        page.screenshot(path=str(artifacts / name), timeout=15_000, **options)
    except PlaywrightError as exc:  # a warning in the log (pytest turns warnings into errors here)
        import logging

        logging.getLogger(__name__).warning("no screenshot %s: %s", name, str(exc).splitlines()[0])


@pytest.fixture
def page(chromium, request, tmp_path):
    context = chromium.new_context()
    pg = context.new_page()
    yield pg
    save_screenshot(pg, f"{request.node.name}.png")
    context.close()
