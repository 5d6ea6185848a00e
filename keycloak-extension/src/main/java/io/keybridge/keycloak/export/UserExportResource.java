package io.keybridge.keycloak.export;

import java.util.List;
import java.util.Map;

import jakarta.ws.rs.GET;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.QueryParam;
import jakarta.ws.rs.WebApplicationException;
import jakarta.ws.rs.core.CacheControl;
import jakarta.ws.rs.core.HttpHeaders;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;
import jakarta.ws.rs.core.StreamingOutput;

import org.keycloak.common.util.Time;
import org.keycloak.models.ClientModel;
import org.keycloak.models.Constants;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.RoleModel;
import org.keycloak.models.UserModel;
import org.keycloak.services.managers.AppAuthManager;
import org.keycloak.services.managers.AuthenticationManager;

/**
 * {@code GET /realms/{realm}/keybridge-export/users?after=&max=&attribute=...} and
 * {@code GET /realms/{realm}/keybridge-export/invitations?after=&max=}: the realm's
 * users (and pending organization invitations) in keyset pages, as a
 * reconciliation needs them (see ExportQueries for the reads, ExportJson for
 * the body, ExportAccess for who may call). Local users only: users of a
 * federation provider (LDAP) appear as Keycloak stored them.
 */
public class UserExportResource {

    private final KeycloakSession session;

    public UserExportResource(KeycloakSession session) {
        this.session = session;
    }

    @GET
    @Path("users")
    @Produces(MediaType.APPLICATION_JSON)
    public Response users(@QueryParam("after") String after, @QueryParam("max") String max,
                          @QueryParam("attribute") List<String> attributes) {
        Response refused = refusal();
        if (refused != null) {
            return refused;
        }
        ExportRequest request;
        try {
            request = ExportRequest.of(after, max, attributes);
        } catch (IllegalArgumentException e) {
            return error(Response.Status.BAD_REQUEST, e.getMessage());
        }
        RealmModel realm = session.getContext().getRealm();
        // All reads happen here, inside the request's transaction; the body is then written from the page alone.
        UserPage page = new ExportQueries(ExportQueries.entityManager(session), realm.getId()).users(request);
        List<ExportedUser> users = page.users();
        String next = page.next();
        StreamingOutput body = out -> ExportJson.writeUsers(users, next, out);
        return Response.ok(body, MediaType.APPLICATION_JSON_TYPE).cacheControl(noStore()).build();
    }

    @GET
    @Path("invitations")
    @Produces(MediaType.APPLICATION_JSON)
    public Response invitations(@QueryParam("after") String after, @QueryParam("max") String max) {
        Response refused = refusal();
        if (refused != null) {
            return refused;
        }
        ExportRequest request;
        try {
            request = ExportRequest.of(after, max, List.of());
        } catch (IllegalArgumentException e) {
            return error(Response.Status.BAD_REQUEST, e.getMessage());
        }
        RealmModel realm = session.getContext().getRealm();
        List<PendingInvitation> invitations = new ExportQueries(ExportQueries.entityManager(session), realm.getId())
                .invitations(request.after(), request.max(), Time.currentTime());
        String next = invitations.size() < request.max() ? null : invitations.get(invitations.size() - 1).id();
        StreamingOutput body = out -> ExportJson.writeInvitations(invitations, next, out);
        return Response.ok(body, MediaType.APPLICATION_JSON_TYPE).cacheControl(noStore()).build();
    }

    /** Null when the caller may read the export, else the 401/403 to answer. */
    private Response refusal() {
        RealmModel realm = session.getContext().getRealm();
        AuthenticationManager.AuthResult auth;
        try {
            auth = new AppAuthManager.BearerTokenAuthenticator(session).setRealm(realm).authenticate();
        } catch (WebApplicationException e) { // a malformed Authorization header
            auth = null;
        }
        UserModel user = auth == null ? null : auth.user();
        boolean serviceAccount = user != null && user.getServiceAccountClientLink() != null;
        ExportAccess.Decision decision = ExportAccess.decide(user != null, serviceAccount, serviceAccount && holdsRole(realm, user));
        if (decision == ExportAccess.Decision.ALLOWED) {
            return null;
        }
        Response.ResponseBuilder response = Response.status(decision.status()).entity(Map.of("error", decision.reason()))
                .type(MediaType.APPLICATION_JSON_TYPE).cacheControl(noStore());
        if (decision.status() == 401) {
            response.header(HttpHeaders.WWW_AUTHENTICATE, "Bearer realm=\"" + realm.getName() + "\"");
        }
        return response.build();
    }

    private static boolean holdsRole(RealmModel realm, UserModel user) {
        ClientModel management = realm.getClientByClientId(Constants.REALM_MANAGEMENT_CLIENT_ID);
        if (management == null) {
            return false;
        }
        for (String name : ExportAccess.ROLES) {
            RoleModel role = management.getRole(name);
            if (role != null && user.hasRole(role)) {
                return true;
            }
        }
        return false;
    }

    private static Response error(Response.Status status, String message) {
        return Response.status(status).entity(Map.of("error", message)).type(MediaType.APPLICATION_JSON_TYPE)
                .cacheControl(noStore()).build();
    }

    private static CacheControl noStore() {
        CacheControl noStore = new CacheControl();
        noStore.setNoStore(true);
        return noStore;
    }
}
