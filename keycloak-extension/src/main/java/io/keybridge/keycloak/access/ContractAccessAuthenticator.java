package io.keybridge.keycloak.access;

import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import org.keycloak.OAuthErrorException;
import org.keycloak.authentication.AuthenticationFlowContext;
import org.keycloak.authentication.AuthenticationFlowError;
import org.keycloak.authentication.Authenticator;
import org.keycloak.events.Details;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;
import org.keycloak.representations.idm.OAuth2ErrorRepresentation;

/**
 * Refuses the login of someone whose company's contract is not active, or who
 * left the company (see {@link AccessRule}). Placed after the steps that
 * identify the user: in the browser flow it shows the theme's
 * {@code keybridge-access-ended.ftl} page (403), in the direct-grant flow it
 * answers {@code invalid_grant} as JSON, like Keycloak does for a disabled account.
 */
public class ContractAccessAuthenticator implements Authenticator {

    /** Template in keycloak-theme/keybridge/login. */
    public static final String PAGE = "keybridge-access-ended.ftl";

    private final boolean directGrant;

    public ContractAccessAuthenticator(boolean directGrant) {
        this.directGrant = directGrant;
    }

    @Override
    public void authenticate(AuthenticationFlowContext context) {
        UserModel user = context.getUser();
        AccessRule.Decision decision = ContractAccess.decide(context.getSession(), user);
        if (decision.allowed()) {
            context.success();
            return;
        }
        context.getEvent().user(user).detail(Details.REASON, decision.reason()).error(ContractAccess.EVENT_ERROR);
        Response refusal;
        if (directGrant) {
            refusal = Response.status(Response.Status.BAD_REQUEST)
                    .entity(new OAuth2ErrorRepresentation(OAuthErrorException.INVALID_GRANT,
                            "Access ended (" + decision.reason() + "): contact your account manager."))
                    .type(MediaType.APPLICATION_JSON_TYPE)
                    .build();
        } else {
            refusal = context.form()
                    .setAttribute("keybridgeReason", decision.reason())
                    .setError(ContractAccess.messageKey(decision))
                    .setStatus(Response.Status.FORBIDDEN)
                    .createForm(PAGE);
        }
        context.failure(AuthenticationFlowError.ACCESS_DENIED, refusal);
    }

    @Override
    public void action(AuthenticationFlowContext context) {
        authenticate(context);
    }

    @Override
    public boolean requiresUser() {
        return true;
    }

    @Override
    public boolean configuredFor(KeycloakSession session, RealmModel realm, UserModel user) {
        return true;
    }

    @Override
    public void setRequiredActions(KeycloakSession session, RealmModel realm, UserModel user) {
    }

    @Override
    public void close() {
    }
}
