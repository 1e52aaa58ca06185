package io.leasehold.kube;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.ConfigMapBuilder;
import io.fabric8.kubernetes.api.model.Event;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.embedded.EmbeddedKubernetes;
import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** Events that may come often are gathered, so a busy queue does not cost one write per step. */
class EventRecorderTest {

  @Test
  @DisplayName(
      "Handovers in quick succession cost one Event at once and one per window after it, which"
          + " names how many it stands for and lists them newest first; a quiet object gets none")
  void aBurstIsOneEventPerWindow() {
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient client = api.newClient()) {
      ConfigMap object =
          client
              .resource(
                  new ConfigMapBuilder()
                      .withNewMetadata()
                      .withName("busy")
                      .withNamespace("default")
                      .endMetadata()
                      .build())
              .create();
      Duration window = Duration.ofMillis(1500);
      try (EventRecorder events = new EventRecorder(client, "test", window)) {
        for (int i = 1; i <= 5; i++) {
          events.aggregated(object, "LockHandedOver", "lock passed from job-" + i + " to next");
        }
        await().atMost(Duration.ofSeconds(10)).until(() -> handovers(client).size() == 1);
        assertThat(handovers(client).get(0).getMessage())
            .isEqualTo("lock passed from job-1 to next");

        await().atMost(Duration.ofSeconds(10)).until(() -> handovers(client).size() == 2);
        assertThat(handovers(client).get(1).getMessage())
            .isEqualTo(
                "lock passed from job-5 to next (4 in 1500 ms; before it: lock passed from job-4"
                    + " to next; lock passed from job-3 to next; lock passed from job-2 to next)");

        // Nothing gathered in the next window: no Event for it, and the next handover goes out
        // at once again.
        await()
            .during(window.multipliedBy(2))
            .atMost(window.multipliedBy(4))
            .until(() -> handovers(client).size() == 2);
        events.aggregated(object, "LockHandedOver", "lock passed from job-6 to next");
        await().atMost(Duration.ofSeconds(10)).until(() -> handovers(client).size() == 3);
        assertThat(handovers(client).get(2).getMessage())
            .isEqualTo("lock passed from job-6 to next");

        // A stop writes what an open window gathered.
        events.aggregated(object, "LockHandedOver", "lock passed from job-7 to next");
      }
      await().atMost(Duration.ofSeconds(10)).until(() -> handovers(client).size() == 4);
      assertThat(handovers(client).get(3).getMessage()).isEqualTo("lock passed from job-7 to next");
    }
  }

  private static List<Event> handovers(KubernetesClient client) {
    return client.v1().events().inNamespace("default").list().getItems().stream()
        .filter(e -> "LockHandedOver".equals(e.getReason()))
        .sorted(Comparator.comparing(e -> e.getMetadata().getName()))
        .toList();
  }
}
