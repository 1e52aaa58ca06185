package io.leasehold.e2e;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
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

/**
 * Two teams whose TerraformStates map to the same Secret ({@code team-a} in workspace {@code
 * shared} and {@code a} in workspace {@code shared-team}): with the real terraform, the second
 * team's apply is refused and plans nothing, and the first team's state is untouched.
 */
class NameCollisionE2ETest {

  private static OperatorHarness harness;
  private static String backendUrl;

  @BeforeAll
  static void start() {
    Binaries.terraform();
    harness = OperatorHarness.start();
    backendUrl = harness.startBackend(64L * 1024 * 1024);
  }

  @AfterAll
  static void stop() {
    if (harness != null) {
      harness.close();
    }
  }

  private static String create(String name, String workspace) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    s.getSpec().setWorkspace(workspace);
    harness.client().resource(s).create();
    await().atMost(Duration.ofSeconds(30)).until(() -> harness.get(name).getStatus() != null);
    return backendUrl + NAMESPACE + "/" + name;
  }

  private static String config(String url, String resource) {
    return Terraform.httpBackend(url, "30s")
        + """
        resource "terraform_data" "%s" {
          input = "%s"
        }
        """
            .formatted(resource, resource);
  }

  @Test
  @DisplayName(
      "When team B's TerraformState maps to team A's Secret, then B's terraform init and apply"
          + " are refused with the reason, B plans nothing, and A's state and lock are untouched")
  void collidingTeamIsRefused(@TempDir Path dir) throws Exception {
    Path teamA = Files.createDirectories(dir.resolve("a"));
    Path teamB = Files.createDirectories(dir.resolve("b"));
    Terraform a = new Terraform(teamA);
    a.writeConfig(config(create("team-a", "shared"), "network"));
    a.run("init", "-input=false").assertOk();
    a.run("apply", "-auto-approve", "-input=false").assertOk();
    await()
        .atMost(Duration.ofSeconds(30))
        .until(() -> Long.valueOf(1).equals(harness.facts("team-a").getResources()));
    String stateBefore =
        harness
            .client()
            .secrets()
            .inNamespace(NAMESPACE)
            .withName("tfstate-shared-team-a")
            .get()
            .getMetadata()
            .getResourceVersion();
    Lease leaseBefore =
        harness
            .client()
            .leases()
            .inNamespace(NAMESPACE)
            .withName("lock-tfstate-shared-team-a")
            .get();

    Terraform b = new Terraform(teamB);
    b.writeConfig(config(create("a", "shared-team"), "dns"));
    await()
        .atMost(Duration.ofSeconds(30))
        .until(
            () ->
                harness.status("a").getConditions().stream()
                    .anyMatch(c -> "NameCollision".equals(c.getReason())));
    Terraform.Result init = b.run("init", "-input=false");
    Terraform.Result apply = b.run("apply", "-auto-approve", "-input=false");

    assertThat(init.exitCode()).isNotZero();
    assertThat(init.output() + init.errors()).contains("409");
    assertThat(apply.exitCode()).isNotZero();
    assertThat(apply.output() + apply.errors())
        .doesNotContain("Plan:")
        .doesNotContain("destroy")
        .doesNotContain("network");
    assertThat(
            harness
                .client()
                .secrets()
                .inNamespace(NAMESPACE)
                .withName("tfstate-shared-team-a")
                .get()
                .getMetadata()
                .getResourceVersion())
        .isEqualTo(stateBefore);
    assertThat(
            harness
                .client()
                .leases()
                .inNamespace(NAMESPACE)
                .withName("lock-tfstate-shared-team-a")
                .get()
                .getMetadata()
                .getResourceVersion())
        .isEqualTo(leaseBefore.getMetadata().getResourceVersion());
    // Team A goes on as before.
    a.run("plan", "-detailed-exitcode", "-input=false").assertOk();
  }
}
