"""The account console leads org admins to their organization's page (issue 11), in Chromium.

Org admins live in Keycloak's account console. The realm's account theme (keycloak-theme/keybridge/
account) adds "Your organization" to its menu for org admins only; it leads to the adapter's page
(KEYBRIDGE_PORTAL_URL, here the adapter of this test on tests/support/stack.PORTAL_PORT).
A plain member of the same organization sees no such entry.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import stack

from .conftest import served
from .test_core_loop import PASSWORD
from .test_org_admin_page import acme, database_url, realm_admin  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ENTRY = "content/:componentId"  # the entry's path (keycloak-theme/keybridge/account/theme.properties says why)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"account-console-{name}.png"), full_page=True)


@pytest.fixture
def adapter_url(adapter):
    """The adapter where Keycloak's account theme expects it (KEYBRIDGE_PORTAL_URL of the test Keycloak)."""
    with served(adapter, port=stack.PORTAL_PORT, public=True) as url:
        yield url


def account_console(page, kc, email: str) -> None:
    """Sign in to Keycloak's account console; returns once its menu is there."""
    page.goto(f"{kc.url}/realms/{kc.realm}/account/")
    page.fill("#username", email)
    page.click("[type=submit]")
    page.wait_for_selector("#password")
    page.fill("#password", PASSWORD)
    page.click("[type=submit]")
    page.get_by_test_id("organizations").wait_for(timeout=30000)  # the menu (from content.json) is rendered


def test_only_an_org_admin_sees_the_entry_and_it_leads_to_their_page(adapter_url, acme, keycloak, chromium):  # noqa: F811
    context = chromium.new_context()
    page = context.new_page()
    account_console(page, keycloak, acme["admin_email"])
    entry = page.get_by_test_id(ENTRY)
    entry.wait_for()
    assert entry.inner_text().strip() == "Your organization"
    shot(page, "01-org-admin-menu")
    entry.click()
    page.get_by_role("heading", name="Your organization").wait_for()
    link = page.locator("#keybridge-open-org-admin")
    assert link.get_attribute("href") == stack.PORTAL_URL
    shot(page, "02-org-admin-entry")
    link.click()
    page.locator("#members").wait_for()  # Keycloak's session signs her in to the page at once
    assert page.url.startswith(f"{adapter_url}/portal/")
    assert page.locator(f"#members tr[data-email='{acme['member_email']}']").count() == 1
    shot(page, "03-org-admin-page")
    context.close()

    context = chromium.new_context()
    page = context.new_page()
    account_console(page, keycloak, acme["member_email"])
    page.get_by_test_id("groups").or_(page.get_by_test_id("applications")).first.wait_for()
    assert page.get_by_test_id(ENTRY).count() == 0 and "Your organization" not in page.inner_text("nav")
    shot(page, "04-member-menu")
    page.goto(f"{keycloak.url}/realms/{keycloak.realm}/account/{ENTRY}")
    page.get_by_test_id("organizations").wait_for(timeout=30000)
    page.wait_for_timeout(1000)
    assert page.locator("#keybridge-open-org-admin").count() == 0
    context.close()
