"""Keycloak's side of a reconciliation, read in pages and never held whole.

Two ways to read the realm:

- **The export** of Keybridge's Keycloak extension (`/realms/<realm>/keybridge-export`,
  keycloak-extension/ io.keybridge.keycloak.export): users in keyset pages of
  `EXPORT_PAGE`, each with the attributes compared here, its direct realm roles and its
  organizations, read by Keycloak with four set-based queries a page; and the realm's
  pending invitations the same way. What is kept is small: the CRM organizations, the
  pending invitations, Keybridge's own revocations and the administrators' enables; each
  user page is compared and dropped (the next one is fetched meanwhile).
- **The admin API**, when the extension is missing (a warning says so): the members and
  invitations of every organization (user id -> account ids kept for the whole run), then
  the users in offset pages fetched in parallel (a bounded window), each compared
  contact's realm roles read one request a user. Keycloak itself resolves every listed
  user's organizations one query at a time: on a large realm this takes hours, not seconds.

Every user the reader yields carries `crm_accounts` (the CRM accounts of its organizations)
and, where asked, `realm_roles`.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice

from sqlalchemy import select

from ..errors import RetryableError
from ..keycloak import ExportMissing
from ..models import AccessRevocation, AdminAccessDecision

log = logging.getLogger(__name__)

USER_PAGE = 500
MEMBER_PAGE = 500
ORG_PAGE = 100
INVITATION_PAGE = 500
EXPORT_PAGE = 1000
EXPORT_ATTRIBUTES = ("crm_contact_id", "phone")  # what drift.py reads of a user's attributes

Progress = Callable[[str, int, int | None], None]  # (phase, done so far, total or None)


@dataclass(slots=True)
class Organization:
    """A CRM account's organization as Keycloak holds it."""

    id: str
    account_id: str
    representation: dict


@dataclass(slots=True)
class PendingInvitation:
    account_id: str
    organization_id: str
    invitation_id: str
    email: str


@dataclass
class RealmFacts:
    """Everything about the realm the drift needs, except the users (streamed by `RealmReader.users`)."""

    organizations: dict[str, Organization] = field(default_factory=dict)  # by crm_account_id
    memberships: dict[str, list[str]] = field(default_factory=dict)  # user id -> crm account ids (admin API only)
    pending: dict[str, list[PendingInvitation]] = field(default_factory=dict)  # lower-cased email -> invitations
    revocations: dict[str, dict[str, str | None]] = field(default_factory=dict)  # user id -> {reason: account id}
    admin_enabled: dict[str, datetime] = field(default_factory=dict)  # user id -> when an administrator enabled them
    duplicate_organizations: list[str] = field(default_factory=list)


PAGE_ATTEMPTS = 4


def _patient(fetch: Callable) -> Callable:
    """fetch, tried again (after 1, 2, 4 s) when Keycloak is briefly unreachable or slow: one timeout
    in a few hundred pages should not cost the whole run. The last failure is raised."""

    def call(*args):
        for attempt in range(PAGE_ATTEMPTS):
            try:
                return fetch(*args)
            except RetryableError as exc:
                if attempt == PAGE_ATTEMPTS - 1:
                    raise
                log.info("reading Keycloak failed (%s); trying again", exc)
                time.sleep(2 ** attempt)

    return call


def _windowed(fetch: Callable[[int], list], starts: Iterable[int], workers: int) -> Iterator[list]:
    """fetch(start) for each start, in order, with at most 2 x `workers` pages in flight."""
    starts = iter(starts)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = deque(pool.submit(fetch, s) for s in islice(starts, 2 * max(1, workers)))
        while pending:
            page = pending.popleft().result()
            following = next(starts, None)
            if following is not None:
                pending.append(pool.submit(fetch, following))
            yield page


def _all_pages(fetch: Callable[[int, int], list], page_size: int) -> Iterator[dict]:
    """Every item of a listing, one page after the other, until a short page."""
    first = 0
    while True:
        page = fetch(first, page_size)
        yield from page
        if len(page) < page_size:
            return
        first += page_size


