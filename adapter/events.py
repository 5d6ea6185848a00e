"""The contract in code: the inbound events' marshmallow schemas and the outbound identity
event types (see ../shared/spec/crm-contract.md). Which schema belongs to which inbound
type is declared with its handler (adapter/tasks.py)."""
from __future__ import annotations

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from . import contract_fields as wire

EMAIL = wire.Email


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class ContractSchema(_Strict):
    status = fields.Str(required=True, validate=validate.OneOf(["active", "suspended", "expired", "none"]))
    starts_at = wire.DateTime(load_default=None, allow_none=True)
    ends_at = wire.DateTime(load_default=None, allow_none=True)


class AdminContactSchema(_Strict):
    contact_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    email = EMAIL(required=True)
    first_name = fields.Str(load_default=None, allow_none=True)
    last_name = fields.Str(load_default=None, allow_none=True)


class AccountUpsertedSchema(_Strict):
    account_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    name = fields.Str(required=True, validate=validate.Length(min=1, max=255))
    domains = fields.List(fields.Str(validate=wire.FullMatch(r"^[A-Za-z0-9.-]+\.[A-Za-z]{2,}$", error="Not a domain name, e.g. example.com.")), load_default=list)
    contract = fields.Nested(ContractSchema, load_default=None, allow_none=True)
    admin_contact = fields.Nested(AdminContactSchema, load_default=None, allow_none=True)


class ContactUpsertedSchema(_Strict):
    contact_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    email = EMAIL(required=True)
    account_id = fields.Str(load_default=None, allow_none=True)
    first_name = fields.Str(load_default=None, allow_none=True)
    last_name = fields.Str(load_default=None, allow_none=True)
    phone = fields.Str(load_default=None, allow_none=True)
    roles = fields.List(fields.Str(), load_default=None, allow_none=True)
    status = fields.Str(load_default="active", validate=validate.OneOf(["active", "left"]))


class ContactInviteSchema(_Strict):
    contact_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    email = EMAIL(required=True)
    account_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    first_name = fields.Str(load_default=None, allow_none=True)
    last_name = fields.Str(load_default=None, allow_none=True)
    roles = fields.List(fields.Str(), load_default=list)
    org_admin = wire.Boolean(load_default=False)
    redirect_uri = wire.HttpUrl(load_default=None, allow_none=True)
    expires_in_days = wire.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=90))
    resend = wire.Boolean(load_default=False)


class LeadInviteSchema(_Strict):
    lead_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    email = EMAIL(required=True)
    first_name = fields.Str(load_default=None, allow_none=True)
    last_name = fields.Str(load_default=None, allow_none=True)
    company = fields.Str(load_default=None, allow_none=True)
    redirect_uri = wire.HttpUrl(load_default=None, allow_none=True)
    expires_in_days = wire.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=90))
    resend = wire.Boolean(load_default=False)


class ContactInviteRevokedSchema(_Strict):
    contact_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    account_id = fields.Str(load_default=None, allow_none=True, validate=validate.Length(min=1, max=200))


class LeadInviteRevokedSchema(_Strict):
    lead_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))


