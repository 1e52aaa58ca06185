package io.leasehold.examples;

import static io.leasehold.examples.ExamplesTest.EXAMPLES;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.TerraformState;
import io.leasehold.support.Binaries;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.Terraform;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The Terraform files of examples/ run with the real terraform against the embedded API. */
class ExamplesE2ETest {

  private static OperatorHarness harness;
  private static String backendUrl;
  private static Path kubeconfig;

  @BeforeAll
  static void start(@TempDir Path shared) {
    Binaries.terraform();
    harness = OperatorHarness.start();
    backendUrl = harness.startBackend(64L * 1024 * 1024);
    kubeconfig = shared.resolve("kubeconfig");
    harness.api().writeKubeconfig(kubeconfig);
    harness.api().apply(EXAMPLES.resolve("quickstart/terraformstate.yaml"));
    harness.api().apply(EXAMPLES.resolve("migrate/terraformstate.yaml"));
  }

  @AfterAll
  static void stop() {
    if (harness != null) {
      harness.close();
    }
  }

  private static Lease lease(String name) {
    return harness
        .client()
        .leases()
        .inNamespace("default")
        .withName("lock-tfstate-default-" + name)
        .get();
  }

  @Test
  @DisplayName(
      "examples/remote-state reads the quick-start state's outputs through the kubernetes"
          + " backend without taking the lock")
  void remoteState(@TempDir Path producer, @TempDir Path consumer) throws Exception {
    Terraform p = new Terraform(producer);
    p.writeConfig(
        Terraform.httpBackend(backendUrl + "default/quickstart", null)
            + Files.readString(EXAMPLES.resolve("remote-state/producer.tf.example")));
    p.run("init").assertOk();
    p.run("apply", "-auto-approve").assertOk();
    await().atMost(Duration.ofSeconds(10)).until(() -> lease("quickstart") != null);
    Lease before = lease("quickstart");

    Files.copy(EXAMPLES.resolve("remote-state/main.tf"), consumer.resolve("main.tf"));
    Terraform c = new Terraform(consumer);
    c.run("init").assertOk();
    c.run("apply", "-auto-approve", "-var", "kubeconfig=" + kubeconfig).assertOk();

    assertThat(c.run("output", "-raw", "greeting").assertOk().output())
        .isEqualTo("hello from quickstart");
    assertThat(lease("quickstart").getMetadata().getResourceVersion())
        .as("reading remote state takes no lock")
        .isEqualTo(before.getMetadata().getResourceVersion());
  }

  @Test
  @DisplayName("examples/migrate/backend.tf moves a local state into leasehold with -migrate-state")
  void migrateLocalState(@TempDir Path dir) throws Exception {
    Terraform tf = new Terraform(dir);
    String resources =
        "resource \"terraform_data\" \"legacy\" {\n  count = 4\n  input = count.index\n}\n";
    tf.writeConfig(resources);
    tf.run("init").assertOk();
    tf.run("apply", "-auto-approve").assertOk();

    String backend =
        Files.readString(EXAMPLES.resolve("migrate/backend.tf"))
            .replace("http://127.0.0.1:8080/v1/states/", backendUrl);
    Files.writeString(dir.resolve("backend.tf"), backend);
    tf.run("init", "-migrate-state", "-force-copy").assertOk();

    Terraform.Result plan = tf.run("plan", "-detailed-exitcode");
    assertThat(plan.exitCode()).as(plan.output() + plan.errors()).isZero();
    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              TerraformState s = harness.get("legacy");
              assertThat(s.getStatus()).isNotNull();
              assertThat(s.getStatus().getState()).isNotNull();
              assertThat(s.getStatus().getState().getResources()).isEqualTo(4);
            });
  }
}
