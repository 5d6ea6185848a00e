package io.keybridge.keycloak.export;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * One page of the export, put together from a few set-based queries: the users
 * (ordered by id, after the previous page's last id), then the attributes, the
 * direct realm roles and the organization memberships of every user whose id
 * lies in the page's range. Rows of ids outside the page (service accounts,
 * which the export leaves out, share the range) are dropped here.
 */
public final class UserPage {

    private final Map<String, ExportedUser> users = new LinkedHashMap<>();
    private final int max;
    private final Set<String> attributeNames;

    /**
     * @param users          the page's users in id order (at most {@code max})
     * @param max            the page size asked for: a full page has a next page
     * @param attributeNames the attributes the caller asked for; others are dropped
     */
    public UserPage(List<ExportedUser> users, int max, Set<String> attributeNames) {
        for (ExportedUser user : users) {
            this.users.put(user.id, user);
        }
        this.max = max;
        this.attributeNames = attributeNames;
    }

    /** The last id of the page: the range's upper end for the other queries, and the next page's `after`. */
    public String lastId() {
        String last = null;
        for (String id : users.keySet()) {
            last = id;
        }
        return last;
    }

    /** The `after` of the next page, or null when this one was the last. */
    public String next() {
        return users.size() < max ? null : lastId();
    }

    public boolean isEmpty() {
        return users.isEmpty();
    }

    /** A row (user id, attribute name, value, long value) of the attribute query. */
    public void addAttribute(String userId, String name, String value, String longValue) {
        ExportedUser user = users.get(userId);
        if (user == null || !attributeNames.contains(name)) {
            return;
        }
        user.attributes.computeIfAbsent(name, n -> new ArrayList<>()).add(value != null ? value : longValue);
    }

    /** A row (user id, realm role name) of the role query. */
    public void addRealmRole(String userId, String roleName) {
        ExportedUser user = users.get(userId);
        if (user != null && !user.realmRoles.contains(roleName)) {
            user.realmRoles.add(roleName);
        }
    }

    /** A row (user id, organization id) of the membership query. */
    public void addOrganization(String userId, String organizationId) {
        ExportedUser user = users.get(userId);
        if (user != null && !user.organizations.contains(organizationId)) {
            user.organizations.add(organizationId);
        }
    }

    /** The users, in id order; roles and organizations sorted so that a page reads the same every time. */
    public List<ExportedUser> users() {
        List<ExportedUser> all = new ArrayList<>(users.values());
        for (ExportedUser user : all) {
            Collections.sort(user.realmRoles);
            Collections.sort(user.organizations);
        }
        return all;
    }
}
