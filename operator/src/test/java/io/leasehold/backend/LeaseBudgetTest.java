package io.leasehold.backend;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LeaseSize;
import io.leasehold.lock.Line;
import io.leasehold.lock.LockInfo;
import io.leasehold.state.StateNames;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RawLock;
import io.leasehold.support.RunnerJobFixtures;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The lock Lease stays within what an API server stores (256 KiB of annotations), whatever the
 * clients send: a holder with the largest LockInfo taken, hundreds of runner Jobs with long names
 * in line, and 128 clients with the longest lock IDs and control characters everywhere.
 */
class LeaseBudgetTest {

  private static final int JOBS = 450;
  private static final int CLIENTS = Line.MAX_CLIENTS;

  private static OperatorHarness harness;
  private static BackendClient backend;
  private static String base;

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
    base = harness.startBackend(1 << 20);
    backend = new BackendClient(base);
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static Lease lease(String state) {
    return harness
        .client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName(new StateNames(NAMESPACE, state, "default").leaseName())
        .get();
  }

  /** A lock ID of 256 characters of 3 bytes each: the most room a lock ID takes. */
  private static String longId(int i) {
    String prefix = "c" + i + "-";
    return prefix + "€".repeat(LockInfo.MAX_ID - prefix.length());
  }

  /** A Who of control characters: 6 bytes each once escaped, 1020 bytes as stored. */
  private static String controlWho(int i) {
    return "\u0001".repeat(LockInfo.MAX_WHO / 6 - 1) + String.format("%06d", i).substring(0, 4);
  }

