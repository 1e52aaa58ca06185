package io.leasehold.operator;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.DeletionPolicy;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.state.StateNames;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class TerraformStateReconcilerTest {

  private static OperatorHarness harness;

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static ConditionFactory eventually() {
    return await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(50));
  }

  private static TerraformState create(String name, DeletionPolicy policy) {
    TerraformState state = new TerraformState();
    state.getMetadata().setName(name);
    state.getMetadata().setNamespace(NAMESPACE);
    state.getSpec().setDeletionPolicy(policy);
    return harness.client().resource(state).create();
  }

  private static StateNames names(String name) {
    return new StateNames(NAMESPACE, name, "default");
  }

  private static Lease lease(String name) {
    return harness.client().leases().inNamespace(NAMESPACE).withName(names(name).leaseName()).get();
  }

  private static String condition(TerraformState s, String type) {
    if (s == null || s.getStatus() == null) {
      return null;
    }
    return Conditions.find(s.getStatus().getConditions(), type)
        .map(c -> c.getStatus() + "/" + c.getReason())
        .orElse(null);
  }

  private static void writeState(String name, String json) {
    for (Secret secret : TerraformStates.secrets(names(name), json)) {
      harness.client().resource(secret).create();
    }
  }

  @Test
  @DisplayName(
      "When a TerraformState is created, then its Lease exists unlocked in Terraform's format"
          + " and the resource is Ready with no state yet")
  void createsUnlockedLease() {
    create("fresh", DeletionPolicy.Retain);

    eventually()
        .untilAsserted(
            () -> {
              TerraformState s = harness.get("fresh");
              assertThat(condition(s, "Ready")).isEqualTo("True/NoStateYet");
              assertThat(condition(s, "Locked")).isEqualTo("False/Unlocked");
              assertThat(condition(s, "Degraded")).isEqualTo("False/AsExpected");
              assertThat(s.getStatus().getObservedGeneration())
                  .isEqualTo(s.getMetadata().getGeneration());
              assertThat(s.getStatus().getQueued()).isZero();
              assertThat(s.getStatus().getHolder()).isNull();
            });
    Lease lease = lease("fresh");
    assertThat(lease.getSpec().getHolderIdentity()).isNull();
    assertThat(lease.getMetadata().getLabels())
        .containsAllEntriesOf(names("fresh").terraformLabels());
    assertThat(lease.getMetadata().getAnnotations()).isNullOrEmpty();
  }

  @Test
  @DisplayName("When the Lease is deleted by hand, then the operator recreates it unlocked")
  void recreatesDeletedLease() {
    create("relocked", DeletionPolicy.Retain);
    eventually().until(() -> lease("relocked") != null);

    harness
        .client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName(names("relocked").leaseName())
        .delete();

    eventually()
        .untilAsserted(
            () -> {
              Lease lease = lease("relocked");
              assertThat(lease).isNotNull();
              assertThat(lease.getSpec().getHolderIdentity()).isNull();
            });
  }

  @Test
  @DisplayName(
      "When stock Terraform has written chunked state, then status shows serial, lineage,"
          + " version, resources, sizes and chunks, and the Secrets are untouched")
  void adoptsChunkedState() {
    // Random padding does not compress, so the gzip'd state spans three Secrets.
    byte[] noise = new byte[1_100_000];
    new Random(7).nextBytes(noise);
    String padding = Base64.getEncoder().encodeToString(noise);
    String json = TerraformStates.stateJson(12, "lin-chunked", 2, padding);
    writeState("chunked", json);
    List<Secret> before =
        harness
            .client()
            .secrets()
            .inNamespace(NAMESPACE)
            .withLabel("tfstateSecretSuffix", "chunked")
            .list()
            .getItems();
    assertThat(before).hasSize(3);

    create("chunked", DeletionPolicy.Retain);

    eventually()
        .untilAsserted(
            () -> {
              TerraformState s = harness.get("chunked");
              assertThat(condition(s, "Ready")).isEqualTo("True/StateReadable");
              var facts = s.getStatus().getState();
              assertThat(facts.getSerial()).isEqualTo(12);
              assertThat(facts.getLineage()).isEqualTo("lin-chunked");
              assertThat(facts.getTerraformVersion()).isEqualTo("1.11.4");
              assertThat(facts.getResources()).isEqualTo(2);
              assertThat(facts.getChunks()).isEqualTo(3);
              assertThat(facts.getRawBytes())
                  .isEqualTo(json.getBytes(StandardCharsets.UTF_8).length);
              assertThat(facts.getCompressedBytes()).isGreaterThan(2L * 1_048_576);
            });
    List<Secret> after =
        harness
            .client()
            .secrets()
            .inNamespace(NAMESPACE)
            .withLabel("tfstateSecretSuffix", "chunked")
            .list()
            .getItems();
    assertThat(after)
        .extracting(sec -> sec.getMetadata().getResourceVersion())
        .containsExactlyInAnyOrderElementsOf(
            before.stream().map(sec -> sec.getMetadata().getResourceVersion()).toList());
    assertThat(harness.events("chunked")).anyMatch(e -> e.startsWith("Normal StateAdopted"));
  }

  @Test
  @DisplayName(
      "When stock Terraform holds the lock, then status names the holder, says leasehold cannot"
          + " vouch for it, and the operator never clears or changes the Lease")
  void showsTerraformHolderAndLeavesItAlone() {
    LockInfo info = TerraformStates.terraformLock("tf-lock-1", "alice@laptop");
    harness.client().resource(TerraformStates.heldLease(names("held"), info)).create();
    Lease before = lease("held");

    create("held", DeletionPolicy.Retain);

    eventually()
        .untilAsserted(
            () -> {
              TerraformState s = harness.get("held");
              assertThat(condition(s, "Locked")).isEqualTo("True/Held");
              assertThat(s.getStatus().getHolder()).isEqualTo("alice@laptop (apply)");
              assertThat(s.getStatus().getLock().getId()).isEqualTo("tf-lock-1");
              assertThat(s.getStatus().getLock().getWho()).isEqualTo("alice@laptop");
              assertThat(s.getStatus().getLock().getSince())
                  .isEqualTo("2026-11-26T10:00:00.000000Z");
              assertThat(s.getStatus().getLock().getVouched()).isFalse();
            });
    // Touch the resource so it reconciles again, then check the Lease is exactly as it was.
    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("held")
        .edit(
            s -> {
              s.getMetadata().setLabels(Map.of("touched", "yes"));
              return s;
            });
    eventually()
        .until(() -> harness.events("held").stream().anyMatch(e -> e.contains("LockTaken")));
    Lease after = lease("held");
    assertThat(after.getMetadata().getResourceVersion())
        .isEqualTo(before.getMetadata().getResourceVersion());
    assertThat(after.getSpec().getHolderIdentity()).isEqualTo("tf-lock-1");
    assertThat(after.getMetadata().getAnnotations().get(LeaseLock.LOCK_INFO_ANNOTATION))
        .isEqualTo(info.toJson());
  }

  @Test
  @DisplayName(
      "When the lock is taken and released and the state changes, then the resource follows and"
          + " Events say so")
  void followsLockAndStateChanges() {
    create("moving", DeletionPolicy.Retain);
    eventually().until(() -> "True/NoStateYet".equals(condition(harness.get("moving"), "Ready")));

    // Stock Terraform locks the existing Lease, writes state, unlocks.
    Lease lease = lease("moving");
    LockInfo info = TerraformStates.terraformLock("lock-2", "bob@ci");
    lease.getSpec().setHolderIdentity(info.id());
    lease.getMetadata().setAnnotations(Map.of(LeaseLock.LOCK_INFO_ANNOTATION, info.toJson()));
    lease = harness.client().resource(lease).update();
    eventually().until(() -> "bob@ci (apply)".equals(harness.status("moving").getHolder()));

    writeState("moving", TerraformStates.stateJson(1, "lin-moving", 1));
    eventually().until(() -> stateSerial("moving") == 1L);

    Secret main =
        harness
            .client()
            .secrets()
            .inNamespace(NAMESPACE)
            .withName(names("moving").secretName())
            .get();
    main.setData(
        Map.of(
            "tfstate",
            Base64.getEncoder()
                .encodeToString(
                    TerraformStates.gzip(
                        TerraformStates.stateJson(2, "lin-moving", 3)
                            .getBytes(StandardCharsets.UTF_8)))));
    harness.client().resource(main).update();
    eventually().until(() -> stateSerial("moving") == 2L);

    lease.getSpec().setHolderIdentity(null);
    lease.getMetadata().setAnnotations(Map.of());
    harness.client().resource(lease).update();
    eventually()
        .untilAsserted(
            () -> {
              TerraformState s = harness.get("moving");
              assertThat(condition(s, "Locked")).isEqualTo("False/Unlocked");
              assertThat(s.getStatus().getHolder()).isNull();
              assertThat(s.getStatus().getLock()).isNull();
              assertThat(s.getStatus().getState().getResources()).isEqualTo(3);
            });
    assertThat(harness.events("moving"))
        .containsSubsequence(
            "Normal LockTaken: lock lock-2 taken by bob@ci (apply)",
            "Normal StateAdopted: found state in tfstate-default-moving: serial 1, lineage"
                + " lin-moving, 1 resource instance(s)",
            "Normal StateChanged: state serial 1 -> 2, 3 resource instance(s), written by"
                + " Terraform 1.11.4",
            "Normal LockReleased: lock lock-2 held by bob@ci (OperationTypeApply) was released");
  }

  @Test
  @DisplayName(
      "When a lock that leasehold renewed for its holder expires and a client takes it over, then"
          + " the Event says it was taken over, naming the previous and the new holder, and never"
          + " that it was released")
  void takeoverIsReportedAsTakeover() {
    create("takeover", DeletionPolicy.Retain);
    eventually().until(() -> lease("takeover") != null);
    // Held for a holder leasehold vouches for, which stopped renewing a minute ago.
    LockInfo stale = TerraformStates.terraformLock("renewed-1", "ci@runner");
    harness
        .client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName(names("takeover").leaseName())
        .edit(l -> LeaseLock.heldFor(l, stale, 5, java.time.Instant.now().minusSeconds(60)));
    eventually()
        .until(
            () ->
                harness.status("takeover").getLock() != null
                    && "renewed-1".equals(harness.status("takeover").getLock().getId()));

    io.leasehold.lock.LockService locks =
        new io.leasehold.lock.LockService(
            harness.client(),
            io.leasehold.lock.LockService.LeaseSource.NONE,
            java.time.Clock.systemUTC(),
            "takeover-test",
            io.leasehold.lock.LockService.Settings.DEFAULTS);
    LockInfo taker = TerraformStates.terraformLock("taker-2", "dana@laptop");
    io.leasehold.lock.LockService.Answer answer =
        locks.lock(
            names("takeover"), taker, io.leasehold.lock.Caller.of("dana", "dana"), false, Map.of());
    assertThat(answer)
        .isInstanceOfSatisfying(
            io.leasehold.lock.LockService.Granted.class, g -> assertThat(g.tookOver()).isTrue());
    assertThat(LeaseLock.tookOverFrom(lease("takeover"))).contains("renewed-1");

    eventually()
        .until(
            () -> harness.events("takeover").stream().anyMatch(e -> e.contains("LockTakenOver")));
    assertThat(harness.events("takeover"))
        .contains(
            "Warning LockTakenOver: lock renewed-1 held by ci@runner (OperationTypeApply) expired"
                + " and was taken over by dana@laptop (apply) (lock taker-2)")
        .noneMatch(e -> e.contains("LockReleased"))
        .noneMatch(e -> e.contains("LockTaken: lock taker-2"));
    // Released afterwards, the lock forgets the takeover.
    assertThat(
            locks.unlock(names("takeover"), "taker-2", io.leasehold.lock.Caller.of("dana", "dana")))
        .isInstanceOf(io.leasehold.lock.LockService.Released.class);
    assertThat(LeaseLock.tookOverFrom(lease("takeover"))).isEmpty();
  }

  private static long stateSerial(String name) {
    TerraformState s = harness.get(name);
    if (s == null || s.getStatus() == null || s.getStatus().getState() == null) {
      return -1;
    }
    return s.getStatus().getState().getSerial();
  }

  @Test
  @DisplayName(
      "When a state Secret is not gzip, then the resource is Degraded naming the Secret and the"
          + " fault, and the Secret is left exactly as it was")
  void reportsCorruptStateWithoutRepairingIt() {
    StateNames n = names("corrupt");
    Secret bad =
        TerraformStates.secret(
            n, n.secretName(), "not gzip at all".getBytes(StandardCharsets.UTF_8));
    bad = harness.client().resource(bad).create();

    create("corrupt", DeletionPolicy.Retain);

    eventually()
        .untilAsserted(
            () -> {
              TerraformState s = harness.get("corrupt");
              assertThat(condition(s, "Degraded")).isEqualTo("True/StateUnreadable");
              assertThat(condition(s, "Ready")).isEqualTo("False/StateUnreadable");
              String message =
                  Conditions.find(s.getStatus().getConditions(), "Degraded").get().getMessage();
              assertThat(message).contains("tfstate-default-corrupt").contains("not gzip");
            });
    Secret after = harness.client().secrets().inNamespace(NAMESPACE).withName(n.secretName()).get();
    assertThat(after.getMetadata().getResourceVersion())
        .isEqualTo(bad.getMetadata().getResourceVersion());
    assertThat(after.getData()).isEqualTo(bad.getData());
    assertThat(harness.events("corrupt")).anyMatch(e -> e.startsWith("Warning StateUnreadable"));
  }

  @Test
  @DisplayName(
      "When a middle chunk is missing, then the resource is Degraded naming the missing chunk")
  void reportsMissingChunk() {
    StateNames n = names("gappy");
    byte[] noise = new byte[2_500_000];
    new Random(3).nextBytes(noise);
    List<Secret> secrets = TerraformStates.secretsOfGzip(n, noise);
    assertThat(secrets).hasSize(3);
    harness.client().resource(secrets.get(0)).create();
    harness.client().resource(secrets.get(2)).create();

    create("gappy", DeletionPolicy.Retain);

    eventually()
        .untilAsserted(
            () -> {
              TerraformState s = harness.get("gappy");
              assertThat(condition(s, "Degraded")).isEqualTo("True/StateUnreadable");
              assertThat(
                      Conditions.find(s.getStatus().getConditions(), "Degraded").get().getMessage())
                  .contains("chunk tfstate-default-gappy-part-1 is missing");
            });
  }

  @Test
  @DisplayName(
      "When force-unlock names the holder's lock ID, then the lock is released, an Event says"
          + " who held it, and the annotation is removed")
  void forceUnlockWithMatchingId() {
    LockInfo info = TerraformStates.terraformLock("stuck-1", "carol@crashed");
    harness.client().resource(TerraformStates.heldLease(names("stuck"), info)).create();
    create("stuck", DeletionPolicy.Retain);
    eventually().until(() -> "True/Held".equals(condition(harness.get("stuck"), "Locked")));

    annotate("stuck", "stuck-1");

    eventually()
        .untilAsserted(
            () -> {
              assertThat(lease("stuck").getSpec().getHolderIdentity()).isNull();
              assertThat(lease("stuck").getMetadata().getAnnotations())
                  .doesNotContainKey(LeaseLock.LOCK_INFO_ANNOTATION);
              TerraformState s = harness.get("stuck");
              assertThat(s.getMetadata().getAnnotations())
                  .doesNotContainKey(TerraformStateReconciler.FORCE_UNLOCK_ANNOTATION);
              assertThat(condition(s, "Locked")).isEqualTo("False/Unlocked");
            });
    assertThat(harness.events("stuck"))
        .anyMatch(
            e -> e.startsWith("Normal ForceUnlocked: released lock stuck-1 held by carol@crashed"));
  }

  @Test
  @DisplayName(
      "When force-unlock names another lock ID, then the lock is left alone and a Warning says so")
  void forceUnlockWithWrongId() {
    LockInfo info = TerraformStates.terraformLock("real-id", "dave@laptop");
    harness.client().resource(TerraformStates.heldLease(names("guarded"), info)).create();
    create("guarded", DeletionPolicy.Retain);
    eventually().until(() -> "True/Held".equals(condition(harness.get("guarded"), "Locked")));
    Lease before = lease("guarded");

    annotate("guarded", "wrong-id");

    eventually()
        .until(
            () ->
                harness.events("guarded").stream()
                    .anyMatch(e -> e.startsWith("Warning ForceUnlockRefused")));
    assertThat(harness.events("guarded"))
        .anyMatch(e -> e.contains("names lock wrong-id but the lock is held by dave@laptop"));
    Lease after = lease("guarded");
    assertThat(after.getMetadata().getResourceVersion())
        .isEqualTo(before.getMetadata().getResourceVersion());
    assertThat(after.getSpec().getHolderIdentity()).isEqualTo("real-id");
    eventually()
        .until(
            () ->
                harness.get("guarded").getMetadata().getAnnotations() == null
                    || !harness
                        .get("guarded")
                        .getMetadata()
                        .getAnnotations()
                        .containsKey(TerraformStateReconciler.FORCE_UNLOCK_ANNOTATION));
  }

  private static void annotate(String name, String lockId) {
    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName(name)
        .edit(
            s -> {
              s.getMetadata()
                  .setAnnotations(Map.of(TerraformStateReconciler.FORCE_UNLOCK_ANNOTATION, lockId));
              return s;
            });
  }

  @Test
  @DisplayName(
      "When a TerraformState with deletionPolicy Retain is deleted, then its state Secrets and"
          + " Lease stay for stock Terraform")
  void retainKeepsStateOnDelete() {
    writeState("kept", TerraformStates.stateJson(5, "lin-kept", 1));
    create("kept", DeletionPolicy.Retain);
    eventually().until(() -> stateSerial("kept") == 5L);

    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("kept")
        .delete();

    eventually().until(() -> harness.get("kept") == null);
    assertThat(
            harness
                .client()
                .secrets()
                .inNamespace(NAMESPACE)
                .withName(names("kept").secretName())
                .get())
        .isNotNull();
    assertThat(lease("kept")).isNotNull();
  }

  @Test
  @DisplayName(
      "When a TerraformState with deletionPolicy Delete is deleted while locked, then it waits"
          + " saying why, and deletes state and Lease once the lock is released")
  void deleteWaitsForUnlock() {
    writeState("doomed", TerraformStates.stateJson(3, "lin-doomed", 1));
    LockInfo info = TerraformStates.terraformLock("busy-1", "erin@ci");
    harness.client().resource(TerraformStates.heldLease(names("doomed"), info)).create();
    create("doomed", DeletionPolicy.Delete);
    eventually().until(() -> stateSerial("doomed") == 3L);

    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("doomed")
        .delete();

    eventually()
        .untilAsserted(
            () -> {
              TerraformState s = harness.get("doomed");
              assertThat(s).isNotNull();
              assertThat(condition(s, "Ready")).isEqualTo("False/DeletionWaitingForUnlock");
              assertThat(Conditions.find(s.getStatus().getConditions(), "Ready").get().getMessage())
                  .contains("busy-1")
                  .contains("erin@ci");
            });
    assertThat(
            harness
                .client()
                .secrets()
                .inNamespace(NAMESPACE)
                .withName(names("doomed").secretName())
                .get())
        .isNotNull();

    Lease lease = lease("doomed");
    lease.getSpec().setHolderIdentity(null);
    lease.getMetadata().setAnnotations(Map.of());
    harness.client().resource(lease).update();

    eventually().until(() -> harness.get("doomed") == null);
    assertThat(
            harness
                .client()
                .secrets()
                .inNamespace(NAMESPACE)
                .withName(names("doomed").secretName())
                .get())
        .isNull();
    assertThat(lease("doomed")).isNull();
    assertThat(harness.events("doomed")).anyMatch(e -> e.startsWith("Normal StateDeleted"));
  }
}
