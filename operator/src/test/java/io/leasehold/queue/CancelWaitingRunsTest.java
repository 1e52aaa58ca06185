package io.leasehold.queue;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static io.leasehold.support.RunnerJobFixtures.create;
import static io.leasehold.support.RunnerJobFixtures.get;
import static io.leasehold.support.RunnerJobFixtures.running;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.TerraformState;
import io.leasehold.backend.BackendClientAccess;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.Ticket;
import io.leasehold.state.StateNames;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RawLock;
import io.leasehold.support.RunnerJobFixtures;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Cancelling waiting runs by annotation: a waiting client is answered 409 with the reason and never
 * gets the lock, a waiting Job is never admitted, and nothing that holds the lock is touched.
 */
class CancelWaitingRunsTest {

  private static OperatorHarness harness;
  private static String backend;

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
    backend = harness.startBackend(1 << 20);
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static ConditionFactory eventually() {
    return await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(20));
  }

  private static String state(String name) {
    TerraformState state = new TerraformState();
    state.getMetadata().setName(name);
    state.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(state).create();
    eventually().until(() -> lease(name) != null);
    return NAMESPACE + "/" + name;
  }

  private static Lease lease(String state) {
    return harness
        .client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName(new StateNames(NAMESPACE, state, "default").leaseName())
        .get();
  }

  private static List<String> line(String state) {
    Lease l = lease(state);
    return l == null ? List.of() : LeaseLock.line(l).tickets().stream().map(Ticket::id).toList();
  }

  private static String holder(String state) {
    Lease l = lease(state);
    return l == null || l.getSpec() == null ? null : l.getSpec().getHolderIdentity();
  }

  /** Sets annotations on the TerraformState, as {@code kubectl annotate --overwrite} does. */
  private static void annotate(String state, Map<String, String> annotations) {
    StringBuilder merge = new StringBuilder("{\"metadata\":{\"annotations\":{");
    annotations.forEach(
        (k, v) ->
            merge
                .append(merge.charAt(merge.length() - 1) == '{' ? "" : ",")
                .append('"')
                .append(k)
                .append("\":")
                .append(v == null ? "null" : "\"" + v + "\""));
    merge.append("}}}");
    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName(state)
        .patch(PatchContext.of(PatchType.JSON_MERGE), merge.toString());
  }

  private static void annotateJob(String job, String key, String value) {
    harness
        .client()
        .batch()
        .v1()
        .jobs()
        .inNamespace(NAMESPACE)
        .withName(job)
        .patch(
            PatchContext.of(PatchType.JSON_MERGE),
            "{\"metadata\":{\"annotations\":{\"" + key + "\":\"" + value + "\"}}}");
  }

  private static String uid(String job) {
    return get(harness.client(), job).getMetadata().getUid();
  }

  private static boolean event(String object, String prefix, String... contains) {
    return harness.events(object).stream()
        .anyMatch(e -> e.startsWith(prefix) && List.of(contains).stream().allMatch(e::contains));
  }

  @Test
  @DisplayName(
      "A client cancelled by lock ID is answered 409 naming the reason and who asked; the holder"
          + " keeps the lock, the other waiter is served next, and a retry with the cancelled lock"
          + " ID is refused rather than given its place back")
  void aWaitingClientCancelledByLockId() throws Exception {
    String s = state("cancel-one");
    BackendClientAccess http = new BackendClientAccess(backend);
    LockInfo holding = BackendClientAccess.lockInfo("cancel-one-holder", "holder@ci");
    assertThat(http.lock(s, holding, "")).isEqualTo(200);
    LockInfo first = BackendClientAccess.lockInfo("cancel-one-first", "first@ci");
    LockInfo second = BackendClientAccess.lockInfo("cancel-one-second", "second@ci");
    RawLock cancelled = RawLock.send(backend, s, first, "?wait=120s");
    eventually().until(() -> line("cancel-one").equals(List.of(first.id())));
    RawLock waiting = RawLock.send(backend, s, second, "?wait=120s");
    eventually().until(() -> line("cancel-one").equals(List.of(first.id(), second.id())));

    annotate(
        "cancel-one",
        Map.of(
            "leasehold.io/cancel", first.id(),
            "leasehold.io/cancel-by", "alice",
            "leasehold.io/cancel-reason", "superseded by a newer commit"));

    RawLock.Answer answer = cancelled.answer(Duration.ofSeconds(10));
    assertThat(answer).as("answered while the lock is still held").isNotNull();
    assertThat(answer.status()).isEqualTo(409);
    assertThat(answer.body())
        .contains("cancelled")
        .contains("leasehold.io/cancel on TerraformState default/cancel-one")
        .contains("by alice")
        .contains("superseded by a newer commit");
    assertThat(holder("cancel-one")).isEqualTo(holding.id());
    assertThat(line("cancel-one")).containsExactly(second.id());
    assertThat(waiting.answered(Duration.ZERO)).isFalse();
    eventually()
        .until(
            () ->
                event(
                    "cancel-one",
                    "Normal RunCancelled",
                    "cancelled 1 waiting run",
                    first.id(),
                    "first@ci",
                    "by alice"));

    // Terraform's -lock-timeout retries send the same lock ID: refused, not put back in line.
    BackendClientAccess.Answer retry = http.lockAnswer(s, first, "?wait=1s");
    assertThat(retry.status()).isEqualTo(409);
    assertThat(retry.body()).contains("cancelled").contains("superseded by a newer commit");
    assertThat(line("cancel-one")).containsExactly(second.id());

    assertThat(http.unlock(s, holding)).isEqualTo(200);
    RawLock.Answer served = waiting.answer(Duration.ofSeconds(10));
    assertThat(served).isNotNull();
    assertThat(served.status()).isEqualTo(200);
    assertThat(holder("cancel-one")).isEqualTo(second.id());
    assertThat(http.unlock(s, second)).isEqualTo(200);
    cancelled.close();
    waiting.close();
  }

  @Test
  @DisplayName(
      "A cancel covers only runs that arrived by its time: a client that arrived after"
          + " cancel-at keeps waiting, and the same cancel carried out again (its record lost, as"
          + " when a GitOps tool applies it anew) cancels nothing that arrived since")
  void aCancelCoversOnlyRunsThatArrivedByItsTime() throws Exception {
    String s = state("cancel-at");
    BackendClientAccess http = new BackendClientAccess(backend);
    LockInfo holding = BackendClientAccess.lockInfo("cancel-at-holder", "holder@ci");
    assertThat(http.lock(s, holding, "")).isEqualTo(200);
    LockInfo early = BackendClientAccess.lockInfo("cancel-at-early", "early@ci");
    RawLock before = RawLock.send(backend, s, early, "?wait=120s");
    eventually().until(() -> line("cancel-at").equals(List.of(early.id())));
    Instant at = LeaseLock.line(lease("cancel-at")).tickets().get(0).since().plusMillis(1);
    // The later client arrives strictly after the cancel's time.
    await().until(() -> Instant.now().isAfter(at.plusMillis(5)));
    LockInfo late = BackendClientAccess.lockInfo("cancel-at-late", "late@ci");
    RawLock after = RawLock.send(backend, s, late, "?wait=120s");
    eventually().until(() -> line("cancel-at").equals(List.of(early.id(), late.id())));

    annotate(
        "cancel-at", Map.of("leasehold.io/cancel", "all", "leasehold.io/cancel-at", at.toString()));

    RawLock.Answer answer = before.answer(Duration.ofSeconds(10));
    assertThat(answer).isNotNull();
    assertThat(answer.status()).isEqualTo(409);
    eventually()
        .until(
            () ->
                harness
                    .get("cancel-at")
                    .getMetadata()
                    .getAnnotations()
                    .containsKey("leasehold.io/cancel-done"));
    assertThat(line("cancel-at")).containsExactly(late.id());
    assertThat(after.answered(Duration.ZERO)).isFalse();
    assertThat(
            harness.events("cancel-at").stream()
                .filter(e -> e.startsWith("Normal RunCancelled"))
                .findFirst()
                .orElseThrow())
        .contains("cancelled 1 waiting run")
        .contains("left alone: client " + late.id());

    // Carried out again with the same annotations: the later client is still not cancelled.
    annotate("cancel-at", java.util.Collections.singletonMap("leasehold.io/cancel-done", null));
    eventually()
        .until(
            () -> event("cancel-at", "Normal RunCancelNotNeeded", late.id(), "after the cancel's"));
    assertThat(line("cancel-at")).containsExactly(late.id());
    assertThat(after.answered(Duration.ZERO)).isFalse();

    assertThat(http.unlock(s, holding)).isEqualTo(200);
    assertThat(after.answer(Duration.ofSeconds(10)).status()).isEqualTo(200);
    assertThat(http.unlock(s, late)).isEqualTo(200);
    before.close();
    after.close();
  }

  @Test
  @DisplayName(
      "Cancel all: every waiting client and queued Job is cancelled in one Event; the running Job"
          + " keeps the lock, and the cancelled Job is never admitted, also once the lock is free")
  void cancelAllLeavesTheRunningJobAlone() throws Exception {
    String s = state("cancel-all");
    create(harness.client(), "cancel-all-running", "cancel-all");
    eventually().until(() -> running(get(harness.client(), "cancel-all-running")));
    String runningUid = uid("cancel-all-running");
    RawLock w1 =
        RawLock.send(
            backend, s, BackendClientAccess.lockInfo("cancel-all-w1", "w1@ci"), "?wait=120s");
    eventually().until(() -> line("cancel-all").size() == 1);
    create(harness.client(), "cancel-all-queued", "cancel-all");
    eventually().until(() -> line("cancel-all").size() == 2);
    RawLock w2 =
        RawLock.send(
            backend, s, BackendClientAccess.lockInfo("cancel-all-w2", "w2@ci"), "?wait=120s");
    eventually().until(() -> line("cancel-all").size() == 3);

    annotate("cancel-all", Map.of("leasehold.io/cancel", "all"));

    for (RawLock w : List.of(w1, w2)) {
      RawLock.Answer answer = w.answer(Duration.ofSeconds(10));
      assertThat(answer).as(w.info().id()).isNotNull();
      assertThat(answer.status()).isEqualTo(409);
      assertThat(answer.body()).contains("cancelled");
    }
    eventually().until(() -> line("cancel-all").isEmpty());
    eventually()
        .until(
            () ->
                event(
                    "cancel-all",
                    "Normal RunCancelled",
                    "cancelled 3 waiting runs",
                    "cancel-all-w1",
                    "cancel-all-w2",
                    "runner Job cancel-all-queued"));
    Job queued = get(harness.client(), "cancel-all-queued");
    assertThat(queued.getMetadata().getAnnotations()).containsKey("leasehold.io/cancelled");
    assertThat(running(get(harness.client(), "cancel-all-running"))).isTrue();
    assertThat(LeaseLock.jobUid(holder("cancel-all"))).contains(runningUid);

    RunnerJobFixtures.finish(harness.client(), "cancel-all-running", true);
    eventually().until(() -> holder("cancel-all") == null);
    // Given every chance to be admitted (the leader's rechecks, the watch of the Job).
    await()
        .during(Duration.ofSeconds(3))
        .atMost(Duration.ofSeconds(10))
        .until(() -> holder("cancel-all") == null && line("cancel-all").isEmpty());
    Job after = get(harness.client(), "cancel-all-queued");
    assertThat(RunnerJobs.suspended(after)).isTrue();
    assertThat(RunnerJobs.admitted(after)).isFalse();
    w1.close();
    w2.close();
  }

  @Test
  @DisplayName(
      "The cancel annotation on a waiting Job takes it out of line for good; on the running Job"
          + " it changes nothing but a Warning")
  void jobAnnotationCancelsOnlyAWaitingJob() throws Exception {
    state("cancel-job");
    create(harness.client(), "cancel-job-running", "cancel-job");
    eventually().until(() -> running(get(harness.client(), "cancel-job-running")));
    String runningUid = uid("cancel-job-running");
    create(harness.client(), "cancel-job-queued", "cancel-job");
    eventually().until(() -> line("cancel-job").equals(List.of(uid("cancel-job-queued"))));

    annotateJob("cancel-job-running", "leasehold.io/cancel", "wrong one");
    eventually()
        .until(() -> event("cancel-job-running", "Warning CancelIgnored", "admitted and runs"));
    assertThat(running(get(harness.client(), "cancel-job-running"))).isTrue();
    assertThat(LeaseLock.jobUid(holder("cancel-job"))).contains(runningUid);
    assertThat(line("cancel-job")).containsExactly(uid("cancel-job-queued"));

    annotateJob("cancel-job-queued", "leasehold.io/cancel", "not needed any more");
    eventually().until(() -> line("cancel-job").isEmpty());
    eventually()
        .until(
            () ->
                event(
                    "cancel-job",
                    "Normal RunCancelled",
                    "cancel-job-queued",
                    "not needed any more"));
    assertThat(running(get(harness.client(), "cancel-job-running"))).isTrue();

    RunnerJobFixtures.finish(harness.client(), "cancel-job-running", true);
    eventually().until(() -> holder("cancel-job") == null);
    await()
        .during(Duration.ofSeconds(3))
        .atMost(Duration.ofSeconds(10))
        .until(() -> holder("cancel-job") == null && line("cancel-job").isEmpty());
    Job queued = get(harness.client(), "cancel-job-queued");
    assertThat(RunnerJobs.suspended(queued)).isTrue();
    assertThat(RunnerJobs.admitted(queued)).isFalse();
    assertThat(queued.getMetadata().getAnnotations()).containsKey("leasehold.io/cancelled");
  }
}
