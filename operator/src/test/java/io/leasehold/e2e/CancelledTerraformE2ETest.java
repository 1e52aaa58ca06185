package io.leasehold.e2e;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.support.Binaries;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.Terraform;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Stock terraform waiting in line, cancelled by annotation: what it is told, and that it ends. */
class CancelledTerraformE2ETest {

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
    return harness
        .client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName("lock-tfstate-default-" + name)
        .get();
  }

  @Test
  @DisplayName(
      "terraform apply waiting with ?wait= and -lock-timeout, cancelled by annotation: its retries"
          + " with the same lock ID are refused too, it fails printing who cancelled it and why"
          + " once its -lock-timeout runs out, and it never gets the lock")
  void cancelledTerraformStopsAndSaysWhy(@TempDir Path dir) throws Exception {
    TerraformState s = new TerraformState();
    s.getMetadata().setName("tf-cancelled");
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
    await().atMost(Duration.ofSeconds(10)).until(() -> lease("tf-cancelled") != null);
    String url = backendUrl + NAMESPACE + "/tf-cancelled";
    LockInfo held =
        new LockInfo("tf-holder", "OperationTypeApply", "", "holder@ci", "1.11.4", "", "");
    HttpRequest lock =
        HttpRequest.newBuilder(URI.create(url + "/lock"))
            .method("LOCK", HttpRequest.BodyPublishers.ofString(held.toJson()))
            .header("Content-Type", "application/json")
            .build();
    assertThat(HTTP.send(lock, HttpResponse.BodyHandlers.ofString()).statusCode()).isEqualTo(200);

    Terraform tf = new Terraform(dir);
    tf.writeConfig(
        Terraform.httpBackend(url, "25s")
            + "resource \"terraform_data\" \"item\" {\n  input = \"one\"\n}\n");
    tf.run("init").assertOk();
    Process apply = tf.start("apply", "-auto-approve", "-lock-timeout=10s");
    await()
        .atMost(Duration.ofSeconds(60))
        .until(() -> LeaseLock.line(lease("tf-cancelled")).tickets().size() == 1);

    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("tf-cancelled")
        .patch(
            PatchContext.of(PatchType.JSON_MERGE),
            "{\"metadata\":{\"annotations\":{\"leasehold.io/cancel\":\"all\","
                + "\"leasehold.io/cancel-by\":\"alice\","
                + "\"leasehold.io/cancel-reason\":\"superseded\"}}}");

    // Terraform retries a 409 until its -lock-timeout runs out; each retry is refused at once.
    assertThat(apply.waitFor(60, TimeUnit.SECONDS)).as("terraform ended").isTrue();
    String output = new String(apply.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(apply.exitValue()).as(output).isNotZero();
    assertThat(output)
        .contains("Error acquiring the state lock")
        .contains("cancelled")
        .contains("by alice")
        .contains("superseded");
    assertThat(lease("tf-cancelled").getSpec().getHolderIdentity()).isEqualTo("tf-holder");
    assertThat(LeaseLock.line(lease("tf-cancelled")).tickets()).isEmpty();
  }
}
