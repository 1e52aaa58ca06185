package io.leasehold.e2e;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.Ticket;
import io.leasehold.support.Binaries;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.Terraform;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Real terraform plans share the lock: they run while another plan holds it, an apply waits for the
 * plans, and a plan started after the waiting apply runs only once the apply is done.
 */
class PlanSharingE2ETest {

  private static OperatorHarness harness;
  private static String backendUrl;
  private static final HttpClient HTTP = HttpClient.newHttpClient();

  @BeforeAll
  static void start() {
    Binaries.terraform();
    harness = OperatorHarness.start();
    backendUrl = harness.startBackend(16L * 1024 * 1024);
  }

  @AfterAll
  static void stop() {
    if (harness != null) {
      harness.close();
    }
  }

  private static Lease lease(String name) {
    return harness.lockLease(name);
  }

  private static int send(String method, String url, LockInfo info) throws Exception {
    HttpRequest request =
        HttpRequest.newBuilder(URI.create(url))
            .method(method, HttpRequest.BodyPublishers.ofString(info.toJson()))
            .header("Content-Type", "application/json")
            .build();
    return HTTP.send(request, HttpResponse.BodyHandlers.ofString()).statusCode();
  }

  private static final String CONFIG =
      """
      resource "terraform_data" "item" {
        input = "%s"
      }
      """;

  private static Terraform workspace(Path dir, String url, String input) throws Exception {
    Files.createDirectories(dir);
    Terraform tf = new Terraform(dir);
    tf.writeConfig(Terraform.httpBackend(url, "5s") + CONFIG.formatted(input));
    tf.run("init").assertOk();
    return tf;
  }

  private static String output(Process p) throws Exception {
    return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
  }

  @Test
  @DisplayName(
      "Three terraform plans run and finish while another plan holds the lock; an apply waits"
          + " until that plan ends, and a plan started after the waiting apply finishes only after"
          + " the apply has written its state")
  void plansRunBesideEachOtherAndApplyWaits(@TempDir Path dir) throws Exception {
    TerraformState s = new TerraformState();
    s.getMetadata().setName("plans");
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
    await().atMost(Duration.ofSeconds(10)).until(() -> lease("plans") != null);
    String url = backendUrl + NAMESPACE + "/plans";
    workspace(dir.resolve("first"), url, "one").run("apply", "-auto-approve").assertOk();

    // A plan that holds the lock for as long as the test says (terraform's own plans are quick).
    LockInfo holding =
        new LockInfo(
            "long-plan", "OperationTypePlan", "", "long@ci", "1.11.4", "2026-12-07T12:00:00Z", "");
    assertThat(send("LOCK", url + "/lock", holding)).isEqualTo(200);

    List<Process> plans = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      plans.add(
          workspace(dir.resolve("plan" + i), url, "two")
              .start("plan", "-lock-timeout=120s", "-detailed-exitcode"));
    }
    for (Process p : plans) {
      String out = output(p);
      assertThat(p.waitFor(120, TimeUnit.SECONDS)).as(out).isTrue();
      // 2: succeeded with changes to make (input "one" -> "two").
      assertThat(p.exitValue()).as(out).isEqualTo(2);
      assertThat(out).contains("1 to change");
    }
    assertThat(lease("plans").getSpec().getHolderIdentity())
        .as("the long plan still holds the lock")
        .isEqualTo("long-plan");

    Process apply =
        workspace(dir.resolve("apply"), url, "two")
            .start("apply", "-auto-approve", "-lock-timeout=120s");
    await()
        .atMost(Duration.ofSeconds(60))
        .until(() -> LeaseLock.line(lease("plans")).tickets().size() == 1);
    Ticket applyPlace = LeaseLock.line(lease("plans")).tickets().get(0);
    assertThat(applyPlace.forPlan()).isFalse();
    Process late = workspace(dir.resolve("late"), url, "three").start("plan", "-lock-timeout=120s");
    await()
        .atMost(Duration.ofSeconds(60))
        .until(() -> LeaseLock.line(lease("plans")).tickets().size() == 2);
    assertThat(apply.isAlive()).as("the apply waits for the plan").isTrue();
    assertThat(late.isAlive()).as("the late plan waits behind the apply").isTrue();

    assertThat(send("UNLOCK", url + "/lock", holding)).isEqualTo(200);
    String applied = output(apply);
    assertThat(apply.waitFor(120, TimeUnit.SECONDS)).as(applied).isTrue();
    assertThat(apply.exitValue()).as(applied).isZero();
    String planned = output(late);
    assertThat(late.waitFor(120, TimeUnit.SECONDS)).as(planned).isTrue();
    assertThat(late.exitValue()).as(planned).isZero();
    // The late plan read the state the apply wrote: only "two" -> "three" is left to change.
    assertThat(planned).contains("\"two\" -> \"three\"");
    await()
        .atMost(Duration.ofSeconds(10))
        .until(() -> lease("plans").getSpec().getHolderIdentity() == null);
  }
}
