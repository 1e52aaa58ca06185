package io.leasehold.backend;

import static io.leasehold.backend.BackendClient.lockInfo;
import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.state.StateNames;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class HttpBackendProtocolTest {

  private static final long MAX_BYTES = 2 * 1024 * 1024;
  private static OperatorHarness harness;
  private static BackendClient backend;

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
    String url = harness.startBackend(MAX_BYTES);
    backend = new BackendClient(url);
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static String state(String name) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    s.getSpec().getHistory().setKeep(3);
    harness.client().resource(s).create();
    return NAMESPACE + "/" + name;
  }

  /** The lock IDs in the state's line, as its Lease has them. */
  private static List<String> inLine(String name) {
    return LeaseLock.line(lease(name)).tickets().stream()
        .map(io.leasehold.lock.Ticket::id)
        .toList();
  }

  private static String json(long serial, String lineage, int instances) {
    return TerraformStates.stateJson(serial, lineage, instances);
  }

  /** Everything stored for a state: Secrets (state and history) and the Lease, by version. */
  private static Map<String, String> snapshot(String name) {
    Map<String, String> all =
        harness.client().secrets().inNamespace(NAMESPACE).list().getItems().stream()
            .filter(
                s ->
                    s.getMetadata().getName().contains("-" + name + "-")
                        || s.getMetadata().getName().endsWith("-" + name))
            .collect(
                Collectors.toMap(
                    s -> "secret/" + s.getMetadata().getName(),
                    s -> s.getMetadata().getResourceVersion()));
    Lease lease = lease(name);
    if (lease != null) {
      all.put("lease", lease.getMetadata().getResourceVersion());
    }
    return all;
  }

  private static Lease lease(String name) {
    return harness
        .client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName(new StateNames(NAMESPACE, name, "default").leaseName())
        .get();
  }

  @Test
  @DisplayName(
      "GET is 404 before the first write; a write is stored in Terraform's format and GET returns"
          + " it with its Content-MD5")
  void roundTrip() throws Exception {
    String s = state("roundtrip");
    assertThat(backend.get(s).status()).isEqualTo(404);

    String body = json(1, "lin-rt", 2);
    assertThat(backend.post(s, null, body).status()).isEqualTo(200);

    BackendClient.Response got = backend.get(s);
    assertThat(got.status()).isEqualTo(200);
    assertThat(got.body()).isEqualTo(body);
    String md5 =
        Base64.getEncoder()
            .encodeToString(
                MessageDigest.getInstance("MD5").digest(body.getBytes(StandardCharsets.UTF_8)));
    assertThat(got.header("Content-MD5")).isEqualTo(md5);
    Secret secret =
        harness
            .client()
            .secrets()
            .inNamespace(NAMESPACE)
            .withName("tfstate-default-roundtrip")
            .get();
    assertThat(secret.getMetadata().getLabels())
        .containsEntry("tfstate", "true")
        .containsEntry("tfstateSecretSuffix", "roundtrip");
    assertThat(secret.getMetadata().getAnnotations()).containsEntry("encoding", "gzip");
    await()
        .atMost(Duration.ofSeconds(10))
        .until(
            () ->
                harness.get("roundtrip").getStatus() != null
                    && harness.get("roundtrip").getStatus().getState() != null
                    && harness.get("roundtrip").getStatus().getState().getSerial() == 1);
  }

  @Test
  @DisplayName(
      "A lock excludes everyone else: 423 with the holder's LockInfo, writes without or with a"
          + " wrong ID refused, the holder's write and unlock accepted")
  void lockExcludesOthers() throws Exception {
    String s = state("locking");
    LockInfo alice = lockInfo("alice-1", "alice@laptop");
    LockInfo bob = lockInfo("bob-1", "bob@ci");
    assertThat(backend.lock(s, alice, null).status()).isEqualTo(200);
    Lease held = lease("locking");
    assertThat(held.getSpec().getHolderIdentity()).isEqualTo("alice-1");
    assertThat(held.getMetadata().getAnnotations().get(LeaseLock.LOCK_INFO_ANNOTATION))
        .isEqualTo(alice.toJson());

    BackendClient.Response refused = backend.lock(s, bob, null);
    assertThat(refused.status()).isEqualTo(423);
    // The holder's LockInfo; its ID says, after the holder's lock ID, who holds the lock: the one
    // field of it stock Terraform prints ("HTTP remote state already locked: ID=...").
    LockInfo shownHolder = LockInfo.parse(refused.body()).orElseThrow();
    assertThat(shownHolder.id())
        .isEqualTo(
            "alice-1 (held by alice@laptop for OperationTypeApply since 2026-11-26T12:00:00Z)");
    assertThat(shownHolder).usingRecursiveComparison().ignoringFields("id").isEqualTo(alice);

    Map<String, String> before = snapshot("locking");
    BackendClient.Response noId = backend.post(s, null, json(1, "lin-l", 1));
    assertThat(noId.status()).isEqualTo(423);
    assertThat(noId.body())
        .contains("locked by alice@laptop")
        .contains("-lock=false")
        .contains("Nothing was written");
    BackendClient.Response wrongId = backend.post(s, "bob-1", json(1, "lin-l", 1));
    assertThat(wrongId.status()).isEqualTo(409);
    assertThat(wrongId.body()).contains("lock bob-1 does not hold the state");
    assertThat(backend.unlock(s, bob).status()).isEqualTo(423);
    assertThat(snapshot("locking")).isEqualTo(before);

    assertThat(backend.post(s, "alice-1", json(1, "lin-l", 1)).status()).isEqualTo(200);
    assertThat(backend.unlock(s, alice).status()).isEqualTo(200);
    assertThat(lease("locking").getSpec().getHolderIdentity()).isNull();

    // Alice's lock is gone: a late write with it is refused, nothing changes.
    Map<String, String> after = snapshot("locking");
    BackendClient.Response stale = backend.post(s, "alice-1", json(2, "lin-l", 1));
    assertThat(stale.status()).isEqualTo(409);
    assertThat(stale.body()).contains("no longer holds the state").contains("released at");
    assertThat(snapshot("locking")).isEqualTo(after);
  }

  @Test
  @DisplayName(
      "Writes that would lose data are refused with 409 and change nothing: other lineage, lower"
          + " serial, same serial with other content")
  void guardsRefuseLosingWrites() throws Exception {
    String s = state("guarded");
    assertThat(backend.post(s, null, json(5, "lin-g", 1)).status()).isEqualTo(200);
    Map<String, String> before = snapshot("guarded");

    BackendClient.Response lineage = backend.post(s, null, json(6, "lin-other", 1));
    assertThat(lineage.status()).isEqualTo(409);
    assertThat(lineage.body()).contains("lineage lin-other differs").contains("lin-g");

    BackendClient.Response older = backend.post(s, null, json(4, "lin-g", 1));
    assertThat(older.status()).isEqualTo(409);
    assertThat(older.body()).contains("serial 4 is lower than the stored serial 5");

    BackendClient.Response clash = backend.post(s, null, json(5, "lin-g", 2));
    assertThat(clash.status()).isEqualTo(409);
    assertThat(clash.body()).contains("serial 5 is already stored with other content");

    assertThat(snapshot("guarded")).isEqualTo(before);
    assertThat(backend.get(s).body()).isEqualTo(json(5, "lin-g", 1));

    // The same write again is harmless.
    assertThat(backend.post(s, null, json(5, "lin-g", 1)).status()).isEqualTo(200);
    assertThat(backend.post(s, null, json(6, "lin-g", 2)).status()).isEqualTo(200);
    assertThat(harness.events("guarded")).isNotEmpty();
  }

  @Test
  @DisplayName(
      "Bodies that are not a state, a wrong Content-MD5 and oversized bodies are refused and"
          + " change nothing")
  void refusesBadBodies() throws Exception {
    String s = state("bodies");
    assertThat(backend.post(s, null, json(1, "lin-b", 1)).status()).isEqualTo(200);
    Map<String, String> before = snapshot("bodies");

    BackendClient.Response notJson = backend.post(s, null, "this is not json");
    assertThat(notJson.status()).isEqualTo(400);
    assertThat(notJson.body()).contains("not a Terraform state");
    BackendClient.Response notState = backend.post(s, null, "{\"hello\":\"world\"}");
    assertThat(notState.status()).isEqualTo(400);
    assertThat(notState.body()).contains("not a Terraform state");
    BackendClient.Response badMd5 =
        backend.send(
            "POST", s, json(2, "lin-b", 1), Map.of("Content-MD5", "AAAAAAAAAAAAAAAAAAAAAA=="));
    assertThat(badMd5.status()).isEqualTo(400);
    assertThat(badMd5.body()).contains("Content-MD5");
    String huge = TerraformStates.stateJson(2, "lin-b", 1, "x".repeat((int) MAX_BYTES));
    BackendClient.Response tooBig = backend.post(s, null, huge);
    assertThat(tooBig.status()).isEqualTo(413);
    assertThat(tooBig.body()).contains("over the limit");

    assertThat(snapshot("bodies")).isEqualTo(before);
  }

  @Test
  @DisplayName(
      "Addresses that are not a TerraformState, and methods the protocol lacks, are refused")
  void refusesBadAddresses() throws Exception {
    assertThat(backend.get(NAMESPACE + "/missing").status()).isEqualTo(404);
    assertThat(backend.get(NAMESPACE + "/missing").body())
        .contains("no TerraformState default/missing");
    assertThat(backend.get(NAMESPACE + "/Not_A_Name").status()).isEqualTo(400);
    assertThat(backend.get("Bad_NS/x").status()).isEqualTo(400);
    assertThat(backend.get(NAMESPACE + "%2Fother/x").status()).isIn(400, 404);
    BackendClient.Response put = backend.send("PUT", NAMESPACE + "/x", "{}", Map.of());
    assertThat(put.status()).isEqualTo(405);
    assertThat(put.header("Allow")).isEqualTo("GET, POST, DELETE");
    assertThat(backend.send("GET", "../../etc/passwd", null, Map.of()).status()).isEqualTo(404);
  }

  @Test
  @DisplayName(
      "LOCK with ?wait= waits in line and gets the lock the moment it is released, in FIFO order;"
          + " a wait that runs out answers 423 with the holder")
  void waitingLocksAreFifo() throws Exception {
    String s = state("waiting");
    LockInfo first = lockInfo("first", "one@host");
    assertThat(backend.lock(s, first, null).status()).isEqualTo(200);

    CompletableFuture<BackendClient.Response> second =
        CompletableFuture.supplyAsync(
            () -> call(() -> backend.lock(s, lockInfo("second", "two@host"), "?wait=60s")));
    // Each waiter is in line before the next arrives, so the order of arrival is known.
    await().atMost(Duration.ofSeconds(30)).until(() -> inLine("waiting").equals(List.of("second")));
    CompletableFuture<BackendClient.Response> third =
        CompletableFuture.supplyAsync(
            () -> call(() -> backend.lock(s, lockInfo("third", "three@host"), "?wait=60s")));
    await()
        .atMost(Duration.ofSeconds(30))
        .until(() -> inLine("waiting").equals(List.of("second", "third")));
    BackendClient.Response impatient = backend.lock(s, lockInfo("impatient", "x@y"), "?wait=300ms");
    assertThat(impatient.status()).isEqualTo(423);
    assertThat(LockInfo.parse(impatient.body()).map(LockInfo::id).orElseThrow())
        .startsWith("first (held by ");
    assertThat(second).isNotDone();

    backend.unlock(s, first);
    assertThat(second.get().status()).isEqualTo(200);
    assertThat(lease("waiting").getSpec().getHolderIdentity()).isEqualTo("second");
    assertThat(third).isNotDone();
    backend.unlock(s, lockInfo("second", "two@host"));
    assertThat(third.get().status()).isEqualTo(200);
    assertThat(lease("waiting").getSpec().getHolderIdentity()).isEqualTo("third");
    backend.unlock(s, lockInfo("third", "three@host"));

    assertThat(backend.lock(s, first, "?wait=soon").status()).isEqualTo(400);
  }

  @Test
  @DisplayName(
      "A LOCK with ?wait= that the line cannot take (128 clients wait already) is answered 423 at"
          + " once with the holder and why, which Terraform retries under -lock-timeout, and is"
          + " taken into line once a place is free")
  void aFullLineAnswersLockedSoTerraformRetries() throws Exception {
    String s = state("crowded");
    LockInfo first = lockInfo("crowd-holder", "one@host");
    assertThat(backend.lock(s, first, null).status()).isEqualTo(200);
    // 128 clients keep their places already (written as the replica would; a place of a replica
    // that is not alive would be dropped at once).
    Lease l = lease("crowded");
    java.time.Instant now = java.time.Instant.now();
    String replica = harness.operator().locks().replica();
    io.leasehold.lock.Line full = LeaseLock.line(l);
    for (int i = 0; i < io.leasehold.lock.Line.MAX_CLIENTS; i++) {
      full =
          full.append(
              io.leasehold.lock.Ticket.client(
                      "crowd-" + i, "c" + i + "@ci", "digest-" + i, replica, now)
                  .goneAt(now));
    }
    io.leasehold.lock.Line crowd = full;
    editLease("crowded", lease -> LeaseLock.withLine(lease, crowd));

    BackendClient.Response late = backend.lock(s, lockInfo("late", "late@ci"), "?wait=30s");
    assertThat(late.status()).isEqualTo(423);
    LockInfo shown = LockInfo.parse(late.body()).orElseThrow();
    assertThat(shown.id())
        .startsWith("crowd-holder (refused by leasehold: the line for this state is full (128");
    assertThat(shown.who()).isEqualTo("leasehold");
    assertThat(shown.info()).contains("line for this state is full (128 clients wait already)");
    assertThat(inLine("crowded")).doesNotContain("late").hasSize(128);

    // One of them leaves for good: the next try is taken into line.
    editLease(
        "crowded", lease -> LeaseLock.withLine(lease, LeaseLock.line(lease).without("crowd-0")));
    // Retried as Terraform retries a 423 under -lock-timeout: a try that the replica decides
    // before it has seen the place freed is answered "full" once more.
    CompletableFuture<BackendClient.Response> retried =
        CompletableFuture.supplyAsync(
            () ->
                call(
                    () -> {
                      while (true) {
                        BackendClient.Response r =
                            backend.lock(s, lockInfo("late", "late@ci"), "?wait=30s");
                        if (r.status() != 423
                            || !r.body().contains("line for this state is full")) {
                          return r;
                        }
                        Thread.sleep(200);
                      }
                    }));
    await().atMost(Duration.ofSeconds(30)).until(() -> inLine("crowded").contains("late"));
    assertThat(retried).isNotDone();
    // The others leave too: the holder's unlock passes the lock to it.
    editLease(
        "crowded",
        lease ->
            LeaseLock.withLine(lease, LeaseLock.line(lease).filter(t -> t.id().equals("late"))));
    backend.unlock(s, first);
    assertThat(retried.get().status()).isEqualTo(200);
    assertThat(backend.unlock(s, lockInfo("late", "late@ci")).status()).isEqualTo(200);
  }

  @Test
  @DisplayName(
      "Two LOCKs of one identity with the same lock ID but different LockInfo, sent at once: only"
          + " one is told it holds the lock, the other is answered 423 naming the conflict; a retry"
          + " with the very LockInfo that took the lock is granted again")
  void sameLockIdTwiceIsGrantedOnlyAsARetry() throws Exception {
    String s = state("twice");
    for (int round = 0; round < 10; round++) {
      String id = "reused-" + round;
      LockInfo a =
          new LockInfo(
              id, "OperationTypeApply", "", "a@host", "1.11.4", "2026-11-26T12:00:01Z", "");
      LockInfo b =
          new LockInfo(id, "OperationTypePlan", "", "b@host", "1.11.4", "2026-11-26T12:00:02Z", "");
      java.util.concurrent.CountDownLatch go = new java.util.concurrent.CountDownLatch(1);
      CompletableFuture<BackendClient.Response> first =
          CompletableFuture.supplyAsync(
              () ->
                  call(
                      () -> {
                        go.await();
                        return backend.lock(s, a, null);
                      }));
      CompletableFuture<BackendClient.Response> second =
          CompletableFuture.supplyAsync(
              () ->
                  call(
                      () -> {
                        go.await();
                        return backend.lock(s, b, null);
                      }));
      go.countDown();
      List<BackendClient.Response> answers = List.of(first.get(), second.get());
      List<BackendClient.Response> granted =
          answers.stream().filter(r -> r.status() == 200).toList();
      assertThat(granted).as("round " + round + ": " + answers).hasSize(1);
      BackendClient.Response refused =
          answers.stream().filter(r -> r.status() != 200).findFirst().orElseThrow();
      assertThat(refused.status()).isEqualTo(423);
      LockInfo shown = LockInfo.parse(refused.body()).orElseThrow();
      assertThat(shown.info()).contains(id).contains("different LockInfo").contains("new lock ID");
      // The Lease holds the LockInfo of the one told it holds the lock, as it sent it.
      LockInfo winner = LockInfo.parse(granted.get(0).body()).orElseThrow();
      LockInfo held =
          LockInfo.parse(
                  lease("twice").getMetadata().getAnnotations().get(LeaseLock.LOCK_INFO_ANNOTATION))
              .orElseThrow();
      assertThat(held).isEqualTo(winner);
      LockInfo loser = winner.equals(a) ? b : a;
      // Terraform's retry of the winner's request (its answer lost) is granted; the loser's is not.
      assertThat(backend.lock(s, winner, null).status()).isEqualTo(200);
      assertThat(backend.lock(s, loser, null).status()).isEqualTo(423);
      assertThat(backend.unlock(s, winner).status()).isEqualTo(200);
    }
  }

  private static void editLease(String state, java.util.function.UnaryOperator<Lease> change) {
    harness
        .client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName(new StateNames(NAMESPACE, state, "default").leaseName())
        .edit(change);
  }

  @Test
  @DisplayName(
      "A lock held by stock Terraform's kubernetes backend blocks HTTP clients, and a LOCK"
          + " waiting with ?wait= gets it once Terraform unlocks")
  void stockTerraformLockBlocksHttp() throws Exception {
    String s = state("mixed");
    // Stock Terraform locks the Lease the operator created, as its kubernetes backend does.
    await().atMost(Duration.ofSeconds(10)).until(() -> lease("mixed") != null);
    Lease l = lease("mixed");
    l.getSpec().setHolderIdentity("tf-k8s");
    l.getMetadata()
        .setAnnotations(
            Map.of(
                LeaseLock.LOCK_INFO_ANNOTATION,
                TerraformStates.terraformLock("tf-k8s", "gina@laptop").toJson()));
    harness.client().resource(l).update();

    BackendClient.Response blocked = backend.lock(s, lockInfo("http-1", "h@x"), null);
    assertThat(blocked.status()).isEqualTo(423);
    assertThat(blocked.body()).contains("gina@laptop");
    CompletableFuture<BackendClient.Response> waiting =
        CompletableFuture.supplyAsync(
            () -> call(() -> backend.lock(s, lockInfo("http-2", "h@x"), "?wait=30s")));
    // Terraform unlocks once the waiter stands in line.
    await()
        .atMost(Duration.ofSeconds(10))
        .until(
            () -> {
              TerraformState st = harness.get("mixed");
              return st.getStatus() != null
                  && st.getStatus().getQueue() != null
                  && st.getStatus().getQueue().stream().anyMatch(q -> "h@x".equals(q.getName()));
            });
    // Terraform unlocks as its kubernetes backend does: holder and lock-info cleared, the
    // Lease's other annotations (leasehold's line among them) left as they are.
    Lease unlocked = lease("mixed");
    unlocked.getSpec().setHolderIdentity(null);
    Map<String, String> kept = new java.util.HashMap<>(unlocked.getMetadata().getAnnotations());
    kept.remove(LeaseLock.LOCK_INFO_ANNOTATION);
    unlocked.getMetadata().setAnnotations(kept);
    harness.client().resource(unlocked).update();
    assertThat(waiting.get().status()).isEqualTo(200);
    assertThat(lease("mixed").getSpec().getHolderIdentity()).isEqualTo("http-2");
  }

  @Test
  @DisplayName("force-unlock (UNLOCK with an empty body) releases the lock and records who did it")
  void forceUnlock() throws Exception {
    String s = state("forced");
    assertThat(backend.lock(s, lockInfo("stuck", "crashed@ci"), null).status()).isEqualTo(200);
    BackendClient.Response r = backend.send("UNLOCK", s + "/lock", null, Map.of());
    assertThat(r.status()).isEqualTo(200);
    assertThat(lease("forced").getSpec().getHolderIdentity()).isNull();
    await()
        .atMost(Duration.ofSeconds(5))
        .until(
            () ->
                harness.events("forced").stream()
                    .anyMatch(
                        e -> e.startsWith("Warning ForceUnlocked: lock stuck held by crashed@ci")));
  }

  @Test
  @DisplayName(
      "Every version written is kept in history, the current one included (up to history.keep,"
          + " unseen by stock Terraform); a restore is a new version; DELETE keeps the state in"
          + " history")
  void historyAndRestore() throws Exception {
    String s = state("versions");
    for (int serial = 1; serial <= 5; serial++) {
      assertThat(backend.post(s, null, json(serial, "lin-v", serial)).status()).isEqualTo(200);
    }
    var list = new ObjectMapper().readTree(backend.get(s + "/history").body()).get("versions");
    assertThat(list).hasSize(3);
    assertThat(list.get(0).get("serial").asLong()).isEqualTo(5);
    assertThat(list.get(0).get("reason").asText()).startsWith("written through the HTTP backend");
    assertThat(list.get(2).get("serial").asLong()).isEqualTo(3);
    List<Secret> history =
        harness
            .client()
            .secrets()
            .inNamespace(NAMESPACE)
            .withLabel("leasehold.io/history", "true")
            .withLabel("leasehold.io/state", "versions")
            .list()
            .getItems();
    assertThat(history)
        .allSatisfy(
            h ->
                assertThat(h.getMetadata().getLabels())
                    .doesNotContainKeys("tfstate", "tfstateSecretSuffix", "tfstateWorkspace"));

    String serial3 = list.get(2).get("id").asText();
    assertThat(backend.get(s + "/history/" + serial3).body()).isEqualTo(json(3, "lin-v", 3));
    BackendClient.Response restored =
        backend.send("POST", s + "/history/" + serial3 + "/restore", null, Map.of());
    assertThat(restored.status()).isEqualTo(200);
    assertThat(restored.body()).contains("restored as serial 6");
    var current = new ObjectMapper().readTree(backend.get(s).body());
    assertThat(current.get("serial").asLong()).isEqualTo(6);
    assertThat(current.get("resources").get(0).get("instances")).hasSize(3);

    assertThat(backend.send("DELETE", s, null, Map.of()).status()).isEqualTo(200);
    assertThat(backend.get(s).status()).isEqualTo(404);
    var afterDelete =
        new ObjectMapper().readTree(backend.get(s + "/history").body()).get("versions");
    assertThat(afterDelete.get(0).get("serial").asLong()).isEqualTo(6);
    assertThat(afterDelete.get(0).get("reason").asText()).isEqualTo("before delete");
  }

  private interface Call {
    BackendClient.Response run() throws Exception;
  }

  private static BackendClient.Response call(Call c) {
    try {
      return c.run();
    } catch (Exception e) {
      throw new RuntimeException(e);
    }
  }
}
