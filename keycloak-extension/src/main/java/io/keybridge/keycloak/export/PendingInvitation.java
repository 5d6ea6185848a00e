package io.keybridge.keycloak.export;

/** An organization invitation that has not expired (Keycloak deletes an accepted one). */
public record PendingInvitation(String id, String organizationId, String email, int expiresAt) {
}
