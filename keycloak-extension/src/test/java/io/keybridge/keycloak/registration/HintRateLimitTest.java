package io.keybridge.keycloak.registration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.atomic.AtomicLong;

import org.junit.jupiter.api.Test;

class HintRateLimitTest {

    final AtomicLong clock = new AtomicLong(1_000_000_000L);

    void pass(double seconds) {
        clock.addAndGet((long) (seconds * 1e9));
    }

    @Test
    void aBurstIsAnsweredThenTheClientWaits() {
        HintRateLimit limit = new HintRateLimit(5, 100, clock::get);
        for (int i = 0; i < 5; i++) {
            assertEquals(0, limit.acquire("203.0.113.7"), "answer " + (i + 1));
        }
        long wait = limit.acquire("203.0.113.7");
        assertEquals(12, wait, "one answer every 60/5 s");
        pass(11.9);
        assertTrue(limit.acquire("203.0.113.7") > 0);
        pass(0.2);
        assertEquals(0, limit.acquire("203.0.113.7"));
        assertTrue(limit.acquire("203.0.113.7") > 0);
    }

    @Test
    void oneClientRunningThroughDomainsDoesNotSlowAnother() {
        HintRateLimit limit = new HintRateLimit(3, 100, clock::get);
        for (int i = 0; i < 50; i++) {
            limit.acquire("198.51.100.1");
        }
        assertEquals(0, limit.acquire("198.51.100.2"));
    }

    @Test
    void aFullBucketIsGivenBackAfterAMinuteOfQuiet() {
        HintRateLimit limit = new HintRateLimit(3, 100, clock::get);
        for (int i = 0; i < 10; i++) {
            limit.acquire("198.51.100.1");
        }
        pass(60);
        for (int i = 0; i < 3; i++) {
            assertEquals(0, limit.acquire("198.51.100.1"));
        }
    }

    @Test
    void memoryIsBoundedAndStrangersBeyondTheBoundShareOneBucket() {
        HintRateLimit limit = new HintRateLimit(2, 10, clock::get);
        for (int i = 0; i < 10_000; i++) {
            limit.acquire("10.0." + (i / 250) + "." + (i % 250));
        }
        assertTrue(limit.clients() <= 11, "remembered " + limit.clients());
        assertTrue(limit.acquire("192.0.2.99") > 0, "a new address beyond the bound shares the exhausted overflow bucket");
    }

    @Test
    void idleClientsAreForgottenToMakeRoom() {
        HintRateLimit limit = new HintRateLimit(2, 3, clock::get);
        limit.acquire("a");
        limit.acquire("b");
        limit.acquire("c");
        pass(120);
        assertEquals(0, limit.acquire("d"));
        assertEquals(0, limit.acquire("d"));
        assertTrue(limit.acquire("d") > 0, "d has a bucket of its own, not the overflow's");
    }

    @Test
    void nonsenseSettingsAreRefusedWithTheirName() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new HintRateLimit(0, 10));
        assertTrue(e.getMessage().contains("hint-requests-per-minute"));
    }
}
