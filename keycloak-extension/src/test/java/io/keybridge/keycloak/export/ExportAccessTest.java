package io.keybridge.keycloak.export;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.keybridge.keycloak.export.ExportAccess.Decision;
import org.junit.jupiter.api.Test;

class ExportAccessTest {

    @Test
    void withoutAValidTokenIs401() {
        assertEquals(401, ExportAccess.decide(false, false, false).status());
        assertEquals(401, ExportAccess.decide(false, true, true).status());
    }

    @Test
    void aPersonIsRefusedEvenWithTheRole() {
        assertEquals(Decision.NOT_A_SERVICE_ACCOUNT, ExportAccess.decide(true, false, true));
        assertEquals(403, Decision.NOT_A_SERVICE_ACCOUNT.status());
    }

    @Test
    void aServiceAccountNeedsTheRole() {
        assertEquals(Decision.MISSING_ROLE, ExportAccess.decide(true, true, false));
        assertEquals(403, Decision.MISSING_ROLE.status());
        assertEquals(Decision.ALLOWED, ExportAccess.decide(true, true, true));
    }
}
