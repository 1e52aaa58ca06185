package io.leasehold.backend;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.state.StateNames;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * No version of a state is lost to any writer: whether it was written through the backend or by a
 * stock client, and whether the backend or a stock client replaces it, it stays restorable.
 */
class EveryVersionKeptTest {

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

  private static StateNames create(KubernetesClient client, String name) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    client.resource(s).create();
    return new StateNames(NAMESPACE, name, "default");
  }

  /** Writes the state as stock Terraform's kubernetes backend (or kubectl) would. */
  static void stockWrite(KubernetesClient client, StateNames names, String json) {
    for (Secret desired : TerraformStates.secrets(names, json)) {
      Secret existing =
          client.secrets().inNamespace(NAMESPACE).withName(desired.getMetadata().getName()).get();
      if (existing == null) {
        client.resource(desired).create();
      } else {
        existing.setData(desired.getData());
        client.resource(existing).update();
      }
    }
  }

  private static List<String> kept(BackendClient client, String state) throws Exception {
    JsonNode versions = JSON.readTree(client.get(state + "/history").body()).get("versions");
    List<String> out = new ArrayList<>();
    versions.forEach(v -> out.add(v.get("lineage").asText() + "/" + v.get("serial").asText()));
    return out;
  }

  private static String idOf(BackendClient client, String state, String lineage, long serial)
      throws Exception {
    for (JsonNode v : JSON.readTree(client.get(state + "/history").body()).get("versions")) {
      if (v.get("lineage").asText().equals(lineage) && v.get("serial").asLong() == serial) {
        return v.get("id").asText();
      }
    }
    throw new AssertionError("no version " + lineage + "/" + serial + " in history of " + state);
  }

  @Test
  @DisplayName(
      "Versions written by a stock client are kept when the operator first sees them, and stay"
          + " restorable after a stock client replaces them")
  void stockVersionsAreKept() throws Exception {
    StateNames names = create(harness.client(), "stock-kept");
    String state = NAMESPACE + "/stock-kept";
    stockWrite(harness.client(), names, TerraformStates.stateJson(1, "lin-s", 1));
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(() -> assertThat(kept(backend, state)).contains("lin-s/1"));
    stockWrite(harness.client(), names, TerraformStates.stateJson(2, "lin-s", 2));
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> assertThat(kept(backend, state)).containsExactly("lin-s/2", "lin-s/1"));
    JsonNode first = JSON.readTree(backend.get(state + "/history").body()).get("versions").get(1);
    assertThat(first.get("reason").asText()).contains("written outside leasehold");

    BackendClient.Response restored =
        backend.send(
            "POST",
            state + "/history/" + idOf(backend, state, "lin-s", 1) + "/restore",
            null,
            Map.of());
    assertThat(restored.status()).as(restored.body()).isEqualTo(200);
    JsonNode now = JSON.readTree(backend.get(state).body());
    assertThat(now.get("serial").asLong()).isEqualTo(3);
    assertThat(now.at("/resources/0/instances")).hasSize(1);
  }

  @Test
  @DisplayName(
      "A stock client that replaces the state with another lineage, or an older serial, raises a"
          + " Warning naming both, and the replaced version can be restored")
  void stockReplacementsWarn() throws Exception {
    StateNames names = create(harness.client(), "stock-replaced");
    String state = NAMESPACE + "/stock-replaced";
    assertThat(backend.post(state, null, TerraformStates.stateJson(4, "lin-a", 2)).status())
        .isEqualTo(200);
    await()
        .atMost(Duration.ofSeconds(20))
        .until(
            () ->
                harness.events("stock-replaced").stream()
                    .anyMatch(
                        e ->
                            e.startsWith("Normal StateCreated: first state stored in")
                                && e.contains("written through the HTTP backend")));
    assertThat(harness.events("stock-replaced")).noneMatch(e -> e.contains("StateAdopted"));

    stockWrite(harness.client(), names, TerraformStates.stateJson(1, "lin-b", 1));
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () ->
                assertThat(harness.events("stock-replaced"))
                    .anyMatch(
                        e ->
                            e.startsWith("Warning LineageChanged")
                                && e.contains("another lineage")
                                && e.contains(
                                    "serial 4 lineage lin-a became serial 1 lineage lin-b")
                                && e.contains("kept in history as")));

    stockWrite(harness.client(), names, TerraformStates.stateJson(7, "lin-b", 1));
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(() -> assertThat(kept(backend, state)).contains("lin-b/7"));
    stockWrite(harness.client(), names, TerraformStates.stateJson(5, "lin-b", 3));
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () ->
                assertThat(harness.events("stock-replaced"))
                    .anyMatch(
                        e ->
                            e.startsWith("Warning SerialLowered")
                                && e.contains("an older serial")
                                && e.contains(
                                    "serial 7 lineage lin-b became serial 5 lineage lin-b")));
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () ->
                assertThat(kept(backend, state))
                    .contains("lin-a/4", "lin-b/1", "lin-b/7", "lin-b/5"));

    // The version the other lineage replaced is still there to restore (after the state that
    // replaced it is deleted, as a restore of another lineage needs).
    String original = idOf(backend, state, "lin-a", 4);
    assertThat(backend.send("DELETE", state, null, Map.of()).status()).isEqualTo(200);
    assertThat(
            backend
                .send("POST", state + "/history/" + original + "/restore", null, Map.of())
                .status())
        .isEqualTo(200);
    JsonNode now = JSON.readTree(backend.get(state).body());
    assertThat(now.get("lineage").asText()).isEqualTo("lin-a");
    assertThat(now.at("/resources/0/instances")).hasSize(2);
  }

  @Test
  @DisplayName(
      "A version written through the backend is in history as soon as it is stored, and stays"
          + " there when a stock client replaces it")
  void backendVersionsAreKeptWhenStockReplaces() throws Exception {
    StateNames names = create(harness.client(), "backend-kept");
    String state = NAMESPACE + "/backend-kept";
    assertThat(backend.post(state, null, TerraformStates.stateJson(10, "lin-k", 4)).status())
        .isEqualTo(200);
    assertThat(kept(backend, state)).containsExactly("lin-k/10");
    stockWrite(harness.client(), names, TerraformStates.stateJson(11, "lin-k", 1));
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> assertThat(kept(backend, state)).containsExactly("lin-k/11", "lin-k/10"));
    assertThat(
            JSON.readTree(
                    backend.get(state + "/history/" + idOf(backend, state, "lin-k", 10)).body())
                .at("/resources/0/instances"))
        .hasSize(4);
  }

  @Test
  @DisplayName(
      "A stock-written version the operator has not seen yet is kept before a backend write"
          + " replaces it")
  void unseenStockVersionIsKeptBeforeReplaced() throws Exception {
    try (OperatorHarness bare = OperatorHarness.apiOnly()) {
      KubernetesClient client = bare.client();
      StateNames names = create(client, "unseen");
      // Another replica leads and stays leader: this one serves the backend but never
      // reconciles, so it never sees the stock client's version before the write.
      client
          .resource(
              new io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder()
                  .withNewMetadata()
                  .withName(io.leasehold.operator.LeaseholdOperator.LEADER_LEASE)
                  .withNamespace(NAMESPACE)
                  .endMetadata()
                  .withNewSpec()
                  .withHolderIdentity("another-replica")
                  .withLeaseDurationSeconds(3600)
                  .withAcquireTime(java.time.ZonedDateTime.now())
                  .withRenewTime(java.time.ZonedDateTime.now())
                  .endSpec()
                  .build())
          .create();
      io.leasehold.cli.Replica http =
          io.leasehold.cli.Replica.start(
              client,
              new io.leasehold.operator.LeaseholdOperator.Options(
                  java.util.Set.of(), java.util.Optional.of(NAMESPACE), "follower"),
              new io.leasehold.cli.Replica.Backend(
                  Access.NONE,
                  JobPods.NONE,
                  new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(1)),
                  64L * 1024 * 1024));
      try {
        BackendClient direct = new BackendClient(http.url());
        String state = NAMESPACE + "/unseen";
        stockWrite(client, names, TerraformStates.stateJson(1, "lin-u", 3));
        assertThat(direct.post(state, null, TerraformStates.stateJson(2, "lin-u", 1)).status())
            .isEqualTo(200);
        assertThat(kept(direct, state)).containsExactly("lin-u/2", "lin-u/1");
        JsonNode stock =
            JSON.readTree(direct.get(state + "/history/" + idOf(direct, state, "lin-u", 1)).body());
        assertThat(stock.at("/resources/0/instances")).hasSize(3);
      } finally {
        http.close();
      }
    }
  }
}
