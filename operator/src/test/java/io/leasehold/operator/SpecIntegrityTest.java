package io.leasehold.operator;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LockInfo;
import io.leasehold.state.StateNames;
import io.leasehold.support.BackendHttp;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RunnerJobFixtures;
import io.leasehold.support.TerraformStates;
import java.time.Duration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Where the API server does not enforce the CRD's rules (a CRD installed before them), a
 * TerraformState can lose its spec; the operator then never takes it for workspace default.
 */
class SpecIntegrityTest {

  private static OperatorHarness harness;
  private static BackendHttp backend;

  @BeforeAll
  static void start() throws Exception {
    harness = OperatorHarness.start();
    backend = new BackendHttp(harness.startBackend(64L * 1024 * 1024));
    // An older CRD: no rules on the whole object and no default for spec.
    ObjectMapper json = new ObjectMapper();
    var crds = harness.client().apiextensions().v1().customResourceDefinitions();
    CustomResourceDefinition crd = crds.withName("terraformstates.leasehold.io").get();
    ObjectNode tree = json.valueToTree(crd);
    ObjectNode schema = (ObjectNode) tree.at("/spec/versions/0/schema/openAPIV3Schema");
    schema.remove("x-kubernetes-validations");
    ((ObjectNode) schema.at("/properties/spec")).remove("default");
    ((ObjectNode) schema.at("/properties/spec/properties/workspace"))
        .remove("x-kubernetes-validations");
    crds.resource(json.treeToValue(tree, CustomResourceDefinition.class)).update();
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static String condition(String name, String type) {
    TerraformState s = harness.get(name);
    return s == null || s.getStatus() == null
        ? null
        : Conditions.find(s.getStatus().getConditions(), type)
            .map(c -> c.getStatus() + "/" + c.getReason())
            .orElse(null);
  }

  @Test
  @DisplayName(
      "When the spec of a TerraformState is removed where the API lets it, then it is Degraded"
          + " with SpecMissing, the lock in its real workspace is left as it is (no false"
          + " LockReleased), no workspace default is touched, the backend answers 422, and"
          + " restoring the spec brings it back")
  void missingSpecIsReportedNotDefaulted() {
    StateNames prod = new StateNames(NAMESPACE, "nospec", "prod");
    LockInfo held = TerraformStates.terraformLock("prod-lock-1", "gina@ci");
    harness.client().resource(TerraformStates.heldLease(prod, held)).create();
    TerraformState state = new TerraformState();
    state.getMetadata().setName("nospec");
    state.getMetadata().setNamespace(NAMESPACE);
    state.getSpec().setWorkspace("prod");
    harness.client().resource(state).create();
    await()
        .atMost(Duration.ofSeconds(30))
        .until(() -> "True/Held".equals(condition("nospec", Conditions.LOCKED)));
    Lease before =
        harness.client().leases().inNamespace(NAMESPACE).withName(prod.leaseName()).get();

    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("nospec")
        .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"spec\":null}");

    await()
        .atMost(Duration.ofSeconds(30))
        .until(() -> "True/SpecMissing".equals(condition("nospec", Conditions.DEGRADED)));
    assertThat(harness.get("nospec").getSpec()).isNull();
    BackendHttp.Answer get = backend.get(NAMESPACE + "/nospec");
    assertThat(get.status()).isEqualTo(422);
    assertThat(get.body()).contains("has no spec");
    assertThat(harness.events("nospec")).noneMatch(e -> e.contains("LockReleased"));
    assertThat(
            harness
                .client()
                .leases()
                .inNamespace(NAMESPACE)
                .withName(new StateNames(NAMESPACE, "nospec", "default").leaseName())
                .get())
        .isNull();
    assertThat(
            harness
                .client()
                .leases()
                .inNamespace(NAMESPACE)
                .withName(prod.leaseName())
                .get()
                .getMetadata()
                .getResourceVersion())
        .isEqualTo(before.getMetadata().getResourceVersion());

    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("nospec")
        .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"spec\":{\"workspace\":\"prod\"}}");

    await()
        .atMost(Duration.ofSeconds(30))
        .until(
            () ->
                "False/AsExpected".equals(condition("nospec", Conditions.DEGRADED))
                    && "True/Held".equals(condition("nospec", Conditions.LOCKED)));
    assertThat(harness.events("nospec")).noneMatch(e -> e.contains("LockReleased"));
    assertThat(harness.events("nospec")).filteredOn(e -> e.contains("LockTaken")).hasSize(1);
  }

  @Test
  @DisplayName(
      "When a TerraformState whose spec went missing is deleted while its admitted Job runs,"
          + " then the deletion waits for the Job to end and its lock is released then, never"
          + " left held by a Job that ended")
  void deletionWithoutSpecReleasesTheRunningJobsLock() {
    StateNames prod = new StateNames(NAMESPACE, "nospec-run", "prod");
    TerraformState state = new TerraformState();
    state.getMetadata().setName("nospec-run");
    state.getMetadata().setNamespace(NAMESPACE);
    state.getSpec().setWorkspace("prod");
    harness.client().resource(state).create();
    RunnerJobFixtures.create(harness.client(), "nospec-run-1", "nospec-run");
    await()
        .atMost(Duration.ofSeconds(30))
        .until(
            () ->
                RunnerJobFixtures.running(RunnerJobFixtures.get(harness.client(), "nospec-run-1")));
    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("nospec-run")
        .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"spec\":null}");
    await()
        .atMost(Duration.ofSeconds(30))
        .until(() -> "True/SpecMissing".equals(condition("nospec-run", Conditions.DEGRADED)));

    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("nospec-run")
        .delete();

    await()
        .during(Duration.ofSeconds(2))
        .atMost(Duration.ofSeconds(10))
        .until(() -> harness.get("nospec-run") != null);
    RunnerJobFixtures.finish(harness.client(), "nospec-run-1", true);

    await().atMost(Duration.ofSeconds(30)).until(() -> harness.get("nospec-run") == null);
    Lease lease = harness.client().leases().inNamespace(NAMESPACE).withName(prod.leaseName()).get();
    assertThat(lease).isNotNull();
    assertThat(lease.getSpec().getHolderIdentity()).isNull();
  }
}
