package io.keybridge.keycloak.access;

import java.util.List;

import org.keycloak.Config;
import org.keycloak.authentication.Authenticator;
import org.keycloak.authentication.AuthenticatorFactory;
import org.keycloak.models.AuthenticationExecutionModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;

/** "Keybridge: contract access" for browser flows (a themed page). */
public class ContractAccessAuthenticatorFactory implements AuthenticatorFactory {

    public static final String ID = "keybridge-contract-access";

    private static final AuthenticationExecutionModel.Requirement[] REQUIREMENTS = {
        AuthenticationExecutionModel.Requirement.REQUIRED, AuthenticationExecutionModel.Requirement.DISABLED,
    };

    protected boolean directGrant() {
        return false;
    }

    @Override
    public String getId() {
        return ID;
    }

    @Override
    public String getDisplayType() {
        return "Keybridge: contract access";
    }

    @Override
    public String getHelpText() {
        return "Refuses the login when the user's CRM organization has no active contract (contract_status, "
                + "contract_ends_at) or the user's crm_status is 'left'. Place it after the user is identified.";
    }

    @Override
    public String getReferenceCategory() {
        return "keybridge-contract-access";
    }

    @Override
    public boolean isConfigurable() {
        return false;
    }

    @Override
    public AuthenticationExecutionModel.Requirement[] getRequirementChoices() {
        return REQUIREMENTS;
    }

    @Override
    public boolean isUserSetupAllowed() {
        return false;
    }

    @Override
    public List<ProviderConfigProperty> getConfigProperties() {
        return List.of();
    }

    @Override
    public Authenticator create(KeycloakSession session) {
        return new ContractAccessAuthenticator(directGrant());
    }

    @Override
    public void init(Config.Scope config) {
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
    }

    @Override
    public void close() {
    }
}
