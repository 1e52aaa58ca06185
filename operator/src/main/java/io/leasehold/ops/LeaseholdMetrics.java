package io.leasehold.ops;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.DistributionSummary;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * leasehold's own metrics, with tags of low cardinality only (never a state, Job or user name), so
 * they stay cheap with thousands of states. Exposed in Prometheus format at {@code /metrics} next
 * to the Java Operator SDK's controller metrics.
 */
public final class LeaseholdMetrics {

  private final MeterRegistry registry;
  private final Map<String, Integer> queued = new ConcurrentHashMap<>();

  public LeaseholdMetrics(MeterRegistry registry) {
    this.registry = registry;
    Gauge.builder("leasehold.queue.jobs", queued, q -> q.values().stream().mapToInt(i -> i).sum())
        .description("Runner Jobs waiting for a lock, over all states")
        .register(registry);
    Gauge.builder(
            "leasehold.queue.states", queued, q -> q.values().stream().filter(n -> n > 0).count())
        .description("States with at least one runner Job waiting")
        .register(registry);
  }

  /** Metrics that go nowhere, for tests and tools that do not expose them. */
  public static LeaseholdMetrics discarding() {
    return new LeaseholdMetrics(new SimpleMeterRegistry());
  }

  public MeterRegistry registry() {
    return registry;
  }

  /** How long a LOCK with ?wait= waited, and whether it got the lock. */
  public void lockWaited(Duration waited, boolean acquired) {
    Timer.builder("leasehold.lock.wait")
        .description("Time LOCK requests with ?wait= spent waiting for the lock")
        .tag("outcome", acquired ? "acquired" : "timeout")
        .publishPercentileHistogram()
        .register(registry)
        .record(waited);
  }

  /** How long a lock was held, by a runner Job or by an HTTP backend client. */
  public void lockHeld(Duration held, String holder) {
    Timer.builder("leasehold.lock.hold")
        .description("Time locks were held before release")
        .tag("holder", holder)
        .publishPercentileHistogram()
        .register(registry)
        .record(held);
  }

  /** From a runner Job's end to the next Job's admission. */
  public void handoff(Duration latency) {
    Timer.builder("leasehold.queue.handoff")
        .description("Time from a runner Job's end to the next Job's admission")
        .publishPercentileHistogram()
        .register(registry)
        .record(latency);
  }

  /** A state write through the backend: accepted, or refused for {@code reason}. */
  public void write(boolean accepted, String reason) {
    Counter.builder("leasehold.state.writes")
        .description("State writes through the HTTP backend, by result and refusal reason")
        .tag("result", accepted ? "accepted" : "refused")
        .tag("reason", reason)
        .register(registry)
        .increment();
  }

  /** Size of a state accepted through the backend. */
  public void stateSize(long rawBytes) {
    DistributionSummary.builder("leasehold.state.size")
        .description("Size of state JSON written through the HTTP backend")
        .baseUnit("bytes")
        .register(registry)
        .record(rawBytes);
  }

  /** A lock released without its holder: force-unlock by annotation or HTTP. */
  public void lockForced(String via) {
    Counter.builder("leasehold.locks.forced")
        .description("Locks released by force-unlock")
        .tag("via", via)
        .register(registry)
        .increment();
  }

  /** A lock taken over because its holder stopped renewing it. */
  /**
   * Exposes the backend's requests in progress, which fall to zero as a stopping replica drains.
   */
  public void requestsInProgress(RequestDrain drain) {
    Gauge.builder("leasehold.backend.requests.in.progress", drain, RequestDrain::inProgress)
        .description("Terraform backend requests in progress (waiting LOCKs included)")
        .register(registry);
  }

  public void lockExpiredTakenOver() {
    Counter.builder("leasehold.locks.expired")
        .description("Expired runner locks taken over by another client")
        .register(registry)
        .increment();
  }

  /** The number of Jobs waiting on one state (the state itself is not a tag). */
  public void queueLength(String stateKey, int waiting) {
    if (waiting == 0) {
      queued.remove(stateKey);
    } else {
      queued.put(stateKey, waiting);
    }
  }
}
