package io.leasehold.backend;

import static io.leasehold.backend.BackendClient.lockInfo;
import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import io.leasehold.api.QueueEntry;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.OnChange;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RawLock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The line of {@code ?wait=} clients: a client that goes away is never granted the lock, a client
 * that comes back with the same lock ID keeps its place, and connected clients are served in order
 * of arrival.
 */
class LockLineTest {

  private static final Duration GRACE = Duration.ofSeconds(20);
  private static OperatorHarness harness;
  private static BackendClient backend;
  private static String base;

  @BeforeAll
  static void start() {
    harness =
        OperatorHarness.start(
            new LeaseholdOperator.Options(Set.of(), Optional.empty(), "line-test")
                .withLocks(new LockService.Settings(GRACE)));
    base = harness.startBackend(1 << 20);
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

  private static String holder(String name) {
    Lease l = lease(name);
    return l == null || l.getSpec() == null ? null : l.getSpec().getHolderIdentity();
  }

  /** The line as the TerraformState's status shows it: "who:connected" in order. */
  private static List<String> line(String name) {
    TerraformState s = harness.get(name);
    if (s == null || s.getStatus() == null || s.getStatus().getQueue() == null) {
      return List.of();
    }
    return s.getStatus().getQueue().stream()
        .map(q -> q.getName() + (Boolean.FALSE.equals(q.getConnected()) ? ":away" : ""))
        .toList();
  }

  private static ConditionFactory eventually() {
    return await().atMost(Duration.ofSeconds(15)).pollInterval(Duration.ofMillis(20));
  }

  /**
   * UNLOCK as Terraform's http backend sends it: a 5xx is retried (twice by default), anything else
   * but 200 is an error the user would see, with the lock left held.
   */
  private static void unlockOrReport(String state, LockInfo info, List<String> violations)
      throws Exception {
    int status = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
      status = backend.unlock(state, info).status();
      if (status < 500) {
        break;
      }
    }
    if (status != 200) {
      violations.add("UNLOCK " + info.id() + " answered " + status);
    }
  }

  private static RawLock waitFor(String state, LockInfo info, String wait) throws Exception {
    return RawLock.send(base, state, info, "?wait=" + wait);
  }

  @Test
  @DisplayName(
      "A waiting LOCK whose client hangs up leaves the line at once and is never granted the lock;"
          + " the next connected client gets it")
  void clientThatHangsUpIsNeverGranted() throws Exception {
    String s = state("hangup");
    String name = "hangup";
    LockInfo a = lockInfo("hangup-a", "alice");
    assertThat(backend.lock(s, a, null).status()).isEqualTo(200);
    RawLock bob = waitFor(s, lockInfo("hangup-b", "bob"), "60s");
    eventually().until(() -> line(name).equals(List.of("bob")));

    bob.close();
    eventually().until(() -> line(name).equals(List.of("bob:away")));
    RawLock carol = waitFor(s, lockInfo("hangup-c", "carol"), "60s");
    eventually().until(() -> line(name).equals(List.of("bob:away", "carol")));

    assertThat(backend.unlock(s, a).status()).isEqualTo(200);
    assertThat(carol.answer(Duration.ofSeconds(10)).status()).isEqualTo(200);
    assertThat(holder(name)).isEqualTo("hangup-c");
    assertThat(backend.unlock(s, lockInfo("hangup-c", "carol")).status()).isEqualTo(200);
    // Nobody is left to hold it: bob's place is kept for his retry, but never granted to him.
    assertThat(holder(name)).isNull();
    eventually().during(Duration.ofMillis(500)).until(() -> holder(name) == null);
    carol.close();
  }

  @Test
  @DisplayName(
      "A client whose wait ran out keeps its place by its lock ID: when it asks again it is"
          + " served before those who came after it")
  void returningClientKeepsItsPlace() throws Exception {
    String s = state("ticket");
    String name = "ticket";
    LockInfo a = lockInfo("ticket-a", "alice");
    assertThat(backend.lock(s, a, null).status()).isEqualTo(200);
    LockInfo bobLock = lockInfo("ticket-b", "bob");
    RawLock bob = waitFor(s, bobLock, "1s");
    assertThat(bob.answer(Duration.ofSeconds(10)).status()).isEqualTo(423);
    bob.close();
    RawLock carol = waitFor(s, lockInfo("ticket-c", "carol"), "60s");
    eventually().until(() -> line(name).equals(List.of("bob:away", "carol")));

    // Terraform retries with the same lock ID: bob is back in his place, before carol.
    RawLock bobAgain = waitFor(s, bobLock, "60s");
    eventually().until(() -> line(name).equals(List.of("bob", "carol")));

    assertThat(backend.unlock(s, a).status()).isEqualTo(200);
    assertThat(bobAgain.answer(Duration.ofSeconds(10)).status()).isEqualTo(200);
    assertThat(carol.answered(Duration.ofMillis(300))).isFalse();
    assertThat(holder(name)).isEqualTo("ticket-b");
    assertThat(backend.unlock(s, bobLock).status()).isEqualTo(200);
    assertThat(carol.answer(Duration.ofSeconds(10)).status()).isEqualTo(200);
    assertThat(holder(name)).isEqualTo("ticket-c");
    backend.unlock(s, lockInfo("ticket-c", "carol"));
    bobAgain.close();
    carol.close();
  }

