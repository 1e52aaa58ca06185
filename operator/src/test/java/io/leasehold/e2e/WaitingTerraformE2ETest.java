package io.leasehold.e2e;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.DeletionPolicy;
import io.leasehold.api.QueueEntry;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.Ticket;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.support.Binaries;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RawLock;
import io.leasehold.support.RunnerJobFixtures;
import io.leasehold.support.Terraform;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
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
    return createState(name, DeletionPolicy.Retain);
  }

  private static String createState(String name, DeletionPolicy policy) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    s.getSpec().setDeletionPolicy(policy);
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

  private static String oneLine(String text) {
    return text.replaceAll("\\s+", " ");
  }

  /** Sends SIGINT, as Ctrl-C does, to {@code process}. */
  private static void interrupt(Process process) throws Exception {
    Process kill = new ProcessBuilder("kill", "-INT", Long.toString(process.pid())).start();
    assertThat(kill.waitFor(10, TimeUnit.SECONDS)).isTrue();
    assertThat(kill.exitValue()).as("kill -INT " + process.pid()).isZero();
  }

  /** Reads what {@code process} prints, as it prints it, so it never blocks on a full pipe. */
  private static CompletableFuture<String> output(Process process) {
    return CompletableFuture.supplyAsync(
        () -> {
          try {
            return new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
          } catch (java.io.IOException e) {
            return "(output unreadable: " + e.getMessage() + ")";
          }
        });
  }

  @Test
  @DisplayName(
      "terraform plan waiting with a short ?wait= and -lock-timeout=5m ends within its wait of a"
          + " SIGINT (Ctrl-C); the apply waiting behind it is not held up by the place it leaves and"
          + " gets the lock first when the holder unlocks, before a client that came after it")
  void interruptedWhileWaiting(@TempDir Path dir) throws Exception {
    String url = createState("interrupted");
    LockInfo held = holderLock("interrupted-holder");
    assertThat(send("LOCK", url + "/lock", held)).isEqualTo(200);
    Duration wait = Duration.ofSeconds(2);

    Terraform plan = new Terraform(java.nio.file.Files.createDirectories(dir.resolve("plan")));
    plan.writeConfig(Terraform.httpBackend(url, wait.toSeconds() + "s") + CONFIG.formatted("p"));
    plan.run("init").assertOk();
    // The apply behind it as the examples configure it: ?wait=25s, -lock-timeout for the rest.
    Terraform apply = new Terraform(java.nio.file.Files.createDirectories(dir.resolve("apply")));
    apply.writeConfig(Terraform.httpBackend(url, "25s") + CONFIG.formatted("a"));
    apply.run("init").assertOk();

    Process planning = plan.start("plan", "-lock-timeout=5m");
    CompletableFuture<String> planOutput = output(planning);
    await().atMost(Duration.ofSeconds(60)).until(() -> lineOnLease("interrupted").size() == 1);
    String planId = lineOnLease("interrupted").get(0).id();
    Process applying = apply.start("apply", "-auto-approve", "-lock-timeout=5m");
    CompletableFuture<String> applyOutput = output(applying);
    await().atMost(Duration.ofSeconds(60)).until(() -> lineOnLease("interrupted").size() == 2);
    String applyId = lineOnLease("interrupted").get(1).id();

    try (RawLock later =
        RawLock.send(
            backendUrl,
            NAMESPACE + "/interrupted",
            new LockInfo("interrupted-later", "OperationTypeApply", "", "later@ci", "", "", ""),
            "?wait=120s")) {
      await().atMost(Duration.ofSeconds(10)).until(() -> lineOnLease("interrupted").size() == 3);
      // The plan is inside one of its LOCK requests, which Terraform cannot cancel: the worst
      // moment for a Ctrl-C.
      await()
          .atMost(Duration.ofSeconds(60))
          .pollInterval(Duration.ofMillis(10))
          .until(() -> lineOnLease("interrupted").get(0).gone() == null);
      long interrupted = System.nanoTime();
      interrupt(planning);
      boolean ended = planning.waitFor(wait.toSeconds() + 15, TimeUnit.SECONDS);
      Duration took = Duration.ofNanos(System.nanoTime() - interrupted);
      if (!ended) {
        planning.destroyForcibly().waitFor(30, TimeUnit.SECONDS);
      }
      assertThat(ended)
          .as(
              "terraform plan ended within ?wait=%ds + 15 s of SIGINT; output:%n%s",
              wait.toSeconds(), planOutput.get(30, TimeUnit.SECONDS))
          .isTrue();
      System.out.printf("terraform plan ended %d ms after SIGINT%n", took.toMillis());
      assertThat(planning.exitValue()).as(planOutput.get()).isNotZero();
      assertThat(holder("interrupted")).isEqualTo("interrupted-holder");

      // Its place is kept, away, for its retry within the grace period: it holds nobody up.
      assertThat(lineOnLease("interrupted").get(0).id()).isEqualTo(planId);
      assertThat(lineOnLease("interrupted").get(0).gone()).isNotNull();
      assertThat(lineOnLease("interrupted").get(1).id()).isEqualTo(applyId);
      // The apply is connected, inside one of its 25 s waits, when the holder unlocks.
      await()
          .atMost(Duration.ofSeconds(60))
          .pollInterval(Duration.ofMillis(10))
          .until(() -> lineOnLease("interrupted").get(1).gone() == null);
      assertThat(send("UNLOCK", url + "/lock", held)).isEqualTo(200);

      assertThat(applying.waitFor(120, TimeUnit.SECONDS)).as("the apply ends").isTrue();
      String applied = applyOutput.get(30, TimeUnit.SECONDS);
      assertThat(applying.exitValue()).as(applied).isZero();
      RawLock.Answer answer = later.answer(Duration.ofSeconds(30));
      assertThat(answer).isNotNull();
      assertThat(answer.status()).isEqualTo(200);
      assertThat(holder("interrupted")).isEqualTo("interrupted-later");
      assertThat(send("UNLOCK", url + "/lock", later.info())).isEqualTo(200);
    }
  }

  @Test
  @DisplayName(
      "A terraform plan refused because a client holds the lock prints the holder's lock ID, Who,"
          + " operation and Created time; refused because a runner Job holds it, the Job's name")
  void terraformPrintsTheHolder(@TempDir Path dir) throws Exception {
    String url = createState("shown");
    LockInfo held =
        new LockInfo(
            "shown-holder",
            "OperationTypeApply",
            "",
            "alice@laptop",
            "1.11.4",
            "2026-01-02T03:04:05Z",
            "");
    assertThat(send("LOCK", url + "/lock", held)).isEqualTo(200);
    Terraform tf = new Terraform(dir);
    tf.writeConfig(Terraform.httpBackend(url, "1s") + CONFIG.formatted("shown"));
    tf.run("init").assertOk();

    Terraform.Result refused = tf.run("plan");
    assertThat(refused.exitCode()).as(refused.output() + refused.errors()).isNotZero();
    // Terraform wraps its error message: compared with its line breaks as spaces.
    assertThat(oneLine(refused.errors()))
        .contains("Error acquiring the state lock")
        .contains(
            "ID=shown-holder (held by alice@laptop for OperationTypeApply since"
                + " 2026-01-02T03:04:05Z)");
    assertThat(send("UNLOCK", url + "/lock", held)).isEqualTo(200);

    Job job = RunnerJobFixtures.create(harness.client(), "shown-runner", "shown");
    await()
        .atMost(Duration.ofSeconds(30))
        .until(() -> RunnerJobs.holderId(job).equals(holder("shown")));
    Terraform.Result byJob = tf.run("plan");
    assertThat(byJob.exitCode()).as(byJob.output() + byJob.errors()).isNotZero();
    assertThat(oneLine(byJob.errors()))
        .contains("ID=" + RunnerJobs.holderId(job) + " (held by job/shown-runner")
        .contains("runner Job default/shown-runner admitted by leasehold");
    RunnerJobFixtures.finish(harness.client(), "shown-runner", true);
    await().atMost(Duration.ofSeconds(30)).until(() -> holder("shown") == null);
  }

  @Test
  @DisplayName(
      "A terraform plan refused because its state is being deleted prints why: 409 with a LockInfo"
          + " whose ID carries the reason, the one field of it Terraform shows")
  void terraformPrintsTheRefusal(@TempDir Path dir) throws Exception {
    String url = createState("refusing", DeletionPolicy.Delete);
    LockInfo held = holderLock("refusing-holder");
    assertThat(send("LOCK", url + "/lock", held)).isEqualTo(200);
    Terraform tf = new Terraform(dir);
    tf.writeConfig(Terraform.httpBackend(url, "1s") + CONFIG.formatted("refusing"));
    tf.run("init").assertOk();
    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("refusing")
        .delete();
    await()
        .atMost(Duration.ofSeconds(30))
        .until(() -> harness.get("refusing").getMetadata().getDeletionTimestamp() != null);

    Terraform.Result refused = tf.run("plan");
    assertThat(refused.exitCode()).as(refused.output() + refused.errors()).isNotZero();
    assertThat(oneLine(refused.errors()))
        .contains("ID=refusing-holder (refused by leasehold: ")
        .contains("is being deleted");

    assertThat(send("UNLOCK", url + "/lock", held)).isEqualTo(200);
    await().atMost(Duration.ofSeconds(30)).until(() -> harness.get("refusing") == null);
  }
}
