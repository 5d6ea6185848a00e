package io.keybridge.keycloak.nudge;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Standard Webhooks signing, as the adapter verifies it: {@code webhook-signature:
 * v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>}, where the key is the
 * base64-decoded part of a {@code whsec_} secret.
 */
public final class NudgeSignature {

    public static final String PREFIX = "whsec_";

    private final byte[] key;

    private NudgeSignature(byte[] key) {
        this.key = key;
    }

    /**
     * Parses a {@code whsec_<base64>} secret.
     *
     * @throws IllegalArgumentException naming what is wrong; never includes the secret
     */
    public static NudgeSignature fromSecret(String secret) {
        if (secret == null || !secret.startsWith(PREFIX) || secret.length() == PREFIX.length()) {
            throw new IllegalArgumentException("the nudge secret must look like whsec_<base64>, the same value as the adapter's KEYBRIDGE_NUDGE_SECRET");
        }
        try {
            return new NudgeSignature(Base64.getDecoder().decode(secret.substring(PREFIX.length())));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("the nudge secret after whsec_ is not valid base64; copy KEYBRIDGE_NUDGE_SECRET exactly");
        }
    }

    /** The signature header value for one message. */
    public String sign(String messageId, long timestampSeconds, byte[] body) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(key, "HmacSHA256"));
            mac.update((messageId + "." + timestampSeconds + ".").getBytes(StandardCharsets.UTF_8));
            mac.update(body);
            return "v1," + Base64.getEncoder().encodeToString(mac.doFinal());
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HmacSHA256 is not available in this JVM", e);
        }
    }

    /** webhook-id, webhook-timestamp, webhook-signature and content-type for `body`. */
    public Map<String, String> headers(String messageId, long timestampSeconds, byte[] body) {
        Map<String, String> headers = new LinkedHashMap<>();
        headers.put("webhook-id", messageId);
        headers.put("webhook-timestamp", Long.toString(timestampSeconds));
        headers.put("webhook-signature", sign(messageId, timestampSeconds, body));
        headers.put("content-type", "application/json");
        return headers;
    }
}
