package io.leasehold.e2e;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.QueueEntry;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.Ticket;
import io.leasehold.support.Binaries;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RawLock;
import io.leasehold.support.Terraform;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Stock terraform waiting in the line: killed while it waits, and retrying with its lock ID. */
class WaitingTerraformE2ETest {

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

  private static String createState(String name) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
    await()
        .atMost(Duration.ofSeconds(10))
        .until(() -> lease(name) != null && harness.get(name).getStatus() != null);
    return backendUrl + NAMESPACE + "/" + name;
  }

  private static Lease lease(String name) {
    return harness
        .client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName("lock-tfstate-default-" + name)
        .get();
  }

  private static String holder(String name) {
    Lease l = lease(name);
    return l == null || l.getSpec() == null ? null : l.getSpec().getHolderIdentity();
  }

  private static List<Ticket> lineOnLease(String name) {
    return LeaseLock.line(lease(name)).tickets();
  }

  private static List<QueueEntry> queue(String name) {
    TerraformState s = harness.get(name);
    return s.getStatus() == null || s.getStatus().getQueue() == null
        ? List.of()
        : s.getStatus().getQueue();
  }

  private static int send(String method, String url, LockInfo info) throws Exception {
    HttpRequest request =
        HttpRequest.newBuilder(URI.create(url))
            .method(method, HttpRequest.BodyPublishers.ofString(info.toJson()))
            .header("Content-Type", "application/json")
            .build();
    return HTTP.send(request, HttpResponse.BodyHandlers.ofString()).statusCode();
  }

  private static LockInfo holderLock(String id) {
    return new LockInfo(id, "OperationTypeApply", "", "holder@ci", "1.11.4", "", "");
  }

  private static final String CONFIG =
      """
      resource "terraform_data" "item" {
        input = "%s"
      }
      """;

  @Test
  @DisplayName(
      "A terraform apply killed (SIGKILL) while it waits in line is never granted the lock: when"
          + " the holder unlocks, the lock is free and the next apply gets it at once")
  void killedWhileWaiting(@TempDir Path dir) throws Exception {
    String url = createState("killed");
    LockInfo held = holderLock("killed-holder");
    assertThat(send("LOCK", url + "/lock", held)).isEqualTo(200);

    Terraform tf = new Terraform(dir);
    tf.writeConfig(Terraform.httpBackend(url, "10m") + CONFIG.formatted("one"));
    tf.run("init").assertOk();
    Process apply = tf.start("apply", "-auto-approve");
    await()
        .atMost(Duration.ofSeconds(60))
        .until(
            () -> lineOnLease("killed").size() == 1 && lineOnLease("killed").get(0).gone() == null);
    String waitingId = lineOnLease("killed").get(0).id();

    apply.destroyForcibly().waitFor(30, TimeUnit.SECONDS);
    // Its connection closed: it no longer waits (its place is only kept for a retry).
    await()
        .atMost(Duration.ofSeconds(10))
        .until(() -> lineOnLease("killed").stream().allMatch(t -> t.gone() != null));

    assertThat(send("UNLOCK", url + "/lock", held)).isEqualTo(200);
    await()
        .during(Duration.ofSeconds(1))
        .atMost(Duration.ofSeconds(5))
        .until(() -> holder("killed") == null);
    assertThat(holder("killed")).isNotEqualTo(waitingId);

    Terraform.Result next = tf.run("apply", "-auto-approve");
    next.assertOk();
    assertThat(holder("killed")).isNull();
  }

  @Test
  @DisplayName(
      "terraform with a short ?wait= and -lock-timeout keeps its place across its retries: it is"
          + " served before a client that came after it")
  void retriesKeepTheirPlace(@TempDir Path dir) throws Exception {
    String url = createState("retries");
    LockInfo held = holderLock("retries-holder");
    assertThat(send("LOCK", url + "/lock", held)).isEqualTo(200);

    Terraform tf = new Terraform(dir);
    tf.writeConfig(Terraform.httpBackend(url, "2s") + CONFIG.formatted("two"));
    tf.run("init").assertOk();
    Process apply = tf.start("apply", "-auto-approve", "-lock-timeout=120s");
    await().atMost(Duration.ofSeconds(60)).until(() -> lineOnLease("retries").size() == 1);
    String terraformId = lineOnLease("retries").get(0).id();

    try (RawLock later =
        RawLock.send(
            backendUrl,
            NAMESPACE + "/retries",
            new LockInfo("retries-later", "OperationTypeApply", "", "later@ci", "", "", ""),
            "?wait=120s")) {
      await().atMost(Duration.ofSeconds(10)).until(() -> lineOnLease("retries").size() == 2);
      // terraform's wait runs out and it retries after 1, 2, 4... seconds, each time with the
      // same lock ID: its place stays first, ahead of the later client, away or not.
      await()
          .atMost(Duration.ofSeconds(30))
          .until(() -> lineOnLease("retries").get(0).gone() != null);
      assertThat(lineOnLease("retries").get(0).id()).isEqualTo(terraformId);
      await()
          .atMost(Duration.ofSeconds(30))
          .pollInterval(Duration.ofMillis(10))
          .until(() -> lineOnLease("retries").get(0).gone() == null);
      assertThat(lineOnLease("retries").get(0).id()).isEqualTo(terraformId);
      assertThat(queue("retries").get(0).getPosition()).isEqualTo(1);

      // It is connected, inside one of its waits: the holder unlocks and terraform goes first.
      assertThat(send("UNLOCK", url + "/lock", held)).isEqualTo(200);
      assertThat(apply.waitFor(120, TimeUnit.SECONDS)).isTrue();
      String output = new String(apply.getInputStream().readAllBytes());
      assertThat(apply.exitValue()).as(output).isZero();
      RawLock.Answer answer = later.answer(Duration.ofSeconds(30));
      assertThat(answer).isNotNull();
      assertThat(answer.status()).isEqualTo(200);
      assertThat(holder("retries")).isEqualTo("retries-later");
    }
  }
}