  @Test
  @DisplayName(
      "With the largest holder LockInfo, 450 runner Jobs with 63-character names and 128 waiting"
          + " clients with 256-character lock IDs and control characters in Who and Info, the"
          + " Lease's annotations stay within the 200 KiB budget as the API server counts them;"
          + " every client is in line or answered 423, which Terraform retries, a LockInfo too"
          + " large is refused naming the field, and the lock stays writable")
  void leaseStaysWithinBudget() throws Exception {
    TerraformState s = new TerraformState();
    s.getMetadata().setName("budget");
    s.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(s).create();
    await().atMost(Duration.ofSeconds(10)).until(() -> lease("budget") != null);
    String state = NAMESPACE + "/budget";

    // The holder: every field at its limit as stored, control characters included.
    LockInfo holder =
        new LockInfo(
            "h-" + "€".repeat(LockInfo.MAX_ID - 2),
            "\u0002".repeat(42),
            "\u0003".repeat(682) + "info",
            controlWho(0),
            "€".repeat(85),
            "\u0004".repeat(42),
            "\u0005".repeat(682) + "path");
    assertThat(holder.problem()).isEmpty();
    assertThat(backend.lock(state, holder, null).status()).isEqualTo(200);

    // A Who one character over the limit is refused, naming the field and the limit.
    LockInfo tooLarge =
        new LockInfo("too-large", "", "", "\u0001".repeat(171), "", "2026-11-26T12:00:00Z", "");
    BackendClient.Response refused = backend.lock(state, tooLarge, "?wait=5s");
    assertThat(refused.status()).isEqualTo(400);
    assertThat(refused.body()).contains("Who").contains("at most 1024 bytes");

    // Runner Jobs with long names wait in line behind the holder.
    ExecutorService pool = Executors.newFixedThreadPool(8);
    try {
      List<Future<?>> created = new ArrayList<>();
      for (int i = 0; i < JOBS; i++) {
        String prefix = String.format("budget-%03d-", i);
        String name = prefix + "x".repeat(63 - prefix.length());
        created.add(pool.submit(() -> RunnerJobFixtures.create(harness.client(), name, "budget")));
      }
      for (Future<?> f : created) {
        f.get(60, TimeUnit.SECONDS);
      }
    } finally {
      pool.shutdown();
    }
    await()
        .atMost(Duration.ofSeconds(60))
        .pollInterval(Duration.ofMillis(100))
        .until(() -> LeaseLock.line(lease("budget")).jobs() == JOBS);

    // The Lease as the API server stores it, watched while the clients come.
    AtomicLong largest = new AtomicLong(LeaseSize.of(lease("budget")));
    AtomicBoolean watching = new AtomicBoolean(true);
    Thread watcher =
        new Thread(
            () -> {
              while (watching.get()) {
                Lease l = lease("budget");
                largest.accumulateAndGet(LeaseSize.of(l), Math::max);
                Thread.onSpinWait();
              }
            });
    watcher.start();

    List<RawLock> clients = new ArrayList<>();
    try {
      for (int i = 0; i < CLIENTS; i++) {
        LockInfo info =
            new LockInfo(
                longId(i),
                "OperationTypeApply",
                "\u0007".repeat(600),
                controlWho(i),
                "1.11.4",
                "2026-11-26T12:00:00Z",
                "\u0008".repeat(600));
        assertThat(info.problem()).isEmpty();
        clients.add(RawLock.send(base, state, info, "?wait=20s"));
        // Each is in line or answered before the next comes: the order of arrival is known.
        RawLock sent = clients.get(i);
        await()
            .atMost(Duration.ofSeconds(15))
            .until(
                () ->
                    sent.answered(Duration.ofMillis(1))
                        || LeaseLock.line(lease("budget")).find(sent.info().id()).isPresent());
      }
    } finally {
      watching.set(false);
      watcher.join();
    }

    Lease stored = lease("budget");
    assertThat(LeaseSize.of(stored)).isLessThanOrEqualTo(LeaseSize.BUDGET);
    assertThat(largest.get())
        .as("the largest the Lease's annotations grew to")
        .isLessThanOrEqualTo(LeaseSize.BUDGET)
        .isLessThan(LeaseSize.API_LIMIT);
    assertThat(LeaseLock.line(stored).jobs()).isEqualTo(JOBS);
    // The holder's LockInfo is stored exactly as it was sent.
    assertThat(
            LockInfo.parse(
                stored.getMetadata().getAnnotations().get(LeaseLock.LOCK_INFO_ANNOTATION)))
        .contains(holder);

    List<RawLock> inLine =
        clients.stream()
            .filter(c -> LeaseLock.line(stored).find(c.info().id()).isPresent())
            .toList();
    List<RawLock> turnedAway = clients.stream().filter(c -> !inLine.contains(c)).toList();
    assertThat(inLine).as("clients in line").isNotEmpty();
    assertThat(turnedAway).as("clients the Lease had no room for").isNotEmpty();
    // The line was served in order of arrival: those who found no room came after those in line.
    assertThat(clients.subList(0, inLine.size())).containsExactlyElementsOf(inLine);
    for (RawLock c : turnedAway) {
      RawLock.Answer a = c.answer(Duration.ofSeconds(5));
      assertThat(a.status()).as(c.info().id()).isEqualTo(423);
      LockInfo shown = LockInfo.parse(a.body()).orElseThrow();
      assertThat(shown.id()).startsWith(holder.id() + " (refused by leasehold: ");
      assertThat(shown.info()).contains("line for this state is full").contains("retry");
    }
    // Those in line are answered 423 with the holder when their wait runs out.
    for (RawLock c : inLine) {
      RawLock.Answer a = c.answer(Duration.ofSeconds(40));
      assertThat(a).as(c.info().id()).isNotNull();
      assertThat(a.status()).as(c.info().id()).isEqualTo(423);
      assertThat(LockInfo.parse(a.body()).map(LockInfo::id).orElseThrow())
          .startsWith(holder.id() + " (held by ");
    }
    clients.forEach(RawLock::close);

    // The lock is still writable: the holder releases it, and a Job in line gets it.
    assertThat(backend.unlock(state, holder).status()).isEqualTo(200);
    await()
        .atMost(Duration.ofSeconds(60))
        .untilAsserted(
            () ->
                assertThat(lease("budget").getSpec().getHolderIdentity())
                    .startsWith(LeaseLock.JOB_PREFIX + "budget-"));
    assertThat(LeaseSize.of(lease("budget"))).isLessThanOrEqualTo(LeaseSize.BUDGET);
  }
}
