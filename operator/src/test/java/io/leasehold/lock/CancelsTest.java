package io.leasehold.lock;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** Cancelling waiting clients on the lock Lease, against the in-memory API. */
class CancelsTest {

  private static EmbeddedKubernetes api;
  private static KubernetesClient clientA;
  private static KubernetesClient clientB;

  /** The replica holding the waiting requests. */
  private static LockService waiters;

  /** The replica that carries out the cancels (the leader). */
  private static LockService leader;

  private static final Caller ALICE = Caller.of("alice", "alice");

  @BeforeAll
  static void start() {
    api = EmbeddedKubernetes.start(0);
    clientA = api.newClient();
    clientB = api.newClient();
    LockService.Settings settings = new LockService.Settings(Duration.ofSeconds(30));
    waiters =
        new LockService(clientA, LockService.LeaseSource.NONE, Clock.systemUTC(), "a", settings);
    leader =
        new LockService(clientB, LockService.LeaseSource.NONE, Clock.systemUTC(), "b", settings);
  }

  @AfterAll
  static void stop() {
    clientA.close();
    clientB.close();
    api.close();
  }

  private static LockInfo info(String id) {
    return new LockInfo(id, "OperationTypeApply", "", id + "@ci", "1.11.4", "", "");
  }

  private static LockService.CancelRequest cancel(String lockId) {
    return new LockService.CancelRequest(
        false, Set.of(lockId), Map.of(), Instant.now().plusSeconds(1), "cancelled by a test");
  }

  @Test
  @DisplayName(
      "A cancel racing the holder's UNLOCK and the serving of the waiter: the waiter is either"
          + " granted (and the cancel leaves the holder alone) or cancelled (and never granted,"
          + " nor put back in line when its request is served again), never both")
  void aCancelRacingTheGrantNeverBothCancelsAndGrants() throws Exception {
    int cancelledRounds = 0;
    int grantedRounds = 0;
    for (int round = 0; round < 30; round++) {
      StateNames n = new StateNames("default", "race-" + round, "default");
      LockInfo holder = info("holder-" + round);
      LockInfo waiting = info("waiting-" + round);
      Map<String, LockService.Waiting> local =
          Map.of(waiting.id(), new LockService.Waiting(waiting, ALICE));
      assertThat(waiters.lock(n, holder, ALICE, false, Map.of()))
          .isInstanceOf(LockService.Granted.class);
      assertThat(waiters.lock(n, waiting, ALICE, true, local))
          .isInstanceOf(LockService.NotNow.class);

      CountDownLatch go = new CountDownLatch(1);
      CompletableFuture<LockService.CancelOutcome> cancelling =
          CompletableFuture.supplyAsync(
              () -> {
                await(go);
                return leader.cancelWaiting(n, cancel(waiting.id()));
              });
      CompletableFuture<Optional<LockService.Granted>> serving =
          CompletableFuture.supplyAsync(
              () -> {
                await(go);
                waiters.unlock(n, holder.id(), ALICE);
                return waiters.serve(n, local);
              });
      go.countDown();
      LockService.CancelOutcome outcome = cancelling.get(30, TimeUnit.SECONDS);
      Optional<LockService.Granted> granted = serving.get(30, TimeUnit.SECONDS);
      // The request is served again (the Lease changed): a cancelled one never gets in again.
      Optional<LockService.Granted> again = waiters.serve(n, local);
      String holderNow = waiters.fresh(n).getSpec().getHolderIdentity();

      boolean cancelled = outcome.cancelled().stream().anyMatch(t -> t.id().equals(waiting.id()));
      boolean wasGranted = granted.isPresent() || again.isPresent();
      assertThat(cancelled ^ wasGranted)
          .as("round %d: cancelled %s, granted %s, holder %s", round, outcome, granted, holderNow)
          .isTrue();
      if (cancelled) {
        cancelledRounds++;
        assertThat(holderNow).isNull();
        assertThat(LeaseLock.line(waiters.fresh(n)).find(waiting.id())).isEmpty();
        assertThat(waiters.cancelled(n, Set.of(waiting.id()))).containsKey(waiting.id());
      } else {
        grantedRounds++;
        assertThat(holderNow).isEqualTo(waiting.id());
        assertThat(outcome.leftAlone()).anyMatch(s -> s.contains("holds the lock"));
      }
    }
    // The cancel won at least once: a cancelled request was served again, and never got in.
    assertThat(cancelledRounds).isPositive();
    assertThat(grantedRounds + cancelledRounds).isEqualTo(30);
  }

