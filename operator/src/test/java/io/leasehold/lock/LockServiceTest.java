package io.leasehold.lock;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** The lock service's rules, one transition at a time, against the in-memory API. */
class LockServiceTest {

  private static EmbeddedKubernetes api;
  private static KubernetesClient client;
  private static LockService locks;
  private static final Caller ALICE = Caller.of("alice", "alice");
  private static final Caller BOB = Caller.of("bob", "bob");

  @BeforeAll
  static void start() {
    api = EmbeddedKubernetes.start(0);
    client = api.newClient();
    locks =
        new LockService(
            client,
            LockService.LeaseSource.NONE,
            Clock.systemUTC(),
            "replica-a",
            new LockService.Settings(Duration.ofSeconds(30)));
  }

  @AfterAll
  static void stop() {
    client.close();
    api.close();
  }

  private static StateNames names(String name) {
    return new StateNames("default", name, "default");
  }

  private static LockInfo info(String id, String who) {
    return new LockInfo(id, "OperationTypeApply", "", who, "1.11.4", "", "");
  }

  @Test
  @DisplayName(
      "The deletion lock has one ID per TerraformState: asking again after a retry finds it already"
          + " taken for the deletion instead of waiting on itself")
  void deletionLockIsStable() {
    StateNames n = names("deleting");
    LockService.Answer first = locks.lockForDeletion(n, "uid-1");
    LockService.Answer again = locks.lockForDeletion(n, "uid-1");
    assertThat(first).isInstanceOf(LockService.Granted.class);
    assertThat(again).isInstanceOf(LockService.Granted.class);
    assertThat(((LockService.Granted) again).lockId()).isEqualTo("leasehold-delete/uid-1");
    assertThat(locks.fresh(n).getSpec().getHolderIdentity()).isEqualTo("leasehold-delete/uid-1");
    // Another TerraformState (re-created under the same name) waits for it.
    assertThat(locks.lockForDeletion(n, "uid-2")).isInstanceOf(LockService.NotNow.class);
  }

  @Test
  @DisplayName(
      "A lock's ID used by another identity is refused as not its owner, for writes and UNLOCK;"
          + " the owner's own use goes ahead")
  void lockBelongsToItsOwner() {
    StateNames n = names("owned");
    assertThat(locks.lock(n, info("a-1", "alice@x"), ALICE, false, Map.of()))
        .isInstanceOf(LockService.Granted.class);
    LockService.Answer write = locks.checkWrite(n, "a-1", BOB, "write");
    assertThat(write).isInstanceOf(LockService.Refused.class);
    assertThat(((LockService.Refused) write).refusal()).isEqualTo(LockService.Refusal.NOT_OWNER);
    assertThat(((LockService.Refused) write).message()).contains("belongs to alice");
    assertThat(locks.unlock(n, "a-1", BOB)).isInstanceOf(LockService.Refused.class);
    assertThat(locks.checkWrite(n, "a-1", ALICE, "write")).isInstanceOf(LockService.Allowed.class);
    assertThat(locks.unlock(n, "a-1", ALICE)).isInstanceOf(LockService.Released.class);
  }

  @Test
  @DisplayName(
      "A lock taken by stock Terraform after a stock force-unlock (which clears only the holder and"
          + " its LockInfo) belongs to nobody: the identity that owned the lock before cannot write"
          + " under it or release it")
  void aStaleOwnerDoesNotPassToTheNextLock() {
    StateNames n = names("stale-owner");
    assertThat(locks.lock(n, info("a-1", "alice@x"), ALICE, false, Map.of()))
        .isInstanceOf(LockService.Granted.class);
    // terraform force-unlock through the kubernetes backend, then a stock lock, as Terraform's
    // kubernetes backend writes them: holderIdentity and lock-info only.
    client
        .leases()
        .inNamespace("default")
        .withName(n.leaseName())
        .edit(
            l -> {
              l.getSpec().setHolderIdentity("stock-uuid");
              l.getMetadata()
                  .getAnnotations()
                  .put(LeaseLock.LOCK_INFO_ANNOTATION, info("stock-uuid", "stock@ci").toJson());
              return l;
            });
    assertThat(locks.fresh(n).getMetadata().getAnnotations())
        .containsEntry(LeaseLock.OWNER_ANNOTATION, "alice");
    LockService.Answer write = locks.checkWrite(n, "stock-uuid", ALICE, "write");
    assertThat(write).isInstanceOf(LockService.Refused.class);
    assertThat(((LockService.Refused) write).refusal()).isEqualTo(LockService.Refusal.NOT_OWNER);
    assertThat(((LockService.Refused) write).message())
        .contains("a client of Terraform's kubernetes backend");
    assertThat(locks.unlock(n, "stock-uuid", ALICE)).isInstanceOf(LockService.Refused.class);
    assertThat(locks.fresh(n).getSpec().getHolderIdentity()).isEqualTo("stock-uuid");
  }

