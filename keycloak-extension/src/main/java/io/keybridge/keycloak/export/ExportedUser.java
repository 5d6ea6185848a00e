package io.keybridge.keycloak.export;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** One user as the bulk export gives it: what a reconciliation compares, nothing more. */
public final class ExportedUser {

    final String id;
    final String username;
    final String email;
    final boolean emailVerified;
    final String firstName;
    final String lastName;
    final boolean enabled;
    /** The requested attributes only, each with its values in the store's order. */
    final Map<String, List<String>> attributes = new LinkedHashMap<>();
    /** Names of the realm roles mapped to the user directly (not through groups or composites). */
    final List<String> realmRoles = new ArrayList<>();
    /** Ids of the organizations the user is a member of. */
    final List<String> organizations = new ArrayList<>();

    public ExportedUser(String id, String username, String email, boolean emailVerified, String firstName, String lastName,
                        boolean enabled) {
        this.id = id;
        this.username = username;
        this.email = email;
        this.emailVerified = emailVerified;
        this.firstName = firstName;
        this.lastName = lastName;
        this.enabled = enabled;
    }

    public String id() {
        return id;
    }

    public Map<String, List<String>> attributes() {
        return attributes;
    }

    public List<String> realmRoles() {
        return realmRoles;
    }

    public List<String> organizations() {
        return organizations;
    }
}
