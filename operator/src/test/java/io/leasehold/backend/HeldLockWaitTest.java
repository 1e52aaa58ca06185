package io.leasehold.backend;

import static io.leasehold.backend.BackendClient.lockInfo;
import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RawLock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * A LOCK without {@code ?wait=} (stock Terraform's HTTP backend with {@code -lock-timeout}) waits
 * in line for a held lock for a short while before its 423: the lock goes to it the moment it is
 * free instead of idling until its next retry, and the place it keeps between retries means clients
 * that wait with {@code ?wait=} never starve it.
 */
class HeldLockWaitTest {

  private static final Duration HELD_WAIT = Duration.ofSeconds(1);
  private static OperatorHarness harness;
  private static BackendClient backend;
  private static String base;

  @BeforeAll
  static void start() {
    harness =
        OperatorHarness.start(
            new LeaseholdOperator.Options(Set.of(), Optional.empty(), "held-wait-test")
                .withLocks(new LockService.Settings(Duration.ofSeconds(30))));
    base =
        harness.startBackend(
            Access.NONE,
            JobPods.NONE,
            1 << 20,
            StateBackend.Audit.NONE,
            new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(5))
                .withHeldLockWait(HELD_WAIT));
    backend = new BackendClient(base);
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static String state(String name) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
    await().atMost(Duration.ofSeconds(10)).until(() -> lease(name) != null);
    return NAMESPACE + "/" + name;
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
      "A LOCK without ?wait= on a held lock is granted the moment the holder unlocks, within its"
          + " short wait; once the wait runs out it is answered 423 with the holder")
  void plainLockIsGrantedWhenTheLockFrees() throws Exception {
    String s = state("plain-grant");
    LockInfo alice = lockInfo("plain-a", "alice");
    assertThat(backend.lock(s, alice, null).status()).isEqualTo(200);

    RawLock bob = RawLock.send(base, s, lockInfo("plain-b", "bob"), "");
    assertThat(bob.answered(Duration.ofMillis(300))).as("bob waits while alice holds").isFalse();
    assertThat(backend.unlock(s, alice).status()).isEqualTo(200);
    assertThat(bob.answer(Duration.ofSeconds(5)).status()).isEqualTo(200);
    assertThat(lease("plain-grant").getSpec().getHolderIdentity()).isEqualTo("plain-b");
    bob.close();

    RawLock carol = RawLock.send(base, s, lockInfo("plain-c", "carol"), "");
    RawLock.Answer held = carol.answer(HELD_WAIT.multipliedBy(10));
    assertThat(held.status()).isEqualTo(423);
    assertThat(held.body()).contains("plain-b");
    carol.close();
    assertThat(backend.unlock(s, lockInfo("plain-b", "bob")).status()).isEqualTo(200);
  }

  @Test
  @DisplayName(
      "A plain client retrying like terraform -lock-timeout gets the lock while three ?wait="
          + " clients take it over and over: its place in line is kept between its retries")
  void plainClientsAreNotStarvedByWaitingOnes() throws Exception {
    String s = state("plain-fair");
    AtomicBoolean stop = new AtomicBoolean();
    AtomicInteger othersGranted = new AtomicInteger();
    ExecutorService pool = Executors.newFixedThreadPool(4);
    List<Future<?>> greedy = new ArrayList<>();
    try {
      for (int i = 0; i < 3; i++) {
        String who = "greedy-" + i;
        greedy.add(
            pool.submit(
                () -> {
                  for (int round = 0; !stop.get(); round++) {
                    LockInfo mine = lockInfo(who + "-" + round, who);
                    if (backend.lock(s, mine, "?wait=30s").status() != 200) {
                      continue;
                    }
                    othersGranted.incrementAndGet();
                    Thread.sleep(700);
                    backend.unlock(s, mine);
                  }
                  return null;
                }));
      }
      await().atMost(Duration.ofSeconds(10)).until(() -> othersGranted.get() >= 3);
      int before = othersGranted.get();
      LockInfo plain = lockInfo("plain-retrying", "plain");
      int tries = 0;
      int status = 0;
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      while (System.nanoTime() < deadline) {
        tries++;
        status = backend.lock(s, plain, null).status();
        if (status == 200) {
          break;
        }
        assertThat(status).as("a plain LOCK is answered 200 or 423").isEqualTo(423);
        Thread.sleep(1_000);
      }
      int passedBy = othersGranted.get() - before;
      System.out.printf(
          "plain client: granted after %d tries, %d grants to ?wait= clients meanwhile%n",
          tries, passedBy);
      assertThat(status).as("the plain client got the lock within 60 s").isEqualTo(200);
      assertThat(passedBy)
          .as("grants to the ?wait= clients before the plain one (its place kept)")
          .isLessThanOrEqualTo(12);
      stop.set(true);
      assertThat(backend.unlock(s, plain).status()).isEqualTo(200);
      for (Future<?> f : greedy) {
        f.get(60, TimeUnit.SECONDS);
      }
    } finally {
      stop.set(true);
      pool.shutdownNow();
    }
  }
}
