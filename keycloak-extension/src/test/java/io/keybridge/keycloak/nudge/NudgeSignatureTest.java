package io.keybridge.keycloak.nudge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.charset.StandardCharsets;
import java.util.Map;

import org.junit.jupiter.api.Test;

class NudgeSignatureTest {

    static final String SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    @Test
    void signsLikeTheStandardWebhooksLibrary() {
        // Expected value computed with the Python standardwebhooks package the adapter verifies with:
        // Webhook(SECRET).sign("nudge_1", datetime.fromtimestamp(1700000000, tz=timezone.utc), '{"type":"keycloak.nudge"}')
        String signature = NudgeSignature.fromSecret(SECRET)
                .sign("nudge_1", 1700000000L, "{\"type\":\"keycloak.nudge\"}".getBytes(StandardCharsets.UTF_8));
        assertEquals("v1,VyRz996YuhoW/h9mkcvmTHfn20xU9HuQuzao3YhTJFc=", signature);
    }

    @Test
    void headersCarryIdTimestampAndSignature() {
        Map<String, String> headers = NudgeSignature.fromSecret(SECRET).headers("nudge_2", 42L, new byte[0]);
        assertEquals("nudge_2", headers.get("webhook-id"));
        assertEquals("42", headers.get("webhook-timestamp"));
        assertEquals("application/json", headers.get("content-type"));
        assertEquals(NudgeSignature.fromSecret(SECRET).sign("nudge_2", 42L, new byte[0]), headers.get("webhook-signature"));
    }

    @Test
    void badSecretsAreRefusedWithoutEchoingThem() {
        IllegalArgumentException noPrefix = assertThrows(IllegalArgumentException.class, () -> NudgeSignature.fromSecret("s3cr3t-value"));
        assertFalse(noPrefix.getMessage().contains("s3cr3t-value"));
        assertThrows(IllegalArgumentException.class, () -> NudgeSignature.fromSecret("whsec_"));
        IllegalArgumentException notBase64 = assertThrows(IllegalArgumentException.class, () -> NudgeSignature.fromSecret("whsec_**not-b64**"));
        assertFalse(notBase64.getMessage().contains("not-b64"));
        assertThrows(IllegalArgumentException.class, () -> NudgeSignature.fromSecret(null));
    }
}
