package io.keybridge.keycloak.nudge;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.keycloak.events.EventType;
import org.keycloak.events.admin.ResourceType;

class NudgeListenerTest {

    @Test
    void userEventsTheAdapterReadsAreRelevant() {
        for (EventType type : new EventType[] {EventType.REGISTER, EventType.LOGIN, EventType.UPDATE_PROFILE, EventType.VERIFY_EMAIL,
                EventType.UPDATE_PASSWORD, EventType.UPDATE_EMAIL, EventType.INVITE_ORG}) {
            assertTrue(NudgeListener.relevant(type), type.name());
        }
        for (EventType type : new EventType[] {EventType.LOGIN_ERROR, EventType.CODE_TO_TOKEN, EventType.REFRESH_TOKEN, EventType.LOGOUT}) {
            assertFalse(NudgeListener.relevant(type), type.name());
        }
        assertFalse(NudgeListener.relevant((EventType) null));
    }

    @Test
    void adminEventsOnPeopleAndMembershipsAreRelevant() {
        assertTrue(NudgeListener.relevant(ResourceType.USER));
        assertTrue(NudgeListener.relevant(ResourceType.ORGANIZATION_MEMBERSHIP));
        assertTrue(NudgeListener.relevant(ResourceType.REALM_ROLE_MAPPING));
        assertFalse(NudgeListener.relevant(ResourceType.CLIENT));
        assertFalse(NudgeListener.relevant(ResourceType.REALM));
    }
}
