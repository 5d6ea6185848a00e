package io.keybridge.keycloak.registration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.time.Instant;
import java.util.List;
import java.util.Map;

import io.keybridge.keycloak.access.AccessRule.Organization;
import io.keybridge.keycloak.registration.RegistrationHint.Access;
import org.junit.jupiter.api.Test;

class RegistrationHintTest {

    static final Instant NOW = Instant.parse("2026-11-30T12:00:00Z");
    static final Map<String, Organization> ORGANIZATIONS = Map.of(
            "acme.example", new Organization("crm-acme", Map.of("crm_account_id", List.of("A-1"), "contract_status", List.of("active"))),
            "ended.example", new Organization("crm-ended", Map.of("crm_account_id", List.of("A-2"), "contract_status", List.of("active"),
                    "contract_ends_at", List.of("2026-01-01T00:00:00Z"))),
            "paused.example", new Organization("crm-paused", Map.of("crm_account_id", List.of("A-3"), "contract_status", List.of("suspended"))),
            "partner.example", new Organization("partner", Map.of("contract_status", List.of("active"))));

    static Access hint(String email) {
        return RegistrationHint.forEmail(email, ORGANIZATIONS::get, NOW);
    }

    @Test
    void activeCustomersDomainIsAutomatic() {
        assertEquals(Access.AUTOMATIC, hint("jane@acme.example"));
        assertEquals(Access.AUTOMATIC, hint("  Jane.Doe@ACME.Example "));
    }

    @Test
    void customerWithoutActiveContractNeedsApproval() {
        assertEquals(Access.APPROVAL, hint("joe@ended.example"));
        assertEquals(Access.APPROVAL, hint("joe@paused.example"));
    }

    @Test
    void otherDomainsNeedApproval() {
        assertEquals(Access.APPROVAL, hint("joe@gmail.com"));
        assertEquals(Access.APPROVAL, hint("joe@partner.example"), "an organization that is not a CRM account decides nothing");
        assertEquals(Access.APPROVAL, hint("joe@sub.acme.example"), "domains match exactly, as the adapter matches them");
    }

    @Test
    void unfinishedAddressesGetNoHint() {
        for (String email : new String[] {null, "", "jane", "jane@", "@acme.example", "jane@acme", "jane@acme."}) {
            assertNull(hint(email), String.valueOf(email));
        }
    }

    @Test
    void messageKeysAreTheThemes() {
        assertEquals("keybridgeRegistrationAutomatic", Access.AUTOMATIC.messageKey());
        assertEquals("keybridgeRegistrationApproval", Access.APPROVAL.messageKey());
    }
}
