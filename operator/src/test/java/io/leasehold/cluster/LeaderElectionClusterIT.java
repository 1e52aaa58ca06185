package io.leasehold.cluster;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LockInfo;
import io.leasehold.support.BackendHttp;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

/**
 * Two replicas electing a leader on a real Lease: both serve the backend, one reconciles, and the
 * locks of running Jobs and the line of waiting clients survive the leader being killed or stopped.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class LeaderElectionClusterIT {

  private static final Duration WAIT = Duration.ofSeconds(60);

  private static RealCluster cluster;
  private static KubernetesClient admin;
  private static String ns;
  private static ClusterOperator operator;
  private static String ca;
  private static String runnerToken;

  @BeforeAll
  static void start() throws Exception {
    cluster = RealCluster.get();
    admin = cluster.admin();
    ns = cluster.newNamespace("leader");
    ChartInstall chart = ChartInstall.apply(cluster, ns);
    ChartInstall.awaitCrd(admin);
    operator = ClusterOperator.start(cluster, chart, ns, 2);
    ca = operator.caPem(WAIT);
    runnerToken = cluster.token(ns, ChartInstall.RUNNER, "leasehold", Duration.ofMinutes(30));
    await().atMost(WAIT).until(() -> operator.leader().isPresent());
  }

  @AfterAll
  static void stop() {
    if (Boolean.getBoolean("leasehold.cluster.keep")) {
      return;
    }
    if (operator != null) {
      operator.close();
    }
    if (admin != null && ns != null) {
      admin.namespaces().withName(ns).delete();
    }
  }

  /** Every test starts with both replicas running. */
  @BeforeEach
  void bothReplicasRun() {
    for (ClusterOperator.Replica r : operator.replicas()) {
      if (!r.alive()) {
        r.restart();
      }
    }
  }

  private static ClusterBackend on(ClusterOperator.Replica replica) {
    return ClusterBackend.of(replica, ns, ca, runnerToken);
  }

  private static ClusterOperator.Replica leader() {
    await().atMost(WAIT).until(() -> operator.leader().isPresent());
    return operator.leader().orElseThrow();
  }

  private static ClusterOperator.Replica other(ClusterOperator.Replica one) {
    return operator.replicas().stream().filter(r -> r != one).findFirst().orElseThrow();
  }

  // Ordered only to restart as few replicas as possible: each test starts with both running.
  @Test
  @Order(1)
  @DisplayName(
      "Of two replicas exactly one leads: the election Lease names it, both say so in /readyz, and"
          + " both serve the backend on the same lock")
  void oneLeadsBothServe() {
    String state = newState("both", 300);
    ClusterOperator.Replica leader = leader();
    ClusterOperator.Replica follower = other(leader);
    assertThat(leader.readiness()).contains("leader " + leader.podName() + " (this replica)");
    assertThat(follower.readiness())
        .contains("leader " + leader.podName())
        .contains("does not reconcile and serves the Terraform backend");

    LockInfo info = BackendHttp.lockInfo(UUID.randomUUID().toString(), "both");
    assertThat(on(follower).lock(state, info).status()).isEqualTo(200);
    ClusterBackend.Answer busy =
        on(leader).lock(state, BackendHttp.lockInfo(UUID.randomUUID().toString(), "other"));
    assertThat(busy.status()).isEqualTo(423);
    assertThat(busy.body()).contains(info.id());
    assertThat(on(leader).unlock(state, info).status()).isEqualTo(200);
    assertThat(holder(state)).isEmpty();
  }

  @Test
  @Order(3)
  @DisplayName(
      "When the leader is killed (SIGKILL) while a runner Job holds the lock, the Job keeps it,"
          + " renewed by the other replica once it leads; when the Job's pod ends the new leader"
          + " hands the lock to the next Job, then to the ?wait= clients in the order they came,"
          + " the one whose replica died first once it asks the survivor again")
  void killedLeaderFailsOver() {
    // The Job's lock outlasts the leader Lease's 15 s, and is renewed every 15 s: the new leader
    // finds its renewal due the moment it leads.
    Duration failover = failover("killed", ClusterOperator.Replica::kill, "SIGKILL", 45);
    assertThat(failover)
        .as("a killed leader is replaced once its leader Lease (15 s) has expired")
        .isLessThan(Duration.ofSeconds(30));
  }

  @Test
  @Order(2)
  @DisplayName(
      "When the leader is stopped gracefully (SIGTERM) while a runner Job holds the lock, it hands"
          + " leadership on at once, its waiting LOCKs are answered 503, and the Job keeps its lock,"
          + " renewed by the new leader; when the Job's pod ends the new leader hands the lock to the"
          + " next Job, then to the ?wait= clients in the order they came")
  void stoppedLeaderFailsOver() {
    Duration failover = failover("stopped", ClusterOperator.Replica::terminate, "SIGTERM", 9);
    assertThat(failover)
        .as(
            "a leader stopped gracefully releases its leader Lease, so the other replica leads"
                + " at its next try (within 1.8 s) of the release, not once the lease's 15 s"
                + " ran out")
        .isLessThan(Duration.ofSeconds(10));
  }

  /**
   * A runner Job holds the lock, a second Job waits, then three ?wait= clients: the first on the
   * leader, two on the other replica. The leader is stopped by {@code stop}; the first client asks
   * the survivor again with its lock ID, as Terraform retries. Returns the time from the stop to
   * the survivor's leadership.
   */
  private Duration failover(
      String name, Consumer<ClusterOperator.Replica> stop, String how, int leaseSeconds) {
    String state = newState(name, leaseSeconds);
    ClusterOperator.Replica leader = leader();
    ClusterOperator.Replica survivor = other(leader);
    try (LeaseHolders lease = LeaseHolders.watch(admin, ns, "lock-tfstate-default-" + state)) {
      admin.resource(ClusterFixtures.runnerJob(ns, name + "-first", state, true)).create();
      Pod running = ClusterFixtures.awaitRunningPod(admin, ns, name + "-first", WAIT);
      String jobLock = holder(state);
      assertThat(jobLock).contains(name + "-first");
      admin.resource(ClusterFixtures.runnerJob(ns, name + "-second", state, false)).create();
      await().atMost(WAIT).until(() -> queued(state) == 1);
      LockInfo first = BackendHttp.lockInfo(UUID.randomUUID().toString(), "first-client");
      LockInfo second = BackendHttp.lockInfo(UUID.randomUUID().toString(), "second-client");
      LockInfo third = BackendHttp.lockInfo(UUID.randomUUID().toString(), "third-client");
      ClusterBackend.WaitingLock firstOnLeader = on(leader).lockWaiting(state, first, "5m");
      await().atMost(WAIT).until(() -> queued(state) == 2);
      ClusterBackend.WaitingLock secondWaits = on(survivor).lockWaiting(state, second, "5m");
      await().atMost(WAIT).until(() -> queued(state) == 3);
      ClusterBackend.WaitingLock thirdWaits = on(survivor).lockWaiting(state, third, "5m");
      await().atMost(WAIT).until(() -> queued(state) == 4);

      Instant stopped = Instant.now();
      CompletableFuture<Void> stopping = CompletableFuture.runAsync(() -> stop.accept(leader));
      await()
          .atMost(WAIT)
          .pollInterval(Duration.ofMillis(50))
          .until(() -> operator.leader().filter(r -> r == survivor).isPresent());
      Duration failover = Duration.between(stopped, Instant.now());
      System.out.printf("failover after %s of the leader: %d ms%n", how, failover.toMillis());
      stopping.join();
      assertThat(leader.alive()).isFalse();
      if ("SIGTERM".equals(how)) {
        ClusterBackend.Answer retry = firstOnLeader.answer(WAIT);
        assertThat(retry).as("a stopping replica answers its waiting LOCKs").isNotNull();
        assertThat(retry.status()).isEqualTo(503);
      } else {
        await().atMost(WAIT).until(firstOnLeader::cutOff);
      }
      // Terraform's HTTP client retries, with the same lock ID; the Service sends it elsewhere.
      ClusterBackend.WaitingLock firstAgain = on(survivor).lockWaiting(state, first, "5m");

      assertThat(holder(state)).as("the Job keeps its lock").isEqualTo(jobLock);
      await()
          .atMost(WAIT)
          .untilAsserted(
              () ->
                  assertThat(renewed(state))
                      .as("renewed by the new leader")
                      .isAfter(stopped.plus(failover)));
      assertThat(ClusterFixtures.pods(admin, ns, name + "-second")).isEmpty();

      ClusterFixtures.release(admin, running);
      await()
          .atMost(WAIT)
          .until(() -> !ClusterFixtures.pods(admin, ns, name + "-second").isEmpty());
      ClusterBackend.Answer toFirst = firstAgain.answer(WAIT);
      assertThat(toFirst).as("the first client is served once the second Job ended").isNotNull();
      assertThat(toFirst.status()).isEqualTo(200);
      assertThat(secondWaits.answered()).as("the second client still waits").isFalse();
      assertThat(on(survivor).unlock(state, first).status()).isEqualTo(200);
      ClusterBackend.Answer toSecond = secondWaits.answer(WAIT);
      assertThat(toSecond).isNotNull();
      assertThat(toSecond.status()).isEqualTo(200);
      assertThat(thirdWaits.answered()).as("the third client still waits").isFalse();
      assertThat(on(survivor).unlock(state, second).status()).isEqualTo(200);
      ClusterBackend.Answer toThird = thirdWaits.answer(WAIT);
      assertThat(toThird).isNotNull();
      assertThat(toThird.status()).isEqualTo(200);
      assertThat(on(survivor).unlock(state, third).status()).isEqualTo(200);

      List<String> held = lease.held();
      assertThat(held).hasSize(5);
      assertThat(held.get(0)).isEqualTo(jobLock);
      assertThat(held.get(1)).contains(name + "-second");
      assertThat(held.subList(2, 5)).containsExactly(first.id(), second.id(), third.id());
      return failover;
    }
  }

  private static String newState(String name, int leaseSeconds) {
    TerraformState state = ClusterFixtures.state(ns, name);
    state.getSpec().getLock().setLeaseDurationSeconds(leaseSeconds);
    admin.resource(state).create();
    ClusterFixtures.awaitReady(admin, ns, name);
    return name;
  }

  private static int queued(String state) {
    var s = ClusterFixtures.status(admin, ns, state);
    return s == null || s.getQueued() == null ? 0 : s.getQueued();
  }

  private static String holder(String state) {
    Lease lease = admin.leases().inNamespace(ns).withName("lock-tfstate-default-" + state).get();
    return lease == null || lease.getSpec().getHolderIdentity() == null
        ? ""
        : lease.getSpec().getHolderIdentity();
  }

  private static Instant renewed(String state) {
    Lease l = admin.leases().inNamespace(ns).withName("lock-tfstate-default-" + state).get();
    var t =
        l.getSpec().getRenewTime() != null
            ? l.getSpec().getRenewTime()
            : l.getSpec().getAcquireTime();
    return t.toInstant();
  }
}
