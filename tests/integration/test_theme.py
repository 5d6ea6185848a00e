"""The keybridge theme on the real Keycloak: the customer-portal look of the login pages and emails.

Expected wording is read from the theme's own message bundles, so these tests state
where the words come from rather than repeating them.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from .conftest import wait_for_mail

pytestmark = pytest.mark.integration

THEME = Path(__file__).resolve().parents[2] / "keycloak-theme" / "keybridge"
LEAD_REDIRECT = "http://localhost/portal"


def bundle(kind: str) -> dict[str, str]:
    """The theme's English message bundle for `kind` ("login" or "email")."""
    messages = {}
    for line in (THEME / kind / "messages" / "messages_en.properties").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "!")):
            key, _, value = line.partition("=")
            messages[key.strip()] = value.strip().replace("''", "'")
    return messages


LOGIN = bundle("login")
EMAIL = bundle("email")


def fill(message: str, *args: str) -> str:
    for index, arg in enumerate(args):
        message = message.replace("{%d}" % index, arg)
    return message


def visible_text(markup: str) -> list[str]:
    """The text pieces of an html snippet, as a reader sees them."""
    return [piece.strip() for piece in re.split(r"<[^>]+>", markup) if piece.strip()]


class _Links(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a" and dict(attrs).get("href"):
            self.hrefs.append(dict(attrs)["href"])


def first_html_link(html: str) -> str:
    parser = _Links()
    parser.feed(html)
    assert parser.hrefs, "the html part has no link"
    return parser.hrefs[0]


def first_text_link(text: str) -> str:
    match = re.search(r"https?://\S+", text)
    assert match, "the text part has no link"
    return match.group(0)


def login_url(keycloak) -> str:
    return (f"{keycloak.realm_url}/protocol/openid-connect/auth?client_id=customer-portal"
            f"&response_type=code&scope=openid&redirect_uri={LEAD_REDIRECT}")


class AdminApi:
    """The few admin REST calls these tests make; removes what it created afterwards."""

    def __init__(self, kc_admin):
        self.base, self.headers = kc_admin.base, kc_admin.headers
        self.created: list[str] = []

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        r = requests.request(method, self.base + path, headers=self.headers, timeout=30, **kwargs)
        assert r.ok, f"{method} {path}: {r.status_code} {r.text}"
        return r

    def create(self, path: str, representation: dict) -> str:
        location = self.call("POST", path, json=representation).headers["Location"]
        self.created.append(f"{path}/{location.rsplit('/', 1)[1]}")
        return location.rsplit("/", 1)[1]

    def cleanup(self):
        for path in reversed(self.created):
            requests.delete(self.base + path, headers=self.headers, timeout=30)


@pytest.fixture
def admin_api(kc_admin):
    api = AdminApi(kc_admin)
    yield api
    api.cleanup()


# --- login pages ---------------------------------------------------------------------


def test_login_page_shows_the_portal_brand(keycloak, page):
    page.goto(login_url(keycloak))

    header = page.locator("#kc-header-wrapper")
    for text in visible_text(LOGIN["loginTitleHtml"]):  # the portal name and its tagline
        assert text in header.inner_text()
    assert page.locator("#kc-page-title").inner_text().strip() == LOGIN["loginAccountTitle"]
    assert page.get_by_text(LOGIN["noAccount"]).is_visible()
    assert page.locator(".kb-help").inner_text().strip() == LOGIN["portalHelp"]
    # The portal look is added on top of keycloak.v2's own stylesheet, not instead of it.
    sheets = page.evaluate("[...document.styleSheets].map(s => s.href || '')")
    assert [s.rsplit("/", 2)[-2:] for s in sheets if s.endswith(("/styles.css", "/portal.css"))] == [
        ["css", "styles.css"], ["css", "portal.css"]]


def test_registration_page_speaks_of_the_portal(keycloak, page):
    page.goto(login_url(keycloak))
    page.click("a[href*='login-actions/registration']")

    assert page.locator("#kc-page-title").inner_text().strip() == LOGIN["registerTitle"]
    assert page.locator("[type=submit]").get_attribute("value") == LOGIN["doRegister"]


# --- emails --------------------------------------------------------------------------


def test_org_invitation_email_has_a_text_and_html_version_with_the_same_first_link(
        keycloak, mail_dir, admin_api, page, unique):
    org_name = f"Acme Theme {unique}"
    org_id = admin_api.create("/organizations", {
        "name": org_name, "alias": f"acme-theme-{unique}", "domains": [{"name": f"acme-theme-{unique}.example"}]})
    email = f"jane.{unique}@acme-theme-{unique}.example"
    admin_api.call("POST", f"/organizations/{org_id}/members/invite-user",
                   data={"email": email, "firstName": "Jane", "lastName": "Doe"})

    mail = wait_for_mail(mail_dir, to=email)[-1]
    assert mail.subject == fill(EMAIL["orgInviteSubject"], org_name)
    assert mail.text and mail.html
    assert first_text_link(mail.text) == first_html_link(mail.html) == mail.link
    for part in (mail.text, mail.html):
        assert EMAIL["orgInviteHeading"] in part
        assert fill(EMAIL["orgInviteIntro"], org_name) in part
        assert EMAIL["orgInviteAction"] in part
        assert fill(EMAIL["emailGreeting"], "Jane") in part
        assert EMAIL["emailFooter"] in part

    # The link opens the portal's registration, titled with the organization.
    page.goto(mail.link)
    title = LOGIN["organization.member.register.title"].replace("${kc.org.name}", org_name)
    assert page.locator("#kc-page-title").inner_text().strip() == title


def test_lead_invitation_email_reads_as_an_invitation(keycloak, mail_dir, admin_api, page, unique):
    email = f"lee.{unique}@prospect-{unique}.example"
    user_id = admin_api.create("/users", {"username": email, "email": email, "firstName": "Lee", "enabled": True})
    admin_api.call("PUT", f"/users/{user_id}/execute-actions-email", json=["UPDATE_PASSWORD"],
                   params={"lifespan": 86400, "client_id": "customer-portal", "redirect_uri": LEAD_REDIRECT})

    mail = wait_for_mail(mail_dir, to=email)[-1]
    assert mail.subject == EMAIL["executeActionsSubject"]
    assert "invitation" in mail.subject.lower()
    assert first_text_link(mail.text) == first_html_link(mail.html) == mail.link
    for part in (mail.text, mail.html):
        assert EMAIL["executeActionsHeading"] in part
        assert EMAIL["executeActionsAction"] in part
        assert fill(EMAIL["executeActionsSteps"], EMAIL["requiredAction.UPDATE_PASSWORD"]) in part
        assert "update your account" not in part.lower()
        assert "administrator" not in part.lower()

    # The link asks to accept the invitation, then to choose a password.
    page.goto(mail.link)
    assert page.locator("#kc-page-title").inner_text().strip() == LOGIN["confirmExecutionOfActions"]
    assert page.locator(".kb-steps li").all_inner_texts() == [LOGIN["requiredAction.UPDATE_PASSWORD"]]
    page.get_by_text(LOGIN["proceedWithAction"]).click()
    page.wait_for_selector("#password-new")
    assert page.locator("#kc-page-title").inner_text().strip() == LOGIN["updatePasswordTitle"]


# --- the templates themselves ----------------------------------------------------------


def _without_interpolations(source: str) -> str:
    """Removes ${...} (which may nest, as in msg("requiredAction.${item}"))."""
    out, depth, i = [], 0, 0
    while i < len(source):
        if source.startswith("${", i):
            depth, i = depth + 1, i + 2
        elif depth and source[i] == "}":
            depth, i = depth - 1, i + 1
        else:
            if not depth:
                out.append(source[i])
            i += 1
    return "".join(out)


def hard_coded_words(source: str) -> list[str]:
    """Words a reader would see that do not come from a ${msg(...)} or other ${...} call."""
    text = re.sub(r"<#--.*?-->", " ", source, flags=re.S)
    text = _without_interpolations(text)
    words = re.findall(r"\b(?:alt|title|aria-label|placeholder)=\"([^\"]*[A-Za-z][^\"]*)\"", text)
    text = re.sub(r"</?[#@][^>]*>", " ", text)  # FreeMarker directives and macro calls
    text = re.sub(r"<!--.*?-->|<!DOCTYPE[^>]*>", " ", text, flags=re.S | re.I)
    text = re.sub(r"<style\b.*?</style>|<script\b.*?</script>", " ", text, flags=re.S | re.I)
    text = re.sub(r"</?[A-Za-z][^>]*>", " ", text)  # html tags with their attributes
    text = re.sub(r"&[A-Za-z]+;|&#\d+;", " ", text)
    return words + re.findall(r"[A-Za-z]{2,}", text)


TEMPLATES = sorted(THEME.rglob("*.ftl"))


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(THEME)))
def test_templates_have_no_hard_coded_words(template):
    assert hard_coded_words(template.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(THEME)))
def test_every_message_a_template_uses_is_in_its_bundle(template):
    messages = bundle(template.relative_to(THEME).parts[0])
    keys = set(re.findall(r"msg\(\s*\"([^\"$]+)\"", template.read_text(encoding="utf-8")))
    assert sorted(keys - messages.keys()) == []


def test_hard_coded_word_check_finds_words():
    assert hard_coded_words('<p>Hello ${msg("x")}</p>') == ["Hello"]
    assert hard_coded_words('<img alt="Logo" src="${url}">') == ["Logo"]
    assert hard_coded_words('<#if a??><p style="color:red">${msg("a.${b}")}</p></#if>') == []


def test_every_email_is_an_html_and_text_pair():
    html = {p.name for p in (THEME / "email" / "html").glob("*.ftl")} - {"template.ftl"}
    text = {p.name for p in (THEME / "email" / "text").glob("*.ftl")}
    assert html == text
    assert {"org-invite.ftl", "executeActions.ftl", "email-verification.ftl", "password-reset.ftl"} <= html
