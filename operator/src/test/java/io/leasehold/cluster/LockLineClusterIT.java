package io.leasehold.cluster;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.QueueEntry;
import io.leasehold.api.TerraformStateStatus;
import io.leasehold.lock.LockInfo;
import io.leasehold.support.BackendHttp;
import io.leasehold.support.Terraform;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The lock and its line with clients over the real API server: real {@code terraform} runs, raw
 * LOCK clients that hang up, identities judged by the real TokenReview and SubjectAccessReview, and
 * stock Terraform's {@code kubernetes} backend on the same Secrets and Lease.
 */
class LockLineClusterIT {

  private static final Duration WAIT = Duration.ofSeconds(60);

  /** The class's operator keeps a departed waiter's place this long (--ticket-grace). */
  private static final Duration GRACE = Duration.ofSeconds(8);

  private static final ObjectMapper JSON = new ObjectMapper();

  private static RealCluster cluster;
  private static KubernetesClient admin;
  private static String ns;
  private static ClusterOperator operator;
  private static String ca;
  private static ClusterBackend runner;

  @TempDir Path work;

  @BeforeAll
  static void start() throws Exception {
    cluster = RealCluster.get();
    admin = cluster.admin();
    ns = cluster.newNamespace("line");
    ChartInstall chart = ChartInstall.apply(cluster, ns);
    ChartInstall.awaitCrd(admin);
    operator =
        ClusterOperator.start(
            cluster, chart, List.of(ns), 1, List.of("--ticket-grace=" + GRACE.toSeconds() + "s"));
    ca = operator.caPem(WAIT);
    runner =
        ClusterBackend.of(
            operator.replica(0),
            ns,
            ca,
            cluster.token(ns, ChartInstall.RUNNER, "leasehold", Duration.ofMinutes(30)));
  }

  @AfterAll
  static void stop() {
    if (Boolean.getBoolean("leasehold.cluster.keep")) {
      return;
    }
    if (operator != null) {
      operator.close();
    }
    if (admin != null && ns != null) {
      admin.namespaces().withName(ns).delete();
    }
  }

  private static String newState(String name) {
    admin.resource(ClusterFixtures.state(ns, name)).create();
    ClusterFixtures.awaitReady(admin, ns, name);
    return name;
  }

