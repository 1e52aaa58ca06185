package io.leasehold.e2e;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.TerraformState;
import io.leasehold.api.TerraformStateStatus;
import io.leasehold.support.Binaries;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.Terraform;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.Base64;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Stock terraform with its kubernetes backend against the embedded API, with the operator on. */
class KubernetesBackendInteropE2ETest {

  /** Why these tests need HashiCorp's terraform: OpenTofu's kubernetes backend differs. */
  private static final String WHY =
      "these tests are of Terraform's own kubernetes backend (OpenTofu's writes no chunks, and"
          + " writes its lock Lease as protobuf, which the embedded API does not read)";

  private static OperatorHarness harness;
  private static Path kubeconfig;

  @BeforeAll
  static void start(@TempDir Path shared) {
    Binaries.hashicorpTerraform(WHY);
    harness = OperatorHarness.start();
    kubeconfig = shared.resolve("kubeconfig");
    harness.api().writeKubeconfig(kubeconfig);
  }

  @AfterAll
  static void stop() {
    if (harness != null) {
      harness.close();
    }
  }

  private static void createState(String name) {
    TerraformState state = new TerraformState();
    state.getMetadata().setName(name);
    state.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(state).create();
  }

  /** The status; empty until it is written, so that waits on it retry. */
  private static TerraformStateStatus status(String name) {
    return harness.status(name);
  }

  private static JsonNode pulledState(Terraform tf) throws Exception {
    return new ObjectMapper().readTree(tf.run("state", "pull").assertOk().output());
  }

  @Test
  @DisplayName(
      "When stock terraform applies through its kubernetes backend, then the TerraformState"
          + " shows the state's serial, lineage, version and resources, and plan sees no change")
  void applyShowsUpInStatus(@TempDir Path dir) throws Exception {
    createState("interop");
    Terraform tf = Terraform.hashicorp(dir, WHY);
    tf.writeKubernetesBackendConfig(
        kubeconfig,
        "interop",
        """
        resource "terraform_data" "r" {
          count = 3
          input = "item-${count.index}"
        }
        """);

    tf.run("init").assertOk();
    tf.run("apply", "-auto-approve").assertOk();

    JsonNode state = pulledState(tf);
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              TerraformStateStatus s = status("interop");
              assertThat(s.getState()).isNotNull();
              assertThat(s.getState().getSerial()).isEqualTo(state.get("serial").asLong());
              assertThat(s.getState().getLineage()).isEqualTo(state.get("lineage").asText());
              assertThat(s.getState().getTerraformVersion())
                  .isEqualTo(state.get("terraform_version").asText());
              assertThat(s.getState().getResources()).isEqualTo(3);
              assertThat(s.getHolder()).isNull();
            });
    Terraform.Result plan = tf.run("plan", "-detailed-exitcode");
    assertThat(plan.exitCode()).as(plan.output()).isZero();
    assertThat(plan.output()).contains("No changes");
  }

  @Test
  @DisplayName(
      "When stock terraform holds the lock during an apply, then the TerraformState shows it as"
          + " the holder, the operator leaves the lock alone, and it clears when terraform ends")
  void terraformLockIsShownAndNeverCleared(@TempDir Path dir) throws Exception {
    createState("held-by-tf");
    Path release = dir.resolve("release");
    Terraform tf = Terraform.hashicorp(dir, WHY);
    tf.writeKubernetesBackendConfig(
        kubeconfig,
        "held-by-tf",
        """
        variable "n" {
          default = 1
        }
        resource "terraform_data" "slow" {
          input = var.n
          provisioner "local-exec" {
            command = "while [ ! -f %s ]; do sleep 0.1; done"
          }
        }
        """
            .formatted(release));
    tf.run("init").assertOk();

    Process apply = tf.start("apply", "-auto-approve");
    try {
      await()
          .atMost(Duration.ofSeconds(60))
          .untilAsserted(
              () -> {
                TerraformStateStatus s = status("held-by-tf");
                assertThat(s.getLock()).isNotNull();
                assertThat(s.getLock().getOperation()).isEqualTo("OperationTypeApply");
                assertThat(s.getLock().getWho()).contains("@");
                assertThat(s.getLock().getVouched()).isFalse();
                assertThat(s.getHolder()).endsWith(" (apply)");
              });
      Lease held =
          harness
              .client()
              .leases()
              .inNamespace(NAMESPACE)
              .withName("lock-tfstate-default-held-by-tf")
              .get();
      assertThat(held.getSpec().getHolderIdentity())
          .isEqualTo(status("held-by-tf").getLock().getId());

      // A change to the resource makes the operator reconcile while terraform holds the lock.
      harness
          .client()
          .resources(TerraformState.class)
          .inNamespace(NAMESPACE)
          .withName("held-by-tf")
          .edit(
              s -> {
                s.getMetadata().setLabels(Map.of("poke", "1"));
                return s;
              });
      // The operator reconciles on the poke, and must leave Terraform's lock exactly as it is.
      await()
          .during(Duration.ofMillis(500))
          .atMost(Duration.ofSeconds(5))
          .untilAsserted(
              () -> {
                Lease stillHeld =
                    harness
                        .client()
                        .leases()
                        .inNamespace(NAMESPACE)
                        .withName("lock-tfstate-default-held-by-tf")
                        .get();
                assertThat(stillHeld.getSpec().getHolderIdentity())
                    .isEqualTo(held.getSpec().getHolderIdentity());
                assertThat(stillHeld.getMetadata().getAnnotations())
                    .isEqualTo(held.getMetadata().getAnnotations());
              });
    } finally {
      Files.writeString(release, "go");
    }
    String output = new String(apply.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(apply.waitFor()).as(output).isZero();

    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              TerraformStateStatus s = status("held-by-tf");
              assertThat(s.getLock()).isNull();
              assertThat(s.getState().getResources()).isEqualTo(1);
            });
    assertThat(harness.events("held-by-tf"))
        .anyMatch(e -> e.startsWith("Normal LockTaken"))
        .anyMatch(e -> e.startsWith("Normal LockReleased"));
  }

  @Test
  @DisplayName(
      "When terraform writes a state over 1 MiB compressed, then the operator reads all its"
          + " chunks")
  void chunkedStateFromTerraform(@TempDir Path dir) throws Exception {
    createState("big-state");
    byte[] noise = new byte[1_200_000];
    new SecureRandom().nextBytes(noise);
    Files.writeString(
        dir.resolve("big.auto.tfvars.json"),
        "{\"blob\":\"" + Base64.getEncoder().encodeToString(noise) + "\"}");
    Terraform tf = Terraform.hashicorp(dir, WHY);
    tf.writeKubernetesBackendConfig(
        kubeconfig,
        "big-state",
        """
        variable "blob" {}
        resource "terraform_data" "big" {
          input = var.blob
        }
        """);
    tf.run("init").assertOk();
    tf.run("apply", "-auto-approve").assertOk();

    JsonNode state = pulledState(tf);
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              TerraformStateStatus s = status("big-state");
              assertThat(s.getState()).isNotNull();
              assertThat(s.getState().getChunks()).isGreaterThanOrEqualTo(2);
              assertThat(s.getState().getSerial()).isEqualTo(state.get("serial").asLong());
              assertThat(s.getState().getCompressedBytes()).isGreaterThan(1_048_576L);
            });
  }
}