  @Test
  @DisplayName(
      "A plan's grant whose answer could not be delivered is undone as its own identity's: only"
          + " that plan lets go, the plans beside it keep holding, and another identity cannot undo"
          + " it")
  void aPlanGrantIsUndoneAloneByItsOwner() {
    StateNames n = names("plan-undo");
    LockInfo first = new LockInfo("p-1", "OperationTypePlan", "", "alice@x", "1.11.4", "", "");
    LockInfo second = new LockInfo("p-2", "OperationTypePlan", "", "bob@x", "1.11.4", "", "");
    assertThat(locks.lock(n, first, ALICE, false, Map.of()))
        .isInstanceOf(LockService.Granted.class);
    LockService.Answer granted = locks.lock(n, second, BOB, false, Map.of());
    assertThat(granted).isInstanceOf(LockService.Granted.class);
    assertThat(locks.undo(n, (LockService.Granted) granted, ALICE)).isFalse();
    assertThat(Holder.plans(locks.fresh(n))).extracting(Holder::id).containsExactly("p-1", "p-2");
    assertThat(locks.undo(n, (LockService.Granted) granted, BOB)).isTrue();
    assertThat(Holder.plans(locks.fresh(n))).extracting(Holder::id).containsExactly("p-1");
    assertThat(locks.fresh(n).getSpec().getHolderIdentity()).isEqualTo("p-1");
  }

  @Test
  @DisplayName("A runner Job's lock ID is no bearer token: only the Job's pods may use it")
  void jobLockBelongsToItsPods() {
    StateNames n = names("jobbed");
    Lease lease = locks.fresh(n);
    String id = LeaseLock.jobLockId("run-1", "job-uid-1");
    locks.admit(lease, info(id, "job/run-1"), "job-uid-1", 300, null);
    Caller pod =
        new Caller() {
          @Override
          public String identity() {
            return "system:serviceaccount:default:runner";
          }

          @Override
          public boolean isPodOfJob(String namespace, String jobUid) {
            return "job-uid-1".equals(jobUid);
          }

          @Override
          public String describe() {
            return "the Job's pod";
          }
        };
    assertThat(locks.checkWrite(n, id, BOB, "write")).isInstanceOf(LockService.Refused.class);
    // The pod's own terraform locks under the Job's lock and owns that nested lock.
    assertThat(locks.lock(n, info("tf-in-pod", "runner@pod"), pod, false, Map.of()))
        .isInstanceOf(LockService.Granted.class);
    assertThat(locks.checkWrite(n, "tf-in-pod", pod, "write"))
        .isInstanceOf(LockService.Allowed.class);
    assertThat(locks.checkWrite(n, "tf-in-pod", BOB, "write"))
        .isInstanceOf(LockService.Refused.class);
  }

