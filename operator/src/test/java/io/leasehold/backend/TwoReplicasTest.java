package io.leasehold.backend;

import static io.leasehold.backend.BackendClient.lockInfo;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.cli.Replica;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.lock.Ticket;
import io.leasehold.operator.Leadership;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.support.RawLock;
import io.leasehold.support.RunnerJobFixtures;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Two replicas, each serving the backend, over one API: one line per state whichever replica a
 * client reaches, kept on the Lease.
 */
class TwoReplicasTest {

  private static final String NS = "default";
  private static EmbeddedKubernetes api;
  private static KubernetesClient user;
  private static final List<KubernetesClient> clients = new ArrayList<>();
  private static final Replica[] replicas = new Replica[2];
  private static BackendClient[] http = new BackendClient[2];

  @BeforeAll
  static void start() {
    api = EmbeddedKubernetes.start(0);
    user = api.newClient();
    for (int i = 0; i < 2; i++) {
      startReplica(i);
    }
  }

  private static void startReplica(int i) {
    KubernetesClient client = api.newClient();
    clients.add(client);
    replicas[i] =
        Replica.start(
            client,
            new LeaseholdOperator.Options(Set.of(), Optional.of(NS), "replica-" + i)
                .withElection(
                    new Leadership.Timing(
                        Duration.ofSeconds(3), Duration.ofSeconds(2), Duration.ofMillis(300)))
                .withLocks(new LockService.Settings(Duration.ofSeconds(30))),
            new Replica.Backend(
                Access.NONE,
                JobPods.NONE,
                new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(5)),
                1 << 20));
    http[i] = new BackendClient(replicas[i].url());
  }

  @AfterAll
  static void stop() {
    for (Replica r : replicas) {
      if (r != null) {
        r.close();
      }
    }
    clients.forEach(KubernetesClient::close);
    user.close();
    api.close();
  }

  private static ConditionFactory eventually() {
    return await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(10));
  }

  private static String state(String name) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NS);
    user.resource(s).create();
    eventually().until(() -> lease(name) != null);
    return NS + "/" + name;
  }

  private static Lease lease(String name) {
    return user.leases().inNamespace(NS).withName("lock-tfstate-default-" + name).get();
  }

  private static List<String> line(String name) {
    return LeaseLock.line(lease(name)).tickets().stream().map(Ticket::id).toList();
  }

  private static String holder(String name) {
    Lease l = lease(name);
    return l == null || l.getSpec() == null ? null : l.getSpec().getHolderIdentity();
  }

  @Test
  @DisplayName(
      "Clients waiting on different replicas are served in one order of arrival, whichever"
          + " replica they reached")
  void oneLineAcrossReplicas() throws Exception {
    String s = state("across");
    LockInfo first = lockInfo("across-0", "first");
    assertThat(http[0].lock(s, first, null).status()).isEqualTo(200);
    // Arrivals alternate between the replicas, not in an order either could guess alone.
    int[] via = {1, 0, 1, 1, 0, 0, 1};
    List<RawLock> waiting = new ArrayList<>();
    List<String> arrived = new ArrayList<>();
    for (int i = 0; i < via.length; i++) {
      LockInfo info = lockInfo("across-w" + i, "w" + i + "@replica-" + via[i]);
      waiting.add(RawLock.send(replicas[via[i]].url(), s, info, "?wait=60s"));
      arrived.add(info.id());
      List<String> expected = List.copyOf(arrived);
      eventually().until(() -> line("across").equals(expected));
    }
    http[1].unlock(s, first);
    List<String> granted = new ArrayList<>();
    for (int n = 0; n < via.length; n++) {
      RawLock next = null;
      long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
      while (next == null && System.nanoTime() < deadline) {
        for (RawLock w : waiting) {
          if (!granted.contains(w.info().id()) && w.answered(Duration.ofMillis(5))) {
            next = w;
          }
        }
      }
      assertThat(next).as("granted after " + granted).isNotNull();
      assertThat(next.answer(Duration.ZERO).status()).isEqualTo(200);
      granted.add(next.info().id());
      assertThat(holder("across")).isEqualTo(next.info().id());
      // The holder unlocks through whichever replica: the other replica serves the next.
      http[n % 2].unlock(s, next.info());
    }
    assertThat(granted).containsExactlyElementsOf(arrived);
    waiting.forEach(RawLock::close);
  }

  @Test
  @DisplayName(
      "A client that hangs up on one replica is passed over at once by the other, and a lock held"
          + " through one replica blocks clients of the other")
  void hangUpOnOneReplicaIsSeenByTheOther() throws Exception {
    String s = state("hangup2");
    LockInfo first = lockInfo("hangup2-a", "first");
    assertThat(http[1].lock(s, first, null).status()).isEqualTo(200);
    assertThat(http[0].lock(s, lockInfo("hangup2-x", "x"), null).status()).isEqualTo(423);
    RawLock gone = RawLock.send(replicas[1].url(), s, lockInfo("hangup2-b", "b"), "?wait=60s");
    eventually().until(() -> line("hangup2").equals(List.of("hangup2-b")));
    RawLock next = RawLock.send(replicas[0].url(), s, lockInfo("hangup2-c", "c"), "?wait=60s");
    eventually().until(() -> line("hangup2").equals(List.of("hangup2-b", "hangup2-c")));
    gone.close();
    eventually().until(() -> LeaseLock.line(lease("hangup2")).tickets().get(0).gone() != null);
    http[0].unlock(s, first);
    assertThat(next.answer(Duration.ofSeconds(5)).status()).isEqualTo(200);
    assertThat(holder("hangup2")).isEqualTo("hangup2-c");
    http[1].unlock(s, lockInfo("hangup2-c", "c"));
    next.close();
  }

  @Test
  @DisplayName(
      "Runner Jobs and clients share one line: a Job that arrived before a waiting client runs"
          + " first, and the client gets the lock when the Job ends")
  void jobsAndClientsShareOneLine() throws Exception {
    String s = state("mixed-line");
    LockInfo first = lockInfo("mixed-a", "first");
    assertThat(http[0].lock(s, first, null).status()).isEqualTo(200);
    user.resource(RunnerJobFixtures.runner("mixed-job", "mixed-line", true)).create();
    eventually().until(() -> line("mixed-line").size() == 1);
    RawLock client = RawLock.send(replicas[1].url(), s, lockInfo("mixed-c", "c"), "?wait=60s");
    eventually().until(() -> line("mixed-line").size() == 2);
    TerraformState status =
        user.resources(TerraformState.class).inNamespace(NS).withName("mixed-line").get();
    eventually()
        .until(
            () -> {
              TerraformState st =
                  user.resources(TerraformState.class).inNamespace(NS).withName("mixed-line").get();
              return st.getStatus() != null
                  && st.getStatus().getQueued() != null
                  && st.getStatus().getQueued() == 2
                  && st.getStatus().getQueue().get(0).getKind().equals("job")
                  && st.getStatus().getQueue().get(1).getKind().equals("client");
            });
    assertThat(status).isNotNull();

    http[1].unlock(s, first);
    eventually().until(() -> RunnerJobFixtures.running(RunnerJobFixtures.get(user, "mixed-job")));
    assertThat(client.answered(Duration.ofMillis(300))).isFalse();
    RunnerJobFixtures.finish(user, "mixed-job", true);
    assertThat(client.answer(Duration.ofSeconds(10)).status()).isEqualTo(200);
    assertThat(holder("mixed-line")).isEqualTo("mixed-c");
    http[0].unlock(s, lockInfo("mixed-c", "c"));
    client.close();
  }

  @Test
  @DisplayName(
      "Plans waiting on both replicas behind an apply all start together when it unlocks, each"
          + " granted by its own replica; an apply waiting behind them gets the lock once the last"
          + " plan unlocks, on whichever replica it waits")
  void plansOnBothReplicasShareTheLock() throws Exception {
    String s = state("plans-across");
    LockInfo apply = lockInfo("pa-apply", "apply");
    assertThat(http[0].lock(s, apply, null).status()).isEqualTo(200);
    List<RawLock> plans = new ArrayList<>();
    List<LockInfo> infos = new ArrayList<>();
    try {
      for (int i = 0; i < 4; i++) {
        LockInfo plan =
            new LockInfo(
                "pa-plan-" + i, "OperationTypePlan", "", "plan-" + i, "1.11.4", "2026-12-07", "");
        infos.add(plan);
        plans.add(RawLock.send(replicas[i % 2].url(), s, plan, "?wait=60s"));
        int waiting = i + 1;
        eventually().until(() -> line("plans-across").size() == waiting);
      }
      LockInfo next = lockInfo("pa-next", "next-apply");
      plans.add(RawLock.send(replicas[1].url(), s, next, "?wait=60s"));
      eventually().until(() -> line("plans-across").size() == 5);

      assertThat(http[0].unlock(s, apply).status()).isEqualTo(200);
      for (int i = 0; i < 4; i++) {
        assertThat(plans.get(i).answer(Duration.ofSeconds(20)).status()).isEqualTo(200);
      }
      eventually().until(() -> io.leasehold.lock.Holder.plans(lease("plans-across")).size() == 4);
      assertThat(line("plans-across")).containsExactly("pa-next");
      assertThat(plans.get(4).answered(Duration.ofMillis(300))).isFalse();
      for (int i = 0; i < 4; i++) {
        assertThat(http[(i + 1) % 2].unlock(s, infos.get(i)).status()).isEqualTo(200);
      }
      assertThat(plans.get(4).answer(Duration.ofSeconds(20)).status()).isEqualTo(200);
      assertThat(holder("plans-across")).isEqualTo("pa-next");
      assertThat(http[1].unlock(s, next).status()).isEqualTo(200);
    } finally {
      for (RawLock r : plans) {
        r.close();
      }
    }
  }
}
