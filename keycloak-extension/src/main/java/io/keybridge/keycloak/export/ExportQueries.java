package io.keybridge.keycloak.export;

import java.util.ArrayList;
import java.util.List;

import jakarta.persistence.EntityManager;

import org.keycloak.models.KeycloakSession;
import org.keycloak.provider.Provider;

/**
 * The export's reads: a handful of set-based JPQL queries per page on Keycloak's
 * own JPA store, never one per user (the admin API's listing resolves each
 * user's organizations through the user cache, one query per user).
 *
 * Pages are keyset-paged by user id: the users with `id > after`, ordered by
 * id, at most `max`; the attributes, realm roles and memberships are then read
 * for the id range (after, last id of the page]. Ordering and range use the
 * database's comparison of ids, so a page never skips or repeats a user even
 * while users are added or removed (a user added behind the cursor is read by
 * the next export, not this one). The three range queries name only the user id
 * column of their table (a range scan of its user index, no join to USER_ENTITY):
 * rows of other users whose ids fall in the range (service accounts, other
 * realms' users) are dropped by UserPage.
 *
 * Every query is shaped so that any database walks an index of user ids: the
 * user scan names no other column (a condition on the realm made H2 scan the
 * realm's index, every user, for each page), and the attribute query names no
 * attribute (H2 then scanned the index of all values of that name); the realm,
 * service accounts and attribute names are filtered in Java (UserPage).
 *
 * The entities are named in JPQL only (UserEntity, ...): keycloak-model-jpa's
 * classes are on Keycloak's class path but not a compile-time dependency (its
 * parent POM is not published on Maven Central), and so is its connection
 * provider, which is looked up by name.
 */
public final class ExportQueries {

    static final String USERS =
            "select u.id, u.username, u.email, u.emailVerified, u.firstName, u.lastName, u.enabled, u.realmId,"
            + " u.serviceAccountClientLink from UserEntity u where u.id > :after order by u.id";
    static final String ATTRIBUTES =
            "select a.user.id, a.name, a.value, a.longValue from UserAttributeEntity a"
            + " where a.user.id > :after and a.user.id <= :last";
    static final String REALM_ROLES =
            "select m.user.id, r.name from UserRoleMappingEntity m, RoleEntity r"
            + " where r.id = m.roleId and r.clientRole = false and r.realmId = :realm"
            + " and m.user.id > :after and m.user.id <= :last";
    static final String MEMBERSHIPS =
            "select m.user.id, o.id from UserGroupMembershipEntity m, OrganizationEntity o"
            + " where o.groupId = m.groupId and o.realmId = :realm"
            + " and m.user.id > :after and m.user.id <= :last";
    static final String INVITATIONS =
            "select i.id, i.organizationId, i.email, i.expiresAt from OrganizationInvitationEntity i, OrganizationEntity o"
            + " where o.id = i.organizationId and o.realmId = :realm and i.expiresAt >= :now and i.id > :after order by i.id";

    private static final String CONNECTION_PROVIDER = "org.keycloak.connections.jpa.JpaConnectionProvider";

    private final EntityManager em;
    private final String realmId;

    public ExportQueries(EntityManager em, String realmId) {
        this.em = em;
        this.realmId = realmId;
    }

    /** Keycloak's EntityManager for this request's transaction. */
    public static EntityManager entityManager(KeycloakSession session) {
        try {
            Class<? extends Provider> type = Class.forName(CONNECTION_PROVIDER, true, Provider.class.getClassLoader())
                    .asSubclass(Provider.class);
            Provider provider = session.getProvider(type);
            if (provider == null) {
                throw new IllegalStateException("Keycloak has no JPA store (" + CONNECTION_PROVIDER + "): the export needs one");
            }
            return (EntityManager) type.getMethod("getEntityManager").invoke(provider);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("Keycloak's JPA store is not reachable: " + e, e);
        }
    }

    /** One page of users with their attributes, direct realm roles and organizations: four queries. */
    public UserPage users(ExportRequest request) {
        List<ExportedUser> users = new ArrayList<>();
        List<?> rows = em.createQuery(USERS)
                .setParameter("after", request.after())
                .setMaxResults(request.max())
                .getResultList();
        String lastScanned = null;
        for (Object row : rows) {
            Object[] r = (Object[]) row;
            lastScanned = (String) r[0];
            if (realmId.equals(r[7]) && r[8] == null) { // this realm's people, not its service accounts
                users.add(new ExportedUser((String) r[0], (String) r[1], (String) r[2], Boolean.TRUE.equals(r[3]), (String) r[4],
                        (String) r[5], Boolean.TRUE.equals(r[6])));
            }
        }
        UserPage page = new UserPage(users, rows.size(), lastScanned, request.max(), request.attributes());
        if (page.isEmpty()) {
            return page;
        }
        String last = page.lastId();
        List<?> attributes = em.createQuery(ATTRIBUTES).setParameter("after", request.after()).setParameter("last", last)
                .getResultList();
        for (Object row : attributes) {
            Object[] r = (Object[]) row;
            page.addAttribute((String) r[0], (String) r[1], (String) r[2], (String) r[3]);
        }
        for (Object row : range(REALM_ROLES, request.after(), last).getResultList()) {
            Object[] r = (Object[]) row;
            page.addRealmRole((String) r[0], (String) r[1]);
        }
        for (Object row : range(MEMBERSHIPS, request.after(), last).getResultList()) {
            Object[] r = (Object[]) row;
            page.addOrganization((String) r[0], (String) r[1]);
        }
        return page;
    }

    /** One page of the realm's pending (unexpired) organization invitations, ordered by id. */
    public List<PendingInvitation> invitations(String after, int max, int now) {
        List<PendingInvitation> invitations = new ArrayList<>();
        List<?> rows = em.createQuery(INVITATIONS)
                .setParameter("realm", realmId)
                .setParameter("after", after)
                .setParameter("now", now)
                .setMaxResults(max)
                .getResultList();
        for (Object row : rows) {
            Object[] r = (Object[]) row;
            invitations.add(new PendingInvitation((String) r[0], (String) r[1], (String) r[2], ((Number) r[3]).intValue()));
        }
        return invitations;
    }

    private jakarta.persistence.Query range(String jpql, String after, String last) {
        return em.createQuery(jpql).setParameter("realm", realmId).setParameter("after", after).setParameter("last", last);
    }
}
