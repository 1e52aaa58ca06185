package io.leasehold.operator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.support.RunnerJobFixtures;
import java.time.Duration;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class LeadershipLossTest {

  private static final Leadership.Timing FAST =
      new Leadership.Timing(Duration.ofSeconds(3), Duration.ofSeconds(2), Duration.ofMillis(300));

  private static LeaseholdOperator.Options options(String identity) {
    return new LeaseholdOperator.Options(Set.of(), Optional.of("default"), identity)
        .withElection(FAST);
  }

  @Test
  @DisplayName(
      "When the leader loses its Lease, then it stops reconciling at once and says so in its"
          + " readiness; nothing is admitted while nobody leads; a replica that wins the"
          + " election again takes over")
  void leaderThatLosesItsLeaseStopsReconciling() throws Exception {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient a = api.newClient();
        KubernetesClient b = api.newClient();
        KubernetesClient user = api.newClient();
        LeaseholdOperator first = LeaseholdOperator.start(a, options("replica-a"));
        LeaseholdOperator second = LeaseholdOperator.start(b, options("replica-b"))) {
      await()
          .atMost(Duration.ofSeconds(30))
          .until(() -> first.leadership().leading() || second.leadership().leading());
      LeaseholdOperator leader = first.leadership().leading() ? first : second;
      assertThat(leader.readiness().detail()).contains("(this replica): reconciling");

      // Another candidate takes the leader Lease (as after a partition): it keeps renewing it.
      ScheduledExecutorService intruder = Executors.newSingleThreadScheduledExecutor();
      intruder.scheduleAtFixedRate(
          () -> {
            try {
              user.leases()
                  .inNamespace("default")
                  .withName(LeaseholdOperator.LEADER_LEASE)
                  .edit(
                      (Lease l) -> {
                        ZonedDateTime now = ZonedDateTime.now(ZoneOffset.UTC);
                        l.getSpec().setHolderIdentity("intruder");
                        l.getSpec().setAcquireTime(now);
                        l.getSpec().setRenewTime(now);
                        l.getSpec().setLeaseDurationSeconds(3);
                        return l;
                      });
            } catch (RuntimeException e) {
              // A conflict with a candidate's write: the next tick wins.
            }
          },
          0,
          200,
          TimeUnit.MILLISECONDS);
      try {
        await()
            .atMost(Duration.ofSeconds(20))
            .until(() -> !first.leadership().leading() && !second.leadership().leading());
        assertThat(leader.readiness().ok()).isTrue();
        assertThat(leader.readiness().detail())
            .contains("lost leadership")
            .contains("stopped reconciling")
            .contains("serves the Terraform backend");

        TerraformState s = new TerraformState();
        s.getMetadata().setName("leaderless");
        s.getMetadata().setNamespace("default");
        user.resource(s).create();
        user.resource(RunnerJobFixtures.runner("leaderless-run", "leaderless", true)).create();
        await()
            .during(Duration.ofSeconds(2))
            .atMost(Duration.ofSeconds(10))
            .until(
                () ->
                    !RunnerJobFixtures.running(RunnerJobFixtures.get(user, "leaderless-run"))
                        && user.resources(TerraformState.class)
                                .inNamespace("default")
                                .withName("leaderless")
                                .get()
                                .getStatus()
                            == null);
      } finally {
        intruder.shutdownNow();
        intruder.awaitTermination(5, TimeUnit.SECONDS);
      }

      // The intruder is gone: a replica leads again and the Job is admitted.
      await()
          .atMost(Duration.ofSeconds(30))
          .until(() -> first.leadership().leading() || second.leadership().leading());
      await()
          .atMost(Duration.ofSeconds(30))
          .until(() -> RunnerJobFixtures.running(RunnerJobFixtures.get(user, "leaderless-run")));
      RunnerJobFixtures.finish(user, "leaderless-run", true);
    }
  }
}
