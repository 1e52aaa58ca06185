package io.leasehold.examples;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.batch.v1.CronJob;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.TerraformState;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.state.StateNames;
import io.leasehold.support.Binaries;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** Every manifest under examples/ is accepted by the embedded API and does what it says. */
class ExamplesTest {

  static final Path EXAMPLES = Path.of(System.getProperty("leasehold.projectRoot"), "examples");
  private static OperatorHarness harness;

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  @Test
  @DisplayName(
      "The quick-start manifests are accepted, and its runner Job is queued, given the lock and"
          + " unsuspended")
  void quickstart() {
    harness.api().apply(EXAMPLES.resolve("quickstart/terraformstate.yaml"));
    harness.api().apply(EXAMPLES.resolve("quickstart/runner-rbac.yaml"));
    harness.api().apply(EXAMPLES.resolve("quickstart/runner-config.yaml"));
    List<HasMetadata> applied = harness.api().apply(EXAMPLES.resolve("quickstart/runner-job.yaml"));
    Job job =
        applied.stream()
            .filter(Job.class::isInstance)
            .map(Job.class::cast)
            .findFirst()
            .orElseThrow();
    assertThat(job.getMetadata().getName()).startsWith("quickstart-apply-");

    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              Lease lease =
                  harness
                      .client()
                      .leases()
                      .inNamespace("default")
                      .withName("lock-tfstate-default-quickstart")
                      .get();
              assertThat(lease).isNotNull();
              assertThat(lease.getSpec().getHolderIdentity()).isEqualTo(RunnerJobs.holderId(job));
              Job admitted =
                  harness
                      .client()
                      .batch()
                      .v1()
                      .jobs()
                      .inNamespace("default")
                      .withName(job.getMetadata().getName())
                      .get();
              assertThat(admitted.getSpec().getSuspend()).isFalse();
            });
  }

  @Test
  @DisplayName(
      "kubectl kustomize renders the GitOps example, the embedded API accepts all of it, and with"
          + " the chart's admission policies the CronJob's Jobs are created suspended and queued")
  void gitops() throws Exception {
    Process kustomize =
        new ProcessBuilder(
                Binaries.kubectl().path().toString(),
                "kustomize",
                EXAMPLES.resolve("gitops").toString())
            .redirectErrorStream(false)
            .start();
    String rendered = new String(kustomize.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    String errors = new String(kustomize.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(kustomize.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(kustomize.exitValue()).as(errors).isZero();

    List<HasMetadata> applied =
        harness
            .api()
            .apply(
                new ByteArrayInputStream(rendered.getBytes(StandardCharsets.UTF_8)),
                "examples/gitops");
    assertThat(applied)
        .extracting(HasMetadata::getKind)
        .contains(
            "Namespace",
            "TerraformState",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "CronJob");
    TerraformState network =
        harness
            .client()
            .resources(TerraformState.class)
            .inNamespace("infra")
            .withName("network")
            .get();
    assertThat(network.getSpec().getHistory().getKeep()).isEqualTo(20);
    CronJob cron =
        harness
            .client()
            .batch()
            .v1()
            .cronjobs()
            .inNamespace("infra")
            .withName("network-apply")
            .get();
    assertThat(cron.getSpec().getJobTemplate().getSpec().getSuspend())
        .as("the example relies on the MutatingAdmissionPolicy, not on suspend: true")
        .isNull();
    assertThat(cron.getSpec().getJobTemplate().getMetadata().getLabels())
        .containsEntry(RunnerJobs.STATE_LABEL, "network");

    // A Job from the template, created as the CronJob controller would, comes back suspended.
    harness.api().installAdmissionPolicies();
    Job scheduled =
        new io.fabric8.kubernetes.api.model.batch.v1.JobBuilder()
            .withMetadata(cron.getSpec().getJobTemplate().getMetadata())
            .editMetadata()
            .withName("network-apply-29000000")
            .withNamespace("infra")
            .endMetadata()
            .withSpec(cron.getSpec().getJobTemplate().getSpec())
            .build();
    try (var controller =
        harness.api().newClient("system:serviceaccount:kube-system:cronjob-controller")) {
      assertThat(controller.resource(scheduled).create().getSpec().getSuspend()).isTrue();
    }
    assertThat(
            harness
                .client()
                .configMaps()
                .inNamespace("infra")
                .withName("network-terraform")
                .get()
                .getData())
        .containsKey("main.tf");
  }

  @Test
  @DisplayName(
      "The migrate example adopts a state stock Terraform wrote: status shows its serial, and"
          + " the Secret is untouched")
  void migrateAdoptsExistingState() {
    StateNames names = new StateNames("default", "legacy", "default");
    var secret =
        harness
            .client()
            .resource(
                TerraformStates.secrets(names, TerraformStates.stateJson(42, "lin-legacy", 7))
                    .get(0))
            .create();
    harness.api().apply(EXAMPLES.resolve("migrate/terraformstate.yaml"));
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              TerraformState s = harness.get("legacy");
              assertThat(s.getStatus()).isNotNull();
              assertThat(s.getStatus().getState()).isNotNull();
              assertThat(s.getStatus().getState().getSerial()).isEqualTo(42);
              assertThat(s.getStatus().getState().getResources()).isEqualTo(7);
            });
    assertThat(
            harness
                .client()
                .secrets()
                .inNamespace("default")
                .withName(names.secretName())
                .get()
                .getMetadata()
                .getResourceVersion())
        .isEqualTo(secret.getMetadata().getResourceVersion());
  }

  @Test
  @DisplayName(
      "Invalid variants of the quick-start TerraformState are refused with the CRD's messages")
  void invalidVariantsAreRefused() throws Exception {
    String original = Files.readString(EXAMPLES.resolve("quickstart/terraformstate.yaml"));
    for (var variant :
        List.of(
            List.of("name: quickstart", "name: quickstart-2", "must not end in '-<digits>'"),
            List.of(
                "leaseDurationSeconds: 300",
                "leaseDurationSeconds: 1",
                "spec.lock.leaseDurationSeconds"),
            List.of("deletionPolicy: Retain", "deletionPolicy: Destroy", "spec.deletionPolicy"),
            List.of("keep: 10", "keep: 1000", "spec.history.keep"),
            List.of("workspace: default", "workspace: Default", "workspace must be a DNS label"))) {
      String yaml =
          original
              .replace(variant.get(0), variant.get(1))
              .replace("name: quickstart\n", "name: variant\n");
      assertThat(yaml).contains(variant.get(1));
      assertThatThrownBy(
              () ->
                  harness
                      .api()
                      .apply(
                          new ByteArrayInputStream(yaml.getBytes(StandardCharsets.UTF_8)),
                          "variant"))
          .as(variant.get(1))
          .hasMessageContaining(variant.get(2));
    }
  }
}