  @Test
  @DisplayName(
      "A cancelled lock ID asking again is refused as cancelled, with the reason, also without"
          + " waiting; the holder and a client that arrived after the cancel's time are left alone")
  void aCancelledLockIdIsRefusedAndOthersAreLeftAlone() {
    StateNames n = new StateNames("default", "refused-again", "default");
    LockInfo holder = info("ra-holder");
    LockInfo early = info("ra-early");
    LockInfo late = info("ra-late");
    assertThat(waiters.lock(n, holder, ALICE, false, Map.of()))
        .isInstanceOf(LockService.Granted.class);
    Map<String, LockService.Waiting> local =
        Map.of(
            early.id(), new LockService.Waiting(early, ALICE),
            late.id(), new LockService.Waiting(late, ALICE));
    waiters.lock(n, early, ALICE, true, local);
    Instant between = LeaseLock.line(waiters.fresh(n)).find(early.id()).orElseThrow().since();
    waiters.lock(n, late, ALICE, true, local);
    Instant lateSince = LeaseLock.line(waiters.fresh(n)).find(late.id()).orElseThrow().since();
    assertThat(lateSince).isAfter(between);

    LockService.CancelOutcome outcome =
        leader.cancelWaiting(
            n,
            new LockService.CancelRequest(
                true, Set.of(holder.id()), Map.of(), between, "cancelled by a test"));

    assertThat(outcome.cancelled()).extracting(Ticket::id).containsExactly(early.id());
    assertThat(outcome.leftAlone())
        .anyMatch(s -> s.contains(holder.id()) && s.contains("holds the lock"))
        .anyMatch(s -> s.contains(late.id()) && s.contains("after the cancel's time"));
    assertThat(waiters.fresh(n).getSpec().getHolderIdentity()).isEqualTo(holder.id());
    assertThat(LeaseLock.line(waiters.fresh(n)).ids()).containsExactly(late.id());
    for (boolean waits : new boolean[] {false, true}) {
      LockService.Answer again = waiters.lock(n, early, ALICE, waits, local);
      assertThat(again).isInstanceOf(LockService.Refused.class);
      LockService.Refused refused = (LockService.Refused) again;
      assertThat(refused.refusal()).isEqualTo(LockService.Refusal.CANCELLED);
      assertThat(refused.message()).contains("cancelled by a test").contains(early.id());
    }
    assertThat(LeaseLock.line(waiters.fresh(n)).ids()).containsExactly(late.id());
  }

  @Test
  @DisplayName(
      "The Lease remembers at most the 32 newest cancels of the last hour; a record edited into"
          + " something else reads as none, and a cancel older than an hour no longer refuses")
  void theRecordStaysSmall() {
    io.fabric8.kubernetes.api.model.coordination.v1.Lease lease =
        LeaseLock.unlocked(new StateNames("default", "records", "default"));
    Instant start = Instant.parse("2026-01-01T00:00:00Z");
    for (int i = 0; i < 40; i++) {
      Instant at = start.plusSeconds(i);
      lease =
          Cancels.recorded(
              lease,
              java.util.List.of(
                  new Cancels.Cancelled(
                      Ticket.Kind.CLIENT, "id-" + i, "why " + "x".repeat(500), at)),
              at);
    }
    Instant now = start.plusSeconds(40);
    java.util.List<Cancels.Cancelled> kept = Cancels.recent(lease, now);
    assertThat(kept).hasSize(Cancels.MAX_KEPT);
    assertThat(kept.get(0).id()).isEqualTo("id-8");
    assertThat(Cancels.refusedLock(lease, "id-39", now)).isPresent();
    assertThat(Cancels.refusedLock(lease, "id-7", now)).isEmpty();
    assertThat(Cancels.refusedLock(lease, "id-39", start.plus(Cancels.KEPT).plusSeconds(40)))
        .isEmpty();
    assertThat(
            Cancels.recent(LeaseLock.withAnnotation(lease, Cancels.ANNOTATION, "{not a list"), now))
        .isEmpty();
  }

  private static void await(CountDownLatch go) {
    try {
      go.await();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }
}
