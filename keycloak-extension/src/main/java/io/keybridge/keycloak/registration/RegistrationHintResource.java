package io.keybridge.keycloak.registration;

import java.io.IOException;
import java.time.Instant;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;

import jakarta.ws.rs.GET;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.QueryParam;
import jakarta.ws.rs.core.CacheControl;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import io.keybridge.keycloak.access.AccessRule;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.OrganizationModel;
import org.keycloak.models.RealmModel;
import org.keycloak.organization.OrganizationProvider;
import org.keycloak.theme.Theme;

/**
 * {@code GET /realms/{realm}/keybridge/registration-hint?email=...}: what the
 * registration page shows under the email field (see RegistrationHint). Reads
 * the organization by email domain from Keycloak's store; the text comes from
 * the realm's login theme in the page's language. Rate limited per client
 * address (429 with Retry-After beyond it).
 */
public class RegistrationHintResource {

    private final KeycloakSession session;
    private final HintRateLimit rateLimit;

    public RegistrationHintResource(KeycloakSession session, HintRateLimit rateLimit) {
        this.session = session;
        this.rateLimit = rateLimit;
    }

    @GET
    @Path("registration-hint")
    @Produces(MediaType.APPLICATION_JSON)
    public Response hint(@QueryParam("email") String email) {
        RealmModel realm = session.getContext().getRealm();
        if (!realm.isRegistrationAllowed()) {
            return Response.status(Response.Status.NOT_FOUND).entity(Map.of("error", "registration is off in this realm")).build();
        }
        long wait = rateLimit.acquire(session.getContext().getConnection().getRemoteAddr());
        if (wait > 0) {
            return Response.status(Response.Status.TOO_MANY_REQUESTS).header("Retry-After", wait)
                    .entity(Map.of("error", "too many registration hints from this address; try again in " + wait + " s")).build();
        }
        OrganizationProvider organizations = session.getProvider(OrganizationProvider.class);
        RegistrationHint.Access access = RegistrationHint.forEmail(email, domain -> {
            if (organizations == null || !organizations.isEnabled()) {
                return null;
            }
            OrganizationModel organization = organizations.getByDomainName(domain);
            return organization == null || !organization.isEnabled()
                    ? null : new AccessRule.Organization(organization.getAlias(), organization.getAttributes());
        }, Instant.now());
        CacheControl noStore = new CacheControl();
        noStore.setNoStore(true);
        if (access == null) {
            return Response.ok(Map.of("access", "unknown")).cacheControl(noStore).build();
        }
        return Response.ok(Map.of("access", access.code(), "message", message(realm, access.messageKey())))
                .cacheControl(noStore).build();
    }

    private String message(RealmModel realm, String key) {
        try {
            Theme theme = session.theme().getTheme(Theme.Type.LOGIN);
            Locale locale = session.getContext().resolveLocale(null);
            Properties messages = theme.getEnhancedMessages(realm, locale);
            return messages.getProperty(key, key).replace("''", "'");
        } catch (IOException e) {
            return key;
        }
    }
}
