package io.leasehold.ops;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.DistributionSummary;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.config.MeterFilter;
import io.micrometer.core.instrument.distribution.DistributionStatisticConfig;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.BooleanSupplier;
import java.util.function.IntSupplier;

/**
 * leasehold's own metrics, with tags of low cardinality only (never a state, Job or user name), so
 * they stay cheap with thousands of states. Exposed in Prometheus format at {@code /metrics} next
 * to the Java Operator SDK's controller metrics.
 *
 * <p>Each histogram has a handful of buckets chosen for what it measures (Micrometer's percentile
 * histogram has 69, times every tag combination), the SDK's reconciliation timer included.
 */
public final class LeaseholdMetrics {

  /** {@code ?wait=} LOCKs: from an immediate grant to the 15 min upper bound of {@code ?wait=}. */
  static final Duration[] WAIT_BUCKETS = seconds(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900);

  /** Locks held: a quick plan to a long apply. */
  static final Duration[] HOLD_BUCKETS = seconds(1, 10, 30, 60, 300, 900, 1800, 3600, 7200);

  /** A runner Job's end to the next Job's admission: normally well under a second. */
  static final Duration[] HANDOFF_BUCKETS = seconds(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30);

  /** The Java Operator SDK's reconciliation timer. */
  static final Duration[] RECONCILE_BUCKETS = seconds(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10);

  private final MeterRegistry registry;
  private final Map<String, Integer> queued = new ConcurrentHashMap<>();
  private final Map<String, Integer> plans = new ConcurrentHashMap<>();

  public LeaseholdMetrics(MeterRegistry registry) {
    this.registry = registry;
    registry.config().meterFilter(fewerSdkBuckets());
    Gauge.builder("leasehold.queue.jobs", queued, q -> q.values().stream().mapToInt(i -> i).sum())
        .description("Runner Jobs waiting for a lock, over all states")
        .register(registry);
    Gauge.builder(
            "leasehold.queue.states", queued, q -> q.values().stream().filter(n -> n > 0).count())
        .description("States with at least one runner Job waiting")
        .register(registry);
    Gauge.builder("leasehold.plans.running", plans, p -> p.values().stream().mapToInt(i -> i).sum())
        .description("Plans holding a lock beside each other, over all states")
        .register(registry);
    registerAtZero();
  }

  /**
   * Registers the counters and histograms of the usual outcomes at zero, so they are scraped before
   * anything happens: a series that first appears at 1 loses that first event to {@code rate()} and
   * {@code increase()} (an alert on the first refusal or timeout would never see it), and a
   * dashboard shows 0 rather than "No data" on a quiet cluster. Refusal reasons appear with their
   * first refusal.
   */
  private void registerAtZero() {
    for (boolean acquired : new boolean[] {true, false}) {
      waitTimer(acquired);
    }
    for (String holder : new String[] {"job", "client"}) {
      holdTimer(holder);
    }
    handoffTimer();
    writes(true, "none");
    sizeSummary();
    for (String via : new String[] {"annotation", "http"}) {
      forced(via);
    }
    expired();
    skipped();
    for (String reason : new String[] {"deleted", "replaced", "ended"}) {
      podGone(reason);
    }
  }

  private static Duration[] seconds(double... values) {
    return Arrays.stream(values)
        .mapToObj(v -> Duration.ofNanos(Math.round(v * 1e9)))
        .toArray(Duration[]::new);
  }

  /** The SDK's timers publish {@link #RECONCILE_BUCKETS} instead of a percentile histogram. */
  private static MeterFilter fewerSdkBuckets() {
    double[] nanos =
        Arrays.stream(RECONCILE_BUCKETS).mapToDouble(d -> (double) d.toNanos()).toArray();
    return new MeterFilter() {
      @Override
      public DistributionStatisticConfig configure(
          Meter.Id id, DistributionStatisticConfig config) {
        if (id.getType() != Meter.Type.TIMER || !id.getName().startsWith("operator.sdk.")) {
          return config;
        }
        return DistributionStatisticConfig.builder()
            .percentilesHistogram(false)
            .serviceLevelObjectives(nanos)
            .build()
            .merge(config);
      }
    };
  }

  /**
   * Whether a gauge of this name is registered already: the first one registered keeps reporting
   * when several backends or operators share one registry (tests, tools), without a warning each.
   */
  private boolean registered(String gauge) {
    return registry.find(gauge).gauge() != null;
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
    waitTimer(acquired).record(waited);
  }

  private Timer waitTimer(boolean acquired) {
    return Timer.builder("leasehold.lock.wait")
        .description("Time LOCK requests with ?wait= spent waiting for the lock")
        .tag("outcome", acquired ? "acquired" : "timeout")
        .serviceLevelObjectives(WAIT_BUCKETS)
        .register(registry);
  }

  /** How long a lock was held, by a runner Job or by an HTTP backend client. */
  public void lockHeld(Duration held, String holder) {
    holdTimer(holder).record(held);
  }

  private Timer holdTimer(String holder) {
    return Timer.builder("leasehold.lock.hold")
        .description("Time locks were held before release")
        .tag("holder", holder)
        .serviceLevelObjectives(HOLD_BUCKETS)
        .register(registry);
  }

  /** From a runner Job's end to the next Job's admission. */
  public void handoff(Duration latency) {
    handoffTimer().record(latency);
  }