  @Test
  @DisplayName(
      "Four real terraform applies started at once with ?wait=25s and -lock-timeout run one after"
          + " another: the Lease passes from one to the next, each plans on the state the previous"
          + " one wrote, and the serial goes up by one per apply")
  void concurrentAppliesRunOneAfterAnother() throws Exception {
    String state = newState("serial");
    int n = 4;
    List<Terraform> clients = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      Terraform tf = runnerTerraform(work.resolve("apply-" + i), state, "25s");
      tf.writeConfig(
          Terraform.httpBackend(operator.replica(0).stateUrl(state), "25s")
              + "resource \"terraform_data\" \"shared\" { input = \"client-"
              + i
              + "\" }\n");
      tf.run("init", "-input=false").assertOk();
      clients.add(tf);
    }
    try (LeaseHolders lease = LeaseHolders.watch(admin, ns, "lock-tfstate-default-" + state)) {
      List<Process> runs = new ArrayList<>();
      for (Terraform tf : clients) {
        runs.add(tf.start("apply", "-auto-approve", "-input=false", "-lock-timeout=2m"));
      }
      List<String> outputs = new ArrayList<>();
      for (Process p : runs) {
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(3, TimeUnit.MINUTES)).isTrue();
        assertThat(p.exitValue()).as("apply failed:\n" + out).isZero();
        outputs.add(out);
      }
      assertThat(outputs.stream().filter(o -> o.contains("Resources: 1 added, 0 changed")))
          .as("exactly one apply found no state and created the resource")
          .hasSize(1);
      assertThat(outputs.stream().filter(o -> o.contains("Resources: 0 added, 1 changed")))
          .as("every other apply planned on the state the one before it wrote")
          .hasSize(n - 1);
      await().atMost(WAIT).untilAsserted(() -> assertThat(lease.seen()).last().isEqualTo(""));
      List<String> held = lease.held();
      assertThat(held).as("one holder after another, each once: " + held).hasSize(n);
      assertThat(held).doesNotHaveDuplicates();
    }
    JsonNode stored = JSON.readTree(runner.get(state).body());
    assertThat(stored.path("serial").asLong()).as("one serial per apply").isEqualTo(n);
    String firstLineage = stored.path("lineage").asText();
    JsonNode history =
        JSON.readTree(runner.send("GET", stateBase(state) + "/history", null).body());
    List<Long> serials = new ArrayList<>();
    for (JsonNode v : history.isArray() ? history : history.path("versions")) {
      serials.add(v.path("serial").asLong());
      assertThat(v.path("lineage").asText()).isEqualTo(firstLineage);
    }
    assertThat(serials)
        .as("every version kept, each the next serial")
        .containsExactlyElementsOf(
            IntStream.iterate(n, s -> s >= 1, s -> s - 1).mapToObj(s -> (long) s).toList());
  }

  @Test
  @DisplayName(
      "A ?wait= client that hangs up keeps its place in line for the grace period but is passed"
          + " over while away, the lock never granted to it while it is not connected; coming back"
          + " with its lock ID it is served before those who arrived after it, and after the grace"
          + " period it goes to the back")
  void aClientThatHangsUpKeepsItsPlaceButIsPassedOver() throws Exception {
    String state = newState("tickets");
    LockInfo holder = info("holder");
    LockInfo a = info("client-a");
    LockInfo b = info("client-b");
    LockInfo c = info("client-c");
    try (LeaseHolders lease = LeaseHolders.watch(admin, ns, "lock-tfstate-default-" + state)) {
      assertThat(runner.lock(state, holder).status()).isEqualTo(200);

      ClusterBackend.WaitingLock waitingA = runner.lockWaiting(state, a, "60s");
      awaitLine(state, "client-a");
      ClusterBackend.WaitingLock waitingB = runner.lockWaiting(state, b, "60s");
      awaitLine(state, "client-a", "client-b");

      waitingA.close();
      await()
          .atMost(WAIT)
          .untilAsserted(
              () ->
                  assertThat(line(state))
                      .as("a keeps its place while away, shown as not connected")
                      .extracting(QueueEntry::getName, QueueEntry::getConnected)
                      .containsExactly(
                          org.assertj.core.groups.Tuple.tuple("client-a", false),
                          org.assertj.core.groups.Tuple.tuple("client-b", true)));

      assertThat(runner.unlock(state, holder).status()).isEqualTo(200);
      ClusterBackend.Answer toB = waitingB.answer(WAIT);
      assertThat(toB).as("b, connected, is served while a is away").isNotNull();
      assertThat(toB.status()).isEqualTo(200);
      assertThat(holderOf(state)).isEqualTo(b.id());
      assertThat(lease.held()).as("a was never granted while away").doesNotContain(a.id());

      ClusterBackend.WaitingLock waitingC = runner.lockWaiting(state, c, "60s");
      awaitLine(state, "client-a", "client-c");
      ClusterBackend.WaitingLock back = runner.lockWaiting(state, a, "60s");
      await()
          .atMost(WAIT)
          .untilAsserted(
              () ->
                  assertThat(line(state))
                      .extracting(QueueEntry::getName, QueueEntry::getConnected)
                      .containsExactly(
                          org.assertj.core.groups.Tuple.tuple("client-a", true),
                          org.assertj.core.groups.Tuple.tuple("client-c", true)));
      assertThat(runner.unlock(state, b).status()).isEqualTo(200);
      ClusterBackend.Answer toA = back.answer(WAIT);
      assertThat(toA).as("a, back with its lock ID, is served before c").isNotNull();
      assertThat(toA.status()).isEqualTo(200);
      assertThat(waitingC.answered()).as("c still waits").isFalse();
      assertThat(holderOf(state)).isEqualTo(a.id());

      // Past the grace period a departed waiter's place is gone: it comes back behind c.
      LockInfo d = info("client-d");
      ClusterBackend.WaitingLock waitingD = runner.lockWaiting(state, d, "60s");
      awaitLine(state, "client-c", "client-d");
      long away = System.nanoTime();
      waitingC.close();
      await()
          .atMost(WAIT)
          .untilAsserted(() -> assertThat(names(state)).containsExactly("client-d"));
      assertThat(Duration.ofNanos(System.nanoTime() - away))
          .as("the place was kept for the grace period")
          .isGreaterThanOrEqualTo(GRACE.minusSeconds(1));
      ClusterBackend.WaitingLock lateC = runner.lockWaiting(state, c, "60s");
      awaitLine(state, "client-d", "client-c");
      assertThat(runner.unlock(state, a).status()).isEqualTo(200);
      ClusterBackend.Answer toD = waitingD.answer(WAIT);
      assertThat(toD).isNotNull();
      assertThat(toD.status()).isEqualTo(200);
      assertThat(lateC.answered()).isFalse();
      assertThat(runner.unlock(state, d).status()).isEqualTo(200);
      assertThat(lateC.answer(WAIT))
          .isNotNull()
          .extracting(ClusterBackend.Answer::status)
          .isEqualTo(200);
      assertThat(runner.unlock(state, c).status()).isEqualTo(200);
      assertThat(lease.held())
          .as("the lock went holder, b, a, d, c, in that order")
          .containsExactly(holder.id(), b.id(), a.id(), d.id(), c.id());
    }
  }

  @Test
  @DisplayName(
      "A lock Lease deleted by hand while a client holds it and another waits comes back as it"
          + " was, holder and line included: the holder still writes and unlocks, and the waiter"
          + " is served then")
  void aLeaseDeletedByHandComesBackAsItWas() {
    String state = newState("recreated");
    LockInfo holder = info("holder");
    assertThat(runner.lock(state, holder).status()).isEqualTo(200);
    LockInfo waiter = info("waiter");
    ClusterBackend.WaitingLock waiting = runner.lockWaiting(state, waiter, "5m");
    awaitLine(state, "waiter");
    String uid =
        admin
            .leases()
            .inNamespace(ns)
            .withName("lock-tfstate-default-" + state)
            .get()
            .getMetadata()
            .getUid();

    admin.leases().inNamespace(ns).withName("lock-tfstate-default-" + state).delete();
    await()
        .atMost(WAIT)
        .untilAsserted(
            () -> {
              Lease again =
                  admin.leases().inNamespace(ns).withName("lock-tfstate-default-" + state).get();
              assertThat(again).as("created again").isNotNull();
              assertThat(again.getMetadata().getUid()).isNotEqualTo(uid);
              assertThat(again.getSpec().getHolderIdentity()).isEqualTo(holder.id());
              assertThat(again.getMetadata().getAnnotations())
                  .containsKey("app.terraform.io/lock-info");
            });
    assertThat(waiting.answered()).as("the waiter still waits").isFalse();
    ClusterBackend.Answer written = runner.post(state, holder.id(), minimalState());
    assertThat(written.status()).as(written.body()).isEqualTo(200);
    assertThat(runner.unlock(state, holder).status()).isEqualTo(200);
    ClusterBackend.Answer served = waiting.answer(WAIT);
    assertThat(served).as("the waiter kept its place").isNotNull();
    assertThat(served.status()).isEqualTo(200);
    assertThat(runner.unlock(state, waiter).status()).isEqualTo(200);
  }

  @Test
  @DisplayName(
      "UNLOCK, force-unlock or a write with another identity's lock ID is refused (403 naming the"
          + " holder) for a ServiceAccount without the force-unlock verb, and the lock stays; one"
          + " granted force-unlock releases it")
  void anotherIdentityCannotUseTheLockWithoutForceUnlock() {
    String state = newState("owned");
    String other = grantState("other-runner", "get", "update");
    String breaker = grantState("lock-breaker", "get", "update", "force-unlock");
    LockInfo held = info("owner");
    assertThat(runner.lock(state, held).status()).isEqualTo(200);

    ClusterBackend.Answer unlock = runner.as(other).unlock(state, held);
    assertThat(unlock.status()).isEqualTo(403);
    assertThat(unlock.body()).contains(held.id()).contains("force-unlock");
    ClusterBackend.Answer forced = runner.as(other).forceUnlock(state);
    assertThat(forced.status()).isEqualTo(403);
    assertThat(forced.body()).contains("force-unlock");
    ClusterBackend.Answer write = runner.as(other).post(state, held.id(), minimalState());
    assertThat(write.status()).isEqualTo(403);
    assertThat(holderOf(state)).as("the lock stays its owner's").isEqualTo(held.id());
    assertThat(runner.get(state).status()).as("nothing was written").isEqualTo(404);

    ClusterBackend.Answer released = runner.as(breaker).unlock(state, held);
    assertThat(released.status()).isEqualTo(200);
    assertThat(released.body()).contains("force-unlock");
    await().atMost(WAIT).untilAsserted(() -> assertThat(holderOf(state)).isEmpty());
  }

  @Test
  @DisplayName(
      "Stock Terraform's kubernetes backend, with a ServiceAccount granted only what it needs on"
          + " Secrets and Leases, reads the state leasehold wrote, is refused the lock while a"
          + " backend client holds it, and while it holds the lock itself a LOCK is answered 423"
          + " with its lock and a ?wait= LOCK is served when it unlocks")
  void stockKubernetesBackendHonoursTheSameLock() throws Exception {
    String state = newState("shared");
    String resource = "resource \"terraform_data\" \"app\" { input = \"v1\" }\n";
    Terraform http = runnerTerraform(work.resolve("http"), state, null);
    http.writeConfig(Terraform.httpBackend(operator.replica(0).stateUrl(state), "25s") + resource);
    http.run("init", "-input=false").assertOk();
    http.run("apply", "-auto-approve", "-input=false").assertOk();

    Path kubeconfig =
        StockTerraform.kubeconfig(cluster, ns, "stock-terraform", work.resolve("stock.kubeconfig"));
    Terraform stock = new Terraform(Files.createDirectories(work.resolve("stock")));
    stock.writeConfig(StockTerraform.backend(kubeconfig, ns, state) + resource);
    stock.run("init", "-input=false").assertOk();
    Terraform.Result plan = stock.run("plan", "-detailed-exitcode", "-input=false");
    assertThat(plan.exitCode())
        .as("no changes: it read the state leasehold wrote\n" + plan.output() + plan.errors())
        .isZero();

    LockInfo held = info("backend-client");
    assertThat(runner.lock(state, held).status()).isEqualTo(200);
    Terraform.Result refused =
        stock.run("apply", "-auto-approve", "-input=false", "-lock-timeout=0s");
    assertThat(refused.exitCode()).isNotZero();
    assertThat(refused.output() + refused.errors())
        .contains("Error acquiring the state lock")
        .contains(held.id());
    assertThat(runner.unlock(state, held).status()).isEqualTo(200);

    // Stock Terraform holds the lock while a provisioner waits for the test's go-ahead.
    Path go = stock.dir().resolve("go");
    stock.writeConfig(
        StockTerraform.backend(kubeconfig, ns, state)
            + resource
            + "resource \"terraform_data\" \"gate\" {\n"
            + "  provisioner \"local-exec\" {\n"
            + "    command = \"while [ ! -f "
            + go
            + " ]; do sleep 0.1; done\"\n"
            + "  }\n"
            + "}\n");
    Process apply = stock.start("apply", "-auto-approve", "-input=false");
    try {
      await().atMost(WAIT).until(() -> !holderOf(state).isEmpty());
      String stockLock = holderOf(state);
      ClusterBackend.Answer locked = runner.lock(state, info("impatient"));
      assertThat(locked.status()).isEqualTo(423);
      assertThat(JSON.readTree(locked.body()).path("ID").asText())
          .startsWith(stockLock + " (held by ");
      await()
          .atMost(WAIT)
          .untilAsserted(
              () ->
                  assertThat(ClusterFixtures.status(admin, ns, state).getHolder())
                      .as("status shows stock Terraform's lock")
                      .endsWith(" (apply)"));
      LockInfo patient = info("patient");
      ClusterBackend.WaitingLock waiting = runner.lockWaiting(state, patient, "60s");
      assertThat(waiting.answer(Duration.ofSeconds(2))).as("waits while stock holds").isNull();
      Files.writeString(go, "go");
      String out = new String(apply.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertThat(apply.waitFor(2, TimeUnit.MINUTES)).isTrue();
      assertThat(apply.exitValue()).as(out).isZero();
      ClusterBackend.Answer served = waiting.answer(WAIT);
      assertThat(served).as("served when stock Terraform unlocked").isNotNull();
      assertThat(served.status()).isEqualTo(200);
      assertThat(holderOf(state)).isEqualTo(patient.id());
      assertThat(runner.unlock(state, patient).status()).isEqualTo(200);
    } finally {
      apply.destroyForcibly();
    }
    JsonNode written = JSON.readTree(runner.get(state).body());
    assertThat(written.path("serial").asLong()).as("stock Terraform's write").isGreaterThan(1);
    assertThat(written.toString()).contains("\"gate\"");
  }

  private Terraform runnerTerraform(Path dir, String state, String wait) throws Exception {
    Terraform tf = new Terraform(Files.createDirectories(dir));
    tf.env("TF_HTTP_USERNAME", "runner")
        .env(
            "TF_HTTP_PASSWORD",
            cluster.token(ns, ChartInstall.RUNNER, "leasehold", Duration.ofMinutes(30)))
        .env("TF_HTTP_CLIENT_CA_CERTIFICATE_PEM", ca);
    return tf;
  }

  /** A ServiceAccount of the test namespace granted {@code verbs} on terraformstates/state. */
  private static String grantState(String name, String... verbs) {
    return ClusterFixtures.grantState(cluster, ns, name, Duration.ofMinutes(30), verbs);
  }

  private static LockInfo info(String who) {
    return BackendHttp.lockInfo(UUID.randomUUID().toString(), who);
  }

  private static String minimalState() {
    return "{\"version\":4,\"terraform_version\":\"1.11.4\",\"serial\":1,\"lineage\":\""
        + UUID.randomUUID()
        + "\",\"outputs\":{},\"resources\":[]}";
  }

  private static String stateBase(String state) {
    return "/v1/states/" + ns + "/" + state;
  }

  private static List<QueueEntry> line(String state) {
    TerraformStateStatus s = ClusterFixtures.status(admin, ns, state);
    return s == null || s.getQueue() == null ? List.of() : s.getQueue();
  }

  private static List<String> names(String state) {
    return line(state).stream().map(QueueEntry::getName).toList();
  }

  private static void awaitLine(String state, String... names) {
    await().atMost(WAIT).untilAsserted(() -> assertThat(names(state)).containsExactly(names));
  }

  /** The lock Lease's holderIdentity ("" when free). */
  private static String holderOf(String state) {
    Lease lease = admin.leases().inNamespace(ns).withName("lock-tfstate-default-" + state).get();
    return lease == null || lease.getSpec().getHolderIdentity() == null
        ? ""
        : lease.getSpec().getHolderIdentity();
  }
}
