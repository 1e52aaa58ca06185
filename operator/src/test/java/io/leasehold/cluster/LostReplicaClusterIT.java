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
 * A replica that dies while clients wait on it: its clients' places in line must not hold up the
 * runner Jobs and clients behind them once the replica is back (a container restarted in the same
 * pod keeps the pod's name, so the replica's identity).
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
