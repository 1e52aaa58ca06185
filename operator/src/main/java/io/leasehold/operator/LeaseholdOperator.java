package io.leasehold.operator;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.javaoperatorsdk.operator.Operator;
import io.javaoperatorsdk.operator.api.config.LeaderElectionConfigurationBuilder;
import io.javaoperatorsdk.operator.monitoring.micrometer.MicrometerMetrics;
import io.leasehold.kube.EventRecorder;
import io.leasehold.kube.TolerantSerialization;
import io.leasehold.lock.LockService;
import io.leasehold.lock.ReplicaLiveness;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.ops.ManagementServer;
import io.leasehold.queue.Arrivals;
import io.leasehold.queue.Renewals;
import java.time.Clock;
import java.time.Duration;
import java.util.Optional;
import java.util.Set;

/**
 * One replica's operator: the TerraformState reconciler (which admits runner Jobs) on the Java
 * Operator SDK, the shared informer caches, the lock service and the renewals of Job locks. Every
 * replica runs the informers and the lock service (its HTTP backend needs them); only the leader
 * reconciles and renews.
 */
public final class LeaseholdOperator implements AutoCloseable {

  /**
   * Default name of the Lease the replicas elect a leader on. Two installations in one namespace
   * must use different names (the Helm chart derives one from the release), or they share a leader
   * and one of them never reconciles.
   */
  public static final String LEADER_LEASE = "leasehold-operator-leader";

  /**
   * How often the leader looks at the pod that holds a state's lock, to release the lock once the
   * pod is gone ({@code spec.lock.releaseVanishedPods}).
   */
  public static final Duration POD_RECHECK = Duration.ofSeconds(20);

  /**
   * How the operator runs.
   *
   * @param namespaces namespaces to watch; empty watches all
   * @param leaderElectionNamespace where the leader-election Lease lives; empty runs without leader
   *     election (a single replica)
   * @param identity this replica's name in Events, leader election and the line
   * @param locks the lock's settings (ticket grace, owner timeout)
   * @param election leader election's timing
   * @param leaderLease name of the leader-election Lease
   * @param podRecheck how often the pod holding a state's lock is looked at
   */
  public record Options(
      Set<String> namespaces,
      Optional<String> leaderElectionNamespace,
      String identity,
      LeaseholdMetrics metrics,
      LockService.Settings locks,
      Leadership.Timing election,
      String leaderLease,
      Duration podRecheck) {

    public Options {
      if (podRecheck == null || podRecheck.isNegative() || podRecheck.isZero()) {
        throw new IllegalArgumentException("podRecheck must be positive, not " + podRecheck);
      }
    }

    public Options(
        Set<String> namespaces,
        Optional<String> leaderElectionNamespace,
        String identity,
        LeaseholdMetrics metrics) {
      this(
          namespaces,
          leaderElectionNamespace,
          identity,
          metrics,
          LockService.Settings.DEFAULTS,
          Leadership.Timing.DEFAULT,
          LEADER_LEASE,
          POD_RECHECK);
    }

    public Options(
        Set<String> namespaces, Optional<String> leaderElectionNamespace, String identity) {
      this(namespaces, leaderElectionNamespace, identity, LeaseholdMetrics.discarding());
    }

    public Options withLocks(LockService.Settings settings) {
      return new Options(
          namespaces,
          leaderElectionNamespace,
          identity,
          metrics,
          settings,
          election,
          leaderLease,
          podRecheck);
    }

    public Options withElection(Leadership.Timing timing) {
      return new Options(
          namespaces,
          leaderElectionNamespace,
          identity,
          metrics,
          locks,
          timing,
          leaderLease,
          podRecheck);
    }

    /** The same options electing the leader on the Lease {@code name}. */
    public Options withLeaderLease(String name) {
      return new Options(
          namespaces,
          leaderElectionNamespace,
          identity,
          metrics,
          locks,
          election,
          name,
          podRecheck);
    }

    /** The same options looking at the pod holding a lock every {@code interval}. */
    public Options withPodRecheck(Duration interval) {
      return new Options(
          namespaces,
          leaderElectionNamespace,
          identity,
          metrics,
          locks,
          election,
          leaderLease,
          interval);
    }
  }

