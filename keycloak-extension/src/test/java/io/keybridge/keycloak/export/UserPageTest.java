package io.keybridge.keycloak.export;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import java.util.Set;

import org.junit.jupiter.api.Test;

class UserPageTest {

    static ExportedUser user(String id) {
        return new ExportedUser(id, "user-" + id, id + "@acme.example", true, "First", "Last", true);
    }

    @Test
    void rowsOfTheRangeAreMergedIntoTheirUsers() {
        UserPage page = new UserPage(List.of(user("a"), user("b"), user("c")), 3, Set.of("crm_contact_id", "phone"));
        page.addAttribute("b", "crm_contact_id", "C-2", null);
        page.addAttribute("b", "phone", null, "+1 555 0100 (a value longer than 255 characters lives here)");
        page.addAttribute("a", "crm_contact_id", "C-1", null);
        page.addRealmRole("a", "member");
        page.addRealmRole("a", "buyer");
        page.addRealmRole("a", "buyer"); // the same role through two rows: once
        page.addOrganization("c", "org-2");
        page.addOrganization("c", "org-1");

        List<ExportedUser> users = page.users();
        assertEquals(List.of("a", "b", "c"), users.stream().map(ExportedUser::id).toList());
        assertEquals(Map.of("crm_contact_id", List.of("C-1")), users.get(0).attributes());
        assertEquals(List.of("buyer", "member"), users.get(0).realmRoles());
        assertEquals(Map.of("crm_contact_id", List.of("C-2"),
                "phone", List.of("+1 555 0100 (a value longer than 255 characters lives here)")), users.get(1).attributes());
        assertEquals(List.of("org-1", "org-2"), users.get(2).organizations());
        assertTrue(users.get(1).organizations().isEmpty() && users.get(2).realmRoles().isEmpty());
    }

    @Test
    void rowsOfOtherIdsAndAttributesNotAskedForAreDropped() {
        // A service account's id can lie inside the page's range: the export leaves it out, and its rows with it.
        UserPage page = new UserPage(List.of(user("a"), user("c")), 10, Set.of("crm_contact_id"));
        page.addAttribute("b", "crm_contact_id", "SA", null);
        page.addRealmRole("b", "admin");
        page.addOrganization("b", "org-1");
        page.addAttribute("a", "password_hint", "secret", null);
        page.addAttribute("a", "crm_contact_id", "C-1", null);

        List<ExportedUser> users = page.users();
        assertEquals(2, users.size());
        assertEquals(Map.of("crm_contact_id", List.of("C-1")), users.get(0).attributes());
        assertTrue(users.get(1).attributes().isEmpty());
    }

    @Test
    void aScanThatLeftRowsOutStillEndsAtItsLastRowAndHasANextPage() {
        // Scanned a, b (a service account or another realm's user: left out), c, d (left out): four rows of four.
        UserPage page = new UserPage(List.of(user("a"), user("c")), 4, "d", 4, Set.of("crm_contact_id"));
        page.addAttribute("d", "crm_contact_id", "other realm", null);
        assertEquals("d", page.lastId());
        assertEquals("d", page.next());
        assertEquals(List.of("a", "c"), page.users().stream().map(ExportedUser::id).toList());

        UserPage onlyLeftOut = new UserPage(List.of(), 2, "b", 2, Set.of());
        assertTrue(!onlyLeftOut.isEmpty() && onlyLeftOut.users().isEmpty());
        assertEquals("b", onlyLeftOut.next()); // nobody of this realm here, but the scan goes on

        assertNull(new UserPage(List.of(user("a")), 3, "z", 4, Set.of()).next());
    }

    @Test
    void aFullPageHasANextPageAfterItsLastIdAShortOneHasNone() {
        UserPage full = new UserPage(List.of(user("a"), user("b")), 2, Set.of());
        assertEquals("b", full.lastId());
        assertEquals("b", full.next());

        UserPage shortPage = new UserPage(List.of(user("a")), 2, Set.of());
        assertNull(shortPage.next());

        UserPage empty = new UserPage(List.of(), 2, Set.of());
        assertTrue(empty.isEmpty());
        assertNull(empty.next());
        assertNull(empty.lastId());
    }
}
