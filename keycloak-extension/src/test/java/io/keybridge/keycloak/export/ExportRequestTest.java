package io.keybridge.keycloak.export;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Set;

import org.junit.jupiter.api.Test;

class ExportRequestTest {

    @Test
    void defaults() {
        ExportRequest request = ExportRequest.of(null, null, null);
        assertEquals("", request.after());
        assertEquals(ExportRequest.DEFAULT_MAX, request.max());
        assertEquals(Set.of("crm_contact_id"), request.attributes());
    }

    @Test
    void theCallersValues() {
        ExportRequest request = ExportRequest.of("0f3c", "250", List.of("crm_contact_id", "phone", "phone"));
        assertEquals("0f3c", request.after());
        assertEquals(250, request.max());
        assertEquals(List.of("crm_contact_id", "phone"), List.copyOf(request.attributes()));
    }

    @Test
    void badValuesAreRefusedNamingTheParameter() {
        for (String max : List.of("0", "-1", "5001", "ten", "1e3")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ExportRequest.of(null, max, null));
            assertTrue(e.getMessage().startsWith("max must be"), e.getMessage());
        }
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ExportRequest.of("x".repeat(256), null, null))
                .getMessage().startsWith("after must be"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ExportRequest.of(null, null, Arrays.asList(" ")))
                .getMessage().startsWith("attribute must be"));
        List<String> many = new java.util.ArrayList<>();
        for (int i = 0; i < 21; i++) {
            many.add("a" + i);
        }
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ExportRequest.of(null, null, many))
                .getMessage().startsWith("attribute may be"));
        assertEquals(5000, ExportRequest.of(null, "5000", Collections.emptyList()).max());
    }
}
