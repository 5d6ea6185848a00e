package io.keybridge.keycloak.registration;

import java.time.Instant;
import java.util.Locale;
import java.util.function.Function;

import io.keybridge.keycloak.access.AccessRule;

/**
 * What the registration page tells someone about the address they typed, the
 * way the adapter will decide after they register: at a domain of a CRM
 * organization whose contract is active, access is automatic once the address
 * is verified; anywhere else it waits for an approval. Only the one bit the
 * adapter's decision rests on is told, never the company's name or status.
 */
public final class RegistrationHint {

    /** The two outcomes, with their message keys (keycloak-theme/keybridge/login/messages). */
    public enum Access {
        AUTOMATIC("automatic", "keybridgeRegistrationAutomatic"),
        APPROVAL("approval", "keybridgeRegistrationApproval");

        private final String code;
        private final String messageKey;

        Access(String code, String messageKey) {
            this.code = code;
            this.messageKey = messageKey;
        }

        public String code() {
            return code;
        }

        public String messageKey() {
            return messageKey;
        }
    }

    private RegistrationHint() {
    }

    /** The domain of a plausible address, lower-cased, or null. */
    public static String domainOf(String email) {
        if (email == null) {
            return null;
        }
        String trimmed = email.trim();
        int at = trimmed.lastIndexOf('@');
        if (at <= 0 || at == trimmed.length() - 1 || trimmed.length() > 320) {
            return null;
        }
        String domain = trimmed.substring(at + 1).toLowerCase(Locale.ROOT);
        if (!domain.matches("[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?\\.[a-z0-9-]{2,}")) {
            return null;
        }
        return domain;
    }

    /**
     * The outcome for `email`, or null when it is not an address yet.
     *
     * @param organizationByDomain the organization holding a domain, or null
     */
    public static Access forEmail(String email, Function<String, AccessRule.Organization> organizationByDomain, Instant now) {
        String domain = domainOf(email);
        if (domain == null) {
            return null;
        }
        AccessRule.Organization organization = organizationByDomain.apply(domain);
        if (organization != null && organization.isCrmAccount() && organization.contractActive(now)) {
            return Access.AUTOMATIC;
        }
        return Access.APPROVAL;
    }
}
