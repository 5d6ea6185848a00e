package io.keybridge.keycloak.registration;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.LongSupplier;

/**
 * How often one client (by IP address) may ask the registration hint: a token
 * bucket per address, {@code perMinute} answers in a burst and then one every
 * {@code 60 / perMinute} seconds. In memory, per Keycloak node, and bounded:
 * at most {@code maxClients} addresses are remembered (those idle long enough
 * to have a full bucket again are forgotten first); beyond that, the addresses
 * not remembered share one bucket, so a flood from many addresses slows
 * itself down rather than growing the map.
 *
 * The point is not secrecy (the hint tells anyone whether a domain is an
 * active customer's, see README) but that nobody can run through a list of
 * domains at Keycloak's full speed.
 */
public final class HintRateLimit {

    static final String OVERFLOW = "";

    private final int perMinute;
    private final int maxClients;
    private final LongSupplier nanoClock;
    private final Map<String, Bucket> buckets = new LinkedHashMap<>(16, 0.75f, true);

    private static final class Bucket {
        double tokens;
        long updatedNanos;

        Bucket(double tokens, long now) {
            this.tokens = tokens;
            this.updatedNanos = now;
        }
    }

    public HintRateLimit(int perMinute, int maxClients, LongSupplier nanoClock) {
        if (perMinute < 1) {
            throw new IllegalArgumentException("hint-requests-per-minute must be at least 1, got " + perMinute);
        }
        if (maxClients < 1) {
            throw new IllegalArgumentException("hint-max-clients must be at least 1, got " + maxClients);
        }
        this.perMinute = perMinute;
        this.maxClients = maxClients;
        this.nanoClock = nanoClock;
    }

    public HintRateLimit(int perMinute, int maxClients) {
        this(perMinute, maxClients, System::nanoTime);
    }

    /**
     * Takes one answer from `client`'s bucket.
     *
     * @return 0 when the answer may be given, else the seconds to wait (at least 1)
     */
    public synchronized long acquire(String client) {
        long now = nanoClock.getAsLong();
        String key = client == null ? OVERFLOW : client;
        Bucket bucket = buckets.get(key);
        if (bucket == null) {
            if (buckets.size() >= maxClients) {
                forgetIdle(now);
            }
            if (buckets.size() >= maxClients) {
                key = OVERFLOW;
                bucket = buckets.get(OVERFLOW);
            }
            if (bucket == null) {
                bucket = new Bucket(perMinute, now);
                buckets.put(key, bucket);
            }
        }
        refill(bucket, now);
        if (bucket.tokens >= 1.0) {
            bucket.tokens -= 1.0;
            return 0;
        }
        double secondsPerToken = 60.0 / perMinute;
        return Math.max(1, (long) Math.ceil((1.0 - bucket.tokens) * secondsPerToken));
    }

    /** How many addresses are remembered now (tests, bounds). */
    public synchronized int clients() {
        return buckets.size();
    }

    private void refill(Bucket bucket, long now) {
        double minutes = (now - bucket.updatedNanos) / 60e9;
        bucket.tokens = Math.min(perMinute, bucket.tokens + minutes * perMinute);
        bucket.updatedNanos = now;
    }

    private void forgetIdle(long now) {
        Iterator<Map.Entry<String, Bucket>> entries = buckets.entrySet().iterator();
        while (entries.hasNext()) {
            Map.Entry<String, Bucket> entry = entries.next();
            Bucket bucket = entry.getValue();
            refill(bucket, now);
            if (bucket.tokens >= perMinute && !OVERFLOW.equals(entry.getKey())) {
                entries.remove();
            }
        }
    }
}
