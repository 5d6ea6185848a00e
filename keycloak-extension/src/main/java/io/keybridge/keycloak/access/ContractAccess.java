package io.keybridge.keycloak.access;

import java.time.Instant;
import java.util.List;
import java.util.stream.Collectors;

import org.jboss.logging.Logger;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.UserModel;
import org.keycloak.organization.OrganizationProvider;

/**
 * Reads what {@link AccessRule} needs from Keycloak's own models: the user's
 * attributes and their organizations. Nothing leaves Keycloak: no call to the
 * adapter, no network, so a login never waits on anything but Keycloak's store.
 */
public final class ContractAccess {

    private static final Logger LOG = Logger.getLogger(ContractAccess.class);

    /** Message key of the refusal page (keycloak-theme/keybridge/login/messages). */
    public static final String MESSAGE_CONTRACT_INACTIVE = "keybridgeAccessEnded";
    public static final String MESSAGE_LEFT_COMPANY = "keybridgeAccessEndedLeft";
    /** Event error recorded on LOGIN_ERROR / REFRESH_TOKEN_ERROR. */
    public static final String EVENT_ERROR = "access_ended";

    private ContractAccess() {
    }

    /** The decision for `user` now; a service account or a user without organizations is allowed. */
    public static AccessRule.Decision decide(KeycloakSession session, UserModel user) {
        if (user == null || user.getServiceAccountClientLink() != null) {
            return AccessRule.Decision.ALLOWED;
        }
        List<AccessRule.Organization> organizations = List.of();
        OrganizationProvider provider = session.getProvider(OrganizationProvider.class);
        if (provider != null && provider.isEnabled()) {
            organizations = provider.getByMember(user)
                    .map(o -> new AccessRule.Organization(o.getAlias(), o.getAttributes()))
                    .collect(Collectors.toList());
        }
        AccessRule.Decision decision = AccessRule.decide(user.getFirstAttribute(AccessRule.CRM_STATUS), organizations, Instant.now());
        if (!decision.allowed()) {
            LOG.debugf("keybridge: access refused for user %s (%s)", user.getId(), decision.reason());
        }
        return decision;
    }

    /** The message key that explains `decision` to the person. */
    public static String messageKey(AccessRule.Decision decision) {
        return decision == AccessRule.Decision.LEFT_COMPANY ? MESSAGE_LEFT_COMPANY : MESSAGE_CONTRACT_INACTIVE;
    }
}
