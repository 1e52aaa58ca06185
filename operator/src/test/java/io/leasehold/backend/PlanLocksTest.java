package io.leasehold.backend;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.QueueSpec;
import io.leasehold.api.TerraformState;
import io.leasehold.api.TerraformStateSpec;
import io.leasehold.lock.LockInfo;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RawLock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Plans share the lock, applies hold it alone: a LOCK whose Operation is {@code OperationTypePlan}
 * is granted while only plans hold the lock, up to {@code spec.queue.maxParallelPlans}; an apply
 * waits for the running plans, and a plan that comes after a waiting apply waits behind it.
 */
class PlanLocksTest {

  private static OperatorHarness harness;
  private static BackendClient backend;
  private static String base;

  @BeforeAll
  static void start() {
    harness =
        OperatorHarness.start(new LeaseholdOperator.Options(Set.of(), Optional.empty(), "plans"));
    base = harness.startBackend(1 << 20);
    backend = new BackendClient(base);
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static String state(String name, Integer maxParallelPlans) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    if (maxParallelPlans != null) {
      TerraformStateSpec spec = new TerraformStateSpec();
      QueueSpec queue = new QueueSpec();
      queue.setMaxParallelPlans(maxParallelPlans);
      spec.setQueue(queue);
      s.setSpec(spec);
    }
    harness.client().resource(s).create();
    await().atMost(Duration.ofSeconds(10)).until(() -> lease(name) != null);
    return NAMESPACE + "/" + name;
  }

  private static Lease lease(String name) {
    return harness.lockLease(name);
  }

  private static String holder(String name) {
    return harness.lockHolder(name);
  }

  static LockInfo plan(String id, String who) {
    return new LockInfo(id, "OperationTypePlan", "", who, "1.11.4", "2026-12-07T12:00:00Z", "");
  }

  static LockInfo apply(String id, String who) {
    return BackendClient.lockInfo(id, who);
  }

  private static RawLock waitFor(String state, LockInfo info) throws Exception {
    return RawLock.send(base, state, info, "?wait=60s");
  }

  @Test
  @DisplayName(
      "Plans hold the lock beside each other; an apply waits until every running plan has ended,"
          + " and a plan that arrives after the waiting apply waits behind it, then runs once the"
          + " apply unlocks")
  void plansShareApplyWaitsAndLaterPlansQueueBehindIt() throws Exception {
    String s = state("share", null);
    LockInfo p1 = plan("p1", "plan-1");
    LockInfo p2 = plan("p2", "plan-2");
    assertThat(backend.lock(s, p1, null).status()).isEqualTo(200);
    assertThat(backend.lock(s, p2, null).status())
        .as("a second plan beside the first")
        .isEqualTo(200);
    assertThat(holder("share")).as("stock clients see the lock held").isEqualTo("p1");
    await()
        .atMost(Duration.ofSeconds(10))
        .untilAsserted(
            () -> {
              var status = harness.get("share").getStatus();
              assertThat(status.getHolders()).isEqualTo(2);
              assertThat(status.getPlans()).extracting(l -> l.getId()).containsExactly("p1", "p2");
              assertThat(status.getHolder()).isEqualTo("plan-1 (plan) and 1 more plan");
            });

    LockInfo a = apply("a1", "apply");
    try (RawLock applying = waitFor(s, a)) {
      await()
          .atMost(Duration.ofSeconds(10))
          .until(
              () ->
                  lease("share")
                      .getMetadata()
                      .getAnnotations()
                      .getOrDefault("leasehold.io/line", "")
                      .contains("a1"));
      LockInfo p3 = plan("p3", "plan-3");
      assertThat(backend.lock(s, p3, null).status())
          .as("a plan after a waiting apply does not pass it")
          .isEqualTo(423);
      try (RawLock late = waitFor(s, p3)) {
        assertThat(applying.answered(Duration.ofMillis(500))).as("apply waits for plans").isFalse();
        assertThat(backend.unlock(s, p1).status()).isEqualTo(200);
        assertThat(holder("share")).as("the other plan still holds").isEqualTo("p2");
        assertThat(applying.answered(Duration.ofMillis(500))).as("one plan still runs").isFalse();
        assertThat(backend.unlock(s, p2).status()).isEqualTo(200);

        assertThat(applying.answer(Duration.ofSeconds(10)).status()).isEqualTo(200);
        assertThat(holder("share")).isEqualTo("a1");
        await()
            .atMost(Duration.ofSeconds(10))
            .untilAsserted(
                () -> {
                  var status = harness.get("share").getStatus();
                  assertThat(status.getHolders()).isEqualTo(1);
                  assertThat(status.getPlans()).isNull();
                });
        assertThat(late.answered(Duration.ofMillis(500)))
            .as("the plan waits for the apply")
            .isFalse();
        assertThat(backend.unlock(s, a).status()).isEqualTo(200);
        assertThat(late.answer(Duration.ofSeconds(10)).status()).isEqualTo(200);
        assertThat(holder("share")).isEqualTo("p3");
        assertThat(backend.unlock(s, p3).status()).isEqualTo(200);
      }
    }
    await().atMost(Duration.ofSeconds(10)).until(() -> holder("share") == null);
  }

