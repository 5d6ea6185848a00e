package io.keybridge.keycloak.nudge;

import java.net.URI;
import java.time.Duration;
import java.util.List;
import java.util.function.Function;

import org.jboss.logging.Logger;
import org.keycloak.Config;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.EventListenerProviderFactory;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;
import org.keycloak.provider.ServerInfoAwareProviderFactory;

import java.util.Map;

/**
 * Event listener "keybridge-nudge". Configured through Keycloak's SPI options
 * ({@code --spi-events-listener--keybridge-nudge--url=...}, env
 * {@code KC_SPI_EVENTS_LISTENER__KEYBRIDGE_NUDGE__URL}; likewise {@code secret},
 * {@code queue-capacity}, {@code timeout-ms}), or, when those are unset, the
 * adapter's own names {@code KEYBRIDGE_NUDGE_URL} and {@code KEYBRIDGE_NUDGE_SECRET}
 * from the environment. Without a URL and secret the listener does nothing and
 * the adapter polls on its own.
 */
public class NudgeListenerFactory implements EventListenerProviderFactory, ServerInfoAwareProviderFactory {

    public static final String ID = "keybridge-nudge";
    private static final Logger LOG = Logger.getLogger(NudgeListenerFactory.class);

    private NudgeSender sender;
    private String state = "off";

    @Override
    public String getId() {
        return ID;
    }

    /** Settings from the SPI scope, then the environment. */
    record Settings(URI url, NudgeSignature signature, int capacity, Duration timeout) {

        /**
         * Null when nudges are off (no URL or no secret).
         *
         * @throws IllegalArgumentException naming the option and the fix
         */
        static Settings read(Function<String, String> option, Function<String, String> env) {
            String url = firstNonBlank(option.apply("url"), env.apply("KEYBRIDGE_NUDGE_URL"));
            String secret = firstNonBlank(option.apply("secret"), env.apply("KEYBRIDGE_NUDGE_SECRET"));
            if (url == null || secret == null) {
                return null;
            }
            URI uri;
            try {
                uri = URI.create(url);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("keybridge-nudge url '" + url + "' is not a URL; set it to the adapter's <base>/internal/keycloak-nudge");
            }
            if (!"http".equals(uri.getScheme()) && !"https".equals(uri.getScheme())) {
                throw new IllegalArgumentException("keybridge-nudge url '" + url + "' must start with http:// or https://");
            }
            return new Settings(uri, NudgeSignature.fromSecret(secret),
                    positive(option.apply("queue-capacity"), 64, "queue-capacity"),
                    Duration.ofMillis(positive(option.apply("timeout-ms"), 2000, "timeout-ms")));
        }

        private static int positive(String raw, int fallback, String name) {
            if (raw == null || raw.isBlank()) {
                return fallback;
            }
            try {
                int value = Integer.parseInt(raw.trim());
                if (value > 0) {
                    return value;
                }
            } catch (NumberFormatException ignored) {
                // reported below
            }
            throw new IllegalArgumentException("keybridge-nudge " + name + " '" + raw + "' must be a positive whole number");
        }

        private static String firstNonBlank(String a, String b) {
            if (a != null && !a.isBlank()) {
                return a.trim();
            }
            return b != null && !b.isBlank() ? b.trim() : null;
        }
    }

    @Override
    public void init(Config.Scope config) {
        try {
            Settings settings = Settings.read(config::get, System::getenv);
            if (settings == null) {
                LOG.info("keybridge-nudge: no adapter URL and secret configured (KEYBRIDGE_NUDGE_URL, KEYBRIDGE_NUDGE_SECRET); "
                        + "nudges are off and the adapter reads the event log on its own schedule");
                return;
            }
            sender = NudgeSender.create(settings.url(), settings.signature(), settings.capacity(), settings.timeout());
            state = "on: " + settings.url();
            LOG.infof("keybridge-nudge: nudging %s after relevant events (queue %d, timeout %d ms)",
                    settings.url(), settings.capacity(), settings.timeout().toMillis());
        } catch (IllegalArgumentException e) {
            state = "off: " + e.getMessage();
            LOG.errorf("keybridge-nudge is off: %s", e.getMessage());
        }
    }

    @Override
    public EventListenerProvider create(KeycloakSession session) {
        return new NudgeListener(session, sender);
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
    }

    @Override
    public List<ProviderConfigProperty> getConfigMetadata() {
        return ProviderConfigurationBuilder.create()
                .property().name("url").type("string").helpText("The adapter's nudge endpoint, <adapter>/internal/keycloak-nudge (or KEYBRIDGE_NUDGE_URL).").add()
                .property().name("secret").type("password").helpText("whsec_ secret shared with the adapter (or KEYBRIDGE_NUDGE_SECRET).").add()
                .property().name("queue-capacity").type("int").defaultValue("64").helpText("Nudges waiting to be sent; more are dropped.").add()
                .property().name("timeout-ms").type("int").defaultValue("2000").helpText("Connect and request timeout.").add()
                .build();
    }

    @Override
    public Map<String, String> getOperationalInfo() {
        return Map.of("nudge", state);
    }

    @Override
    public void close() {
        if (sender != null) {
            sender.close();
        }
    }
}
