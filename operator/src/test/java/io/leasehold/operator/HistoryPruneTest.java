package io.leasehold.operator;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.leasehold.api.TerraformState;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateNames;
import io.leasehold.support.BackendHttp;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class HistoryPruneTest {

  private static OperatorHarness harness;
  private static BackendHttp backend;

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
    backend = new BackendHttp(harness.startBackend(64L * 1024 * 1024));
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static List<Long> kept() {
    return new StateHistory(harness.client(), new StateNames(NAMESPACE, "pruned", "default"))
        .list().stream().map(StateHistory.Version::serial).toList();
  }

  private static void keep(int n) {
    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("pruned")
        .patch(
            io.fabric8.kubernetes.client.dsl.base.PatchContext.of(
                io.fabric8.kubernetes.client.dsl.base.PatchType.JSON_MERGE),
            "{\"spec\":{\"history\":{\"keep\":" + n + "}}}");
  }

  @Test
  @DisplayName(
      "When history.keep is lowered, then the oldest kept versions are dropped at once, down to"
          + " the newest N (none for 0), with an Event, without waiting for the next write")
  void loweringKeepPrunesAtOnce() {
    TerraformState state = new TerraformState();
    state.getMetadata().setName("pruned");
    state.getMetadata().setNamespace(NAMESPACE);
    state.getSpec().getHistory().setKeep(5);
    harness.client().resource(state).create();
    await().atMost(Duration.ofSeconds(30)).until(() -> harness.get("pruned").getStatus() != null);
    for (long serial = 1; serial <= 5; serial++) {
      assertThat(
              backend
                  .post(NAMESPACE + "/pruned", null, TerraformStates.stateJson(serial, "lin-p", 1))
                  .status())
          .isEqualTo(200);
    }
    // Every version is kept, the current one included.
    assertThat(kept()).containsExactly(5L, 4L, 3L, 2L, 1L);

    keep(2);

    await().atMost(Duration.ofSeconds(30)).until(() -> kept().equals(List.of(5L, 4L)));
    assertThat(harness.events("pruned"))
        .anyMatch(e -> e.startsWith("Normal HistoryPruned: dropped the 3 oldest"));

    keep(0);

    await().atMost(Duration.ofSeconds(30)).until(() -> kept().isEmpty());
    assertThat(backend.get(NAMESPACE + "/pruned").status()).isEqualTo(200);
  }
}