  private Timer handoffTimer() {
    return Timer.builder("leasehold.queue.handoff")
        .description("Time from a runner Job's end to the next Job's admission")
        .serviceLevelObjectives(HANDOFF_BUCKETS)
        .register(registry);
  }

  /** A state write through the backend: accepted, or refused for {@code reason}. */
  public void write(boolean accepted, String reason) {
    writes(accepted, reason).increment();
  }

  private Counter writes(boolean accepted, String reason) {
    return Counter.builder("leasehold.state.writes")
        .description("State writes through the HTTP backend, by result and refusal reason")
        .tag("result", accepted ? "accepted" : "refused")
        .tag("reason", reason)
        .register(registry);
  }

  /** Size of a state accepted through the backend. */
  public void stateSize(long rawBytes) {
    sizeSummary().record(rawBytes);
  }

  private DistributionSummary sizeSummary() {
    return DistributionSummary.builder("leasehold.state.size")
        .description("Size of state JSON written through the HTTP backend")
        .baseUnit("bytes")
        .register(registry);
  }

  /** A lock released without its holder: force-unlock by annotation or HTTP. */
  public void lockForced(String via) {
    forced(via).increment();
  }

  private Counter forced(String via) {
    return Counter.builder("leasehold.locks.forced")
        .description("Locks released by force-unlock")
        .tag("via", via)
        .register(registry);
  }

  /**
   * Exposes the backend's requests in progress, which fall to zero as a stopping replica drains.
   */
  public void requestsInProgress(RequestDrain drain) {
    if (registered("leasehold.backend.requests.in.progress")) {
      return;
    }
    Gauge.builder("leasehold.backend.requests.in.progress", drain, RequestDrain::inProgress)
        .description("Terraform backend requests in progress (waiting LOCKs included)")
        .register(registry);
  }

  /**
   * 1 while this replica leads (reconciles, admits Jobs, renews their locks), else 0: summed over
   * the replicas it is 1 when all is well.
   */
  public void leader(BooleanSupplier leading) {
    if (registered("leasehold.leader")) {
      return;
    }
    Gauge.builder("leasehold.leader", leading, l -> l.getAsBoolean() ? 1 : 0)
        .description("1 while this replica is the leader, else 0")
        .strongReference(true)
        .register(registry);
  }

  /**
   * The replicas this replica sees alive by their heartbeats, itself included: every replica sees
   * as many as are running when heartbeats flow.
   */
  public void replicasAlive(IntSupplier alive) {
    if (registered("leasehold.replicas.alive")) {
      return;
    }
    Gauge.builder("leasehold.replicas.alive", alive, IntSupplier::getAsInt)
        .description("Operator replicas whose heartbeat this replica sees renewed, itself included")
        .strongReference(true)
        .register(registry);
  }

  /**
   * When the backend's serving certificate expires (Unix seconds): the one served now, so a renewed
   * certificate shows at once.
   */
  public void certificateNotAfter(java.util.function.LongSupplier notAfter) {
    if (registered("leasehold.tls.certificate.not.after")) {
      return;
    }
    Gauge.builder("leasehold.tls.certificate.not.after", notAfter, n -> (double) n.getAsLong())
        .description("When the backend's serving certificate expires, in Unix seconds")
        .baseUnit("seconds")
        .strongReference(true)
        .register(registry);
  }

  /**
   * A waiting run cancelled: {@code kind} client or job, {@code via} state (the TerraformState's
   * annotation) or job (the Job's own).
   */
  public void runCancelled(String kind, String via) {
    Counter.builder("leasehold.runs.cancelled")
        .description("Waiting runs cancelled before they got the lock")
        .tag("kind", kind)
        .tag("via", via)
        .register(registry)
        .increment();
  }

  /**
   * A lock released because the pod that took it is gone: {@code reason} deleted, replaced (a pod
   * of the same name with another UID) or ended (Succeeded or Failed).
   */
  public void lockReleasedPodGone(String reason) {
    podGone(reason).increment();
  }

  private Counter podGone(String reason) {
    return Counter.builder("leasehold.locks.released.pod.gone")
        .description("Locks released because the pod that took them is gone or has ended")
        .tag("reason", reason)
        .register(registry);
  }

  /** A lock taken over because its holder stopped renewing it. */
  public void lockExpiredTakenOver() {
    expired().increment();
  }

  private Counter expired() {
    return Counter.builder("leasehold.locks.expired")
        .description("Expired runner locks taken over by another client")
        .register(registry);
  }

  /** A waiting runner Job skipped because a newer one of its run group was queued. */
  public void runSkipped() {
    skipped().increment();
  }

  private Counter skipped() {
    return Counter.builder("leasehold.queue.skipped")
        .description(
            "Waiting runner Jobs skipped because a newer Job of their run group was queued")
        .register(registry);
  }

  /** The number of Jobs waiting on one state (the state itself is not a tag). */
  public void queueLength(String stateKey, int waiting) {
    if (waiting == 0) {
      queued.remove(stateKey);
    } else {
      queued.put(stateKey, waiting);
    }
  }

  /** The number of plans holding one state's lock (the state itself is not a tag). */
  public void plansRunning(String stateKey, int running) {
    if (running == 0) {
      plans.remove(stateKey);
    } else {
      plans.put(stateKey, running);
    }
  }
}
