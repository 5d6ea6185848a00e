package io.keybridge.keycloak.registration;

import java.util.List;

import org.keycloak.Config;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;
import org.keycloak.services.resource.RealmResourceProvider;
import org.keycloak.services.resource.RealmResourceProviderFactory;

/**
 * Serves {@link RegistrationHintResource} under /realms/{realm}/keybridge, rate limited
 * per client address ({@link HintRateLimit}; options
 * {@code --spi-realm-restapi-extension--keybridge--hint-requests-per-minute} (default 30)
 * and {@code --hint-max-clients} (default 10000)).
 */
public class RegistrationHintProviderFactory implements RealmResourceProviderFactory {

    public static final String ID = "keybridge";
    static final int DEFAULT_REQUESTS_PER_MINUTE = 30;
    static final int DEFAULT_MAX_CLIENTS = 10_000;

    private HintRateLimit rateLimit = new HintRateLimit(DEFAULT_REQUESTS_PER_MINUTE, DEFAULT_MAX_CLIENTS);

    @Override
    public String getId() {
        return ID;
    }

    @Override
    public RealmResourceProvider create(KeycloakSession session) {
        return new RealmResourceProvider() {
            @Override
            public Object getResource() {
                return new RegistrationHintResource(session, rateLimit);
            }

            @Override
            public void close() {
            }
        };
    }

    @Override
    public void init(Config.Scope config) {
        rateLimit = new HintRateLimit(config.getInt("hint-requests-per-minute", DEFAULT_REQUESTS_PER_MINUTE),
                config.getInt("hint-max-clients", DEFAULT_MAX_CLIENTS));
    }

    @Override
    public List<ProviderConfigProperty> getConfigMetadata() {
        return ProviderConfigurationBuilder.create()
                .property().name("hint-requests-per-minute").type("int")
                .helpText("Registration hints one client address may ask per minute (a burst of this many, then one every 60/n s).")
                .defaultValue(DEFAULT_REQUESTS_PER_MINUTE).add()
                .property().name("hint-max-clients").type("int")
                .helpText("Client addresses remembered by the rate limit; beyond them, new addresses share one bucket.")
                .defaultValue(DEFAULT_MAX_CLIENTS).add()
                .build();
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
    }

    @Override
    public void close() {
    }
}
