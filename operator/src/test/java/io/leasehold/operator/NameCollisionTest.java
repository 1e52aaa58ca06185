package io.leasehold.operator;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.DeletionPolicy;
import io.leasehold.api.TerraformState;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateNames;
import io.leasehold.support.BackendHttp;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RunnerJobFixtures;
import io.leasehold.support.TerraformStates;
import java.time.Duration;
import java.util.List;
import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * One state, one owner: name {@code team-net} in workspace {@code prod} and name {@code net} in
 * workspace {@code prod-team} both map to Secret {@code tfstate-prod-team-net}; the TerraformState
 * created later is refused, and nothing of the other's state is read, written, locked or deleted
 * through it.
 */
class NameCollisionTest {

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

  private static ConditionFactory eventually() {
    return await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(50));
  }

  private static void create(String name, String workspace, DeletionPolicy policy) {
    TerraformState state = new TerraformState();
    state.getMetadata().setName(name);
    state.getMetadata().setNamespace(NAMESPACE);
    state.getSpec().setWorkspace(workspace);
    state.getSpec().setDeletionPolicy(policy);
    harness.client().resource(state).create();
  }

  private static String degraded(String name) {
    TerraformState s = harness.get(name);
    if (s == null || s.getStatus() == null) {
      return null;
    }
    return Conditions.find(s.getStatus().getConditions(), Conditions.DEGRADED)
        .map(c -> c.getStatus() + "/" + c.getReason() + ": " + c.getMessage())
        .orElse(null);
  }

  private static Lease lease(StateNames names) {
    return harness.client().leases().inNamespace(NAMESPACE).withName(names.leaseName()).get();
  }

  private static List<Secret> secrets(String label, String value) {
    return harness
        .client()
        .secrets()
        .inNamespace(NAMESPACE)
        .withLabel(label, value)
        .list()
        .getItems();
  }

  @Test
  @DisplayName(
      "When a second TerraformState maps to the Secret and Lease of the first, then it is"
          + " Degraded with NameCollision naming the first, both get a Warning, the backend refuses"
          + " it with 409, its Jobs wait, and deleting it with Delete removes nothing of the first")
  void laterStateIsRefused() {
    StateNames first = new StateNames(NAMESPACE, "team-net", "prod");
    create("team-net", "prod", DeletionPolicy.Retain);
    String firstAddress = NAMESPACE + "/team-net";
    assertThat(
            backend.post(firstAddress, null, TerraformStates.stateJson(1, "lin-team", 1)).status())
        .isEqualTo(200);
    assertThat(
            backend.post(firstAddress, null, TerraformStates.stateJson(2, "lin-team", 2)).status())
        .isEqualTo(200);
    eventually()
        .until(
            () ->
                harness.get("team-net").getStatus() != null
                    && harness.get("team-net").getStatus().getState() != null
                    && harness.get("team-net").getStatus().getState().getSerial() == 2L);
    Lease leaseBefore = lease(first);
    List<Secret> stateBefore = secrets(StateNames.LABEL_SUFFIX, "team-net");
    List<Secret> historyBefore = secrets(StateHistory.HISTORY_LABEL, "true");

    create("net", "prod-team", DeletionPolicy.Delete);
    RunnerJobFixtures.create(harness.client(), "net-apply", "net");

    eventually()
        .untilAsserted(
            () ->
                assertThat(degraded("net"))
                    .startsWith(
                        "True/NameCollision: TerraformState team-net (workspace prod),"
                            + " created first, maps to the same Secret tfstate-prod-team-net"));
    TerraformState refused = harness.get("net");
    assertThat(refused.getStatus().getState()).as("nothing of team-net's state").isNull();
    assertThat(refused.getStatus().getHolder()).isNull();
    eventually()
        .until(
            () ->
                harness.events("net").stream()
                        .anyMatch(
                            e -> e.startsWith("Warning NameCollision: TerraformState team-net"))
                    && harness.events("team-net").stream()
                        .anyMatch(e -> e.startsWith("Warning NameCollision: TerraformState net"))
                    && harness.events("net-apply").stream()
                        .anyMatch(e -> e.startsWith("Warning NameCollision")));
    assertThat(degraded("team-net")).startsWith("False/AsExpected");

    String address = NAMESPACE + "/net";
    for (BackendHttp.Answer a :
        List.of(
            backend.get(address),
            backend.lock(address, BackendHttp.lockInfo("b-1", "bob@laptop"), null),
            backend.post(address, null, TerraformStates.stateJson(3, "lin-team", 0)),
            backend.send("DELETE", address, null),
            backend.send("GET", address + "/history", null))) {
      assertThat(a.status()).isEqualTo(409);
      assertThat(a.body()).contains("NameCollision").contains("team-net");
    }
    assertThat(RunnerJobs.admitted(RunnerJobFixtures.get(harness.client(), "net-apply"))).isFalse();

    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("net")
        .delete();
    eventually().until(() -> harness.get("net") == null);

    assertThat(lease(first).getMetadata().getResourceVersion())
        .isEqualTo(leaseBefore.getMetadata().getResourceVersion());
    assertThat(secrets(StateNames.LABEL_SUFFIX, "team-net"))
        .extracting(s -> s.getMetadata().getResourceVersion())
        .containsExactlyInAnyOrderElementsOf(
            stateBefore.stream().map(s -> s.getMetadata().getResourceVersion()).toList());
    assertThat(secrets(StateHistory.HISTORY_LABEL, "true")).hasSameSizeAs(historyBefore);
    assertThat(backend.get(firstAddress).status()).isEqualTo(200);
    assertThat(harness.events("net")).anyMatch(e -> e.startsWith("Normal StateRetained"));
  }

  @Test
  @DisplayName(
      "When stock Terraform wrote the Secret for another workspace and name, then a"
          + " TerraformState mapping to it is refused naming them, and is served once that Secret"
          + " is gone")
  void foreignSecretIsNotAdopted() {
    StateNames stock = new StateNames(NAMESPACE, "ops-dns", "qa");
    for (Secret s : TerraformStates.secrets(stock, TerraformStates.stateJson(7, "lin-dns", 1))) {
      harness.client().resource(s).create();
    }

    create("dns", "qa-ops", DeletionPolicy.Retain);

    eventually()
        .untilAsserted(
            () ->
                assertThat(degraded("dns"))
                    .startsWith(
                        "True/NameCollision: Secret tfstate-qa-ops-dns holds the state of"
                            + " workspace qa and secret_suffix ops-dns (written by stock Terraform)"));
    assertThat(harness.get("dns").getStatus().getState()).isNull();
    assertThat(backend.get(NAMESPACE + "/dns").status()).isEqualTo(409);

    harness.client().secrets().inNamespace(NAMESPACE).withName(stock.secretName()).delete();

    eventually().untilAsserted(() -> assertThat(degraded("dns")).startsWith("False/AsExpected"));
    assertThat(backend.get(NAMESPACE + "/dns").status()).isEqualTo(404);
  }

  @Test
  @DisplayName(
      "When a TerraformState refused a Secret labelled for another workspace and name was created"
          + " first, then the TerraformState of that workspace and name, created later, still"
          + " adopts its state, and the first stays refused")
  void refusedStateDoesNotBlockTheOwner() {
    StateNames stock = new StateNames(NAMESPACE, "ops-mail", "stage");
    for (Secret s : TerraformStates.secrets(stock, TerraformStates.stateJson(7, "lin-mail", 1))) {
      harness.client().resource(s).create();
    }
    create("mail", "stage-ops", DeletionPolicy.Delete);
    eventually()
        .untilAsserted(
            () ->
                assertThat(degraded("mail"))
                    .startsWith(
                        "True/NameCollision: Secret tfstate-stage-ops-mail holds the state of"
                            + " workspace stage and secret_suffix ops-mail"));

    create("ops-mail", "stage", DeletionPolicy.Retain);

    eventually()
        .untilAsserted(() -> assertThat(degraded("ops-mail")).startsWith("False/AsExpected"));
    eventually().until(() -> Long.valueOf(7).equals(harness.facts("ops-mail").getSerial()));
    assertThat(backend.get(NAMESPACE + "/ops-mail").status()).isEqualTo(200);
    // Refused still; its message names the owner once it looks again.
    eventually()
        .untilAsserted(
            () ->
                assertThat(degraded("mail"))
                    .startsWith(
                        "True/NameCollision: Secret tfstate-stage-ops-mail holds the state of"
                            + " workspace stage and secret_suffix ops-mail (TerraformState"
                            + " ops-mail)"));
    assertThat(backend.get(NAMESPACE + "/mail").status()).isEqualTo(409);

    // Deleting the refused one (deletionPolicy Delete) removes nothing of the owner's state.
    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("mail")
        .delete();
    eventually().until(() -> harness.get("mail") == null);
    assertThat(backend.get(NAMESPACE + "/ops-mail").status()).isEqualTo(200);
    assertThat(lease(stock)).isNotNull();
  }
}
