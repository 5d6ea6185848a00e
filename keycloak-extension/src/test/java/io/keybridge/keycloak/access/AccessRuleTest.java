package io.keybridge.keycloak.access;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Instant;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import io.keybridge.keycloak.access.AccessRule.Decision;
import io.keybridge.keycloak.access.AccessRule.Organization;
import org.junit.jupiter.api.Test;

class AccessRuleTest {

    static final Instant NOW = Instant.parse("2026-11-30T12:00:00Z");

    static Organization customer(String status, String endsAt) {
        Map<String, List<String>> attributes = new HashMap<>();
        attributes.put("crm_account_id", List.of("ACC-1"));
        if (status != null) {
            attributes.put("contract_status", List.of(status));
        }
        if (endsAt != null) {
            attributes.put("contract_ends_at", List.of(endsAt));
        }
        return new Organization("crm-acc-1", attributes);
    }

    static Organization plainOrganization() {
        return new Organization("partners", Map.of("contract_status", List.of("suspended")));
    }

    @Test
    void activeContractWithoutEndDateIsAllowed() {
        assertEquals(Decision.ALLOWED, AccessRule.decide(null, List.of(customer("active", null)), NOW));
    }

    @Test
    void activeContractEndingLaterIsAllowed() {
        assertEquals(Decision.ALLOWED, AccessRule.decide(null, List.of(customer("active", "2026-12-01T00:00:00Z")), NOW));
    }

    @Test
    void everyStatusOtherThanActiveIsRefused() {
        for (String status : List.of("suspended", "expired", "none", "Active ", "")) {
            assertEquals(Decision.CONTRACT_INACTIVE, AccessRule.decide(null, List.of(customer(status, null)), NOW), status);
        }
    }

    @Test
    void missingStatusOnACrmOrganizationIsRefused() {
        assertEquals(Decision.CONTRACT_INACTIVE, AccessRule.decide(null, List.of(customer(null, null)), NOW));
    }

    @Test
    void endDateInThePastIsRefusedEvenWhileStatusStillSaysActive() {
        assertEquals(Decision.CONTRACT_INACTIVE, AccessRule.decide(null, List.of(customer("active", "2026-11-30T11:59:59Z")), NOW));
        assertEquals(Decision.CONTRACT_INACTIVE, AccessRule.decide(null, List.of(customer("active", "2026-11-30T12:00:00Z")), NOW),
                "the end date itself is no longer covered");
    }

    @Test
    void endDateWithAnOffsetIsReadInUtc() {
        // 13:30+02:00 is 11:30Z: already past
        assertEquals(Decision.CONTRACT_INACTIVE, AccessRule.decide(null, List.of(customer("active", "2026-11-30T13:30:00+02:00")), NOW));
        assertEquals(Decision.ALLOWED, AccessRule.decide(null, List.of(customer("active", "2026-11-30T14:30:00+02:00")), NOW));
    }

    @Test
    void unreadableEndDateFailsClosed() {
        assertEquals(Decision.CONTRACT_INACTIVE, AccessRule.decide(null, List.of(customer("active", "next spring")), NOW));
    }

    @Test
    void personInNoOrganizationIsNotRefusedByThisRule() {
        assertEquals(Decision.ALLOWED, AccessRule.decide(null, List.of(), NOW));
        assertEquals(Decision.ALLOWED, AccessRule.decide("", List.of(), NOW));
    }

    @Test
    void organizationThatIsNotACrmAccountIsIgnored() {
        assertEquals(Decision.ALLOWED, AccessRule.decide(null, List.of(plainOrganization()), NOW));
    }

    @Test
    void personWhoLeftIsRefusedWhateverTheContract() {
        assertEquals(Decision.LEFT_COMPANY, AccessRule.decide("left", List.of(customer("active", null)), NOW));
        assertEquals(Decision.LEFT_COMPANY, AccessRule.decide("LEFT", List.of(), NOW));
        assertEquals(Decision.ALLOWED, AccessRule.decide("active", List.of(customer("active", null)), NOW));
    }

    @Test
    void oneActiveCustomerAmongSeveralIsEnough() {
        assertEquals(Decision.ALLOWED,
                AccessRule.decide(null, List.of(customer("active", null), customer("suspended", null)), NOW));
        assertEquals(Decision.ALLOWED,
                AccessRule.decide(null, List.of(customer("expired", null), customer("active", "2026-12-01T00:00:00Z")), NOW));
    }

    @Test
    void everyCustomerCutOffRefuses() {
        assertEquals(Decision.CONTRACT_INACTIVE,
                AccessRule.decide(null, List.of(customer("suspended", null), customer("active", "2026-11-01T00:00:00Z")), NOW));
    }

    @Test
    void anOrganizationThatIsNotACustomerGivesNoAccessBesideACutOffOne() {
        assertEquals(Decision.CONTRACT_INACTIVE,
                AccessRule.decide(null, List.of(plainOrganization(), customer("suspended", null)), NOW));
    }

    @Test
    void leavingWinsOverAnyActiveContract() {
        assertEquals(Decision.LEFT_COMPANY,
                AccessRule.decide("left", List.of(customer("active", null), customer("active", null)), NOW));
    }

    @Test
    void decisionsCarryTheAdaptersReasonCodes() {
        assertTrue(Decision.ALLOWED.allowed());
        assertNull(Decision.ALLOWED.reason());
        assertFalse(Decision.CONTRACT_INACTIVE.allowed());
        assertEquals("contract_inactive", Decision.CONTRACT_INACTIVE.reason());
        assertEquals("left_company", Decision.LEFT_COMPANY.reason());
        assertEquals("keybridgeAccessEnded", ContractAccess.messageKey(Decision.CONTRACT_INACTIVE));
        assertEquals("keybridgeAccessEndedLeft", ContractAccess.messageKey(Decision.LEFT_COMPANY));
    }
}
