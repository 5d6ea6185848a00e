package io.keybridge.keycloak.access;

import java.util.List;

import org.keycloak.Config;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProvider;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProviderFactory;

/** Client-policy executor "keybridge-contract-access" (used by the realm's client profile of the same name). */
public class ContractAccessExecutorFactory implements ClientPolicyExecutorProviderFactory {

    public static final String ID = "keybridge-contract-access";

    @Override
    public String getId() {
        return ID;
    }

    @Override
    public ClientPolicyExecutorProvider create(KeycloakSession session) {
        return new ContractAccessExecutor(session);
    }

    @Override
    public String getHelpText() {
        return "Refuses token requests and refreshes for users whose CRM organization has no active contract "
                + "or whose crm_status is 'left'.";
    }

    @Override
    public List<ProviderConfigProperty> getConfigProperties() {
        return List.of();
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
