package io.leasehold.backend;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.Secret;
import io.leasehold.api.TerraformState;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateStore;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class DataSafetyTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static OperatorHarness harness;
  private static BackendClient backend;

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
    backend = new BackendClient(harness.startBackend(64L * 1024 * 1024));
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static String create(String name) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
    return NAMESPACE + "/" + name;
  }

  private static void writeVersions(String state, String lineage, int count) throws Exception {
    for (int serial = 1; serial <= count; serial++) {
      assertThat(
              backend
                  .post(state, null, TerraformStates.stateJson(serial, lineage, serial))
                  .status())
          .isEqualTo(200);
    }
  }

  private static String condition(String name, String type) {
    TerraformState s = harness.get(name);
    if (s == null || s.getStatus() == null) {
      return null;
    }
    return s.getStatus().getConditions().stream()
        .filter(c -> c.getType().equals(type))
        .map(c -> c.getStatus() + "/" + c.getReason() + ": " + c.getMessage())
        .findFirst()
        .orElse(null);
  }

  @Test
  @DisplayName(
      "When a Retain TerraformState is deleted, as a GitOps prune would, then state and history"
          + " stay readable, and re-creating the resource adopts them")
  void pruneAndReadopt() throws Exception {
    String state = create("pruned");
    writeVersions(state, "lin-p", 3);
    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("pruned")
        .delete();
    await().atMost(Duration.ofSeconds(20)).until(() -> harness.get("pruned") == null);

    StateNames names = new StateNames(NAMESPACE, "pruned", "default");
    StateStore.Current stock = new StateStore(harness.client(), names).read().orElseThrow();
    assertThat(stock.facts().getSerial())
        .as("stock Terraform's Secret still holds serial 3")
        .isEqualTo(3);

    create("pruned");
    await()
        .atMost(Duration.ofSeconds(20))
        .until(
            () ->
                harness.get("pruned").getStatus() != null
                    && harness.get("pruned").getStatus().getState() != null
                    && harness.get("pruned").getStatus().getState().getSerial() == 3);
    JsonNode history = JSON.readTree(backend.get(state + "/history").body()).get("versions");
    assertThat(history).as("every version written, the current one included").hasSize(3);
    assertThat(backend.get(state).status()).isEqualTo(200);
  }

  @Test
  @DisplayName(
      "When the state Secret is deleted by hand, then GET is a 500 that says so, writes are"
          + " refused, the resource is Degraded, and a restore from history brings it back")
  void handDeletedState() throws Exception {
    String state = create("vanished");
    writeVersions(state, "lin-v", 3);
    await()
        .atMost(Duration.ofSeconds(20))
        .until(() -> harness.status("vanished").getState() != null);
    harness.client().secrets().inNamespace(NAMESPACE).withName("tfstate-default-vanished").delete();

    BackendClient.Response get = backend.get(state);
    assertThat(get.status()).isEqualTo(500);
    assertThat(get.body()).contains("deleted outside leasehold").contains("/history/");
    BackendClient.Response write =
        backend.post(state, null, TerraformStates.stateJson(1, "lin-fresh", 1));
    assertThat(write.status()).isEqualTo(409);
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () ->
                assertThat(condition("vanished", "Degraded"))
                    .startsWith("True/")
                    .contains("is missing"));
    assertThat(harness.events("vanished"))
        .anyMatch(e -> e.startsWith("Warning") && e.contains("is missing"));

    String latest =
        JSON.readTree(backend.get(state + "/history").body())
            .get("versions")
            .get(0)
            .get("id")
            .asText();
    assertThat(
            backend
                .send("POST", state + "/history/" + latest + "/restore", null, Map.of())
                .status())
        .isEqualTo(200);
    // The latest version kept is the state that was deleted by hand.
    assertThat(JSON.readTree(backend.get(state).body()).get("serial").asLong()).isEqualTo(3);
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(() -> assertThat(condition("vanished", "Degraded")).startsWith("False/"));
  }

  @Test
  @DisplayName(
      "When the state Secret is corrupted by hand, then GET is a 500 naming the fault, writes are"
          + " refused, and a restore replaces it while keeping the corrupt bytes in history")
  void handCorruptedState() throws Exception {
    String state = create("mangled");
    writeVersions(state, "lin-m", 2);
    Secret main =
        harness.client().secrets().inNamespace(NAMESPACE).withName("tfstate-default-mangled").get();
    main.setData(
        Map.of(
            "tfstate",
            Base64.getEncoder().encodeToString("garbage".getBytes(StandardCharsets.UTF_8))));
    harness.client().resource(main).update();

    BackendClient.Response get = backend.get(state);
    assertThat(get.status()).isEqualTo(500);
    assertThat(get.body()).contains("cannot be read").contains("tfstate-default-mangled");
    assertThat(backend.post(state, null, TerraformStates.stateJson(3, "lin-m", 1)).status())
        .isEqualTo(500);

    String latest =
        JSON.readTree(backend.get(state + "/history").body())
            .get("versions")
            .get(0)
            .get("id")
            .asText();
    BackendClient.Response restored =
        backend.send("POST", state + "/history/" + latest + "/restore", null, Map.of());
    assertThat(restored.status()).as(restored.body()).isEqualTo(200);
    assertThat(restored.body()).contains("kept in history");
    // The latest version kept is the state as it was before it was corrupted.
    assertThat(JSON.readTree(backend.get(state).body()).get("serial").asLong()).isEqualTo(2);
    JsonNode versions = JSON.readTree(backend.get(state + "/history").body()).get("versions");
    assertThat(versions.toString()).contains("unreadable, replaced by restore of " + latest);
  }
}
