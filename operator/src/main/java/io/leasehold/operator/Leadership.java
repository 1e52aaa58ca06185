package io.leasehold.operator;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.extended.leaderelection.LeaderCallbacks;
import io.fabric8.kubernetes.client.extended.leaderelection.LeaderElectionConfigBuilder;
import io.fabric8.kubernetes.client.extended.leaderelection.LeaderElector;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
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
 * again. Each time it becomes the leader, the actions of {@link #onStartLeading} run: every
 * TerraformState is reconciled anew, so whatever changed while it did not lead is served at once.
 *
 * <p>The controllers' event processing is left running: stopping it while a reconciliation runs
 * leaves that resource marked as in progress for good (the Java Operator SDK drops the end of an
 * execution that finishes while processing is stopped), so it would never be reconciled again by
 * this replica, even once it leads again. A replica that does not lead answers each reconciliation
 * at once, doing nothing.
 *
 * <p>A graceful stop ends with {@link #release()}: the election Lease's holder is cleared, so the
 * next leader need not wait for it to expire.
 */
public final class Leadership implements BooleanSupplier, AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(Leadership.class);

  /**
   * How leader election is timed. A killed leader is replaced once its lease has run out ({@code
   * leaseDuration}) and a candidate's next try comes; a leader stopped gracefully clears its
   * holder, and a candidate takes it at its next try. Candidates try every {@code retryPeriod} plus
   * a random jitter of up to 1.2 times that (the Fabric8 elector's), so at 800 ms the next leader
   * leads within 1.8 s of a release; the leader renews at the same period.
   */
  public record Timing(Duration leaseDuration, Duration renewDeadline, Duration retryPeriod) {
    public static final Timing DEFAULT =
        new Timing(Duration.ofSeconds(15), Duration.ofSeconds(10), Duration.ofMillis(800));
  }

  /**
   * How soon a replica that does not lead looks at a resource again, a backstop only: on becoming
   * the leader a replica looks at every resource at once.
   */
  static final Duration NOT_LEADING_RECHECK = Duration.ofMinutes(1);

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
   * How soon a replica that does not lead looks at a resource again. Only a backstop: each time it
   * becomes the leader, the actions of {@link #onStartLeading} look at every resource at once.
   */
  public Duration notLeadingRecheck() {
    return NOT_LEADING_RECHECK;
  }

  /** The callbacks for the Java Operator SDK's first election. */
  LeaderCallbacks callbacks() {
    return new LeaderCallbacks(this::started, this::stopped, this::newLeader);
  }

  private void started() {
    LOG.info("{} leads now: reconciling, admitting Jobs and renewing their locks", identity);
    leading = true;
    leader = identity;
    for (Runnable action : onStart) {
      try {
        action.run();
      } catch (RuntimeException e) {
        LOG.warn("{}: an action on becoming the leader failed: {}", identity, e.toString());
      }
    }
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
                    // Released by release() once reconciling has stopped, not on cancel.
                    .withReleaseOnCancel(false)
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
   * leader-election Lease still names this replica, its holder is cleared and its duration set to 1
   * s, at the version read, as client-go's ReleaseOnCancel does, so another replica takes it at its
   * next try instead of once the lease has run out (until then nobody admits Jobs, hands their
   * locks on or renews them). A killed replica cannot do this; its Lease expires.
   *
   * <p>The Fabric8 elector's own release is not used: it writes a merge patch in which an empty
   * holder is left out, so the Lease keeps naming this replica and others wait out its 1 s.
   *
   * @return whether this call released the Lease
   */
  public boolean release() {
    if (!elected) {
      return false;
    }
    // A renewal still in flight when the election was cancelled may write after the read: the
    // release is then refused (409) and tried again on the version that renewal wrote.
    for (int attempt = 1; ; attempt++) {
      try {
        Lease current = client.leases().inNamespace(namespace).withName(leaseName).get();
        if (current == null
            || current.getSpec() == null
            || !identity.equals(current.getSpec().getHolderIdentity())) {
          return false;
        }
        ZonedDateTime now = ZonedDateTime.now(ZoneOffset.UTC);
        current.getSpec().setHolderIdentity(null);
        current.getSpec().setLeaseDurationSeconds(1);
        current.getSpec().setAcquireTime(now);
        current.getSpec().setRenewTime(now);
        // An update, not a merge patch, so the holder is removed; conditional on the version read.
        client.leases().inNamespace(namespace).resource(current).update();
        LOG.info("{} released leadership (Lease {}/{})", identity, namespace, leaseName);
        return true;
      } catch (RuntimeException e) {
        boolean conflict = e instanceof KubernetesClientException k && k.getCode() == 409;
        if (!conflict || attempt == 3) {
          LOG.warn(
              "{} could not release the leader-election Lease {}/{} ({}): another replica leads"
                  + " once it expires",
              identity,
              namespace,
              leaseName,
              e.getMessage());
          return false;
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