  @Test
  @DisplayName(
      "A runner Job is never admitted over a lock someone holds, even when the decision was made on"
          + " a version of the Lease that showed it free: the holder keeps it, nothing is written")
  void jobNeverAdmittedOverAHeldLock() {
    StateNames n = names("taken-meanwhile");
    Lease seenFree = locks.fresh(n);
    assertThat(locks.lock(n, info("c-1", "carol@ci"), ALICE, false, Map.of()))
        .isInstanceOf(LockService.Granted.class);
    Lease nowHeld = locks.fresh(n);
    String id = LeaseLock.jobLockId("run-2", "job-uid-2");

    // On the old version the conditional write is a conflict; on the current one a refusal.
    assertThatThrownBy(() -> locks.admit(seenFree, info(id, "job/run-2"), "job-uid-2", 300, null))
        .isInstanceOfSatisfying(
            KubernetesClientException.class, e -> assertThat(e.getCode()).isEqualTo(409));
    assertThatThrownBy(() -> locks.admit(nowHeld, info(id, "job/run-2"), "job-uid-2", 300, null))
        .isInstanceOfSatisfying(
            KubernetesClientException.class,
            e -> {
              assertThat(e.getCode()).isEqualTo(409);
              assertThat(e.getMessage()).contains("held by c-1").contains("run-2");
            });
    Lease after = locks.fresh(n);
    assertThat(after.getSpec().getHolderIdentity()).isEqualTo("c-1");
    assertThat(after.getMetadata().getResourceVersion())
        .isEqualTo(nowHeld.getMetadata().getResourceVersion());

    // Released, the Job's turn comes.
    assertThat(locks.unlock(n, "c-1", ALICE)).isInstanceOf(LockService.Released.class);
    Lease admitted = locks.admit(locks.fresh(n), info(id, "job/run-2"), "job-uid-2", 300, null);
    assertThat(admitted.getSpec().getHolderIdentity()).isEqualTo(id);
  }

  @Test
  @DisplayName(
      "Many clients taking, releasing, joining and leaving the line of one state at once: every"
          + " transition goes through (none gives up as busy) and every UNLOCK releases the lock")
  void contendedTransitionsAllGoThrough() throws Exception {
    StateNames n = names("contended");
    locks.fresh(n);
    int threads = 12;
    java.util.List<String> failures =
        java.util.Collections.synchronizedList(new java.util.ArrayList<>());
    java.util.concurrent.atomic.AtomicInteger released =
        new java.util.concurrent.atomic.AtomicInteger();
    java.util.concurrent.ExecutorService pool =
        java.util.concurrent.Executors.newFixedThreadPool(threads);
    java.util.concurrent.CountDownLatch start = new java.util.concurrent.CountDownLatch(1);
    java.util.List<java.util.concurrent.Future<?>> done = new java.util.ArrayList<>();
    for (int t = 0; t < threads; t++) {
      int index = t;
      done.add(
          pool.submit(
              () -> {
                Caller me = Caller.of("user-" + index, "user-" + index);
                start.await();
                for (int round = 0; round < 25; round++) {
                  LockInfo mine = info("busy-" + index + "-" + round, "user-" + index);
                  try {
                    LockService.Answer now = locks.lock(n, mine, me, false, Map.of());
                    if (now instanceof LockService.Granted) {
                      LockService.Answer unlocked = locks.unlock(n, mine.id(), me);
                      if (unlocked instanceof LockService.Released) {
                        released.incrementAndGet();
                      } else {
                        failures.add("UNLOCK " + mine.id() + ": " + unlocked);
                      }
                      continue;
                    }
                    Map<String, LockService.Waiting> local =
                        Map.of(mine.id(), new LockService.Waiting(mine, me));
                    LockService.Answer queued = locks.lock(n, mine, me, true, local);
                    if (queued instanceof LockService.Granted) {
                      if (!(locks.unlock(n, mine.id(), me) instanceof LockService.Released)) {
                        failures.add("UNLOCK " + mine.id() + " after waiting");
                      }
                    } else {
                      locks.left(n, mine.id());
                    }
                  } catch (RuntimeException e) {
                    failures.add(mine.id() + ": " + e);
                  }
                }
                return null;
              }));
    }
    start.countDown();
    for (java.util.concurrent.Future<?> f : done) {
      f.get(2, java.util.concurrent.TimeUnit.MINUTES);
    }
    pool.shutdown();
    assertThat(failures).isEmpty();
    assertThat(released.get()).as("locks taken and released at once").isPositive();
    assertThat(locks.fresh(n).getSpec().getHolderIdentity()).isNull();
  }

