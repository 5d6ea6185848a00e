package io.keybridge.keycloak.export;

import java.util.List;

/**
 * Who may read the export: a service account (a client's own credential, as the
 * adapter logs in) holding one of the realm-management roles with which
 * Keycloak's admin API lists every user of the realm. Anyone else gets 401
 * (no token, or one this realm did not issue or no longer accepts) or 403.
 */
public final class ExportAccess {

    /** realm-management roles that allow the export (composites count: a role that includes one of them will do). */
    public static final List<String> ROLES = List.of("view-users", "manage-users");

    public enum Decision {
        ALLOWED(200, null),
        UNAUTHENTICATED(401, "a bearer token of this realm is required: log in with the adapter's client credential"),
        NOT_A_SERVICE_ACCOUNT(403, "only a client's service account may read the export, not a person"),
        MISSING_ROLE(403, "the service account needs the realm-management role view-users (or manage-users)");

        private final int status;
        private final String reason;

        Decision(int status, String reason) {
            this.status = status;
            this.reason = reason;
        }

        public int status() {
            return status;
        }

        public String reason() {
            return reason;
        }
    }

    private ExportAccess() {
    }

    public static Decision decide(boolean authenticated, boolean serviceAccount, boolean holdsRole) {
        if (!authenticated) {
            return Decision.UNAUTHENTICATED;
        }
        if (!serviceAccount) {
            return Decision.NOT_A_SERVICE_ACCOUNT;
        }
        return holdsRole ? Decision.ALLOWED : Decision.MISSING_ROLE;
    }
}
