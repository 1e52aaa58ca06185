package io.leasehold.operator;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.javaoperatorsdk.operator.Operator;
import io.javaoperatorsdk.operator.api.config.LeaderElectionConfigurationBuilder;
import io.javaoperatorsdk.operator.monitoring.micrometer.MicrometerMetrics;
import io.leasehold.backend.Access;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.JobPods;
import io.leasehold.backend.StateBackend;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.ops.ManagementServer;
import io.leasehold.queue.RunnerJobReconciler;
import java.time.Duration;
import java.util.Optional;
import java.util.Set;

/** Wires leasehold's reconcilers into a Java Operator SDK operator and runs them. */
public final class LeaseholdOperator implements AutoCloseable {

  /** Name of the Lease the replicas elect a leader on. */
  public static final String LEADER_LEASE = "leasehold-operator-leader";

  /**
   * How the operator runs.
   *
   * @param namespaces namespaces to watch; empty watches all
   * @param leaderElectionNamespace where the leader-election Lease lives; empty runs without leader
   *     election (a single replica)
   * @param identity this replica's name in Events and leader election
   */
  public record Options(
      Set<String> namespaces,
      Optional<String> leaderElectionNamespace,
      String identity,
      LeaseholdMetrics metrics) {

    public Options(
        Set<String> namespaces, Optional<String> leaderElectionNamespace, String identity) {
      this(namespaces, leaderElectionNamespace, identity, LeaseholdMetrics.discarding());
    }
  }

  private final Operator operator;
  private final EventRecorder events;
  private final KubernetesClient client;

  private final Options options;

  private LeaseholdOperator(
      Operator operator, EventRecorder events, KubernetesClient client, Options options) {
    this.operator = operator;
    this.events = events;
    this.client = client;
    this.options = options;
  }

  /** Whether the controllers run and their informers are healthy (synced and watching). */
  public ManagementServer.Check readiness() {
    if (!operator.getRuntimeInfo().isStarted()) {
      return new ManagementServer.Check(false, "the operator is starting");
    }
    if (!operator.getRuntimeInfo().allEventSourcesAreHealthy()) {
      return new ManagementServer.Check(
          false,
          "informers not healthy: " + operator.getRuntimeInfo().unhealthyEventSources().keySet());
    }
    if (options.leaderElectionNamespace().isPresent()) {
      var lease =
          client
              .leases()
              .inNamespace(options.leaderElectionNamespace().get())
              .withName(LEADER_LEASE)
              .get();
      String leader =
          lease == null || lease.getSpec() == null ? null : lease.getSpec().getHolderIdentity();
      if (leader == null) {
        return new ManagementServer.Check(false, "no leader elected yet");
      }
      return new ManagementServer.Check(
          true,
          "informers synced; leader "
              + leader
              + (leader.equals(options.identity()) ? " (this replica)" : "")
              + "; this replica serves the Terraform backend");
    }
    return new ManagementServer.Check(true, "informers synced; single replica");
  }

  public ManagementServer.Check health() {
    return operator.getRuntimeInfo().isStarted()
        ? new ManagementServer.Check(true, "running")
        : new ManagementServer.Check(false, "not started");
  }

  /** Starts the operator; returns once its informers have synced. */
  public static LeaseholdOperator start(KubernetesClient client, Options options) {
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
                                      LEADER_LEASE)
                                  .withLeaseNamespace(ns)
                                  .withIdentity(options.identity())
                                  .withExitOnStopLeading(false)
                                  .build()));
            });
    EventRecorder events = new EventRecorder(client, options.identity());
    operator.register(
        new TerraformStateReconciler(client, events, options.metrics()),
        c -> {
          if (!options.namespaces().isEmpty()) {
            c.settingNamespaces(options.namespaces());
          }
        });
    operator.register(
        new RunnerJobReconciler(client, events),
        c -> {
          if (!options.namespaces().isEmpty()) {
            c.settingNamespaces(options.namespaces());
          }
        });
    operator.start();
    return new LeaseholdOperator(operator, events, client, options);
  }

  /** Serves the Terraform HTTP backend over the same client, recording Events like the rest. */
  public HttpBackend serveBackend(
      Access access, JobPods jobPods, HttpBackend.Config config, long maxStateBytes) {
    return serveBackend(access, jobPods, config, maxStateBytes, StateBackend.Audit.NONE);
  }

  public HttpBackend serveBackend(
      Access access,
      JobPods jobPods,
      HttpBackend.Config config,
      long maxStateBytes,
      StateBackend.Audit audit) {
    return HttpBackend.start(
        client,
        released ->
            new StateBackend(client, events, maxStateBytes, jobPods, released, options.metrics())
                .withAudit(audit),
        access,
        config.namespaces().isEmpty() && !options.namespaces().isEmpty()
            ? new HttpBackend.Config(
                config.host(),
                config.port(),
                config.maxWait(),
                options.namespaces(),
                config.timeouts())
            : config,
        options.metrics());
  }

  @Override
  public void close() {
    operator.stop();
    events.close();
  }
}
