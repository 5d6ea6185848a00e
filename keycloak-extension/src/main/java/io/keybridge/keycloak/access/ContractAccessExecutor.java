package io.keybridge.keycloak.access;

import java.util.EnumSet;
import java.util.Set;

import jakarta.ws.rs.core.Response;

import org.keycloak.OAuthErrorException;
import org.keycloak.models.AuthenticatedClientSessionModel;
import org.keycloak.models.ClientSessionContext;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.UserModel;
import org.keycloak.models.UserSessionModel;
import org.keycloak.representations.idm.ClientPolicyExecutorConfigurationRepresentation;
import org.keycloak.services.clientpolicy.ClientPolicyContext;
import org.keycloak.services.clientpolicy.ClientPolicyEvent;
import org.keycloak.services.clientpolicy.ClientPolicyException;
import org.keycloak.services.clientpolicy.context.ClientPolicyClientSessionContext;
import org.keycloak.services.clientpolicy.context.ResourceOwnerPasswordCredentialsResponseContext;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProvider;

/**
 * Refuses new tokens for people {@link AccessRule} refuses: the refresh grant
 * (checked once the refresh token is validated, when the user session is
 * known), the authorization code exchange and the password grant's response
 * (a second line behind the authenticator). Service accounts belong to no
 * organization and are never refused.
 */
public class ContractAccessExecutor implements ClientPolicyExecutorProvider<ClientPolicyExecutorConfigurationRepresentation> {

    static final Set<ClientPolicyEvent> CHECKED = EnumSet.of(
            ClientPolicyEvent.TOKEN_REQUEST,
            ClientPolicyEvent.TOKEN_REFRESH_RESPONSE,
            ClientPolicyEvent.RESOURCE_OWNER_PASSWORD_CREDENTIALS_RESPONSE,
            ClientPolicyEvent.DEVICE_TOKEN_RESPONSE,
            ClientPolicyEvent.BACKCHANNEL_TOKEN_RESPONSE);

    private final KeycloakSession session;

    public ContractAccessExecutor(KeycloakSession session) {
        this.session = session;
    }

    @Override
    public String getProviderId() {
        return ContractAccessExecutorFactory.ID;
    }

    @Override
    public void executeOnEvent(ClientPolicyContext context) throws ClientPolicyException {
        if (!CHECKED.contains(context.getEvent())) {
            return;
        }
        UserModel user = userOf(context);
        AccessRule.Decision decision = ContractAccess.decide(session, user);
        if (!decision.allowed()) {
            throw new ClientPolicyException(OAuthErrorException.INVALID_GRANT,
                    "Access ended (" + decision.reason() + "): contact your account manager.", Response.Status.BAD_REQUEST);
        }
    }

    private static UserModel userOf(ClientPolicyContext context) {
        AuthenticatedClientSessionModel clientSession = null;
        if (context instanceof ClientPolicyClientSessionContext withSession) {
            clientSession = withSession.getClientSession();
        } else if (context instanceof ResourceOwnerPasswordCredentialsResponseContext ropc) {
            ClientSessionContext clientSessionContext = ropc.getClientSessionContext();
            clientSession = clientSessionContext == null ? null : clientSessionContext.getClientSession();
        }
        UserSessionModel userSession = clientSession == null ? null : clientSession.getUserSession();
        return userSession == null ? null : userSession.getUser();
    }
}