  private final Operator operator;
  private final EventRecorder events;
  private final KubernetesClient client;
  private final Options options;
  private final SharedCaches caches;
  private final LockService locks;
  private final Leadership leadership;
  private final Renewals renewals;
  private final boolean ownsClient;

  private LeaseholdOperator(
      Operator operator,
      EventRecorder events,
      KubernetesClient client,
      Options options,
      SharedCaches caches,
      LockService locks,
      Leadership leadership,
      Renewals renewals,
      boolean ownsClient) {
    this.operator = operator;
    this.events = events;
    this.client = client;
    this.options = options;
    this.caches = caches;
    this.locks = locks;
    this.leadership = leadership;
    this.renewals = renewals;
    this.ownsClient = ownsClient;
  }

  /** Whether the controllers run, their informers are healthy, and who leads. */
  public ManagementServer.Check readiness() {
    if (!operator.getRuntimeInfo().isStarted()) {
      return new ManagementServer.Check(false, "the operator is starting");
    }
    if (!operator.getRuntimeInfo().allEventSourcesAreHealthy()) {
      return new ManagementServer.Check(
          false,
          "informers not healthy: " + operator.getRuntimeInfo().unhealthyEventSources().keySet());
    }
    if (!leadership.elected()) {
      return new ManagementServer.Check(true, "informers synced; single replica");
    }
    String leader = leadership.leader();
    if (leadership.leading()) {
      return new ManagementServer.Check(
          true,
          "informers synced; leader "
              + options.identity()
              + " (this replica): reconciling; this replica serves the Terraform backend");
    }
    if (leader == null) {
      return new ManagementServer.Check(false, "no leader elected yet");
    }
    return new ManagementServer.Check(
        true,
        "informers synced; leader "
            + leader
            + (leadership.lost() != null
                ? "; this replica lost leadership at "
                    + leadership.lost()
                    + " and stopped reconciling"
                : "")
            + "; this replica does not reconcile and serves the Terraform backend");
  }

  public ManagementServer.Check health() {
    return operator.getRuntimeInfo().isStarted()
        ? new ManagementServer.Check(true, "running")
        : new ManagementServer.Check(false, "not started");
  }

  /**
   * Starts the operator; returns once its informers have synced. It reads and writes through {@code
   * given} when that reads with {@link TolerantSerialization}, otherwise through a client of the
   * same API and configuration that does (closed with the operator): one object it cannot fully
   * read never stops its informers.
   */
  public static LeaseholdOperator start(KubernetesClient given, Options options) {
    KubernetesClient client = TolerantSerialization.tolerant(given);
    try {
      return start(client, client != given, options);
    } catch (RuntimeException e) {
      if (client != given) {
        client.close();
      }
      throw e;
    }
  }

