package io.keybridge.keycloak.export;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Set;

import org.junit.jupiter.api.Test;

class ExportJsonTest {

    @Test
    void aPageIsOneJsonObjectWithUsersAndNext() throws IOException {
        ExportedUser jane = new ExportedUser("id-1", "jane", "jane@acme.example", true, "Jane \"JJ\"", "Doé", false);
        UserPage page = new UserPage(List.of(jane), 1, Set.of("crm_contact_id"));
        page.addAttribute("id-1", "crm_contact_id", "C-1", null);
        page.addRealmRole("id-1", "member");
        page.addOrganization("id-1", "org-1");
        ByteArrayOutputStream out = new ByteArrayOutputStream();

        ExportJson.writeUsers(page.users(), page.next(), out);

        assertEquals("{\"users\":[{\"id\":\"id-1\",\"username\":\"jane\",\"email\":\"jane@acme.example\",\"emailVerified\":true,"
                + "\"firstName\":\"Jane \\\"JJ\\\"\",\"lastName\":\"Doé\",\"enabled\":false,"
                + "\"attributes\":{\"crm_contact_id\":[\"C-1\"]},\"realmRoles\":[\"member\"],\"organizations\":[\"org-1\"]}],"
                + "\"next\":\"id-1\"}", out.toString(StandardCharsets.UTF_8));
    }

    @Test
    void missingValuesAreNullAndTheLastPageHasNoNext() throws IOException {
        ExportedUser bare = new ExportedUser("id-2", "bare", null, false, null, null, true);
        ByteArrayOutputStream out = new ByteArrayOutputStream();

        ExportJson.writeUsers(List.of(bare), null, out);

        assertEquals("{\"users\":[{\"id\":\"id-2\",\"username\":\"bare\",\"email\":null,\"emailVerified\":false,"
                + "\"firstName\":null,\"lastName\":null,\"enabled\":true,\"attributes\":{},\"realmRoles\":[],\"organizations\":[]}],"
                + "\"next\":null}", out.toString(StandardCharsets.UTF_8));
    }

    @Test
    void invitations() throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();

        ExportJson.writeInvitations(List.of(new PendingInvitation("inv-1", "org-1", "joe@acme.example", 1764500000)), "inv-1", out);

        assertEquals("{\"invitations\":[{\"id\":\"inv-1\",\"organizationId\":\"org-1\",\"email\":\"joe@acme.example\","
                + "\"expiresAt\":1764500000}],\"next\":\"inv-1\"}", out.toString(StandardCharsets.UTF_8));
    }
}
