package io.leasehold.cluster;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.support.RawLock;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.Map;
import javax.net.ssl.SSLContext;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Replicas that die, stall or stop while clients wait on them and Jobs run: a dead replica's
 * clients' places in line never hold up the runner Jobs and clients behind them (whether it comes
 * back in the same pod or not), and no stall or stop of the leader lets anyone take a running Job's
 * lock, however short its lease.
 */
class LostReplicaClusterIT {

  private static final Duration WAIT = Duration.ofSeconds(60);

  private static RealCluster cluster;
  private static KubernetesClient admin;
  private static String ns;
  private static ClusterOperator operator;
  private static String token;

  @BeforeAll
  static void start() {
    cluster = RealCluster.get();
    admin = cluster.admin();
    ns = cluster.newNamespace("lost");
    ChartInstall chart = ChartInstall.apply(cluster, ns);
    ClusterFixtures.awaitCrdQuietly(admin);
    operator = ClusterOperator.start(cluster, chart, ns, 2);
    token = ClusterFixtures.grantState(cluster, ns, "client", Duration.ofHours(1), "get", "update");
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

  @Test
  @DisplayName(
      "A replica killed (SIGKILL) while a client waits on it, and restarted: the client's place"
          + " does not hold up the Job behind it when the running Job ends")
  void aKilledReplicasWaitersNeverBlockTheLine() throws Exception {
    String state = "killed";
    admin.resource(ClusterFixtures.state(ns, state)).create();
    ClusterFixtures.awaitReady(admin, ns, state);
    admin.resource(ClusterFixtures.runnerJob(ns, "running", state, true)).create();
    Pod running = ClusterFixtures.awaitRunningPod(admin, ns, "running", WAIT);

    ClusterOperator.Replica replica = operator.replica(0);
    SSLContext tls = ClusterHttp.trusting(operator.caPem(WAIT));
    LockInfo info =
        new LockInfo(
            "waiter-1",
            "OperationTypeApply",
            "",
            "someone@laptop",
            "1.11.4",
            Instant.now().toString(),
            "");
    RawLock waiting =
        RawLock.send(
            replica.backendUrl() + "/v1/states/",
            ns + "/" + state,
            info,
            "?wait=60s",
            Map.of("Authorization", basic()),
            tls);
    await().atMost(WAIT).until(() -> lineHas(state, "waiter-1"));
    admin.resource(ClusterFixtures.runnerJob(ns, "next", state, true)).create();
    await().atMost(WAIT).until(() -> lineSize(state) == 2);

    replica.kill();
    waiting.close();
    replica.restart();

    ClusterFixtures.release(admin, running);
    Pod next = ClusterFixtures.awaitRunningPod(admin, ns, "next", WAIT);
    assertThat(next).as("the Job behind the lost client runs").isNotNull();
    ClusterFixtures.release(admin, next);
  }

  private static RawLock waitOn(ClusterOperator.Replica replica, String state, String id)
      throws Exception {
    LockInfo info =
        new LockInfo(
            id, "OperationTypeApply", "", id + "@laptop", "1.11.4", Instant.now().toString(), "");
    return RawLock.send(
        replica.backendUrl() + "/v1/states/",
        ns + "/" + state,
        info,
        "?wait=120s",
        Map.of("Authorization", basic()),
        ClusterHttp.trusting(operator.caPem(WAIT)));
  }

  private static ClusterOperator.Replica other(ClusterOperator.Replica r) {
    return operator.replicas().stream().filter(x -> x != r).findFirst().orElseThrow();
  }

  @Test
  @DisplayName(
      "A replica killed for good while clients wait on it: a client waiting on the other replica"
          + " gets the freed lock without waiting for the dead replica's heartbeat to time out"
          + " (the dead replica is asked directly and refuses), and the dead replica's places are"
          + " marked away in that same write")
  void aDeadReplicasPlacesAreDroppedWithoutItComingBack() throws Exception {
    String state = "dead-for-good";
    admin.resource(ClusterFixtures.state(ns, state)).create();
    ClusterFixtures.awaitReady(admin, ns, state);
    ClusterOperator.Replica doomed = operator.replica(0);
    ClusterOperator.Replica survivor = operator.replica(1);
    RawLock holder = waitOn(survivor, state, "holder");
    assertThat(holder.answer(WAIT).status()).isEqualTo(200);
    java.util.List<RawLock> onDoomed = new java.util.ArrayList<>();
    for (int i = 0; i < 8; i++) {
      onDoomed.add(waitOn(doomed, state, "doomed-" + i));
    }
    await().atMost(WAIT).until(() -> lineSize(state) == 8);
    RawLock live = waitOn(survivor, state, "live");
    await().atMost(WAIT).until(() -> lineHas(state, "live"));

    doomed.kill();
    onDoomed.forEach(RawLock::close);
    long killed = System.nanoTime();
    unlock(survivor, state, "holder");
    assertThat(live.answer(WAIT).status()).isEqualTo(200);
    long waited = (System.nanoTime() - killed) / 1_000_000;
    System.out.printf("lock granted past a killed replica's 8 places after %d ms%n", waited);
    assertThat(waited)
        .as("granted long before the dead replica's heartbeat (12 s) times out")
        .isLessThan(6_000);
    assertThat(lease(state).getSpec().getHolderIdentity()).isEqualTo("live");
    assertThat(LeaseLock.line(lease(state)).tickets())
        .as("the dead replica's places: away, kept for their clients' retries elsewhere")
        .hasSize(8)
        .allMatch(t -> t.gone() != null);
    unlock(survivor, state, "live");
    doomed.restart();
    doomed.awaitHealthy(WAIT);
  }

  @Test
  @DisplayName(
      "The leader paused (SIGSTOP) for four times a 5 s lease while its admitted Job runs: a"
          + " client waiting on the other replica is not granted the lock until the Job ends")
  void aStalledLeaderNeverLetsARunningJobsLockGo() throws Exception {
    jobOutlivesItsLeader(
        "stalled",
        leader -> {
          leader.pause();
          return leader::resume;
        });
  }

  @Test
  @DisplayName(
      "The leader stopped gracefully (SIGTERM, a rolling update) while its admitted Job runs with"
          + " a 5 s lease: the other replica leads within seconds, and a client waiting on it is not"
          + " granted the lock until the Job ends")
  void aStoppedLeaderNeverLetsARunningJobsLockGo() throws Exception {
    jobOutlivesItsLeader(
        "terminated",
        leader -> {
          leader.terminate();
          long stopped = System.nanoTime();
          await().atMost(WAIT).until(() -> operator.leader().map(l -> l != leader).orElse(false));
          System.out.printf(
              "another replica led %d ms after the leader's SIGTERM ended%n",
              (System.nanoTime() - stopped) / 1_000_000);
          return () -> {
            leader.restart();
            leader.awaitHealthy(WAIT);
          };
        });
  }

  private interface Fault {
    /** Does it, and returns how to undo it. */
    Runnable apply(ClusterOperator.Replica leader) throws Exception;
  }

  private static void jobOutlivesItsLeader(String state, Fault fault) throws Exception {
    var spec = ClusterFixtures.state(ns, state);
    spec.getSpec().getLock().setLeaseDurationSeconds(5);
    admin.resource(spec).create();
    ClusterFixtures.awaitReady(admin, ns, state);
    admin.resource(ClusterFixtures.runnerJob(ns, state + "-run", state, true)).create();
    Pod running = ClusterFixtures.awaitRunningPod(admin, ns, state + "-run", WAIT);
    ClusterOperator.Replica leader = operator.leader().orElseThrow();
    RawLock client = waitOn(other(leader), state, state + "-client");
    await().atMost(WAIT).until(() -> lineHas(state, state + "-client"));

    Runnable undo = fault.apply(leader);
    try {
      // Four lease durations, well past any renewal the lease would need.
      assertThat(client.answered(Duration.ofSeconds(20)))
          .as("a client is granted nothing while the Job runs")
          .isFalse();
      assertThat(lease(state).getSpec().getHolderIdentity()).startsWith("job/" + state + "-run/");
    } finally {
      undo.run();
    }
    assertThat(client.answered(Duration.ofSeconds(3))).isFalse();
    ClusterFixtures.release(admin, running);
    assertThat(client.answer(WAIT).status())
        .as("the client gets the lock once the Job ended")
        .isEqualTo(200);
    unlock(other(leader), state, state + "-client");
  }

  private static void unlock(ClusterOperator.Replica replica, String state, String id)
      throws Exception {
    var http =
        java.net.http.HttpClient.newBuilder()
            .sslContext(ClusterHttp.trusting(operator.caPem(WAIT)))
            .build();
    LockInfo info = new LockInfo(id, "OperationTypeApply", "", "", "", "", "");
    var response =
        http.send(
            java.net.http.HttpRequest.newBuilder(
                    java.net.URI.create(
                        replica.backendUrl() + "/v1/states/" + ns + "/" + state + "/lock"))
                .method("UNLOCK", java.net.http.HttpRequest.BodyPublishers.ofString(info.toJson()))
                .header("Authorization", basic())
                .build(),
            java.net.http.HttpResponse.BodyHandlers.ofString());
    assertThat(response.statusCode()).as(response.body()).isEqualTo(200);
  }

  private static String basic() {
    return "Basic "
        + Base64.getEncoder().encodeToString(("client:" + token).getBytes(StandardCharsets.UTF_8));
  }

  private static Lease lease(String state) {
    return admin.leases().inNamespace(ns).withName("lock-tfstate-default-" + state).get();
  }

  private static boolean lineHas(String state, String id) {
    Lease l = lease(state);
    return l != null && LeaseLock.line(l).find(id).isPresent();
  }

  private static int lineSize(String state) {
    Lease l = lease(state);
    return l == null ? 0 : LeaseLock.line(l).tickets().size();
  }
}