class BatchItemField(fields.Dict):
    """One batch item: validated with the single-invite schema of its `kind`."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        kind = value.get("kind")
        if kind not in ("contact", "lead"):
            raise ValidationError({"kind": ["Must be one of: contact, lead."]})
        schema = ContactInviteSchema() if kind == "contact" else LeadInviteSchema()
        item = schema.load({k: v for k, v in value.items() if k != "kind"})
        item["kind"] = kind
        return item


class BatchRequestedSchema(_Strict):
    batch_id = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    items = fields.List(BatchItemField(), required=True, validate=validate.Length(min=1, max=10_000))


class RegistrationDecidedSchema(_Strict):
    decision = fields.Str(required=True, validate=validate.OneOf(["approved", "rejected"]))
    user_id = fields.Str(load_default=None, allow_none=True)
    email = EMAIL(load_default=None, allow_none=True)
    account_id = fields.Str(load_default=None, allow_none=True)
    roles = fields.List(fields.Str(), load_default=list)

    @validates_schema
    def _who(self, data, **kwargs):
        if not data.get("user_id") and not data.get("email"):
            raise ValidationError("Give user_id or email of the registration decided.", "user_id")


class EnvelopeSchema(Schema):
    """The body every native webhook has: {type, timestamp, data}."""

    class Meta:
        unknown = RAISE

    type = fields.Str(required=True, validate=validate.Length(min=1, max=80))
    timestamp = wire.DateTime(required=True)
    data = fields.Dict(required=True)


# Outbound identity events (adapter -> CRM).
IDENTITY_REGISTERED = "identity.registered"
IDENTITY_PROFILE_UPDATED = "identity.profile_updated"
IDENTITY_EMAIL_VERIFIED = "identity.email_verified"
IDENTITY_ACCESS_CHANGED = "identity.access_changed"
IDENTITY_ACTIVITY = "identity.activity"
MEMBERSHIP_CHANGED = "membership.changed"
REGISTRATION_PENDING_APPROVAL = "registration.pending_approval"
INVITATION_SENT = "invitation.sent"
INVITATION_ACCEPTED = "invitation.accepted"
INVITATION_EXPIRED = "invitation.expired"
INVITATION_SKIPPED = "invitation.skipped"
INVITATION_REVOKED = "invitation.revoked"
INVITATION_REMINDED = "invitation.reminded"
INVITATION_BATCH_COMPLETED = "invitation.batch_completed"


# What each outbound event's `data` holds (the OpenAPI document's `webhooks`). Keybridge may add
# fields over time, so a CRM must ignore unknown ones: these schemas allow them.
class _Outbound(Schema):
    class Meta:
        unknown = INCLUDE


class _CrmLink(_Outbound):
    contact_id = fields.Str(allow_none=True, metadata={"description": "the CRM contact, if the identity is one"})
    lead_id = fields.Str(allow_none=True, metadata={"description": "the CRM lead, if the identity is one"})


class IdentityRegisteredData(_CrmLink):
    user_id = fields.Str(required=True)
    email = fields.Str(required=True)
    account_id = fields.Str(allow_none=True)
    via = fields.Str(required=True, validate=validate.OneOf(["invitation", "self_service"]))
    registered_at = fields.Str(metadata={"format": "date-time"})


class IdentityProfileUpdatedData(_CrmLink):
    user_id = fields.Str(required=True)
    changes = fields.Dict(keys=fields.Str(), values=fields.Dict(), required=True, metadata={"description": "{field: {old, new}}"})


class IdentityEmailVerifiedData(_CrmLink):
    user_id = fields.Str(required=True)


class IdentityAccessChangedData(_CrmLink):
    user_id = fields.Str(required=True)
    enabled = fields.Bool(required=True, metadata={"description": (
        "whether the person can log in now. For contract_inactive / contract_active the organization's contract "
        "attributes decide (Keycloak's extension refuses login and refresh) and the identity's own enabled flag is "
        "not changed; for left_company, rejected and admin it is that flag")})
    reason = fields.Str(required=True, validate=validate.OneOf(["contract_inactive", "contract_active", "left_company", "rejected", "admin"]))


class IdentityActivityData(_CrmLink):
    user_id = fields.Str(required=True)
    last_login_at = fields.Str(allow_none=True, metadata={"format": "date-time"})
    logins = fields.Int(required=True, metadata={"description": "logins since the previous report"})


class MembershipChangedData(_Outbound):
    account_id = fields.Str(required=True)
    user_id = fields.Str(required=True)
    contact_id = fields.Str(allow_none=True)
    change = fields.Str(required=True, validate=validate.OneOf(["added", "removed", "roles_changed"]))
    roles = fields.List(fields.Str(), metadata={"description": "business roles held now"})
    actor = fields.Str(allow_none=True, metadata={"description": "who did it in Keycloak (an email, or keycloak-admin:<id>)"})
    actor_user_id = fields.Str(allow_none=True)
    identity_deleted = fields.Bool(metadata={"description": "removed: Keycloak deleted the (managed) identity"})


class RegistrationPendingApprovalData(_Outbound):
    user_id = fields.Str(required=True)
    email = fields.Str(required=True)
    company = fields.Str(allow_none=True)
    matched_account_id = fields.Str(allow_none=True)


class InvitationData(_CrmLink):
    email = fields.Str(required=True)
    account_id = fields.Str(allow_none=True)


class InvitationSkippedData(InvitationData):
    reason = fields.Str(required=True)


class InvitationSentData(InvitationData):
    expires_at = fields.Str(allow_none=True, metadata={"format": "date-time", "description": "when the link stops working"})


class InvitationRevokedData(InvitationData):
    reason = fields.Str(required=True, metadata={"description": "revoked (the CRM or an operator asked), contact_left, ..."})


class InvitationExpiredData(InvitationData):
    expired_at = fields.Str(required=True, metadata={"format": "date-time", "description": "when the link stopped working"})


class InvitationRemindedData(InvitationData):
    expires_at = fields.Str(required=True, metadata={"format": "date-time", "description": "when the link stops working"})


class InvitationBatchCompletedData(_Outbound):
    batch_id = fields.Str(required=True)
    counts = fields.Dict(keys=fields.Str(), values=fields.Int(), required=True, metadata={"description": "items per outcome"})


OUTBOUND_SCHEMAS: dict[str, type[Schema]] = {
    IDENTITY_REGISTERED: IdentityRegisteredData,
    IDENTITY_PROFILE_UPDATED: IdentityProfileUpdatedData,
    IDENTITY_EMAIL_VERIFIED: IdentityEmailVerifiedData,
    IDENTITY_ACCESS_CHANGED: IdentityAccessChangedData,
    IDENTITY_ACTIVITY: IdentityActivityData,
    MEMBERSHIP_CHANGED: MembershipChangedData,
    REGISTRATION_PENDING_APPROVAL: RegistrationPendingApprovalData,
    INVITATION_SENT: InvitationSentData,
    INVITATION_ACCEPTED: InvitationData,
    INVITATION_EXPIRED: InvitationExpiredData,
    INVITATION_SKIPPED: InvitationSkippedData,
    INVITATION_REVOKED: InvitationRevokedData,
    INVITATION_REMINDED: InvitationRemindedData,
    INVITATION_BATCH_COMPLETED: InvitationBatchCompletedData,
}