  @Test
  @DisplayName(
      "The lock is never held for a client that is away: the next connected client gets it at"
          + " once, and the away client, back, is still ahead of those who came after it")
  void awayClientIsPassedOverOnceNeverSentToTheBack() throws Exception {
    String s = state("passed");
    String name = "passed";
    LockInfo a = lockInfo("passed-a", "alice");
    assertThat(backend.lock(s, a, null).status()).isEqualTo(200);
    LockInfo bobLock = lockInfo("passed-b", "bob");
    RawLock bob = waitFor(s, bobLock, "1s");
    assertThat(bob.answer(Duration.ofSeconds(10)).status()).isEqualTo(423);
    bob.close();
    LockInfo carolLock = lockInfo("passed-c", "carol");
    RawLock carol = waitFor(s, carolLock, "60s");
    // Carol's place is taken before dave asks: the two arrive in that order.
    eventually().until(() -> line(name).equals(List.of("bob:away", "carol")));
    RawLock dave = waitFor(s, lockInfo("passed-d", "dave"), "60s");
    eventually().until(() -> line(name).equals(List.of("bob:away", "carol", "dave")));

    assertThat(backend.unlock(s, a).status()).isEqualTo(200);
    // Bob is away: carol, the first connected, gets the lock at once.
    assertThat(carol.answer(Duration.ofSeconds(5)).status()).isEqualTo(200);
    eventually().until(() -> line(name).equals(List.of("bob:away", "dave")));

    RawLock bobAgain = waitFor(s, bobLock, "60s");
    eventually().until(() -> line(name).equals(List.of("bob", "dave")));
    assertThat(backend.unlock(s, carolLock).status()).isEqualTo(200);
    assertThat(bobAgain.answer(Duration.ofSeconds(10)).status()).isEqualTo(200);
    assertThat(dave.answered(Duration.ofMillis(300))).isFalse();
    backend.unlock(s, bobLock);
    assertThat(dave.answer(Duration.ofSeconds(10)).status()).isEqualTo(200);
    backend.unlock(s, lockInfo("passed-d", "dave"));
    for (RawLock r : List.of(bobAgain, carol, dave)) {
      r.close();
    }
  }

  @Test
  @DisplayName("Connected waiters are granted the lock in the order they arrived")
  void waitersAreServedInOrderOfArrival() throws Exception {
    String s = state("fifo-clients");
    String name = "fifo-clients";
    LockInfo a = lockInfo("fifo-a", "first");
    assertThat(backend.lock(s, a, null).status()).isEqualTo(200);
    // Arrival order deliberately differs from any order of the names or IDs.
    List<String> arrivals = List.of("w-3", "w-1", "w-4", "w-0", "w-2");
    List<RawLock> waiting = new ArrayList<>();
    for (int i = 0; i < arrivals.size(); i++) {
      String who = arrivals.get(i);
      waiting.add(waitFor(s, lockInfo("id-" + who, who), "60s"));
      List<String> expected = arrivals.subList(0, i + 1);
      eventually().until(() -> line(name).equals(expected));
    }
    List<String> granted = new ArrayList<>();
    backend.unlock(s, a);
    for (int i = 0; i < arrivals.size(); i++) {
      RawLock next = null;
      long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
      while (next == null && System.nanoTime() < deadline) {
        for (RawLock w : waiting) {
          if (!granted.contains(w.info().who()) && w.answered(Duration.ofMillis(10))) {
            next = w;
            break;
          }
        }
      }
      assertThat(next).as("a waiter was granted the lock").isNotNull();
      assertThat(next.answer(Duration.ZERO).status()).isEqualTo(200);
      granted.add(next.info().who());
      assertThat(holder(name)).isEqualTo(next.info().id());
      backend.unlock(s, next.info());
    }
    assertThat(granted).containsExactlyElementsOf(arrivals);
    waiting.forEach(RawLock::close);
  }

