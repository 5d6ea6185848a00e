"""The funnel invited -> registered -> active, per day, overall and per CRM account.

- invited: invitations sent that day (`invitations.sent_at`, the latest sending of each
  contact's or lead's invitation; one invitation per CRM record).
- registered: invitations accepted that day (`accepted_at`) plus people who registered
  themselves that day (`self_registrations.registered_at`, whatever was decided later).
- active: people Keybridge invited or registered who logged in that day (`daily_logins`,
  counted from Keycloak's event log); over a period, each person counts once.

A person belongs to the account of their invitation, else of their self-registration
(the account decided, else the one their email domain matched), else of the organization
admin's invitation they joined through. Leads and unmatched self-registrations belong to
no account: they count in the overall funnel only.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import select

from ..db import utcnow
from ..models import Account, DailyLogin, Invitation, OrgAdminInvitation, SelfRegistration

STAGES = ("invited", "registered", "active")
OVERALL = None  # the key of the overall funnel among the accounts'


@dataclass
class Series:
    """One funnel: per day of the period, how many were invited, registered, active."""

    days: list[date]
    per_day: dict[str, list[int]]
    totals: dict[str, int]

    def rows(self) -> list[tuple[date, int, int, int]]:
        return [(d, *(self.per_day[s][i] for s in STAGES)) for i, d in enumerate(self.days)]


@dataclass
class Funnel:
    start: date
    end: date
    overall: Series
    accounts: dict[str, Series] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def series(self, account_id: str | None) -> Series:
        """The overall funnel (None), or an account's (all zeros when nothing happened there in the period)."""
        if account_id is None:
            return self.overall
        empty = Series(self.overall.days, {s: [0] * len(self.overall.days) for s in STAGES}, {s: 0 for s in STAGES})
        return self.accounts.get(account_id, empty)


def period(days: int, today: date | None = None) -> tuple[date, date]:
    """The last `days` days up to and including today (UTC)."""
    end = today or utcnow().date()
    return end - timedelta(days=days - 1), end


def account_of_users(session) -> dict[str, str | None]:
    """Keycloak user id -> CRM account id (None: a lead, or nobody's) for every person Keybridge invited or registered."""
    owners: dict[str, str | None] = {}
    for user_id, account_id in session.execute(select(OrgAdminInvitation.user_id, OrgAdminInvitation.account_id)
                                               .where(OrgAdminInvitation.status == "joined")):
        owners[user_id] = account_id
    for user_id, account_id, matched in session.execute(
            select(SelfRegistration.user_id, SelfRegistration.account_id, SelfRegistration.matched_account_id)):
        owners[user_id] = account_id or matched
    for user_id, account_id in session.execute(select(Invitation.keycloak_user_id, Invitation.account_id)
                                               .where(Invitation.keycloak_user_id.is_not(None))):
        owners[user_id] = account_id
    return owners


def compute(db, days: int = 30, today: date | None = None) -> Funnel:
    """The funnel of the last `days` days (UTC), overall and for every account with anything in it."""
    start, end = period(days, today)
    since, until = datetime.combine(start, time.min), datetime.combine(end + timedelta(days=1), time.min)
    # (account or OVERALL, stage) -> day -> count; active: (account, day) -> users, (account) -> users
    counts: dict[tuple, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    active_days: dict[tuple, set[str]] = defaultdict(set)
    active_period: dict[str | None, set[str]] = defaultdict(set)

    def add(account_id, stage, when: datetime) -> None:
        for key in {OVERALL, account_id}:
            counts[(key, stage)][when.date()] += 1

    with db.session() as session:
        for account_id, sent_at in session.execute(select(Invitation.account_id, Invitation.sent_at).where(
                Invitation.sent_at >= since, Invitation.sent_at < until)):
            add(account_id, "invited", sent_at)
        for account_id, accepted_at in session.execute(select(Invitation.account_id, Invitation.accepted_at).where(
                Invitation.accepted_at >= since, Invitation.accepted_at < until)):
            add(account_id, "registered", accepted_at)
        for account_id, matched, registered_at in session.execute(
                select(SelfRegistration.account_id, SelfRegistration.matched_account_id, SelfRegistration.registered_at)
                .where(SelfRegistration.registered_at >= since, SelfRegistration.registered_at < until)):
            add(account_id or matched, "registered", registered_at)
        owners = account_of_users(session)
        for day, user_id in session.execute(select(DailyLogin.day, DailyLogin.user_id).where(
                DailyLogin.day >= start, DailyLogin.day <= end, DailyLogin.logins > 0)):
            if user_id not in owners:
                continue  # someone Keybridge neither invited nor registered (an operator, a console user)
            for key in {OVERALL, owners[user_id]}:
                active_days[(key, day)].add(user_id)
                active_period[key].add(user_id)
        names = {a.account_id: a.name or a.account_id for a in session.scalars(select(Account))}

    dates = [start + timedelta(days=i) for i in range((end - start).days + 1)]

    def series(key) -> Series:
        per_day = {stage: [counts[(key, stage)].get(d, 0) for d in dates] for stage in ("invited", "registered")}
        per_day["active"] = [len(active_days.get((key, d), ())) for d in dates]
        totals = {stage: sum(per_day[stage]) for stage in ("invited", "registered")}
        totals["active"] = len(active_period.get(key, ()))
        return Series(dates, per_day, totals)

    keys = {k for k, _ in counts} | set(active_period)
    accounts = {k: series(k) for k in sorted(k for k in keys if k is not OVERALL)}
    return Funnel(start, end, series(OVERALL), accounts, {k: names.get(k, k) for k in accounts})
