"""When Keycloak is made to match the desired state again, besides a change of that state.

- every Keycloak fact about a person (registration, joining an organization, a verified
  email, an administrator's enable or disable): `converge_person`;
- the periodic sweep (records.run_sweep): one `converge_record` job per account and
  contact, run in the record's order (after its pending events).

Both run the same idempotent steps as the webhooks: accounts.converge_account and
contacts.converge_contact.
"""
from __future__ import annotations

from .. import tasks
from . import accounts, contacts, records
from .invitations import CONTACT_ATTRIBUTE


@tasks.job("converge_record", ordering_key=lambda p: f"{p['kind']}:{p['crm_id']}")
def run_converge_record(kb, job) -> str:
    """The sweep's convergence of one account or contact to its stored desired state."""
    kind, crm_id = job.payload["kind"], job.payload["crm_id"]
    cause = f"sweep {job.ref.rsplit('@', 1)[-1]}"
    if kind == "account":
        return accounts.converge_account(kb, crm_id, cause)
    if kind == "contact":
        return contacts.converge_contact(kb, crm_id, cause)
    return "ignored"


def converge_person(kb, user_id: str, cause: str) -> str:
    """A Keycloak fact about this person: their access matches the desired state again.

    A person linked to a CRM contact Keybridge keeps state for follows that contact. The
    contracts of their organizations need nothing here: Keycloak's extension reads them at
    each login and refresh. People linked to no contact are left as they are.
    """
    user = kb.keycloak.get_user(user_id)
    if user is None:
        return "user_gone"
    contact_id = ((user.get("attributes") or {}).get(CONTACT_ATTRIBUTE) or [None])[0]
    if contact_id and records.desired(kb, "contact", contact_id) is not None:
        return contacts.converge_contact(kb, contact_id, cause, user=user)
    return "not_managed"