  @Test
  @DisplayName(
      "A place in line is kept for its owner only: another identity asking with the same lock ID"
          + " is refused")
  void placeInLineBelongsToItsOwner() {
    StateNames n = names("placed");
    assertThat(locks.lock(n, info("holder", "h"), ALICE, false, Map.of()))
        .isInstanceOf(LockService.Granted.class);
    LockInfo waiting = info("w-1", "alice@x");
    assertThat(locks.lock(n, waiting, ALICE, true, Map.of()))
        .isInstanceOf(LockService.NotNow.class);
    assertThat(LeaseLock.line(locks.fresh(n)).position("w-1")).isEqualTo(1);
    LockService.Answer stolen = locks.lock(n, waiting, BOB, true, Map.of());
    assertThat(stolen).isInstanceOf(LockService.Refused.class);
    assertThat(((LockService.Refused) stolen).refusal()).isEqualTo(LockService.Refusal.NOT_OWNER);
  }

  @Test
  @DisplayName(
      "Places of a replica that stopped (gracefully, or by crashing and never renewing its"
          + " heartbeat) never block a free lock: the next live waiter is granted, and in that"
          + " same write the dead replica's places are marked away, kept for their clients'"
          + " retries elsewhere")
  void deadReplicasPlacesNeverBlock() throws Exception {
    StateNames n = names("dead-replica");
    var timing = new ReplicaLiveness.Timing(Duration.ofMillis(200), Duration.ofSeconds(1));
    try (ReplicaLiveness a =
            ReplicaLiveness.heartbeating(client, "default", "lh-test", "replica-a", timing);
        ReplicaLiveness crashed =
            ReplicaLiveness.heartbeating(client, "default", "lh-test", "replica-b", timing);
        ReplicaLiveness stopped =
            ReplicaLiveness.heartbeating(client, "default", "lh-test", "replica-c", timing)) {
      LockService here = service(a);
      LockService there = service(crashed);
      LockService third = service(stopped);
      assertThat(here.lock(n, info("h", "h"), ALICE, false, Map.of()))
          .isInstanceOf(LockService.Granted.class);
      org.awaitility.Awaitility.await()
          .atMost(Duration.ofSeconds(10))
          .until(() -> a.alive(crashed.self()) && a.alive(stopped.self()));
      there.lock(n, info("b-1", "b"), BOB, true, Map.of());
      there.lock(n, info("b-2", "b"), BOB, true, Map.of());
      third.lock(n, info("c-1", "c"), BOB, true, Map.of());
      here.lock(n, info("a-1", "a"), BOB, true, Map.of());
      assertThat(LeaseLock.line(here.fresh(n)).ids()).containsExactly("b-1", "b-2", "c-1", "a-1");
      crashed.halt();
      stopped.close();
      org.awaitility.Awaitility.await()
          .atMost(Duration.ofSeconds(10))
          .until(() -> !a.alive(crashed.self()) && !a.alive(stopped.self()));
      here.unlock(n, "h", ALICE);
      Map<String, LockService.Waiting> local =
          Map.of("a-1", new LockService.Waiting(info("a-1", "a"), BOB));
      assertThat(here.serve(n, local)).map(LockService.Granted::lockId).contains("a-1");
      Lease after = here.fresh(n);
      assertThat(after.getSpec().getHolderIdentity()).isEqualTo("a-1");
      assertThat(LeaseLock.line(after).ids()).containsExactly("b-1", "b-2", "c-1");
      assertThat(LeaseLock.line(after).tickets()).allMatch(t -> t.gone() != null);
    }
  }

  private static LockService service(ReplicaLiveness liveness) {
    return new LockService(
        client,
        LockService.LeaseSource.NONE,
        Clock.systemUTC(),
        liveness,
        LockService.Settings.DEFAULTS);
  }

