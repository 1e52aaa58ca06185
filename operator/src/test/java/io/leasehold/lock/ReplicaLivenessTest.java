package io.leasehold.lock;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.embedded.EmbeddedKubernetes;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.temporal.ChronoUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** Heartbeats: who counts as alive, and what happens to the heartbeats of replicas long gone. */
class ReplicaLivenessTest {

  private static EmbeddedKubernetes api;
  private static KubernetesClient client;
  private static final ReplicaLiveness.Timing FAST =
      new ReplicaLiveness.Timing(Duration.ofMillis(200), Duration.ofSeconds(1));

  @BeforeAll
  static void start() {
    api = EmbeddedKubernetes.start(0);
    client = api.newClient();
  }

  @AfterAll
  static void stop() {
    client.close();
    api.close();
  }

  private static Lease heartbeat(String name, String run, ZonedDateTime renewed) {
    return client
        .resource(
            new LeaseBuilder()
                .withNewMetadata()
                .withName(name)
                .withNamespace("default")
                .addToLabels(ReplicaLiveness.LABEL, "hb-test")
                .endMetadata()
                .withNewSpec()
                .withHolderIdentity(run)
                .withLeaseDurationSeconds(12)
                .withRenewTime(renewed.truncatedTo(ChronoUnit.MICROS))
                .endSpec()
                .build())
        .create();
  }

  @Test
  @DisplayName(
      "A heartbeat that stopped hours ago counts as gone at once and is deleted; a live replica's"
          + " counts as alive while it renews, and as gone once it stops renewing")
  void staleHeartbeatsAreGoneAndTidied() {
    heartbeat("hb-test-replica-old", "old#00000000", ZonedDateTime.now().minusHours(2));
    try (ReplicaLiveness live =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "live", FAST);
        ReplicaLiveness watcher =
            ReplicaLiveness.heartbeating(client, "default", "hb-test", "watcher", FAST)) {
      assertThat(watcher.alive("old#00000000")).isFalse();
      await()
          .atMost(Duration.ofSeconds(10))
          .until(
              () ->
                  client.leases().inNamespace("default").withName("hb-test-replica-old").get()
                      == null);
      await().atMost(Duration.ofSeconds(10)).until(() -> watcher.alive(live.self()));
      assertThat(live.self()).startsWith("live#");
      live.halt();
      await().atMost(Duration.ofSeconds(10)).until(() -> !watcher.alive(live.self()));
      // Stopped, not gone for an hour: its heartbeat is kept.
      assertThat(client.leases().inNamespace("default").withName("hb-test-replica-live").get())
          .isNotNull();
    }
  }

  @Test
  @DisplayName("A replica alone (no leader election) knows only itself, by its identity")
  void aloneKnowsOnlyItself() {
    ReplicaLiveness alone = ReplicaLiveness.alone("solo");
    assertThat(alone.self()).isEqualTo("solo");
    assertThat(alone.alive("solo")).isTrue();
    assertThat(alone.alive("other")).isFalse();
  }
}