  @Test
  @DisplayName(
      "At most spec.queue.maxParallelPlans plans hold the lock at once; the next plan waits for"
          + " one of them and is granted as soon as one ends")
  void plansAreBoundedByMaxParallelPlans() throws Exception {
    String s = state("bounded", 2);
    await()
        .atMost(Duration.ofSeconds(10))
        .until(() -> harness.get("bounded").getSpec().getQueue().getMaxParallelPlans() == 2);
    List<LockInfo> plans = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      plans.add(plan("b" + i, "plan-" + i));
    }
    assertThat(backend.lock(s, plans.get(0), null).status()).isEqualTo(200);
    assertThat(backend.lock(s, plans.get(1), null).status()).isEqualTo(200);
    try (RawLock third = waitFor(s, plans.get(2))) {
      assertThat(third.answered(Duration.ofMillis(700))).as("a third plan waits").isFalse();
      assertThat(backend.unlock(s, plans.get(0)).status()).isEqualTo(200);
      assertThat(third.answer(Duration.ofSeconds(10)).status()).isEqualTo(200);
    }
    assertThat(backend.unlock(s, plans.get(1)).status()).isEqualTo(200);
    assertThat(backend.unlock(s, plans.get(2)).status()).isEqualTo(200);
    await().atMost(Duration.ofSeconds(10)).until(() -> holder("bounded") == null);
  }

  @Test
  @DisplayName(
      "A write under a plan's lock ID is refused with 409 (plans do not write) and the state is"
          + " untouched; a write without a lock ID is refused while plans hold the lock")
  void plansDoNotWrite() throws Exception {
    String s = state("nowrite", null);
    LockInfo p = plan("w1", "plan");
    assertThat(backend.lock(s, p, null).status()).isEqualTo(200);
    String body =
        "{\"version\":4,\"terraform_version\":\"1.11.4\",\"serial\":1,"
            + "\"lineage\":\"5a1e2b9c-0000-4000-8000-000000000001\",\"outputs\":{},\"resources\":[]}";
    BackendClient.Response posted = backend.post(s, "w1", body);
    assertThat(posted.status()).isEqualTo(409);
    assertThat(posted.body()).contains("plans do not write");
    assertThat(backend.post(s, null, body).status()).isEqualTo(423);
    assertThat(backend.get(s).status()).as("no state was written").isEqualTo(404);
    assertThat(backend.unlock(s, p).status()).isEqualTo(200);
  }

  @Test
  @DisplayName(
      "A plan's lock belongs to the identity that took it: a retry with the same LockInfo is"
          + " granted again, the same lock ID with another LockInfo is refused, and the UNLOCK of"
          + " one plan leaves the others holding")
  void planLocksAreOwnedAndReleasedOneByOne() throws Exception {
    String s = state("owned", null);
    LockInfo p1 = plan("o1", "plan-1");
    LockInfo p2 = plan("o2", "plan-2");
    assertThat(backend.lock(s, p1, null).status()).isEqualTo(200);
    assertThat(backend.lock(s, p2, null).status()).isEqualTo(200);
    assertThat(backend.lock(s, p2, null).status()).as("a retry").isEqualTo(200);
    LockInfo reused =
        new LockInfo(
            "o2", "OperationTypePlan", "", "someone-else", "1.11.4", "2026-12-07T13:00:00Z", "");
    assertThat(backend.lock(s, reused, null).status())
        .as("another request reusing the ID")
        .isEqualTo(423);
    // The first plan's own UNLOCK leaves the second holding.
    assertThat(backend.unlock(s, p1).status()).isEqualTo(200);
    assertThat(holder("owned")).isEqualTo("o2");
    assertThat(lease("owned").getMetadata().getAnnotations().get("app.terraform.io/lock-info"))
        .as("the remaining plan is the holder stock Terraform shows")
        .contains("plan-2");
    assertThat(backend.unlock(s, p2).status()).isEqualTo(200);
    assertThat(holder("owned")).isNull();
    assertThat(lease("owned").getMetadata().getAnnotations())
        .doesNotContainKey("leasehold.io/plans");
  }

  @Test
  @DisplayName(
      "A LOCK for an apply under a holding plan's lock ID, with the plan's Who and Created, is"
          + " refused (423), never granted as a retry: the apply is not told it holds the lock"
          + " beside the other plans")
  void anApplyReusingAPlansLockIdIsRefused() throws Exception {
    String s = state("reused", null);
    LockInfo first = plan("r1", "plan-1");
    LockInfo second = plan("r2", "plan-2");
    assertThat(backend.lock(s, first, null).status()).isEqualTo(200);
    assertThat(backend.lock(s, second, null).status()).isEqualTo(200);
    for (LockInfo p : List.of(first, second)) {
      LockInfo asApply =
          new LockInfo(
              p.id(), "OperationTypeApply", p.info(), p.who(), p.version(), p.created(), p.path());
      BackendClient.Response answer = backend.lock(s, asApply, null);
      assertThat(answer.status()).as("an apply under plan %s's lock ID", p.id()).isEqualTo(423);
      assertThat(answer.body()).contains("Operation OperationTypeApply");
    }
    assertThat(holder("reused")).isEqualTo("r1");
    assertThat(lease("reused").getMetadata().getAnnotations().get("leasehold.io/plans"))
        .contains("\"r1\"", "\"r2\"");
    assertThat(backend.lock(s, second, null).status()).as("the plan's own retry").isEqualTo(200);
    assertThat(backend.unlock(s, first).status()).isEqualTo(200);
    assertThat(backend.unlock(s, second).status()).isEqualTo(200);
    assertThat(holder("reused")).isNull();
  }
}