  @Test
  @DisplayName(
      "Under many clients that hang up while they wait, the lock never stays with one of them: it"
          + " always returns to a connected client or is free")
  void noGhostHoldersUnderConcurrency() throws Exception {
    String s = state("ghosts");
    String name = "ghosts";
    Set<String> vanished = ConcurrentHashMap.newKeySet();
    Map<String, Long> heldSince = new ConcurrentHashMap<>();
    List<String> violations = Collections.synchronizedList(new ArrayList<>());
    SharedIndexInformer<Lease> watch =
        harness
            .client()
            .leases()
            .inNamespace(NAMESPACE)
            .withName("lock-tfstate-default-" + name)
            .inform(
                OnChange.of(
                    (Lease l) -> {
                      String h = l.getSpec() == null ? null : l.getSpec().getHolderIdentity();
                      heldSince.clear();
                      if (h != null) {
                        heldSince.put(h, System.nanoTime());
                      }
                    }));
    ExecutorService pool = Executors.newFixedThreadPool(16);
    CountDownLatch done = new CountDownLatch(16);
    for (int c = 0; c < 16; c++) {
      int index = c;
      pool.submit(
          () -> {
            Random random = new Random(index);
            try {
              for (int round = 0; round < 12; round++) {
                String id = "ghost-" + index + "-" + round;
                LockInfo info = lockInfo(id, "client-" + index);
                if (index % 4 == 0) {
                  // An honest client: waits, holds briefly, unlocks.
                  try (RawLock r = waitFor(s, info, "30s")) {
                    RawLock.Answer answer = r.answer(Duration.ofSeconds(30));
                    if (answer != null && answer.status() == 200) {
                      Thread.sleep(random.nextInt(20));
                      unlockOrReport(s, info, violations);
                    }
                  }
                } else {
                  // A client that gives up after a random moment, without a word.
                  RawLock r = waitFor(s, info, "30s");
                  RawLock.Answer answer = r.answer(Duration.ofMillis(random.nextInt(150)));
                  if (answer == null) {
                    // Hung up: the server either granted it just before it saw that (and said
                    // so), or never may.
                    answer = r.hangUp(Duration.ofSeconds(10)).orElse(null);
                  }
                  if (answer != null && answer.status() == 200) {
                    unlockOrReport(s, info, violations);
                  } else {
                    vanished.add(id);
                  }
                  r.close();
                }
              }
            } catch (Throwable t) {
              violations.add("client " + index + " failed: " + t);
            } finally {
              done.countDown();
            }
          });
    }
    // While they run: a vanished client may hold the lock only for the moment it takes to see
    // that its answer cannot be delivered.
    while (!done.await(50, TimeUnit.MILLISECONDS)) {
      heldSince.forEach(
          (h, since) -> {
            if (vanished.contains(h) && System.nanoTime() - since > 3_000_000_000L) {
              violations.add("lock held for 3s by " + h + ", a client that had hung up");
            }
          });
    }
    pool.shutdown();
    assertThat(violations).isEmpty();
    assertThat(vanished).isNotEmpty();
    eventually()
        .untilAsserted(
            () ->
                assertThat(holder(name))
                    .as("holder (hung up: %s)", vanished.contains(String.valueOf(holder(name))))
                    .isNull());
    eventually().during(Duration.ofSeconds(1)).until(() -> holder(name) == null);
    watch.close();
  }

  @Test
  @DisplayName(
      "status.queue lists waiting clients with kind client, their place and when they came")
  void statusListsWaitingClients() throws Exception {
    String s = state("listed");
    assertThat(backend.lock(s, lockInfo("listed-a", "alice"), null).status()).isEqualTo(200);
    RawLock bob = waitFor(s, lockInfo("listed-b", "bob@laptop"), "60s");
    eventually().until(() -> line("listed").equals(List.of("bob@laptop")));
    TerraformState state = harness.get("listed");
    QueueEntry entry = state.getStatus().getQueue().get(0);
    assertThat(entry.getKind()).isEqualTo("client");
    assertThat(entry.getPosition()).isEqualTo(1);
    assertThat(entry.getSince()).isNotBlank();
    assertThat(state.getStatus().getQueued()).isEqualTo(1);
    bob.close();
    backend.unlock(s, lockInfo("listed-a", "alice"));
  }
}