  private static LeaseholdOperator start(
      KubernetesClient client, boolean ownsClient, Options options) {
    Leadership leadership =
        options.leaderElectionNamespace().isPresent()
            ? Leadership.elected(
                client,
                options.leaderElectionNamespace().get(),
                options.leaderLease(),
                options.identity(),
                options.election())
            : Leadership.alone();
    options.metrics().leader(leadership::leading);
    Operator operator =
        new Operator(
            o -> {
              o.withKubernetesClient(client)
                  .withCloseClientOnStop(false)
                  // Merge and JSON patches work on every API server, the in-memory one included.
                  .withUseSSAToPatchPrimaryResource(false)
                  .withSSABasedCreateUpdateMatchForDependentResources(false)
                  .withStopOnInformerErrorDuringStartup(true)
                  .withCacheSyncTimeout(Duration.ofMinutes(2))
                  .withMetrics(
                      MicrometerMetrics.withoutPerResourceMetrics(options.metrics().registry()));
              options
                  .leaderElectionNamespace()
                  .ifPresent(
                      ns ->
                          o.withLeaderElectionConfiguration(
                              LeaderElectionConfigurationBuilder.aLeaderElectionConfiguration(
                                      options.leaderLease())
                                  .withLeaseNamespace(ns)
                                  .withIdentity(options.identity())
                                  .withLeaseDuration(options.election().leaseDuration())
                                  .withRenewDeadline(options.election().renewDeadline())
                                  .withRetryPeriod(options.election().retryPeriod())
                                  .withLeaderCallbacks(leadership.callbacks())
                                  .withExitOnStopLeading(false)
                                  .build()));
            });
    EventRecorder events = new EventRecorder(client, options.identity());
    SharedCaches caches = new SharedCaches(client);
    // Which replicas are alive: the places in line of one that is not are dropped at once.
    ReplicaLiveness liveness =
        options
            .leaderElectionNamespace()
            .map(
                ns ->
                    ReplicaLiveness.heartbeating(
                        client,
                        ns,
                        options.leaderLease(),
                        options.identity(),
                        ReplicaLiveness.Timing.DEFAULTS))
            .orElseGet(() -> ReplicaLiveness.alone(options.identity()));
    options.metrics().replicasAlive(liveness::aliveCount);
    // The reconciler's lock service caches its own writes ahead of the watch; the backend's does
    // not, so every change it makes reaches the reconciler (status, Job admission).
    LockService locks =
        new LockService(client, caches, Clock.systemUTC(), liveness, options.locks());
    LockService backendLocks =
        new LockService(client, caches.forBackend(), Clock.systemUTC(), liveness, options.locks());
    Arrivals arrivals = new Arrivals();
    operator.register(
        new TerraformStateReconciler(
            client,
            events,
            options.metrics(),
            locks,
            caches,
            leadership,
            arrivals,
            options.podRecheck()),
        c -> {
          if (!options.namespaces().isEmpty()) {
            c.settingNamespaces(options.namespaces());
          }
        });
    operator.start();
    Renewals renewals =
        new Renewals(locks, caches::leases, caches::state, leadership, Clock.systemUTC()).start();
    return new LeaseholdOperator(
        operator, events, client, options, caches, backendLocks, leadership, renewals, ownsClient);
  }

  public Options options() {
    return options;
  }

  public KubernetesClient client() {
    return client;
  }

  public EventRecorder events() {
    return events;
  }

  /** The informer caches this replica shares between its reconciler and its backend. */
  public SharedCaches caches() {
    return caches;
  }

  /**
   * The lock service for this replica's HTTP backend (the reconciler has its own instance over the
   * same caches: the rules are the same, only the caching of its own writes differs).
   */
  public LockService locks() {
    return locks;
  }

  public Leadership leadership() {
    return leadership;
  }

  private final java.util.concurrent.atomic.AtomicBoolean closed =
      new java.util.concurrent.atomic.AtomicBoolean();

  /**
   * Stops gracefully: the leader renews every running Job's lock once more (each keeps a whole
   * lease duration for the next leader to take up its renewals; none is released), stops leading
   * (nothing is reconciled, admitted or renewed from now on), waits for reconciliations still
   * running to end, and then releases the election Lease (its holder cleared), so another replica
   * leads at its next try instead of once the lease has run out.
   */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    try {
      // The others drop this replica's places at once (its waiters were answered already).
      locks.liveness().close();
      renewals.closeRenewingAll();
      leadership.close();
      operator.stop();
    } finally {
      // Reconciling has stopped: the next leader need not wait for the election Lease to expire.
      leadership.release();
      events.close();
      if (ownsClient) {
        client.close();
      }
    }
  }
}
