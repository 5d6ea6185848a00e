package io.keybridge.keycloak.export;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * One page of the export, put together from a few set-based queries: the user
 * rows (ordered by id, after the previous page's last id, `max` of them), then
 * the attributes, the direct realm roles and the organization memberships of
 * every user whose id lies in the page's range. The scan is of every user row
 * in id order, so that the database walks its primary key: users of other
 * realms and service accounts are scanned too and left out of the page, and
 * their rows in the range queries are dropped here. A page can thus hold fewer
 * than `max` users (even none) and still have a next page.
 */
public final class UserPage {

    private final Map<String, ExportedUser> users = new LinkedHashMap<>();
    private final int scanned;
    private final String lastScannedId;
    private final int max;
    private final Set<String> attributeNames;

    /**
     * @param users          the page's users in id order
     * @param scanned        how many user rows the scan read (users plus those left out), at most {@code max}
     * @param lastScannedId  the id of the last row scanned, or null when none was
     * @param max            the page size asked for: a full scan has a next page
     * @param attributeNames the attributes the caller asked for; others are dropped
     */
    public UserPage(List<ExportedUser> users, int scanned, String lastScannedId, int max, Set<String> attributeNames) {
        for (ExportedUser user : users) {
            this.users.put(user.id, user);
        }
        this.scanned = scanned;
        this.lastScannedId = lastScannedId;
        this.max = max;
        this.attributeNames = attributeNames;
    }

    /** A page whose scan read exactly these users. */
    public UserPage(List<ExportedUser> users, int max, Set<String> attributeNames) {
        this(users, users.size(), users.isEmpty() ? null : users.get(users.size() - 1).id, max, attributeNames);
    }

    /** The last id scanned: the range's upper end for the other queries, and the next page's `after`. */
    public String lastId() {
        return lastScannedId;
    }

    /** The `after` of the next page, or null when this one was the last. */
    public String next() {
        return scanned < max ? null : lastScannedId;
    }

    /** Whether the scan read no row at all (the range queries are then not needed). */
    public boolean isEmpty() {
        return scanned == 0;
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
