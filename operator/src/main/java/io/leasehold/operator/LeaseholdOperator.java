package io.leasehold.operator;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.javaoperatorsdk.operator.Operator;
import io.javaoperatorsdk.operator.api.config.LeaderElectionConfigurationBuilder;
import io.leasehold.backend.Access;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.JobPods;
import io.leasehold.backend.StateBackend;
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
      Set<String> namespaces, Optional<String> leaderElectionNamespace, String identity) {}

  private final Operator operator;
  private final EventRecorder events;
  private final KubernetesClient client;

  private LeaseholdOperator(Operator operator, EventRecorder events, KubernetesClient client) {
    this.operator = operator;
    this.events = events;
    this.client = client;
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
                  .withCacheSyncTimeout(Duration.ofMinutes(2));
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
        new TerraformStateReconciler(client, events),
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
    return new LeaseholdOperator(operator, events, client);
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
            new StateBackend(client, events, maxStateBytes, jobPods, released).withAudit(audit),
        access,
        config);
  }

  @Override
  public void close() {
    operator.stop();
    events.close();
  }
}
