package io.keybridge.keycloak.export;

import java.io.IOException;
import java.io.OutputStream;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.core.JsonEncoding;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;

/**
 * Writes a page straight to the response stream, user by user (Jackson's
 * streaming generator): the body is never built in memory as one string.
 *
 * <pre>
 * {"users": [{"id", "username", "email", "emailVerified", "firstName", "lastName", "enabled",
 *             "attributes": {name: [values]}, "realmRoles": [names], "organizations": [ids]}, ...],
 *  "next": "&lt;the last id, the next page's after&gt;" or null}
 * </pre>
 */
public final class ExportJson {

    private static final JsonFactory FACTORY = new JsonFactory();

    private ExportJson() {
    }

    public static void writeUsers(List<ExportedUser> users, String next, OutputStream out) throws IOException {
        try (JsonGenerator json = FACTORY.createGenerator(out, JsonEncoding.UTF8)) {
            json.writeStartObject();
            json.writeArrayFieldStart("users");
            for (ExportedUser user : users) {
                json.writeStartObject();
                json.writeStringField("id", user.id);
                json.writeStringField("username", user.username);
                json.writeStringField("email", user.email);
                json.writeBooleanField("emailVerified", user.emailVerified);
                json.writeStringField("firstName", user.firstName);
                json.writeStringField("lastName", user.lastName);
                json.writeBooleanField("enabled", user.enabled);
                json.writeObjectFieldStart("attributes");
                for (Map.Entry<String, List<String>> attribute : user.attributes.entrySet()) {
                    writeStrings(json, attribute.getKey(), attribute.getValue());
                }
                json.writeEndObject();
                writeStrings(json, "realmRoles", user.realmRoles);
                writeStrings(json, "organizations", user.organizations);
                json.writeEndObject();
            }
            json.writeEndArray();
            json.writeStringField("next", next);
            json.writeEndObject();
        }
    }

    public static void writeInvitations(List<PendingInvitation> invitations, String next, OutputStream out) throws IOException {
        try (JsonGenerator json = FACTORY.createGenerator(out, JsonEncoding.UTF8)) {
            json.writeStartObject();
            json.writeArrayFieldStart("invitations");
            for (PendingInvitation invitation : invitations) {
                json.writeStartObject();
                json.writeStringField("id", invitation.id());
                json.writeStringField("organizationId", invitation.organizationId());
                json.writeStringField("email", invitation.email());
                json.writeNumberField("expiresAt", invitation.expiresAt());
                json.writeEndObject();
            }
            json.writeEndArray();
            json.writeStringField("next", next);
            json.writeEndObject();
        }
    }

    private static void writeStrings(JsonGenerator json, String field, List<String> values) throws IOException {
        json.writeArrayFieldStart(field);
        for (String value : values) {
            json.writeString(value);
        }
        json.writeEndArray();
    }
}
