"""When Keycloak is made to match the desired state again, besides a change of that state.

- every Keycloak fact about a person (registration, joining an organization, a verified
  email, an administrator's enable or disable): `converge_person`; for a person linked to a
  CRM contact it queues a `converge_record` job, so that the contact is converged in the
  contact's order (behind its pending events), not beside them under the person's key;
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
    """The convergence of one account or contact to its stored desired state (the sweep's, or a Keycloak fact's)."""
    kind, crm_id = job.payload["kind"], job.payload["crm_id"]
    cause = job.payload.get("cause") or f"sweep {job.ref.rsplit('@', 1)[-1]}"
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
        # In the contact's order: a job under `contact:<id>`, after the contact's pending events (the caller's job runs
        # under the person's key and could otherwise converge beside them). One job per fact (the cause names it).
        with kb.db.session() as session:
            tasks.enqueue(session, "converge_record", f"contact:{contact_id}@{cause}"[:200],
                          payload={"kind": "contact", "crm_id": contact_id, "cause": cause})
        return "contact_convergence_queued"
    return "not_managed"
