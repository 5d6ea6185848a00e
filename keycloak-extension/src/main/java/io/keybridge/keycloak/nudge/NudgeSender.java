package io.keybridge.keycloak.nudge;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.jboss.logging.Logger;

/**
 * Sends signed nudges to the adapter from one daemon thread, never from the
 * caller's: {@link #offer} only puts the event type into a small bounded queue
 * and returns at once; when the queue is full the nudge is dropped (the
 * adapter's worker still polls, and its durable cursor is the source of truth,
 * so a lost nudge only delays an event). The thread sends one nudge for
 * everything queued since its last one, with short timeouts.
 */
public class NudgeSender implements AutoCloseable {

    private static final Logger LOG = Logger.getLogger(NudgeSender.class);
    private static final long WARN_EVERY_MS = 60_000;

    /** How a nudge travels; replaced in tests. Returns the HTTP status. */
    public interface Transport {
        int post(URI url, Map<String, String> headers, byte[] body, Duration timeout) throws IOException, InterruptedException;
    }

    private final URI url;
    private final NudgeSignature signature;
    private final Duration timeout;
    private final Transport transport;
    private final Clock clock;
    private final BlockingQueue<String> queue;
    private final Thread thread;
    private final AtomicLong sent = new AtomicLong();
    private final AtomicLong dropped = new AtomicLong();
    private final AtomicLong failed = new AtomicLong();
    private volatile boolean closed;
    private long lastWarning;

    public NudgeSender(URI url, NudgeSignature signature, int capacity, Duration timeout, Transport transport, Clock clock) {
        this.url = url;
        this.signature = signature;
        this.timeout = timeout;
        this.transport = transport;
        this.clock = clock;
        this.queue = new ArrayBlockingQueue<>(Math.max(1, capacity));
        this.thread = new Thread(this::run, "keybridge-nudge");
        this.thread.setDaemon(true);
        this.thread.start();
    }

    /** A sender over java.net.http with `timeout` for connecting and for the whole request. */
    public static NudgeSender create(URI url, NudgeSignature signature, int capacity, Duration timeout) {
        HttpClient client = HttpClient.newBuilder().connectTimeout(timeout).followRedirects(HttpClient.Redirect.NEVER).build();
        Transport transport = (target, headers, body, limit) -> {
            HttpRequest.Builder request = HttpRequest.newBuilder(target).timeout(limit).POST(HttpRequest.BodyPublishers.ofByteArray(body));
            headers.forEach(request::header);
            return client.send(request.build(), HttpResponse.BodyHandlers.discarding()).statusCode();
        };
        return new NudgeSender(url, signature, capacity, timeout, transport, Clock.systemUTC());
    }

    /** Queues a nudge for `eventType`; never blocks. Returns false when it was dropped (queue full or closed). */
    public boolean offer(String eventType) {
        if (closed || !queue.offer(eventType)) {
            dropped.incrementAndGet();
            return false;
        }
        return true;
    }

    public long sent() {
        return sent.get();
    }

    public long dropped() {
        return dropped.get();
    }

    public long failed() {
        return failed.get();
    }

    /** The JSON body for a batch of event types: small, no user data. */
    static byte[] body(List<String> eventTypes, long nowMillis) {
        StringBuilder json = new StringBuilder("{\"type\":\"keycloak.nudge\",\"time_ms\":").append(nowMillis)
                .append(",\"count\":").append(eventTypes.size()).append(",\"event_types\":[");
        String separator = "";
        for (String type : new TreeSet<>(eventTypes)) {
            json.append(separator).append('"').append(type.replaceAll("[^A-Za-z0-9_:.-]", "")).append('"');
            separator = ",";
        }
        return json.append("]}").toString().getBytes(StandardCharsets.UTF_8);
    }

    private void run() {
        while (!closed) {
            List<String> batch = new ArrayList<>();
            try {
                String first = queue.poll(1, TimeUnit.SECONDS);
                if (first == null) {
                    continue;
                }
                batch.add(first);
                queue.drainTo(batch);
                send(batch);
            } catch (InterruptedException e) {
                if (closed) {
                    return;
                }
            } catch (RuntimeException e) {
                failed.incrementAndGet();
                warn("unexpected error: " + e);
            }
        }
    }

    private void send(List<String> batch) throws InterruptedException {
        long now = clock.millis();
        byte[] body = body(batch, now);
        String id = "nudge_" + UUID.randomUUID();
        try {
            int status = transport.post(url, signature.headers(id, now / 1000, body), body, timeout);
            if (status >= 200 && status < 300) {
                sent.incrementAndGet();
            } else {
                failed.incrementAndGet();
                warn("the adapter answered HTTP " + status + " (401: KEYBRIDGE_NUDGE_SECRET differs between Keycloak and the adapter)");
            }
        } catch (IOException e) {
            failed.incrementAndGet();
            warn(e.getClass().getSimpleName() + ": " + e.getMessage());
        }
    }

    private void warn(String what) {
        long now = clock.millis();
        if (now - lastWarning >= WARN_EVERY_MS) {
            lastWarning = now;
            LOG.warnf("keybridge-nudge: could not nudge the adapter at %s: %s; the worker still reads the event log on its own schedule",
                    url, what);
        }
    }

    @Override
    public void close() {
        closed = true;
        thread.interrupt();
    }
}
