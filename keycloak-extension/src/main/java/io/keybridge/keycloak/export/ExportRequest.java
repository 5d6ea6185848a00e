package io.keybridge.keycloak.export;

import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/** A page request, checked: every refusal names the parameter and what it accepts. */
public record ExportRequest(String after, int max, Set<String> attributes) {

    public static final int DEFAULT_MAX = 1000;
    public static final int MAX_MAX = 5000;
    public static final List<String> DEFAULT_ATTRIBUTES = List.of("crm_contact_id");
    static final int MAX_ATTRIBUTES = 20;

    /**
     * @param after      the previous page's `next` (an id), or null/empty for the first page
     * @param max        page size, 1 to {@value #MAX_MAX}; null for {@value #DEFAULT_MAX}
     * @param attributes attribute names to include (repeated `attribute`); empty for crm_contact_id only
     * @throws IllegalArgumentException naming the bad parameter
     */
    public static ExportRequest of(String after, String max, List<String> attributes) {
        int size = DEFAULT_MAX;
        if (max != null && !max.isEmpty()) {
            try {
                size = Integer.parseInt(max.trim());
            } catch (NumberFormatException e) {
                size = -1;
            }
            if (size < 1 || size > MAX_MAX) {
                throw new IllegalArgumentException("max must be a whole number from 1 to " + MAX_MAX + " (got '" + max + "')");
            }
        }
        if (after != null && after.length() > 255) {
            throw new IllegalArgumentException("after must be the `next` of the previous page (an id of at most 255 characters)");
        }
        Set<String> names = new LinkedHashSet<>();
        for (String name : attributes == null || attributes.isEmpty() ? DEFAULT_ATTRIBUTES : attributes) {
            if (name == null || name.isBlank() || name.length() > 255) {
                throw new IllegalArgumentException("attribute must be a user attribute's name (1 to 255 characters)");
            }
            names.add(name);
        }
        if (names.size() > MAX_ATTRIBUTES) {
            throw new IllegalArgumentException("attribute may be given at most " + MAX_ATTRIBUTES + " times");
        }
        return new ExportRequest(after == null || after.isEmpty() ? "" : after, size, names);
    }
}
