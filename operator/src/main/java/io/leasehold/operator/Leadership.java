package io.leasehold.operator;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.extended.leaderelection.LeaderCallbacks;
import io.fabric8.kubernetes.client.extended.leaderelection.LeaderElectionConfigBuilder;
import io.fabric8.kubernetes.client.extended.leaderelection.LeaderElector;
import java.time.Duration;
import java.time.Instant;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Whether this replica is the leader, the only one that reconciles, admits Jobs and renews their
 * locks. The first election is the Java Operator SDK's; when leadership is lost, this replica stops
 * reconciling at once (a reconciliation returns at its start, and every leader-only write checks
 * {@link #leading()}), says so in its readiness, keeps serving the backend, and stands for election
 * again.
 *
 * <p>The controllers' event processing is left running: stopping it while a reconciliation runs
 * leaves that resource marked as in progress for good (the Java Operator SDK drops the end of an
 * execution that finishes while processing is stopped), so it would never be reconciled again by
 * this replica, even once it leads again. A replica that does not lead answers each reconciliation
 * with a later look instead ({@link #notLeadingRecheck()}).
 */
public final class Leadership implements BooleanSupplier, AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(Leadership.class);

  /**
   * How leader election is timed (the Java Operator SDK's defaults unless a test shortens them).
   */
  public record Timing(Duration leaseDuration, Duration renewDeadline, Duration retryPeriod) {
    public static final Timing DEFAULT =
        new Timing(Duration.ofSeconds(15), Duration.ofSeconds(10), Duration.ofSeconds(2));
  }

  private final boolean elected;
  private final KubernetesClient client;
  private final String namespace;
  private final String leaseName;
  private final String identity;
  private final Timing timing;
  private final ScheduledExecutorService executor;
  private volatile boolean leading;
  private volatile String leader;
  private volatile Instant lost;
  private volatile boolean closed;
  private volatile CompletableFuture<?> election;
  private final java.util.List<Runnable> onStart =
      new java.util.concurrent.CopyOnWriteArrayList<>();

  /** Without leader election: a single replica, always the leader. */
  public static Leadership alone() {
    return new Leadership(false, null, null, null, "single", Timing.DEFAULT);
  }

  public static Leadership elected(
      KubernetesClient client, String namespace, String leaseName, String identity, Timing timing) {
    return new Leadership(true, client, namespace, leaseName, identity, timing);
  }

  private Leadership(
      boolean elected,
      KubernetesClient client,
      String namespace,
      String leaseName,
      String identity,
      Timing timing) {
    this.elected = elected;
    this.client = client;
    this.namespace = namespace;
    this.leaseName = leaseName;
    this.identity = identity;
    this.timing = timing;
    this.leading = !elected;
    this.executor =
        elected
            ? Executors.newSingleThreadScheduledExecutor(
                r -> {
                  Thread t = new Thread(r, "leasehold-leadership");
                  t.setDaemon(true);
                  return t;
                })
            : null;
  }

  /** Whether this replica leads now. */
  public boolean leading() {
    return leading;
  }

  @Override
  public boolean getAsBoolean() {
    return leading;
  }

  public boolean elected() {
    return elected;
  }

  public String leaseName() {
    return leaseName;
  }

  public String identity() {
    return identity;
  }

  public Timing timing() {
    return timing;
  }

  /** The leader as last announced, if known. */
  public String leader() {
    return leader;
  }

  /** When this replica last lost leadership, or null. */
  public Instant lost() {
    return lost;
  }

  /** Runs {@code action} each time this replica becomes the leader. */
  public void onStartLeading(Runnable action) {
    onStart.add(action);
  }

  /**
   * How soon a replica that does not lead looks at a resource again: whatever happened meanwhile is
   * taken up within this time should it lead again.
   */
  public Duration notLeadingRecheck() {
    return timing.leaseDuration();
  }

  /** The callbacks for the Java Operator SDK's first election. */
  LeaderCallbacks callbacks() {
    return new LeaderCallbacks(this::started, this::stopped, this::newLeader);
  }

  private void started() {
    LOG.info("{} leads now: reconciling, admitting Jobs and renewing their locks", identity);
    leading = true;
    leader = identity;
    onStart.forEach(Runnable::run);
  }

  private void newLeader(String id) {
    leader = id;
  }

  private void stopped() {
    if (!leading && lost != null) {
      return;
    }
    leading = false;
    lost = Instant.now();
    if (closed) {
      return;
    }
    LOG.warn(
        "{} lost leadership: it stops reconciling now and keeps serving the backend; standing for"
            + " election again",
        identity);
    executor.schedule(this::standAgain, timing.retryPeriod().toMillis(), TimeUnit.MILLISECONDS);
  }

  /** Stands for election again after losing it; if it wins, it reconciles again. */
  private void standAgain() {
    if (closed) {
      return;
    }
    LeaderElector elector =
        client
            .leaderElector()
            .withConfig(
                new LeaderElectionConfigBuilder()
                    .withName(leaseName)
                    .withLock(
                        new io.fabric8.kubernetes.client.extended.leaderelection.resourcelock
                            .LeaseLock(namespace, leaseName, identity))
                    .withLeaseDuration(timing.leaseDuration())
                    .withRenewDeadline(timing.renewDeadline())
                    .withRetryPeriod(timing.retryPeriod())
                    .withReleaseOnCancel(true)
                    .withLeaderCallbacks(
                        new LeaderCallbacks(
                            () -> {
                              lost = null;
                              started();
                            },
                            this::stopped,
                            this::newLeader))
                    .build())
            .build();
    election = elector.start();
  }

  /**
   * Hands leadership on once this replica has stopped reconciling (a graceful stop): when the
   * leader-election Lease still names this replica, its holder is cleared, at the version read, so
   * another replica leads within its retry period instead of waiting out the lease (until then
   * nobody admits Jobs, hands their locks on or renews them). A killed replica cannot do this; its
   * Lease expires.
   */
  public void release() {
    if (!elected) {
      return;
    }
    LeaderElector elector =
        client
            .leaderElector()
            .withConfig(
                new LeaderElectionConfigBuilder()
                    .withName(leaseName)
                    .withLock(
                        new io.fabric8.kubernetes.client.extended.leaderelection.resourcelock
                            .LeaseLock(namespace, leaseName, identity))
                    .withLeaseDuration(timing.leaseDuration())
                    .withRenewDeadline(timing.renewDeadline())
                    .withRetryPeriod(timing.retryPeriod())
                    .withLeaderCallbacks(new LeaderCallbacks(() -> {}, () -> {}, id -> {}))
                    .build())
            .build();
    // A renewal still in flight when the election was cancelled may write after the read: the
    // release is then refused (409) and tried again on the version that renewal wrote.
    for (int attempt = 1; attempt <= 3; attempt++) {
      try {
        if (elector.release()) {
          LOG.info("{} released leadership (Lease {}/{})", identity, namespace, leaseName);
        }
        return;
      } catch (RuntimeException e) {
        if (attempt == 3) {
          LOG.warn(
              "{} could not release the leader-election Lease {}/{} ({}): another replica leads"
                  + " once it expires",
              identity,
              namespace,
              leaseName,
              e.getMessage());
        }
      }
    }
  }

  @Override
  public void close() {
    closed = true;
    leading = false;
    CompletableFuture<?> e = election;
    if (e != null) {
      e.cancel(true);
    }
    if (executor != null) {
      executor.shutdownNow();
    }
  }
}
