package io.leasehold.backend;

import static io.leasehold.backend.BackendClient.lockInfo;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.cli.Replica;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.support.RunnerJobFixtures;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The leader admitted a runner Job with the shortest lease the CRD allows (5 s) and then stopped
 * renewing it (it stalled, or was stopped) while another replica, which does not lead, serves the
 * backend: the Job's lock is never granted to a client while the Job runs, however far in the past
 * its Lease's renew time is; it is once the Job has ended.
 */
class LapsedJobLockTest {

  private static final String NS = "default";
  private static EmbeddedKubernetes api;
  private static KubernetesClient user;
  private static KubernetesClient replicaClient;
  private static Replica follower;
  private static BackendClient http;

  @BeforeAll
  static void start() {
    api = EmbeddedKubernetes.start(0);
    user = api.newClient();
    // The leader: admits the Jobs, then its renewals stop.
    try (KubernetesClient leaderClient = api.newClient();
        LeaseholdOperator leader =
            LeaseholdOperator.start(
                leaderClient,
                new LeaseholdOperator.Options(Set.of(), Optional.empty(), "leader"))) {
      for (String state : new String[] {"lapsed-wait", "lapsed-now"}) {
        TerraformState s = new TerraformState();
        s.getMetadata().setName(state);
        s.getMetadata().setNamespace(NS);
        s.getSpec().getLock().setLeaseDurationSeconds(5);
        user.resource(s).create();
        RunnerJobFixtures.create(user, state + "-run", state);
      }
      for (String state : new String[] {"lapsed-wait", "lapsed-now"}) {
        eventually()
            .until(() -> RunnerJobFixtures.running(RunnerJobFixtures.get(user, state + "-run")));
      }
    }
    // The stalled leader still holds the election Lease: the other replica never leads, so
    // nobody renews the Jobs' locks.
    java.time.ZonedDateTime now = java.time.ZonedDateTime.now(ZoneOffset.UTC);
    user.resource(
            new LeaseBuilder()
                .withNewMetadata()
                .withName(LeaseholdOperator.LEADER_LEASE)
                .withNamespace(NS)
                .endMetadata()
                .withNewSpec()
                .withHolderIdentity("stalled-leader")
                .withLeaseDurationSeconds(3600)
                .withAcquireTime(now)
                .withRenewTime(now)
                .endSpec()
                .build())
        .create();
    replicaClient = api.newClient();
    follower =
        Replica.start(
            replicaClient,
            new LeaseholdOperator.Options(Set.of(), Optional.of(NS), "follower"),
            new Replica.Backend(
                Access.NONE,
                JobPods.NONE,
                new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(5)),
                1 << 20));
    http = new BackendClient(follower.url());
    for (String state : new String[] {"lapsed-wait", "lapsed-now"}) {
      lapse(state);
    }
  }

  @AfterAll
  static void stop() {
    if (follower != null) {
      follower.close();
    }
    if (replicaClient != null) {
      replicaClient.close();
    }
    user.close();
    api.close();
  }

  private static ConditionFactory eventually() {
    return await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(20));
  }

  private static Lease lease(String state) {
    return user.leases().inNamespace(NS).withName("lock-tfstate-default-" + state).get();
  }

  /** As the Lease is after a minute without renewal. */
  private static void lapse(String state) {
    Lease lease = lease(state);
    user.resource(LeaseLock.renewed(lease, 5, Instant.now().minusSeconds(60))).update();
    assertThat(LeaseLock.expired(lease(state), Instant.now())).isTrue();
  }

  private static String jobLock(String state) {
    var job = RunnerJobFixtures.get(user, state + "-run");
    return LeaseLock.jobLockId(job.getMetadata().getName(), job.getMetadata().getUid());
  }

  @Test
  @DisplayName(
      "When the leader stops renewing a running Job's 5 s lock, then a client waiting with ?wait="
          + " on another replica is not granted it while the Job runs, though the Lease's renew"
          + " time lies a minute in the past; the moment the Job completes, it is")
  void aWaitingClientGetsTheLockOnlyOnceTheJobCompletes() throws Exception {
    String state = NS + "/lapsed-wait";
    String holder = jobLock("lapsed-wait");
    LockInfo waiter = lockInfo("waiter-1", "bob@ci");
    CompletableFuture<BackendClient.Response> waiting =
        CompletableFuture.supplyAsync(
            () -> {
              try {
                return http.lock(state, waiter, "?wait=60s");
              } catch (Exception e) {
                throw new IllegalStateException(e);
              }
            });
    // Waiting in line, served every time the replica looks (on each change, and every 2 s).
    eventually().until(() -> LeaseLock.line(lease("lapsed-wait")).find("waiter-1").isPresent());
    await()
        .during(Duration.ofSeconds(5))
        .atMost(Duration.ofSeconds(10))
        .until(
            () ->
                !waiting.isDone()
                    && holder.equals(lease("lapsed-wait").getSpec().getHolderIdentity()));
    // A client that does not wait is told who holds it.
    BackendClient.Response refused = http.lock(state, lockInfo("other-1", "carol@x"), null);
    assertThat(refused.status()).isEqualTo(423);
    assertThat(refused.body()).contains(holder);

    RunnerJobFixtures.finish(user, "lapsed-wait-run", true);
    BackendClient.Response granted = waiting.get(30, java.util.concurrent.TimeUnit.SECONDS);
    assertThat(granted.status()).isEqualTo(200);
    assertThat(lease("lapsed-wait").getSpec().getHolderIdentity()).isEqualTo("waiter-1");
  }

  @Test
  @DisplayName(
      "When the leader stops renewing a running Job's 5 s lock, then a client's LOCK on another"
          + " replica is refused with the Job as holder while the Job exists unfinished; once the"
          + " Job is deleted, the same LOCK is granted")
  void aLockIsGrantedOnlyOnceTheJobIsDeleted() throws Exception {
    String state = NS + "/lapsed-now";
    String holder = jobLock("lapsed-now");
    LockInfo client = lockInfo("client-1", "alice@laptop");
    BackendClient.Response refused = http.lock(state, client, null);
    assertThat(refused.status()).isEqualTo(423);
    assertThat(refused.body()).contains(holder);
    assertThat(lease("lapsed-now").getSpec().getHolderIdentity()).isEqualTo(holder);

    user.batch().v1().jobs().inNamespace(NS).withName("lapsed-now-run").delete();
    eventually().until(() -> RunnerJobFixtures.get(user, "lapsed-now-run") == null);
    assertThat(http.lock(state, client, null).status()).isEqualTo(200);
    assertThat(lease("lapsed-now").getSpec().getHolderIdentity()).isEqualTo("client-1");
  }
}