  @Test
  @DisplayName(
      "In a namespace being deleted, whose API server refuses to create anything there, a lock"
          + " Lease that is gone is not waited for: the deletion lock is granted without one and a"
          + " running Job's Lease is not recreated, instead of failing on every retry")
  void aLeaseThatCannotBeCreatedInATerminatingNamespaceHoldsNothingUp() {
    io.fabric8.kubernetes.client.server.mock.KubernetesMockServer server =
        new io.fabric8.kubernetes.client.server.mock.KubernetesMockServer(false);
    server.init();
    String leases = "/apis/coordination.k8s.io/v1/namespaces/gone/leases";
    server
        .expect()
        .get()
        .withPath(leases + "/lock-tfstate-default-x")
        .andReturn(404, "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"code\":404}")
        .always();
    // The answer of a real API server (NamespaceLifecycle) to a create there.
    server
        .expect()
        .post()
        .withPath(leases)
        .andReturn(
            403,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
                + "\"message\":\"leases.coordination.k8s.io \\\"lock-tfstate-default-x\\\" is"
                + " forbidden: unable to create new content in namespace gone because it is being"
                + " terminated\",\"reason\":\"Forbidden\",\"details\":{\"name\":"
                + "\"lock-tfstate-default-x\",\"group\":\"coordination.k8s.io\",\"kind\":\"leases\","
                + "\"causes\":[{\"reason\":\"NamespaceTerminating\",\"message\":\"namespace gone is"
                + " being terminated\",\"field\":\"metadata.namespace\"}]},\"code\":403}")
        .always();
    try (KubernetesClient mock = server.createClient()) {
      LockService service =
          new LockService(
              mock,
              LockService.LeaseSource.NONE,
              Clock.systemUTC(),
              "replica-a",
              LockService.Settings.DEFAULTS);
      StateNames n = new StateNames("gone", "x", "default");
      LockService.Answer taken = service.lockForDeletion(n, "uid-1");
      assertThat(taken).isInstanceOf(LockService.Granted.class);
      assertThat(((LockService.Granted) taken).lease()).isNull();
      assertThat(
              service.recreateForRunning(
                  n, info("job/run/uid-9", "leasehold-run"), 300, java.util.List.of()))
          .isEmpty();
    } finally {
      server.destroy();
    }
  }

  /** A runner Job as the API holds it, and its lock taken for it with a 5 s lease. */
  private static io.fabric8.kubernetes.api.model.batch.v1.Job admittedJob(
      StateNames n, String job) {
    io.fabric8.kubernetes.api.model.batch.v1.Job created =
        client
            .resource(io.leasehold.support.RunnerJobFixtures.runner(job, n.name(), false))
            .create();
    String uid = created.getMetadata().getUid();
    locks.admit(locks.fresh(n), info(LeaseLock.jobLockId(job, uid), "job/" + job), uid, 5, null);
    return created;
  }

  /** The Lease as a leader that stopped renewing it a minute ago leaves it. */
  private static void lapse(StateNames n) {
    Lease lease = locks.fresh(n);
    client.resource(LeaseLock.renewed(lease, 5, java.time.Instant.now().minusSeconds(60))).update();
    assertThat(Holder.of(locks.fresh(n)).orElseThrow().expired()).isTrue();
  }

  private static io.fabric8.kubernetes.api.model.Pod podOf(
      io.fabric8.kubernetes.api.model.batch.v1.Job job) {
    return client
        .resource(
            new io.fabric8.kubernetes.api.model.PodBuilder()
                .withNewMetadata()
                .withName(job.getMetadata().getName() + "-pod")
                .withNamespace("default")
                .addToLabels(JobLiveness.CONTROLLER_UID_LABEL, job.getMetadata().getUid())
                .endMetadata()
                .withNewSpec()
                .addNewContainer()
                .withName("terraform")
                .withImage("hashicorp/terraform:1.11")
                .endContainer()
                .withRestartPolicy("Never")
                .endSpec()
                .build())
        .create();
  }

