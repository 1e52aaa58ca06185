package io.leasehold.operator;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.DeletionPolicy;
import io.leasehold.api.TerraformState;
import io.leasehold.backend.Access;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateNames;
import io.leasehold.support.BackendHttp;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RunnerJobFixtures;
import io.leasehold.support.TerraformStates;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Deleting a TerraformState never strands a lock or loses a run: a Job admitted before keeps its
 * lock (renewed) until it ends, then the lock is released; nothing more is admitted and the waiting
 * are told; the backend takes no new locks or writes; Delete removes everything it owns and Retain
 * keeps everything for a TerraformState created again.
 */
class DeletionLifecycleTest {

  private static OperatorHarness harness;
  private static BackendHttp backend;

  /** Requests sent as user "pod-of-UID" come from a pod of the Job with that UID. */
  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
    backend =
        new BackendHttp(
            harness.startBackend(
                Access.NONE,
                (who, namespace, jobUid) -> who.user().startsWith("pod-of-" + jobUid + " "),
                64L * 1024 * 1024));
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static ConditionFactory eventually() {
    return await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(50));
  }

  private static void create(String name, DeletionPolicy policy, int leaseSeconds) {
    TerraformState state = new TerraformState();
    state.getMetadata().setName(name);
    state.getMetadata().setNamespace(NAMESPACE);
    state.getSpec().setDeletionPolicy(policy);
    state.getSpec().getLock().setLeaseDurationSeconds(leaseSeconds);
    harness.client().resource(state).create();
    eventually().until(() -> lease(name) != null && harness.get(name).getStatus() != null);
  }

  private static void delete(String name) {
    harness.client().resources(TerraformState.class).inNamespace(NAMESPACE).withName(name).delete();
  }

  private static StateNames names(String name) {
    return new StateNames(NAMESPACE, name, "default");
  }

  private static Lease lease(String name) {
    return harness.client().leases().inNamespace(NAMESPACE).withName(names(name).leaseName()).get();
  }

  private static String holder(String name) {
    Lease lease = lease(name);
    return lease == null ? null : lease.getSpec().getHolderIdentity();
  }

  private static List<Secret> stateSecrets(String name) {
    return harness
        .client()
        .secrets()
        .inNamespace(NAMESPACE)
        .withLabel(StateNames.LABEL_SUFFIX, name)
        .list()
        .getItems();
  }

  private static List<Secret> historySecrets(String name) {
    return harness
        .client()
        .secrets()
        .inNamespace(NAMESPACE)
        .withLabel(StateNames.LABEL_STATE, name)
        .withLabel(StateHistory.HISTORY_LABEL, "true")
        .list()
        .getItems();
  }

  private static String readyReason(String name) {
    TerraformState s = harness.get(name);
    return s == null || s.getStatus() == null
        ? null
        : Conditions.reason(s.getStatus().getConditions(), Conditions.READY).orElse(null);
  }

  private static Job job(String name) {
    return RunnerJobFixtures.get(harness.client(), name);
  }

  /** Two versions written through the backend: a state and one version in history. */
  private static void writeTwoVersions(String name, String lineage) {
    assertThat(backend.post(NAMESPACE + "/" + name, null, stateJson(1, lineage)).status())
        .isEqualTo(200);
    assertThat(backend.post(NAMESPACE + "/" + name, null, stateJson(2, lineage)).status())
        .isEqualTo(200);
    assertThat(historySecrets(name)).isNotEmpty();
  }

  private static String stateJson(long serial, String lineage) {
    return TerraformStates.stateJson(serial, lineage, 1);
  }

  @Test
  @DisplayName(
      "When a TerraformState with Delete is deleted while a Job runs, then the Job keeps its lock,"
          + " renewed past its duration, and writes; the queued Job is told and never admitted;"
          + " new locks and writes get 409; when the Job ends everything is removed, and a"
          + " TerraformState created again starts clean")
  void deleteWaitsForTheRunningJob() {
    String name = "del-run";
    String state = NAMESPACE + "/" + name;
    create(name, DeletionPolicy.Delete, 5);
    writeTwoVersions(name, "lin-del-run");
    Job first = RunnerJobFixtures.create(harness.client(), "del-run-1", name);
    RunnerJobFixtures.create(harness.client(), "del-run-2", name);
    eventually().until(() -> RunnerJobFixtures.running(job("del-run-1")));
    String jobLock = LeaseLock.jobLockId("del-run-1", first.getMetadata().getUid());

    delete(name);

    eventually()
        .until(
            () ->
                "DeletionWaitingForRunner".equals(readyReason(name))
                    && harness.events("del-run-2").stream()
                        .anyMatch(e -> e.startsWith("Warning StateBeingDeleted")));
    BackendHttp.Answer lock = backend.lock(state, BackendHttp.lockInfo("late-1", "late@x"), null);
    assertThat(lock.status()).isEqualTo(409);
    assertThat(lock.body()).contains("is being deleted");
    BackendHttp.Answer unlocked = backend.post(state, null, stateJson(3, "lin-del-run"));
    assertThat(unlocked.status()).isEqualTo(409);
    assertThat(unlocked.body()).contains("is being deleted");

    // The lock outlives its 5 s duration: it is renewed while the Job runs.
    Lease taken = lease(name);
    long acquired = taken.getSpec().getAcquireTime().toInstant().toEpochMilli();
    eventually()
        .until(
            () -> {
              Lease l = lease(name);
              return jobLock.equals(l.getSpec().getHolderIdentity())
                  && l.getSpec().getRenewTime().toInstant().toEpochMilli() > acquired + 6_000;
            });
    // The Job's own terraform locks under the Job's lock and writes: its run is not lost.
    BackendHttp pod = backend.as("pod-of-" + first.getMetadata().getUid());
    LockInfo nested = BackendHttp.lockInfo("in-job-1", "runner@pod");
    assertThat(pod.lock(state, nested, null).status()).isEqualTo(200);
    assertThat(pod.post(state, "in-job-1", stateJson(3, "lin-del-run")).status()).isEqualTo(200);
    assertThat(pod.unlock(state, nested).status()).isEqualTo(200);
    assertThat(harness.get(name)).isNotNull();

    RunnerJobFixtures.finish(harness.client(), "del-run-1", true);

    eventually().until(() -> harness.get(name) == null);
    assertThat(stateSecrets(name)).isEmpty();
    assertThat(historySecrets(name)).isEmpty();
    assertThat(lease(name)).isNull();
    assertThat(RunnerJobs.admitted(job("del-run-2"))).isFalse();
    assertThat(RunnerJobs.suspended(job("del-run-2"))).isTrue();
    assertThat(harness.events(name)).anyMatch(e -> e.startsWith("Normal StateDeleted"));

    // The Job told it would not run waits for a TerraformState of that name: it goes.
    harness.client().resource(job("del-run-2")).delete();
    create(name, DeletionPolicy.Delete, 5);
    eventually().until(() -> "NoStateYet".equals(readyReason(name)));
    assertThat(backend.get(state).status()).isEqualTo(404);
    assertThat(backend.post(state, null, stateJson(1, "lin-fresh")).status()).isEqualTo(200);
  }

  @Test
  @DisplayName(
      "When a Delete deletion that took its deletion lock fails part-way and the policy is then"
          + " changed to Retain, then the deletion lock is released with the finalizer: the Lease"
          + " kept for stock Terraform is never left locked by a deletion that did not happen")
  void retainAfterAFailedDeleteReleasesTheDeletionLock() {
    String name = "change-mind";
    create(name, DeletionPolicy.Delete, 30);
    writeTwoVersions(name, "lin-change-mind");
    String uid = harness.get(name).getMetadata().getUid();
    // Every attempt to delete the state Secret fails, as an API server in trouble would.
    harness
        .api()
        .mockServer()
        .expect()
        .delete()
        .withPath("/api/v1/namespaces/" + NAMESPACE + "/secrets/" + names(name).secretName())
        .andReturn(500, "{\"kind\":\"Status\",\"code\":500,\"message\":\"injected\"}")
        .times(1000);

    delete(name);
    eventually().until(() -> LockService.deletionLockId(uid).equals(holder(name)));

    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName(name)
        .edit(
            s -> {
              s.getSpec().setDeletionPolicy(DeletionPolicy.Retain);
              return s;
            });

    eventually().until(() -> harness.get(name) == null);
    Lease lease = lease(name);
    assertThat(lease).isNotNull();
    assertThat(lease.getSpec().getHolderIdentity()).isNull();
    assertThat(stateSecrets(name)).hasSize(1);
    // Events are recorded on a thread of their own: they may follow the status.
    eventually()
        .untilAsserted(
            () ->
                assertThat(harness.events(name))
                    .anyMatch(
                        e ->
                            e.contains("LockReleased")
                                && e.contains(LockService.deletionLockId(uid))));
  }

  @Test
  @DisplayName(
      "When a TerraformState with Retain is deleted while a Job runs, then it stays until the Job"
          + " ends, the lock is released then (never left held by a finished Job), and the state,"
          + " history and Lease stay for a TerraformState created again, which adopts them")
  void retainReleasesTheLockOfAJobThatEndsAfter() {
    String name = "keep-run";
    String state = NAMESPACE + "/" + name;
    create(name, DeletionPolicy.Retain, 30);
    writeTwoVersions(name, "lin-keep-run");
    int kept = historySecrets(name).size();
    RunnerJobFixtures.create(harness.client(), "keep-run-1", name);
    eventually().until(() -> RunnerJobFixtures.running(job("keep-run-1")));

    delete(name);

    eventually().until(() -> "DeletionWaitingForRunner".equals(readyReason(name)));
    assertThat(holder(name)).startsWith("job/keep-run-1/");

    RunnerJobFixtures.finish(harness.client(), "keep-run-1", true);

    eventually().until(() -> harness.get(name) == null);
    Lease lease = lease(name);
    assertThat(lease).isNotNull();
    assertThat(lease.getSpec().getHolderIdentity()).isNull();
    assertThat(LeaseLock.running(lease)).isEmpty();
    assertThat(stateSecrets(name)).hasSize(1);
    assertThat(historySecrets(name)).hasSize(kept);

    create(name, DeletionPolicy.Retain, 30);
    eventually()
        .until(
            () ->
                "StateReadable".equals(readyReason(name))
                    && Long.valueOf(2).equals(harness.facts(name).getSerial()));
    assertThat(backend.get(state).status()).isEqualTo(200);
    assertThat(backend.send("GET", state + "/history", null).body()).contains("\"serial\":1");
  }

  @Test
  @DisplayName(
      "When a TerraformState with Retain is deleted while a backend client holds the lock, then"
          + " it stays until that client has written and unlocked, so its apply is not lost and"
          + " its lock is not left held; a lock left by stock Terraform does not hold it up")
  void retainWaitsForTheBackendClientHoldingTheLock() {
    String name = "keep-client";
    String state = NAMESPACE + "/" + name;
    create(name, DeletionPolicy.Retain, 30);
    LockInfo mine = BackendHttp.lockInfo("keep-holder-1", "alice@laptop");
    assertThat(backend.lock(state, mine, null).status()).isEqualTo(200);

    delete(name);

    eventually().until(() -> "DeletionWaitingForUnlock".equals(readyReason(name)));
    eventually()
        .untilAsserted(
            () ->
                assertThat(harness.events(name))
                    .anyMatch(
                        e ->
                            e.startsWith("Warning DeletionWaitingForUnlock")
                                && e.contains("keep-holder-1")
                                && e.contains("alice@laptop")));
    assertThat(backend.post(state, "keep-holder-1", stateJson(1, "lin-keep-client")).status())
        .isEqualTo(200);
    assertThat(backend.unlock(state, mine).status()).isEqualTo(200);

    eventually().until(() -> harness.get(name) == null);
    assertThat(stateSecrets(name)).hasSize(1);
    assertThat(lease(name).getSpec().getHolderIdentity()).isNull();

    // A lock taken by stock Terraform's kubernetes backend needs no TerraformState to be released.
    create(name, DeletionPolicy.Retain, 30);
    harness
        .client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName(names(name).leaseName())
        .edit(
            l -> {
              l.getSpec().setHolderIdentity("stock-1");
              l.getMetadata()
                  .getAnnotations()
                  .put(
                      LeaseLock.LOCK_INFO_ANNOTATION,
                      TerraformStates.terraformLock("stock-1", "carol@laptop").toJson());
              return l;
            });
    eventually().until(() -> harness.status(name).getHolder() != null);

    delete(name);

    eventually().until(() -> harness.get(name) == null);
    assertThat(holder(name)).isEqualTo("stock-1");
  }

  @Test
  @DisplayName(
      "When the lock of the Job a deletion waits for is force-unlocked, then the status says the"
          + " state is unlocked while the deletion still waits for that Job to end")
  void statusFollowsTheLockWhileDeleting() {
    String name = "keep-forced";
    String state = NAMESPACE + "/" + name;
    create(name, DeletionPolicy.Retain, 30);
    RunnerJobFixtures.create(harness.client(), "keep-forced-1", name);
    eventually().until(() -> RunnerJobFixtures.running(job("keep-forced-1")));
    delete(name);
    eventually().until(() -> "DeletionWaitingForRunner".equals(readyReason(name)));
    assertThat(harness.get(name).getStatus().getHolder()).startsWith("job/keep-forced-1");

    // terraform force-unlock: UNLOCK with an empty body.
    assertThat(backend.send("UNLOCK", state + "/lock", null).status()).isEqualTo(200);

    eventually()
        .untilAsserted(
            () -> {
              TerraformState s = harness.get(name);
              assertThat(s.getStatus().getHolder()).isNull();
              assertThat(s.getStatus().getLock()).isNull();
              assertThat(Conditions.reason(s.getStatus().getConditions(), Conditions.LOCKED))
                  .contains("Unlocked");
            });
    assertThat(readyReason(name)).isEqualTo("DeletionWaitingForRunner");

    RunnerJobFixtures.finish(harness.client(), "keep-forced-1", true);
    eventually().until(() -> harness.get(name) == null);
  }

  @Test
  @DisplayName(
      "When a Delete deletion waits for a lock left by stock Terraform, then the force-unlock"
          + " annotation still releases it and the deletion goes on")
  void forceUnlockWorksWhileDeleting() {
    String name = "del-stuck";
    LockInfo info = TerraformStates.terraformLock("stuck-del-1", "frank@crashed");
    harness.client().resource(TerraformStates.heldLease(names(name), info)).create();
    create(name, DeletionPolicy.Delete, 30);
    writeStateAsTerraform(name);

    delete(name);
    eventually().until(() -> "DeletionWaitingForUnlock".equals(readyReason(name)));
    assertThat(stateSecrets(name)).isNotEmpty();

    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName(name)
        .edit(
            s -> {
              s.getMetadata()
                  .setAnnotations(
                      Map.of(TerraformStateReconciler.FORCE_UNLOCK_ANNOTATION, "stuck-del-1"));
              return s;
            });

    eventually().until(() -> harness.get(name) == null);
    assertThat(stateSecrets(name)).isEmpty();
    assertThat(lease(name)).isNull();
    eventually()
        .untilAsserted(
            () ->
                assertThat(harness.events(name))
                    .anyMatch(
                        e -> e.startsWith("Normal ForceUnlocked: released lock stuck-del-1")));
  }

  private static void writeStateAsTerraform(String name) {
    for (Secret s : TerraformStates.secrets(names(name), stateJson(4, "lin-" + name))) {
      harness.client().resource(s).create();
    }
    eventually()
        .until(
            () ->
                harness.get(name).getStatus() != null
                    && harness.get(name).getStatus().getState() != null);
  }

  @Test
  @DisplayName(
      "When deletion begins, then a LOCK waiting in line is answered 409 at once, a Job created"
          + " for the state is told it will never run, and the client holding the lock still"
          + " writes and unlocks, after which the deletion completes")
  void waitersAreToldAndTheHolderFinishes() throws Exception {
    String name = "del-wait";
    String state = NAMESPACE + "/" + name;
    create(name, DeletionPolicy.Delete, 30);
    LockInfo mine = BackendHttp.lockInfo("holder-1", "alice@laptop");
    assertThat(backend.lock(state, mine, null).status()).isEqualTo(200);
    CompletableFuture<BackendHttp.Answer> waiting =
        CompletableFuture.supplyAsync(
            () -> backend.lock(state, BackendHttp.lockInfo("waiter-1", "bob@ci"), "?wait=60s"));
    eventually().until(() -> Integer.valueOf(1).equals(harness.status(name).getQueued()));
    long deleted = System.nanoTime();

    delete(name);

    BackendHttp.Answer refused = waiting.get(30, java.util.concurrent.TimeUnit.SECONDS);
    assertThat(refused.status()).isEqualTo(409);
    assertThat(refused.body()).contains("is being deleted");
    assertThat(Duration.ofNanos(System.nanoTime() - deleted)).isLessThan(Duration.ofSeconds(30));
    RunnerJobFixtures.create(harness.client(), "del-wait-late", name);
    eventually()
        .until(
            () ->
                harness.events("del-wait-late").stream()
                    .anyMatch(e -> e.startsWith("Warning StateBeingDeleted")));
    assertThat(harness.get(name)).isNotNull();

    assertThat(backend.post(state, "holder-1", stateJson(1, "lin-wait")).status()).isEqualTo(200);
    assertThat(backend.unlock(state, mine).status()).isEqualTo(200);

    eventually().until(() -> harness.get(name) == null);
    assertThat(stateSecrets(name)).isEmpty();
    assertThat(lease(name)).isNull();
    assertThat(RunnerJobs.admitted(job("del-wait-late"))).isFalse();
  }
}