class RealmReader:
    """Reads the realm through the adapter's gateway (or the unit tests' fake)."""

    def __init__(self, kb, progress: Progress | None = None, concurrency: int | None = None, user_page: int = USER_PAGE,
                 export_page: int = EXPORT_PAGE):
        self.kb = kb
        self.keycloak = _PatientGateway(kb.keycloak)
        self.progress = progress or (lambda phase, done, total: None)
        self.concurrency = concurrency or kb.settings.keycloak_concurrency
        self.user_page = user_page
        self.export_page = export_page
        self.uses_export: bool | None = None  # known after facts(): whether Keycloak serves the extension's export
        self._facts: RealmFacts | None = None
        self._account_of: dict[str, str] = {}  # organization id -> crm account id

    def facts(self) -> RealmFacts:
        """Organizations, memberships, pending invitations, Keybridge's revocations and administrators' enables."""
        self.keycloak.warm_up()
        facts = self._facts = RealmFacts()
        for org in _all_pages(self.keycloak.organizations_page, ORG_PAGE):
            for account_id in (org.get("attributes") or {}).get("crm_account_id") or []:
                if account_id in facts.organizations:
                    facts.duplicate_organizations.append(account_id)
                    continue
                facts.organizations[account_id] = Organization(org["id"], account_id, org)
        self._account_of = {}
        for org in facts.organizations.values():
            self._account_of.setdefault(org.id, org.account_id)
        self.progress("organizations", len(facts.organizations), len(facts.organizations))

        try:
            self._exported_invitations(facts)
            self.uses_export = True
        except ExportMissing as exc:
            log.warning("%s. Reading through the admin API instead: one request per organization, page of users and "
                        "compared contact, and Keycloak resolves each listed user's organizations one at a time.", exc)
            self.uses_export = False
            self._members_and_invitations(facts)

        with self.kb.db.session() as session:
            for row in session.execute(select(AccessRevocation.user_id, AccessRevocation.reason, AccessRevocation.account_id)):
                facts.revocations.setdefault(row.user_id, {})[row.reason] = row.account_id
            for row in session.execute(select(AdminAccessDecision.user_id, AdminAccessDecision.decided_at)
                                       .where(AdminAccessDecision.enabled.is_(True))):
                facts.admin_enabled[row.user_id] = row.decided_at.replace(tzinfo=timezone.utc)
        return facts

    def _exported_invitations(self, facts: RealmFacts) -> None:
        """The pending invitations of the CRM organizations, from the extension's export (raises ExportMissing)."""
        by_id = {org.id: org for org in facts.organizations.values()}
        after = None
        while True:
            page, after = self.keycloak.export_invitations_page(after, EXPORT_PAGE)
            for invitation in page:
                org = by_id.get(invitation.get("organizationId"))
                if org is not None:
                    email = (invitation.get("email") or "").lower()
                    facts.pending.setdefault(email, []).append(PendingInvitation(org.account_id, org.id, invitation["id"], email))
            if after is None:
                break
        self.progress("members", len(facts.organizations), len(facts.organizations))

    def _members_and_invitations(self, facts: RealmFacts) -> None:
        """Each CRM organization's members and pending invitations, through the admin API."""
        orgs = list(facts.organizations.values())

        def members_of(org: Organization) -> tuple[Organization, list[str], list[PendingInvitation]]:
            members = [m["id"] for m in _all_pages(
                lambda first, size: self.keycloak.organization_members_page(org.id, first, size), MEMBER_PAGE)]
            invitations = [PendingInvitation(org.account_id, org.id, i["id"], (i.get("email") or "").lower())
                           for i in _all_pages(lambda first, size: self.keycloak.organization_invitations_page(org.id, first, size),
                                               INVITATION_PAGE)
                           if (i.get("status") or "PENDING") == "PENDING"]
            return org, members, invitations

        done = 0
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            for org, members, invitations in pool.map(members_of, orgs):
                for user_id in members:
                    facts.memberships.setdefault(user_id, []).append(org.account_id)
                for invitation in invitations:
                    facts.pending.setdefault(invitation.email, []).append(invitation)
                done += 1
                if done % 50 == 0 or done == len(orgs):
                    self.progress("members", done, len(orgs))

    def users(self, wants_roles: Callable[[dict], bool] | None = None) -> Iterator[dict]:
        """Every user of the realm (with attributes and `crm_accounts`), page by page; each user once; `facts()` first.

        Users for whom `wants_roles(user)` holds also carry `realm_roles` (their direct realm
        roles; the export gives them for everyone). Through the admin API those are read in
        parallel page by page: Keycloak 26.7.3 lists a role's holders by offset, and a deep page
        (or one page of all 10,000 holders) outlasts its 300 s transaction on a busy machine."""
        if self.uses_export is None:
            raise RuntimeError("RealmReader.users() before facts()")
        if self.uses_export:
            yield from self._exported_users()
            return
        memberships = self._facts.memberships
        for page in self._user_pages():
            if wants_roles is not None:
                self._add_roles([u for u in page if wants_roles(u)])
            for user in page:
                user["crm_accounts"] = memberships.get(user["id"], [])
            yield from page

    def _exported_users(self) -> Iterator[dict]:
        """The export's pages, one fetched ahead while the previous is compared (keyset pages cannot go in parallel)."""
        done = 0
        with ThreadPoolExecutor(max_workers=1) as ahead:
            pending = ahead.submit(self.keycloak.export_users_page, None, self.export_page, EXPORT_ATTRIBUTES)
            while pending is not None:
                page, after = pending.result()
                pending = ahead.submit(self.keycloak.export_users_page, after, self.export_page, EXPORT_ATTRIBUTES) \
                    if after is not None else None
                for user in page:
                    user["realm_roles"] = user.pop("realmRoles", [])
                    user["crm_accounts"] = [self._account_of[o] for o in user.pop("organizations", []) if o in self._account_of]
                done += len(page)
                self.progress("users", done, None)
                yield from page

    def _add_roles(self, users: list[dict]) -> None:
        if not users:
            return
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(users)))) as pool:
            for user, roles in zip(users, pool.map(lambda u: self.keycloak.user_realm_roles(u["id"]), users)):
                user["realm_roles"] = roles

    def _user_pages(self) -> Iterator[list[dict]]:
        total = self.keycloak.users_count()
        size = self.user_page
        seen: set[str] = set()
        done = 0
        last_full = False
        # One page past the count: users created meanwhile shift the pages.
        for page in _windowed(lambda first: self.keycloak.users_page(first, size), range(0, total + size, size),
                              self.concurrency):
            last_full = len(page) == size
            yield [u for u in page if u["id"] not in seen and not seen.add(u["id"])]
            done += len(page)
            self.progress("users", min(done, total), total)
        first = total + size
        while last_full:  # still more: the realm grew by more than a page while it was read
            page = self.keycloak.users_page(first, size)
            last_full = len(page) == size
            first += size
            yield [u for u in page if u["id"] not in seen and not seen.add(u["id"])]


class _PatientGateway:
    """The gateway's read calls, each retried a few times (see `_patient`)."""

    def __init__(self, gateway):
        self._gateway = gateway

    def __getattr__(self, name: str):
        attribute = getattr(self._gateway, name)
        return _patient(attribute) if callable(attribute) else attribute
