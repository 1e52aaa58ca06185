package io.leasehold.queue;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static io.leasehold.support.RunnerJobFixtures.create;
import static io.leasehold.support.RunnerJobFixtures.get;
import static io.leasehold.support.RunnerJobFixtures.running;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

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
import java.util.List;
import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** spec.queue.hold: nothing new is admitted while the running run finishes. */
class QueueHoldTest {

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

  private static void hold(String state, boolean hold) {
    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName(state)
        // As kubectl patch does it: no resourceVersion, no conflict with status updates.
        .patch(
            PatchContext.of(PatchType.JSON_MERGE),
            "{\"spec\":{\"queue\":{\"hold\":" + hold + "}}}");
  }

  @Test
  @DisplayName(
      "A held queue admits nothing new: the running client finishes, then neither the waiting"
          + " client nor the queued Job gets the free lock, a LOCK without wait is told the queue"
          + " is held; let go, they are served in their order, and Events say both")
  void aHeldQueueAdmitsNothingNew() throws Exception {
    TerraformState state = new TerraformState();
    state.getMetadata().setName("held");
    state.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(state).create();
    eventually().until(() -> lease("held") != null);
    String s = NAMESPACE + "/held";
    BackendClientAccess http = new BackendClientAccess(backend);
    LockInfo running = BackendClientAccess.lockInfo("running", "running@ci");
    assertThat(http.lock(s, running, "")).isEqualTo(200);
    RawLock waiting =
        RawLock.send(
            backend, s, BackendClientAccess.lockInfo("waiting", "waiting@ci"), "?wait=120s");
    eventually().until(() -> line("held").size() == 1);
    create(harness.client(), "held-job", "held");
    eventually().until(() -> line("held").size() == 2);

    hold("held", true);
    eventually().until(() -> LeaseLock.held(lease("held")));
    eventually()
        .until(
            () ->
                harness.events("held").stream()
                    .anyMatch(
                        e -> e.startsWith("Normal QueueHeld") && e.contains("spec.queue.hold")));
    // The running run finishes; nobody new takes the free lock.
    assertThat(http.unlock(s, running)).isEqualTo(200);
    LockInfo plain = BackendClientAccess.lockInfo("plain", "plain@ci");
    BackendClientAccess.Answer refused = http.lockAnswer(s, plain, "");
    assertThat(refused.status()).isEqualTo(423);
    assertThat(refused.body()).contains("the queue is held (spec.queue.hold)");
    // Given every chance to be served (the leader's 1 s recheck, the waiter's 2 s poll).
    await()
        .during(Duration.ofSeconds(3))
        .atMost(Duration.ofSeconds(10))
        .until(() -> lease("held").getSpec().getHolderIdentity() == null);
    assertThat(waiting.answered(Duration.ZERO)).isFalse();
    assertThat(RunnerJobFixtures.running(get(harness.client(), "held-job"))).isFalse();
    assertThat(line("held"))
        .as("those waiting keep their places")
        .startsWith("waiting", get(harness.client(), "held-job").getMetadata().getUid());

    hold("held", false);
    assertThat(waiting.answer(Duration.ofSeconds(20)).status()).isEqualTo(200);
    eventually()
        .until(
            () ->
                harness.events("held").stream()
                    .anyMatch(e -> e.startsWith("Normal QueueReleased")));
    assertThat(running(get(harness.client(), "held-job"))).as("after the waiting client").isFalse();
    assertThat(http.unlock(s, BackendClientAccess.lockInfo("waiting", "waiting@ci")))
        .isEqualTo(200);
    eventually().until(() -> running(get(harness.client(), "held-job")));
  }
}
