package io.leasehold.backend;

import static io.leasehold.backend.BackendClient.lockInfo;
import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.Caller;
import io.leasehold.lock.HolderPod;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.state.StateNames;
import io.leasehold.support.OperatorHarness;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * A lock taken through the backend by a pod (its bound ServiceAccount token names it) is released
 * once that pod is gone or has ended (spec.lock.releaseVanishedPods), and only then: a running
 * pod's lock, a lock of an identity that is no pod, and a lock that changed hands are kept.
 * TokenReview is answered here as the API server answers it for a bound token: the user is the
 * pod's ServiceAccount and user.extra names the pod.
 */
class VanishedPodLockTest {

  private static final ObjectMapper JSON = new ObjectMapper();

  /** A CI runner's namespace, not the states' own. */
  private static final String CI = "ci";

  private static final Duration WAIT = Duration.ofSeconds(30);

  private static OperatorHarness harness;
  private static BackendClient backend;

  @BeforeAll
  static void start() {
    harness =
        OperatorHarness.start(
            new LeaseholdOperator.Options(Set.of(), Optional.empty(), "pod-locks")
                .withPodRecheck(Duration.ofMillis(200)));
    harness
        .api()
        .mockServer()
        .expect()
        .post()
        .withPath("/apis/authentication.k8s.io/v1/tokenreviews")
        .andReply(200, request -> tokenReview(request.getBody().readUtf8()))
        .always();
    harness
        .client()
        .namespaces()
        .resource(new NamespaceBuilder().withNewMetadata().withName(CI).endMetadata().build())
        .create();
    backend =
        new BackendClient(
            harness.startBackend(
                new KubernetesAccess(harness.client()),
                new KubernetesJobPods(harness.client()),
                64L * 1024 * 1024));
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  /**
   * Token {@code pod/NS/NAME/UID} is ServiceAccount NS:runner's bound token for pod NAME with UID;
   * token {@code user/NAME} is user NAME's, no pod named.
   */
  private static Object tokenReview(String body) {
    try {
      ObjectNode review = (ObjectNode) JSON.readTree(body);
      String[] token = review.path("spec").path("token").asText().split("/");
      ObjectNode status = review.putObject("status");
      status.set("audiences", review.path("spec").path("audiences"));
      ObjectNode user = status.put("authenticated", true).putObject("user");
      if (token[0].equals("pod")) {
        user.put("username", "system:serviceaccount:" + token[1] + ":runner");
        ObjectNode extra = user.putObject("extra");
        extra.putArray(Requester.POD_NAME).add(token[2]);
        extra.putArray(Requester.POD_UID).add(token[3]);
      } else {
        user.put("username", token[1]);
      }
      return review;
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  private static Map<String, String> auth(String token) {
    String basic =
        Base64.getEncoder().encodeToString(("x:" + token).getBytes(StandardCharsets.UTF_8));
    return Map.of("Authorization", "Basic " + basic);
  }

  private static String podToken(Pod pod) {
    return "pod/"
        + pod.getMetadata().getNamespace()
        + "/"
        + pod.getMetadata().getName()
        + "/"
        + pod.getMetadata().getUid();
  }

  private static Pod runningPod(String name) {
    Pod pod =
        harness
            .client()
            .pods()
            .inNamespace(CI)
            .resource(
                new PodBuilder()
                    .withNewMetadata()
                    .withName(name)
                    .endMetadata()
                    .withNewSpec()
                    .addNewContainer()
                    .withName("terraform")
                    .withImage("hashicorp/terraform:1.11.4")
                    .endContainer()
                    .endSpec()
                    .build())
            .create();
    pod.setStatus(
        new io.fabric8.kubernetes.api.model.PodStatusBuilder().withPhase("Running").build());
    return harness.client().pods().inNamespace(CI).resource(pod).updateStatus();
  }

  private static void state(String name, boolean releaseVanishedPods) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    s.getSpec().getLock().setReleaseVanishedPods(releaseVanishedPods);
    harness.client().resource(s).create();
  }

  private static void lock(String state, String id, String token) throws Exception {
    BackendClient.Response r =
        backend.send(
            "LOCK",
            NAMESPACE + "/" + state + "/lock",
            lockInfo(id, "ci@runner").toJson(),
            auth(token));
    assertThat(r.status()).as(r.body()).isEqualTo(200);
  }

  /**
   * Changes the state's spec and waits until the leader has reconciled that generation: whatever a
   * reconcile does about the holder pod has been done by then.
   */
  private static void reconciled(String state) {
    long generation =
        edit(
            state,
            s ->
                s.getSpec()
                    .getLock()
                    .setLeaseDurationSeconds(s.getSpec().getLock().getLeaseDurationSeconds() + 1));
    await()
        .atMost(WAIT)
        .until(
            () -> Long.valueOf(generation).equals(harness.status(state).getObservedGeneration()));
  }

  /** Changes the state's spec (again, on the version then, when the leader wrote meanwhile). */
  private static long edit(String state, java.util.function.Consumer<TerraformState> change) {
    for (int attempt = 0; ; attempt++) {
      TerraformState s = harness.get(state);
      change.accept(s);
      try {
        return harness.client().resource(s).update().getMetadata().getGeneration();
      } catch (io.fabric8.kubernetes.client.KubernetesClientException e) {
        if (e.getCode() != 409 || attempt > 20) {
          throw e;
        }
      }
    }
  }

  private static List<String> podGoneEvents(String state) {
    return harness.events(state).stream().filter(e -> e.contains("LockReleasedPodGone")).toList();
  }

  @Test
  @DisplayName(
      "A pod's lock shows its pod in status and is released with a Warning naming the pod once the"
          + " pod is deleted; the next client then gets the lock")
  void releasedWhenThePodIsDeleted() throws Exception {
    state("deleted-pod", true);
    Pod pod = runningPod("ci-run-1");
    lock("deleted-pod", "lock-of-ci-run-1", podToken(pod));
    await().atMost(WAIT).until(() -> harness.status("deleted-pod").getLock() != null);
    assertThat(harness.status("deleted-pod").getLock().getPod()).isEqualTo(CI + "/ci-run-1");
    reconciled("deleted-pod");
    assertThat(harness.lockHolder("deleted-pod")).isEqualTo("lock-of-ci-run-1");

    harness.client().pods().inNamespace(CI).withName("ci-run-1").delete();
    await().atMost(WAIT).until(() -> harness.lockHolder("deleted-pod") == null);
    assertThat(podGoneEvents("deleted-pod"))
        .singleElement()
        .asString()
        .startsWith("Warning")
        .contains("lock-of-ci-run-1")
        .contains("pod " + CI + "/ci-run-1")
        .contains("is gone");
    assertThat(LeaseLock.HOLDER_POD_ANNOTATION)
        .isNotIn(harness.lockLease("deleted-pod").getMetadata().getAnnotations().keySet());
    lock("deleted-pod", "next", "user/alice");
    await().atMost(WAIT).until(() -> harness.status("deleted-pod").getLock() != null);
    assertThat(harness.status("deleted-pod").getLock().getPod()).isNull();
  }

  @Test
  @DisplayName(
      "A pod's lock is released once its pod has failed, or a pod of its name with another UID replaced it")
  void releasedWhenThePodEndedOrWasReplaced() throws Exception {
    state("failed-pod", true);
    Pod failing = runningPod("ci-run-2");
    lock("failed-pod", "lock-of-ci-run-2", podToken(failing));
    reconciled("failed-pod");
    assertThat(harness.lockHolder("failed-pod")).isEqualTo("lock-of-ci-run-2");
    failing = harness.client().pods().inNamespace(CI).withName("ci-run-2").get();
    failing.getStatus().setPhase("Failed");
    harness.client().pods().inNamespace(CI).resource(failing).updateStatus();
    await().atMost(WAIT).until(() -> harness.lockHolder("failed-pod") == null);
    assertThat(podGoneEvents("failed-pod"))
        .singleElement()
        .asString()
        .contains("pod " + CI + "/ci-run-2")
        .contains("has ended");

    state("replaced-pod", true);
    Pod first = runningPod("ci-run-3");
    lock("replaced-pod", "lock-of-ci-run-3", podToken(first));
    await().atMost(WAIT).until(() -> harness.status("replaced-pod").getLock() != null);
    harness.client().pods().inNamespace(CI).withName("ci-run-3").delete();
    await()
        .atMost(WAIT)
        .until(() -> harness.client().pods().inNamespace(CI).withName("ci-run-3").get() == null);
    Pod second = runningPod("ci-run-3");
    assertThat(second.getMetadata().getUid()).isNotEqualTo(first.getMetadata().getUid());
    await().atMost(WAIT).until(() -> harness.lockHolder("replaced-pod") == null);
    assertThat(podGoneEvents("replaced-pod")).singleElement().asString().contains("another UID");
  }

  @Test
  @DisplayName(
      "The lock of a pod that still runs, and of an identity that is no pod, is kept however often"
          + " the leader looks")
  void keptWhileThePodRunsAndForOtherIdentities() throws Exception {
    state("running-pod", true);
    Pod pod = runningPod("ci-run-4");
    lock("running-pod", "lock-of-ci-run-4", podToken(pod));
    state("person", true);
    lock("person", "lock-of-alice", "user/alice");
    for (int i = 0; i < 3; i++) {
      reconciled("running-pod");
      reconciled("person");
    }
    assertThat(harness.lockHolder("running-pod")).isEqualTo("lock-of-ci-run-4");
    assertThat(harness.lockHolder("person")).isEqualTo("lock-of-alice");
    assertThat(harness.status("person").getLock().getPod()).isNull();
    assertThat(harness.lockLease("person").getMetadata().getAnnotations())
        .doesNotContainKey(LeaseLock.HOLDER_POD_ANNOTATION);
    assertThat(podGoneEvents("running-pod")).isEmpty();
    assertThat(podGoneEvents("person")).isEmpty();

    // A pod that is pending (or terminating) may still run: kept too.
    pod.getStatus().setPhase("Pending");
    harness.client().pods().inNamespace(CI).resource(pod).updateStatus();
    reconciled("running-pod");
    assertThat(harness.lockHolder("running-pod")).isEqualTo("lock-of-ci-run-4");
  }

  @Test
  @DisplayName(
      "With spec.lock.releaseVanishedPods false a gone pod's lock is kept; set true, it is released")
  void optOut() throws Exception {
    state("opted-out", false);
    Pod pod = runningPod("ci-run-5");
    lock("opted-out", "lock-of-ci-run-5", podToken(pod));
    harness.client().pods().inNamespace(CI).withName("ci-run-5").delete();
    reconciled("opted-out");
    reconciled("opted-out");
    assertThat(harness.lockHolder("opted-out")).isEqualTo("lock-of-ci-run-5");
    assertThat(podGoneEvents("opted-out")).isEmpty();

    edit("opted-out", s -> s.getSpec().getLock().setReleaseVanishedPods(true));
    await().atMost(WAIT).until(() -> harness.lockHolder("opted-out") == null);
    assertThat(podGoneEvents("opted-out")).hasSize(1);
  }

  /** A caller as the backend makes one of a bound token of {@code pod}. */
  private static Caller podCaller(HolderPod pod) {
    String identity = "system:serviceaccount:" + pod.namespace() + ":runner";
    return new Caller() {
      @Override
      public String identity() {
        return identity;
      }

      @Override
      public boolean isPodOfJob(String namespace, String jobUid) {
        return false;
      }

      @Override
      public String describe() {
        return identity + " (pod " + pod.name() + ")";
      }

      @Override
      public Optional<HolderPod> pod() {
        return Optional.of(pod);
      }
    };
  }

  private static LockInfo info(String id) {
    return lockInfo(id, "ci@runner");
  }

  @Test
  @DisplayName(
      "A release decided for one lock of one pod leaves the lock alone once it changed hands: to"
          + " another lock ID, or to the same lock ID taken by another pod")
  void nothingReleasedOnceTheLockChangedHands() {
    state("changed-hands", false);
    StateNames names = new StateNames(NAMESPACE, "changed-hands", "default");
    LockService locks = harness.operator().locks();
    HolderPod gone = new HolderPod(CI, "ci-gone", "uid-gone");
    HolderPod other = new HolderPod(CI, "ci-other", "uid-other");
    Caller goneCaller = podCaller(gone);
    Caller otherCaller = podCaller(other);

    assertThat(locks.lock(names, info("first"), goneCaller, false, Map.of()))
        .isInstanceOf(LockService.Granted.class);
    assertThat(locks.unlock(names, "first", goneCaller)).isInstanceOf(LockService.Released.class);
    // The same pod's next lock is not the lock that was looked at.
    assertThat(locks.lock(names, info("again"), goneCaller, false, Map.of()))
        .isInstanceOf(LockService.Granted.class);
    assertThat(locks.releaseVanishedPod(names, "first", gone))
        .isInstanceOf(LockService.NotHeld.class);
    assertThat(harness.lockHolder("changed-hands")).isEqualTo("again");
    assertThat(locks.unlock(names, "again", goneCaller)).isInstanceOf(LockService.Released.class);
    assertThat(locks.lock(names, info("second"), otherCaller, false, Map.of()))
        .isInstanceOf(LockService.Granted.class);
    assertThat(locks.releaseVanishedPod(names, "first", gone))
        .isInstanceOf(LockService.NotHeld.class);
    assertThat(locks.releaseVanishedPod(names, "second", gone))
        .isInstanceOf(LockService.NotHeld.class);
    assertThat(harness.lockHolder("changed-hands")).isEqualTo("second");

    // The same lock ID, taken again by another pod: not the lock that was found gone.
    assertThat(locks.unlock(names, "second", otherCaller)).isInstanceOf(LockService.Released.class);
    assertThat(locks.lock(names, info("first"), otherCaller, false, Map.of()))
        .isInstanceOf(LockService.Granted.class);
    assertThat(locks.releaseVanishedPod(names, "first", gone))
        .isInstanceOf(LockService.NotHeld.class);
    assertThat(harness.lockHolder("changed-hands")).isEqualTo("first");

    // A plan's pod is not recorded, so a plan's lock is never released this way.
    assertThat(locks.unlock(names, "first", otherCaller)).isInstanceOf(LockService.Released.class);
    LockInfo plan =
        new LockInfo(
            "plan", "OperationTypePlan", "", "ci@runner", "1.11.4", "2026-11-26T12:00:00Z", "");
    assertThat(locks.lock(names, plan, goneCaller, false, Map.of()))
        .isInstanceOf(LockService.Granted.class);
    assertThat(locks.releaseVanishedPod(names, "plan", gone))
        .isInstanceOf(LockService.NotHeld.class);
    assertThat(harness.lockHolder("changed-hands")).isEqualTo("plan");
    assertThat(locks.unlock(names, "plan", goneCaller)).isInstanceOf(LockService.Released.class);

    // Only the very lock of the very pod is released.
    assertThat(locks.lock(names, info("third"), goneCaller, false, Map.of()))
        .isInstanceOf(LockService.Granted.class);
    assertThat(locks.releaseVanishedPod(names, "third", other))
        .isInstanceOf(LockService.NotHeld.class);
    assertThat(locks.releaseVanishedPod(names, "third", gone))
        .isInstanceOf(LockService.Released.class);
    assertThat(harness.lockHolder("changed-hands")).isNull();
  }

  @Test
  @DisplayName(
      "A release racing with the pod's own unlock and another client's lock never releases the"
          + " other client's lock")
  void releaseRacingAHandOver() throws Exception {
    state("racing", false);
    StateNames names = new StateNames(NAMESPACE, "racing", "default");
    LockService locks = harness.operator().locks();
    ExecutorService pool = Executors.newFixedThreadPool(2);
    try {
      for (int round = 0; round < 25; round++) {
        HolderPod pod = new HolderPod(CI, "ci-race-" + round, "uid-" + round);
        Caller podCaller = podCaller(pod);
        Caller next = Caller.of("bob", "bob");
        String mine = "pod-lock-" + round;
        String theirs = "bob-lock-" + round;
        assertThat(locks.lock(names, info(mine), podCaller, false, Map.of()))
            .isInstanceOf(LockService.Granted.class);
        CountDownLatch go = new CountDownLatch(1);
        java.util.concurrent.atomic.AtomicBoolean handedOver =
            new java.util.concurrent.atomic.AtomicBoolean();
        // The release, decided on the pod found gone, is asked again and again while the lock is
        // handed on, and once more after: it may release the pod's lock, never bob's.
        Future<List<LockService.Answer>> release =
            pool.submit(
                () -> {
                  go.await();
                  List<LockService.Answer> answers = new ArrayList<>();
                  boolean last;
                  do {
                    last = handedOver.get();
                    answers.add(locks.releaseVanishedPod(names, mine, pod));
                  } while (!last);
                  return answers;
                });
        Future<List<LockService.Answer>> handOver =
            pool.submit(
                () -> {
                  go.await();
                  List<LockService.Answer> answers = new ArrayList<>();
                  answers.add(locks.unlock(names, mine, podCaller));
                  answers.add(locks.lock(names, info(theirs), next, false, Map.of()));
                  handedOver.set(true);
                  return answers;
                });
        go.countDown();
        assertThat(release.get().stream().filter(a -> a instanceof LockService.Released).count())
            .isLessThanOrEqualTo(1);
        assertThat(handOver.get().get(1)).isInstanceOf(LockService.Granted.class);
        assertThat(harness.lockHolder("racing")).as("round " + round).isEqualTo(theirs);
        assertThat(locks.unlock(names, theirs, next)).isInstanceOf(LockService.Released.class);
      }
    } finally {
      pool.shutdownNow();
    }
  }
}