  @Test
  @DisplayName(
      "A runner Job's lock whose Lease went unrenewed past its duration (the leader stalled) is"
          + " not taken over while the Job runs, nor while its pod still runs after it finished:"
          + " not by a LOCK, a waiting client, another Job or a deletion, and the Job's pod still"
          + " writes under it; once the Job and its pods have ended, the first in line takes it")
  void aLapsedJobLockIsKeptUntilTheJobEnds() {
    StateNames n = names("lapsed");
    io.fabric8.kubernetes.api.model.batch.v1.Job job = admittedJob(n, "lapsed-run");
    String uid = job.getMetadata().getUid();
    String id = LeaseLock.jobLockId("lapsed-run", uid);
    Caller pod =
        new Caller() {
          @Override
          public String identity() {
            return "system:serviceaccount:default:runner";
          }

          @Override
          public boolean isPodOfJob(String namespace, String jobUid) {
            return uid.equals(jobUid);
          }

          @Override
          public String describe() {
            return "the Job's pod";
          }
        };
    assertThat(locks.lock(n, info("tf-in-pod", "runner@pod"), pod, false, Map.of()))
        .isInstanceOf(LockService.Granted.class);
    lapse(n);
    Map<String, LockService.Waiting> waiting =
        Map.of("waiter", new LockService.Waiting(info("waiter", "bob@ci"), BOB));

    // The Job exists and has not finished.
    assertThat(locks.lock(n, info("c-1", "alice@laptop"), ALICE, false, Map.of()))
        .isInstanceOfSatisfying(
            LockService.NotNow.class, a -> assertThat(a.holder()).map(Holder::id).contains(id));
    assertThat(locks.lock(n, info("waiter", "bob@ci"), BOB, true, waiting))
        .isInstanceOf(LockService.NotNow.class);
    assertThat(locks.serve(n, waiting)).isEmpty();
    assertThat(locks.lockForDeletion(n, "state-uid")).isInstanceOf(LockService.NotNow.class);
    String other = LeaseLock.jobLockId("lapsed-next", "other-uid");
    assertThatThrownBy(
            () -> locks.admit(locks.fresh(n), info(other, "job/lapsed-next"), "other-uid", 5, null))
        .isInstanceOfSatisfying(
            KubernetesClientException.class, e -> assertThat(e.getCode()).isEqualTo(409));
    assertThat(locks.checkWrite(n, "tf-in-pod", pod, "write"))
        .isInstanceOf(LockService.Allowed.class);

    // Finished, but its pod still terminates: its last write may come.
    io.fabric8.kubernetes.api.model.Pod running = podOf(job);
    io.leasehold.support.RunnerJobFixtures.finish(client, "lapsed-run", false);
    assertThat(locks.serve(n, waiting)).isEmpty();
    assertThat(locks.fresh(n).getSpec().getHolderIdentity()).isEqualTo(id);

    // Its pod ended: the first in line takes the lock over.
    running.setStatus(
        new io.fabric8.kubernetes.api.model.PodStatusBuilder().withPhase("Failed").build());
    client.resource(running).updateStatus();
    assertThat(locks.serve(n, waiting))
        .hasValueSatisfying(
            g -> {
              assertThat(g.lockId()).isEqualTo("waiter");
              assertThat(g.tookOver()).isTrue();
            });
    assertThat(locks.fresh(n).getSpec().getHolderIdentity()).isEqualTo("waiter");
  }

  @Test
  @DisplayName(
      "A lapsed runner Job's lock is taken over once its Job is deleted; while whether the Job"
          + " runs cannot be read, it is not")
  void aLapsedJobLockGoesOnlyOnceTheJobIsKnownToBeGone() {
    StateNames n = names("lapsed-gone");
    admittedJob(n, "gone-run");
    lapse(n);
    LockService blind =
        new LockService(
            client,
            LockService.LeaseSource.NONE,
            Clock.systemUTC(),
            "replica-a",
            LockService.Settings.DEFAULTS,
            (namespace, name, uid) -> {
              throw new KubernetesClientException("the API server is unreachable");
            });
    client.batch().v1().jobs().inNamespace("default").withName("gone-run").delete();
    assertThat(blind.lock(n, info("c-2", "alice@laptop"), ALICE, false, Map.of()))
        .isInstanceOf(LockService.NotNow.class);
    assertThat(locks.lock(n, info("c-2", "alice@laptop"), ALICE, false, Map.of()))
        .isInstanceOfSatisfying(LockService.Granted.class, g -> assertThat(g.tookOver()).isTrue());
  }
}
