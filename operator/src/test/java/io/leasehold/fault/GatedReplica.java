package io.leasehold.fault;

import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.leasehold.backend.Access;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.JobPods;
import io.leasehold.cli.Replica;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.kube.TolerantSerialization;
import io.leasehold.lock.LockService;
import io.leasehold.operator.Leadership;
import io.leasehold.operator.LeaseholdOperator;
import java.time.Duration;
import java.util.Optional;
import java.util.Set;

/** A replica serving the backend on the embedded API, every API call of it through {@code gate}. */
record GatedReplica(KubernetesClient client, Replica replica, ApiGate gate) {

  /**
   * @param electionNamespace where replicas elect a leader and keep heartbeats; empty for a replica
   *     alone
   */
  static GatedReplica start(
      EmbeddedKubernetes api, String name, Optional<String> electionNamespace) {
    ApiGate gate = new ApiGate(name, refused -> {});
    Config config = api.clientConfig();
    config.setImpersonateUsername(EmbeddedKubernetes.OPERATOR_USER);
    // A failed call fails at once: the gate, not a retry, decides what the API answers.
    config.setRequestRetryBackoffLimit(0);
    KubernetesClient client =
        new KubernetesClientBuilder()
            .withConfig(config)
            .withKubernetesSerialization(new TolerantSerialization())
            .withHttpClientBuilderConsumer(b -> b.addOrReplaceInterceptor("gate", gate))
            .build();
    Replica replica =
        Replica.start(
            client,
            new LeaseholdOperator.Options(Set.of(), electionNamespace, name)
                .withElection(
                    new Leadership.Timing(
                        Duration.ofSeconds(3), Duration.ofSeconds(2), Duration.ofMillis(300)))
                .withLocks(new LockService.Settings(Duration.ofSeconds(30))),
            new Replica.Backend(
                Access.NONE,
                JobPods.NONE,
                new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(5)),
                1 << 20));
    return new GatedReplica(client, replica, gate);
  }

  /** Stops it, gracefully unless it was killed (then only what is left is closed). */
  void close() {
    try {
      replica.close();
    } catch (RuntimeException e) {
      // Killed: every call it makes fails.
    } finally {
      client.close();
    }
  }
}
