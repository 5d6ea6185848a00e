package io.keybridge.keycloak.nudge;

import java.util.EnumSet;
import java.util.Set;

import org.keycloak.events.Event;
import org.keycloak.events.EventListenerProvider;
import org.keycloak.events.EventType;
import org.keycloak.events.admin.AdminEvent;
import org.keycloak.events.admin.ResourceType;
import org.keycloak.models.AbstractKeycloakTransaction;
import org.keycloak.models.KeycloakSession;

/**
 * After each event the adapter reads (user: registration, login, profile,
 * email, password; admin: users, organization memberships, role mappings),
 * queues a nudge once Keycloak's transaction has committed, so the adapter
 * never reads the log before the event is in it. Nothing is sent when the
 * transaction rolls back, and nothing here waits on the network.
 */
public class NudgeListener implements EventListenerProvider {

    static final Set<EventType> USER_EVENTS = EnumSet.of(
            EventType.REGISTER, EventType.LOGIN, EventType.UPDATE_PROFILE, EventType.UPDATE_EMAIL, EventType.VERIFY_EMAIL,
            EventType.UPDATE_PASSWORD, EventType.UPDATE_CREDENTIAL, EventType.INVITE_ORG);
    static final Set<ResourceType> ADMIN_RESOURCES = EnumSet.of(
            ResourceType.USER, ResourceType.ORGANIZATION_MEMBERSHIP, ResourceType.REALM_ROLE_MAPPING, ResourceType.ORGANIZATION);

    private final KeycloakSession session;
    private final NudgeSender sender;

    public NudgeListener(KeycloakSession session, NudgeSender sender) {
        this.session = session;
        this.sender = sender;
    }

    /** True for the user events the adapter turns into work. */
    public static boolean relevant(EventType type) {
        return type != null && USER_EVENTS.contains(type);
    }

    /** True for the admin events the adapter turns into work. */
    public static boolean relevant(ResourceType type) {
        return type != null && ADMIN_RESOURCES.contains(type);
    }

    @Override
    public void onEvent(Event event) {
        if (sender != null && relevant(event.getType())) {
            afterCommit(event.getType().name());
        }
    }

    @Override
    public void onEvent(AdminEvent event, boolean includeRepresentation) {
        if (sender != null && relevant(event.getResourceType())) {
            afterCommit("admin:" + event.getResourceType().name());
        }
    }

    private void afterCommit(String what) {
        session.getTransactionManager().enlistAfterCompletion(new AbstractKeycloakTransaction() {
            @Override
            protected void commitImpl() {
                sender.offer(what);
            }

            @Override
            protected void rollbackImpl() {
            }
        });
    }

    @Override
    public void close() {
    }
}
