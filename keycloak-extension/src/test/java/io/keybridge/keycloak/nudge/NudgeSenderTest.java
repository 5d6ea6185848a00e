package io.keybridge.keycloak.nudge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import com.sun.net.httpserver.HttpServer;
import org.junit.jupiter.api.Test;

class NudgeSenderTest {

    static final NudgeSignature SIGNATURE = NudgeSignature.fromSecret(NudgeSignatureTest.SECRET);
    static final URI URL = URI.create("http://127.0.0.1:9/internal/keycloak-nudge");

    static void waitUntil(java.util.function.BooleanSupplier condition, String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(10);
        }
    }

    @Test
    void postsASignedNudgeToTheAdapterOverHttp() throws Exception {
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        List<String> verified = new CopyOnWriteArrayList<>();
        server.createContext("/internal/keycloak-nudge", exchange -> {
            byte[] body = exchange.getRequestBody().readAllBytes();
            String id = exchange.getRequestHeaders().getFirst("webhook-id");
            long ts = Long.parseLong(exchange.getRequestHeaders().getFirst("webhook-timestamp"));
            boolean valid = SIGNATURE.sign(id, ts, body).equals(exchange.getRequestHeaders().getFirst("webhook-signature"))
                    && Math.abs(System.currentTimeMillis() / 1000 - ts) < 60;
            if (valid) {
                verified.add(new String(body, StandardCharsets.UTF_8));
            }
            exchange.sendResponseHeaders(valid ? 204 : 401, -1);
            exchange.close();
        });
        server.start();
        URI url = URI.create("http://127.0.0.1:" + server.getAddress().getPort() + "/internal/keycloak-nudge");
        try (NudgeSender sender = NudgeSender.create(url, SIGNATURE, 8, Duration.ofSeconds(2))) {
            assertTrue(sender.offer("REGISTER"));
            waitUntil(() -> sender.sent() == 1, "the nudge to arrive");
            assertEquals(1, verified.size());
            assertTrue(verified.get(0).contains("\"event_types\":[\"REGISTER\"]"), verified.get(0));
            assertTrue(verified.get(0).startsWith("{\"type\":\"keycloak.nudge\""), verified.get(0));
        } finally {
            server.stop(0);
        }
    }

    @Test
    void offerNeverBlocksAndDropsWhenTheQueueIsFull() throws Exception {
        CountDownLatch release = new CountDownLatch(1);
        CountDownLatch sending = new CountDownLatch(1);
        NudgeSender.Transport stuck = (url, headers, body, timeout) -> {
            sending.countDown();
            release.await();  // an adapter that never answers
            return 204;
        };
        try (NudgeSender sender = new NudgeSender(URL, SIGNATURE, 2, Duration.ofSeconds(1), stuck, Clock.systemUTC())) {
            sender.offer("LOGIN");
            assertTrue(sending.await(5, TimeUnit.SECONDS));
            long started = System.nanoTime();
            int accepted = 0;
            for (int i = 0; i < 1000; i++) {
                if (sender.offer("LOGIN")) {
                    accepted++;
                }
            }
            long elapsedMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
            assertEquals(2, accepted, "only the queue's capacity waits");
            assertEquals(998, sender.dropped());
            assertTrue(elapsedMs < 500, "1000 offers took " + elapsedMs + " ms while the adapter hung");
            release.countDown();
            waitUntil(() -> sender.sent() == 2, "the held nudge and one for the two queued");
        }
    }

    @Test
    void eventsQueuedMeanwhileGoOutAsOneNudge() throws Exception {
        CountDownLatch release = new CountDownLatch(1);
        List<String> bodies = new CopyOnWriteArrayList<>();
        NudgeSender.Transport slow = (url, headers, body, timeout) -> {
            bodies.add(new String(body, StandardCharsets.UTF_8));
            release.await();
            return 200;
        };
        try (NudgeSender sender = new NudgeSender(URL, SIGNATURE, 16, Duration.ofSeconds(1), slow, Clock.systemUTC())) {
            sender.offer("LOGIN");
            waitUntil(() -> bodies.size() == 1, "the first nudge");
            sender.offer("REGISTER");
            sender.offer("UPDATE_PROFILE");
            sender.offer("REGISTER");
            release.countDown();
            waitUntil(() -> sender.sent() == 2, "the coalesced nudge");
            assertEquals(2, bodies.size());
            assertTrue(bodies.get(1).contains("\"count\":3"), bodies.get(1));
            assertTrue(bodies.get(1).contains("\"event_types\":[\"REGISTER\",\"UPDATE_PROFILE\"]"), bodies.get(1));
        }
    }

    @Test
    void anUnreachableAdapterIsCountedAndTheSenderCarriesOn() throws Exception {
        NudgeSender.Transport refused = (url, headers, body, timeout) -> {
            throw new java.net.ConnectException("Connection refused");
        };
        try (NudgeSender sender = new NudgeSender(URL, SIGNATURE, 4, Duration.ofMillis(200), refused, Clock.systemUTC())) {
            sender.offer("REGISTER");
            waitUntil(() -> sender.failed() == 1, "the failure");
            sender.offer("REGISTER");
            waitUntil(() -> sender.failed() == 2, "the second attempt");
            assertEquals(0, sender.sent());
        }
    }

    @Test
    void aClosedSenderTakesNothing() {
        NudgeSender sender = new NudgeSender(URL, SIGNATURE, 4, Duration.ofMillis(200), (u, h, b, t) -> 204, Clock.systemUTC());
        sender.close();
        assertFalse(sender.offer("REGISTER"));
    }

    @Test
    void bodyHoldsOnlyEventTypes() {
        String body = new String(NudgeSender.body(List.of("admin:USER", "LOGIN", "LOGIN"), 1234L), StandardCharsets.UTF_8);
        assertEquals("{\"type\":\"keycloak.nudge\",\"time_ms\":1234,\"count\":3,\"event_types\":[\"LOGIN\",\"admin:USER\"]}", body);
    }

    @Test
    void timeoutIsPassedToTheTransport() throws Exception {
        List<Duration> seen = new CopyOnWriteArrayList<>();
        try (NudgeSender sender = new NudgeSender(URL, SIGNATURE, 4, Duration.ofMillis(1500),
                (u, h, b, t) -> { seen.add(t); return 204; }, Clock.systemUTC())) {
            sender.offer("LOGIN");
            waitUntil(() -> sender.sent() == 1, "the nudge");
            assertEquals(List.of(Duration.ofMillis(1500)), seen);
        }
    }

    @Test
    void settingsComeFromTheSpiScopeThenTheEnvironment() {
        Map<String, String> env = Map.of("KEYBRIDGE_NUDGE_URL", "http://adapter:8000/internal/keycloak-nudge",
                "KEYBRIDGE_NUDGE_SECRET", NudgeSignatureTest.SECRET);
        NudgeListenerFactory.Settings fromEnv = NudgeListenerFactory.Settings.read(name -> null, env::get);
        assertEquals(URI.create("http://adapter:8000/internal/keycloak-nudge"), fromEnv.url());
        assertEquals(64, fromEnv.capacity());
        assertEquals(Duration.ofSeconds(2), fromEnv.timeout());

        Map<String, String> spi = Map.of("url", "https://a.example/internal/keycloak-nudge", "queue-capacity", "5", "timeout-ms", "700");
        NudgeListenerFactory.Settings fromSpi = NudgeListenerFactory.Settings.read(spi::get, env::get);
        assertEquals(URI.create("https://a.example/internal/keycloak-nudge"), fromSpi.url());
        assertEquals(5, fromSpi.capacity());
        assertEquals(Duration.ofMillis(700), fromSpi.timeout());

        assertEquals(null, NudgeListenerFactory.Settings.read(name -> null, name -> null), "nothing configured: nudges off");
        IllegalArgumentException bad = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> NudgeListenerFactory.Settings.read(Map.of("url", "ftp://x", "secret", NudgeSignatureTest.SECRET)::get, name -> null));
        assertTrue(bad.getMessage().contains("http://"), bad.getMessage());
        IllegalArgumentException capacity = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> NudgeListenerFactory.Settings.read(Map.of("queue-capacity", "0")::get, env::get));
        assertTrue(capacity.getMessage().contains("queue-capacity"), capacity.getMessage());
    }
}
