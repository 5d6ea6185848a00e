package io.keybridge.keycloak.access;

import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.Collection;
import java.util.List;
import java.util.Map;

/**
 * Whether a person may log in or get tokens, decided from the CRM state that
 * Keycloak already holds: the person's {@code crm_status} attribute and the
 * {@code contract_status} / {@code contract_ends_at} attributes of their CRM
 * organizations (those with a {@code crm_account_id}).
 *
 * <ul>
 *   <li>{@code crm_status = left}: refused ({@link Decision#LEFT_COMPANY}).</li>
 *   <li>No CRM organization (a lead, a self-registration waiting, a service
 *       account): allowed, this rule has nothing to say.</li>
 *   <li>CRM organizations, none of them with an active contract (status other
 *       than {@code active}, missing, or an end date that has passed or cannot
 *       be read): refused ({@link Decision#CONTRACT_INACTIVE}).</li>
 *   <li>At least one CRM organization with an active contract: allowed. Access
 *       to the portal belongs to whichever contract is active: a person working
 *       for two customers keeps it while either customer pays, as they would
 *       with two separate accounts. Which organization's data they see is the
 *       applications' decision (the token's {@code organization} claim names
 *       every membership; they check the organization's contract themselves).
 *       The adapter counts and reports access with the same rule.</li>
 * </ul>
 *
 * Plain Java, no Keycloak types: the Keycloak-facing classes map models to
 * {@link Organization} and call {@link #decide}.
 */
public final class AccessRule {

    public static final String CRM_ACCOUNT_ID = "crm_account_id";
    public static final String CONTRACT_STATUS = "contract_status";
    public static final String CONTRACT_ENDS_AT = "contract_ends_at";
    public static final String CRM_STATUS = "crm_status";
    public static final String ACTIVE = "active";
    public static final String LEFT = "left";

    private AccessRule() {
    }

    /** What the rule decided, with the reason the adapter also uses in identity.access_changed. */
    public enum Decision {
        ALLOWED(null),
        CONTRACT_INACTIVE("contract_inactive"),
        LEFT_COMPANY("left_company");

        private final String reason;

        Decision(String reason) {
            this.reason = reason;
        }

        public boolean allowed() {
            return this == ALLOWED;
        }

        /** The reason code (contract_inactive, left_company), or null when allowed. */
        public String reason() {
            return reason;
        }
    }

    /** The attributes of one organization the person belongs to. */
    public record Organization(String alias, Map<String, List<String>> attributes) {

        String first(String name) {
            List<String> values = attributes == null ? null : attributes.get(name);
            if (values == null || values.isEmpty() || values.get(0) == null || values.get(0).isBlank()) {
                return null;
            }
            return values.get(0).trim();
        }

        /** True for an organization that stands for a CRM account. */
        public boolean isCrmAccount() {
            return first(CRM_ACCOUNT_ID) != null;
        }

        /** Active status and no end date in the past; an unreadable end date counts as ended. */
        public boolean contractActive(Instant now) {
            if (!ACTIVE.equals(first(CONTRACT_STATUS))) {
                return false;
            }
            String endsAt = first(CONTRACT_ENDS_AT);
            if (endsAt == null) {
                return true;
            }
            Instant ends = parseInstant(endsAt);
            return ends != null && ends.isAfter(now);
        }
    }

    /**
     * Decides for one person.
     *
     * @param crmStatus     the person's {@code crm_status} attribute (may be null)
     * @param organizations every organization they belong to (CRM or not)
     * @param now           the current time
     */
    public static Decision decide(String crmStatus, Collection<Organization> organizations, Instant now) {
        if (crmStatus != null && LEFT.equalsIgnoreCase(crmStatus.trim())) {
            return Decision.LEFT_COMPANY;
        }
        boolean customer = false;
        for (Organization organization : organizations) {
            if (organization.isCrmAccount()) {
                if (organization.contractActive(now)) {
                    return Decision.ALLOWED;
                }
                customer = true;
            }
        }
        return customer ? Decision.CONTRACT_INACTIVE : Decision.ALLOWED;
    }

    /** ISO-8601 with an offset ("2026-11-22T10:00:00Z", "...+02:00"), or null when it is not one. */
    static Instant parseInstant(String value) {
        try {
            return OffsetDateTime.parse(value).toInstant();
        } catch (DateTimeParseException e) {
            try {
                return Instant.parse(value);
            } catch (DateTimeParseException again) {
                return null;
            }
        }
    }
}
