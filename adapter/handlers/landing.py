"""Where an invited person lands after accepting their invitation.

Why they used to see "Invalid parameter: redirect_uri": Keycloak 26.7.3's registration link of
an organization invitation is issued for its `account` client, and once the person has
registered Keycloak sends them to the organization's `redirectUrl` (the account console when
it has none) with that client's `code`, `session_state` and `iss` appended. The account console
(client `account-console`) does not know that code and signs in again with its own address,
which still carries them as its `redirect_uri`; Keycloak refuses redirect URIs carrying OAuth
parameters (`RedirectUtils.containsForbiddenOidcParameters`), hence the error page. A lead's
execute-actions link ends on Keycloak's "You are all set" page instead, not signed in anywhere.

So both land on the adapter's `/portal/welcome` (KEYBRIDGE_PUBLIC_URL):

- every CRM organization's `redirectUrl` is that page (`ensure_organization_landing`, kept by
  the account's convergence), so a contact arrives there signed in to Keycloak (the
  registration made their session) with the extra parameters, which it ignores;
- a lead's link is issued for `keybridge-portal` with the page as its redirect, so "Back to
  the Customer Portal" on Keycloak's last page leads there (Keycloak's execute-actions flow
  makes no session: the login asks for the password they just chose).

The page signs them in to the adapter (the portal's Keycloak login: silent when Keycloak's
session exists), welcomes them in the portal's look, and sends them on to `destination`:
their invitation's `redirect_uri`, else KEYBRIDGE_INVITE_REDIRECT_URI, else Keycloak's account
page. Without KEYBRIDGE_PUBLIC_URL (or with the portal off) nothing changes.
"""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

from sqlalchemy import select

from ..models import Invitation
from . import audit

log = logging.getLogger(__name__)

WELCOME_PATH = "/portal/welcome"


def welcome_url(settings) -> str | None:
    """The adapter's welcome page as browsers reach it, or None when it cannot be (no public URL, portal off)."""
    if not settings.public_url or not settings.portal_enabled:
        return None
    return settings.public_url.rstrip("/") + WELCOME_PATH


def account_page(settings) -> str:
    return f"{settings.keycloak_url.rstrip('/')}/realms/{settings.keycloak_realm}/account/"


def ensure_organization_landing(kb, org: dict, cause: str) -> dict:
    """The organization's invitations land on the welcome page (its `redirectUrl`); returns the organization.

    Calls nothing when it is so already, or when there is no welcome page to land on.
    """
    url = welcome_url(kb.settings)
    if url is None or (org.get("redirectUrl") or "") == url:
        return org
    updated = {**org, "redirectUrl": url}
    kb.keycloak.update_organization(org["id"], updated)
    with kb.db.session() as session:
        audit.record(session, "organization.landing", f"organization:{org['id']}", cause, {"redirect_url": url})
    return updated


def lead_link_redirect(kb, redirect_uri: str | None) -> tuple[str, str]:
    """(client_id, redirect_uri) for a lead's execute-actions link."""
    url = welcome_url(kb.settings)
    if url is not None:
        return "keybridge-portal", url
    if redirect_uri:
        return "customer-portal", redirect_uri
    if kb.settings.invite_redirect_uri:
        return "customer-portal", kb.settings.invite_redirect_uri
    return "account-console", account_page(kb.settings)


def _safe(url: str | None) -> str | None:
    """An http(s) URL with a host, or None (a CRM value never becomes a javascript: link)."""
    if not url or not isinstance(url, str):
        return None
    parts = urlsplit(url.strip())
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def destination(kb, user: dict) -> tuple[str, str]:
    """(URL, what to call it) where this person goes after the welcome: the newest invitation to their
    address that asked for a `redirect_uri`, else KEYBRIDGE_INVITE_REDIRECT_URI, else the account page."""
    email = (user.get("email") or "").lower()
    with kb.db.session() as session:
        rows = session.scalars(select(Invitation).where(Invitation.email == email).order_by(Invitation.updated_at.desc(),
                                                                                            Invitation.id.desc())).all()
        asked = [(r.details or {}).get("redirect_uri") for r in rows if r.status not in ("skipped", "revoked")]
    for url in [*asked, kb.settings.invite_redirect_uri]:
        if _safe(url):
            return _safe(url), urlsplit(_safe(url)).netloc
    return account_page(kb.settings), "your account"


def organization_name(kb, user_id: str) -> str | None:
    """The name of the CRM organization the person belongs to (the first one), or None."""
    orgs = [o for o in kb.keycloak.organizations_of_member(user_id) if (o.get("attributes") or {}).get("crm_account_id")]
    return orgs[0].get("name") if orgs else None
