package io.leasehold.operator;

import io.javaoperatorsdk.operator.processing.event.ResourceID;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Tells a lasting fault from a passing one: a fault is settled when the same fingerprint (the fault
 * and the versions of the objects it was read from) is still there after {@link #SETTLE}.
 */
final class FaultSettling {

  static final Duration SETTLE = Duration.ofSeconds(2);

  private record Seen(String fingerprint, long sinceNanos) {}

  private final Map<ResourceID, Seen> seen = new ConcurrentHashMap<>();

  /** Whether this fault has lasted long enough to report; records it when it is new. */
  boolean settled(ResourceID id, String fingerprint) {
    long now = System.nanoTime();
    Seen previous =
        seen.compute(
            id,
            (k, old) ->
                old != null && old.fingerprint().equals(fingerprint)
                    ? old
                    : new Seen(fingerprint, now));
    return now - previous.sinceNanos() >= SETTLE.toNanos();
  }

  void clear(ResourceID id) {
    seen.remove(id);
  }
}
