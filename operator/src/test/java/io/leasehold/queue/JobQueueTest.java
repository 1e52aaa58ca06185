package io.leasehold.queue;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static io.leasehold.support.RunnerJobFixtures.create;
import static io.leasehold.support.RunnerJobFixtures.finish;
import static io.leasehold.support.RunnerJobFixtures.get;
import static io.leasehold.support.RunnerJobFixtures.running;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.QueueEntry;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.state.StateNames;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RunnerJobFixtures;
import io.leasehold.support.TerraformStates;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class JobQueueTest {

  private static OperatorHarness harness;

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static ConditionFactory eventually() {
    return await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(20));
  }

  static void createState(OperatorHarness h, String name, int leaseSeconds) {
    TerraformState state = new TerraformState();
    state.getMetadata().setName(name);
    state.getMetadata().setNamespace(NAMESPACE);
    state.getSpec().getLock().setLeaseDurationSeconds(leaseSeconds);
    h.client().resource(state).create();
  }

  private static Lease lease(String state) {
    return harness
        .client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName(new StateNames(NAMESPACE, state, "default").leaseName())
        .get();
  }

  private static Job job(String name) {
    return get(harness.client(), name);
  }

  private static List<String> queued(String state) {
    TerraformState s = harness.get(state);
    if (s == null || s.getStatus() == null || s.getStatus().getQueue() == null) {
      return List.of();
    }
    return s.getStatus().getQueue().stream().map(QueueEntry::getName).toList();
  }

  @Test
  @DisplayName(
      "When Jobs are created out of name order, then they run one at a time in creation order,"
          + " each holding the Lease while it runs")
  void admitsInCreationOrder() throws Exception {
    createState(harness, "fifo", 300);
    // Created within the same second or not, out of name order: arrival decides, not name.
    for (String name : List.of("fifo-d", "fifo-b", "fifo-c", "fifo-a")) {
      create(harness.client(), name, "fifo");
    }
    for (String expected : List.of("fifo-d", "fifo-b", "fifo-c", "fifo-a")) {
      eventually().until(() -> running(job(expected)));
      Job runningJob = job(expected);
      Lease lease = lease("fifo");
      assertThat(lease.getSpec().getHolderIdentity())
          .isEqualTo("job/" + expected + "/" + runningJob.getMetadata().getUid());
      assertThat(lease.getSpec().getLeaseDurationSeconds()).isEqualTo(300);
      assertThat(
              LockInfo.parse(
                  lease.getMetadata().getAnnotations().get(LeaseLock.LOCK_INFO_ANNOTATION)))
          .get()
          .satisfies(i -> assertThat(i.who()).isEqualTo("job/" + expected));
      assertThat(
              List.of("fifo-d", "fifo-b", "fifo-c", "fifo-a").stream()
                  .filter(n -> running(job(n)))
                  .toList())
          .containsExactly(expected);
      finish(harness.client(), expected, true);
    }
    eventually().until(() -> lease("fifo").getSpec().getHolderIdentity() == null);
    assertThat(harness.events("fifo-a"))
        // fifo-d already ran when fifo-a arrived: three were waiting.
        .contains("Normal Queued: waiting for the lock on fifo at position 3, behind Job fifo-c");
  }

  @Test
  @DisplayName(
      "When Jobs are created within the same second, then they run in the order the API server"
          + " accepted them, not in name order")
  void sameSecondKeepsTheOrderOfCreation() {
    // Names in reverse order: a queue ordered by name would run tie-x first.
    List<String> created = List.of("tie-z", "tie-y", "tie-x");
    created.forEach(n -> create(harness.client(), n, "tie"));
    createState(harness, "tie", 300);

    List<String> ran = new java.util.ArrayList<>();
    for (int i = 0; i < created.size(); i++) {
      eventually().until(() -> created.stream().anyMatch(n -> running(job(n))));
      String now = created.stream().filter(n -> running(job(n))).findFirst().orElseThrow();
      ran.add(now);
      finish(harness.client(), now, true);
      eventually().until(() -> RunnerJobs.finished(job(now)));
    }
    assertThat(ran).containsExactlyElementsOf(created);
  }

  @Test
  @DisplayName(
      "When the running Job fails or is deleted, or a queued Job is deleted, then the lock passes"
          + " to the next Job at once")
  void handsOffOnFailureAndDeletion() {
    createState(harness, "handoff", 300);
    create(harness.client(), "handoff-1st", "handoff");
    eventually().until(() -> running(job("handoff-1st")));
    create(harness.client(), "handoff-2nd", "handoff");
    create(harness.client(), "handoff-3rd", "handoff");
    create(harness.client(), "handoff-4th", "handoff");
    eventually().until(() -> queued("handoff").size() == 3);

    // The queued third Job is deleted: it simply leaves the queue.
    harness.client().batch().v1().jobs().inNamespace(NAMESPACE).withName("handoff-3rd").delete();
    eventually().until(() -> queued("handoff").size() == 2);

    finish(harness.client(), "handoff-1st", false);
    eventually().until(() -> running(job("handoff-2nd")));
    eventually()
        .until(() -> "handoff-2nd".equals(harness.get("handoff").getStatus().getRunningJob()));

    harness.client().batch().v1().jobs().inNamespace(NAMESPACE).withName("handoff-2nd").delete();
    eventually().until(() -> running(job("handoff-4th")));
    finish(harness.client(), "handoff-4th", true);
    eventually()
        .untilAsserted(
            () -> {
              assertThat(lease("handoff").getSpec().getHolderIdentity()).isNull();
              assertThat(harness.get("handoff").getStatus().getRunningJob()).isNull();
              assertThat(harness.get("handoff").getStatus().getQueued()).isZero();
            });
    eventually()
        .untilAsserted(
            () ->
                assertThat(harness.events("handoff"))
                    .anyMatch(
                        e ->
                            e.startsWith("Normal LockHandedOver")
                                && e.contains("handoff-1st")
                                && e.indexOf("handoff-1st") < e.indexOf("handoff-2nd")));
  }

  @Test
  @DisplayName(
      "When stock Terraform holds the lock, then Jobs wait, see who holds it, and are admitted"
          + " once Terraform unlocks")
  void terraformHolderBlocksAdmission() throws Exception {
    StateNames names = new StateNames(NAMESPACE, "shared", "default");
    LockInfo info = TerraformStates.terraformLock("laptop-lock", "frank@laptop");
    harness.client().resource(TerraformStates.heldLease(names, info)).create();
    createState(harness, "shared", 300);
    create(harness.client(), "shared-job", "shared");

    eventually().until(() -> queued("shared").equals(List.of("shared-job")));
    await()
        .during(Duration.ofMillis(500))
        .atMost(Duration.ofSeconds(5))
        .until(() -> !running(job("shared-job")));
    assertThat(RunnerJobs.suspended(job("shared-job"))).isTrue();
    assertThat(lease("shared").getSpec().getHolderIdentity()).isEqualTo("laptop-lock");
    eventually()
        .untilAsserted(
            () ->
                assertThat(harness.events("shared-job"))
                    .contains(
                        "Normal Queued: waiting for the lock on shared at position 1, behind the"
                            + " lock holder frank@laptop (apply)"));

    Lease held = lease("shared");
    held.getSpec().setHolderIdentity(null);
    held.getMetadata().setAnnotations(Map.of());
    harness.client().resource(held).update();

    eventually().until(() -> running(job("shared-job")));
    finish(harness.client(), "shared-job", true);
  }

  @Test
  @DisplayName("Two states' queues are independent: each runs its own head at the same time")
  void statesAreIndependent() {
    createState(harness, "left", 300);
    createState(harness, "right", 300);
    create(harness.client(), "left-job", "left");
    create(harness.client(), "left-next", "left");
    create(harness.client(), "right-job", "right");

    eventually().until(() -> running(job("left-job")) && running(job("right-job")));
    assertThat(running(job("left-next"))).isFalse();
    finish(harness.client(), "right-job", true);
    finish(harness.client(), "left-job", true);
    eventually().until(() -> running(job("left-next")));
    finish(harness.client(), "left-next", true);
  }

  @Test
  @DisplayName(
      "When a Job targets a state that does not exist, then it waits with a Warning and is"
          + " admitted once the state is created")
  void waitsForMissingState() {
    create(harness.client(), "orphan-job", "later");
    eventually()
        .untilAsserted(
            () ->
                assertThat(harness.events("orphan-job"))
                    .anyMatch(e -> e.startsWith("Warning StateNotFound: TerraformState 'later'")));
    assertThat(RunnerJobs.suspended(job("orphan-job"))).isTrue();

    createState(harness, "later", 300);

    eventually().until(() -> running(job("orphan-job")));
    finish(harness.client(), "orphan-job", true);
  }

  private static List<String> line(String state) {
    return LeaseLock.line(lease(state)).tickets().stream()
        .map(io.leasehold.lock.Ticket::who)
        .toList();
  }

  @Test
  @DisplayName(
      "When a labelled Job is created without suspend while another Job holds the lock, then it is"
          + " suspended, told why on the Job and the state, and runs once admitted in its turn")
  void unsuspendedJobIsSuspendedAndWaitsItsTurn() {
    createState(harness, "careless", 300);
    create(harness.client(), "careful-job", "careless");
    eventually().until(() -> running(job("careful-job")));
    harness.client().resource(RunnerJobFixtures.runner("careless-job", "careless", false)).create();

    eventually().until(() -> RunnerJobs.suspended(job("careless-job")));
    eventually().until(() -> queued("careless").equals(List.of("careless-job")));
    String warning =
        "Warning UnadmittedJobSuspended: Job careless-job targets careless but runs without having"
            + " been admitted";
    eventually()
        .untilAsserted(
            () -> {
              assertThat(harness.events("careless-job"))
                  .anyMatch(e -> e.startsWith(warning) && e.contains("held by job/careful-job"));
              assertThat(harness.events("careless")).anyMatch(e -> e.startsWith(warning));
            });
    assertThat(harness.get("careless").getStatus().getUnserializedRunners()).isNullOrEmpty();
    assertThat(running(job("careful-job"))).isTrue();

    finish(harness.client(), "careful-job", true);
    eventually().until(() -> running(job("careless-job")));
    finish(harness.client(), "careless-job", true);
  }

  @Test
  @DisplayName(
      "When a waiting Job is unsuspended by a user's patch while another Job holds the lock, then"
          + " it is suspended again with a Warning, the holder runs on untouched, and the patched"
          + " Job keeps its place in line and runs in its order")
  void patchedJobIsSuspendedAgainAndKeepsItsPlace() {
    createState(harness, "patched", 300);
    create(harness.client(), "patched-1", "patched");
    eventually().until(() -> running(job("patched-1")));
    String holder = lease("patched").getSpec().getHolderIdentity();
    for (String n : List.of("patched-2", "patched-3", "patched-4")) {
      create(harness.client(), n, "patched");
    }
    eventually()
        .until(() -> line("patched").equals(List.of("patched-2", "patched-3", "patched-4")));

    harness
        .client()
        .batch()
        .v1()
        .jobs()
        .inNamespace(NAMESPACE)
        .withName("patched-3")
        .patch(
            io.fabric8.kubernetes.client.dsl.base.PatchContext.of(
                io.fabric8.kubernetes.client.dsl.base.PatchType.JSON_MERGE),
            "{\"spec\":{\"suspend\":false}}");

    eventually()
        .untilAsserted(
            () ->
                assertThat(harness.events("patched-3"))
                    .anyMatch(
                        e ->
                            e.startsWith(
                                    "Warning UnadmittedJobSuspended: Job patched-3 targets patched"
                                        + " but runs without having been admitted")
                                && e.contains("the lock is held by job/patched-1")
                                && e.contains("suspended again")));
    assertThat(harness.events("patched"))
        .anyMatch(e -> e.startsWith("Warning UnadmittedJobSuspended: Job patched-3"));
    assertThat(RunnerJobs.suspended(job("patched-3"))).isTrue();
    assertThat(RunnerJobs.admitted(job("patched-3"))).isFalse();
    assertThat(running(job("patched-1"))).isTrue();
    assertThat(lease("patched").getSpec().getHolderIdentity()).isEqualTo(holder);
    assertThat(line("patched")).containsExactly("patched-2", "patched-3", "patched-4");

    for (String n : List.of("patched-2", "patched-3", "patched-4")) {
      String before = lease("patched").getSpec().getHolderIdentity();
      finish(harness.client(), before.split("/")[1], true);
      eventually().until(() -> running(job(n)));
      assertThat(
              List.of("patched-2", "patched-3", "patched-4").stream()
                  .filter(other -> running(job(other)))
                  .toList())
          .containsExactly(n);
    }
    finish(harness.client(), "patched-4", true);
    eventually().until(() -> lease("patched").getSpec().getHolderIdentity() == null);
  }

  @Test
  @DisplayName(
      "When a Job caught running unadmitted is suspended with its pod still running, then it is"
          + " admitted, though first in line with the lock free, only once that pod has ended")
  void caughtJobWaitsForItsPodToEnd() {
    harness.client().resource(RunnerJobFixtures.runner("caught-job", "caught", false)).create();
    // It started before anyone looked: the Job controller made a pod and counts it active.
    Job started = job("caught-job");
    io.fabric8.kubernetes.api.model.Pod pod =
        harness
            .client()
            .resource(
                new io.fabric8.kubernetes.api.model.PodBuilder()
                    .withNewMetadata()
                    .withName("caught-job-pod")
                    .withNamespace(NAMESPACE)
                    .addToLabels(JobAdmission.CONTROLLER_UID_LABEL, started.getMetadata().getUid())
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
    pod.setStatus(
        new io.fabric8.kubernetes.api.model.PodStatusBuilder().withPhase("Running").build());
    pod = harness.client().resource(pod).updateStatus();
    harness
        .client()
        .batch()
        .v1()
        .jobs()
        .inNamespace(NAMESPACE)
        .withName("caught-job")
        .editStatus(
            j -> {
              j.setStatus(
                  new io.fabric8.kubernetes.api.model.batch.v1.JobStatusBuilder()
                      .withActive(1)
                      .withStartTime(java.time.Instant.now().toString())
                      .build());
              return j;
            });
    createState(harness, "caught", 300);

    eventually().until(() -> RunnerJobs.suspended(job("caught-job")));
    await()
        .during(Duration.ofSeconds(2))
        .atMost(Duration.ofSeconds(10))
        .until(
            () ->
                !running(job("caught-job"))
                    && lease("caught").getSpec().getHolderIdentity() == null
                    && line("caught").equals(List.of("caught-job")));

    pod.setStatus(
        new io.fabric8.kubernetes.api.model.PodStatusBuilder().withPhase("Failed").build());
    harness.client().resource(pod).updateStatus();
    eventually().until(() -> running(job("caught-job")));
    finish(harness.client(), "caught-job", true);
  }

  @Test
  @DisplayName("While a Job runs, the operator renews its Lease well inside the duration")
  void renewsLeaseWhileRunning() {
    createState(harness, "renewed", 5);
    create(harness.client(), "renewed-job", "renewed");
    eventually().until(() -> running(job("renewed-job")));
    var firstRenewal = lease("renewed").getSpec().getRenewTime();

    await()
        .atMost(Duration.ofSeconds(10))
        .until(() -> lease("renewed").getSpec().getRenewTime().isAfter(firstRenewal));
    Lease lease = lease("renewed");
    assertThat(LeaseLock.expired(lease, java.time.Instant.now())).isFalse();
    assertThat(harness.get("renewed").getStatus().getLock().getVouched()).isTrue();
    finish(harness.client(), "renewed-job", true);
    eventually().until(() -> lease("renewed").getSpec().getHolderIdentity() == null);
    assertThat(lease("renewed").getSpec().getLeaseDurationSeconds()).isNull();
  }

  private static void relabel(String job, String state) {
    String pointer = "/metadata/labels/" + RunnerJobs.STATE_LABEL.replace("/", "~1");
    String patch =
        state == null
            ? "[{\"op\":\"remove\",\"path\":\"" + pointer + "\"}]"
            : "[{\"op\":\"replace\",\"path\":\"" + pointer + "\",\"value\":\"" + state + "\"}]";
    harness
        .client()
        .batch()
        .v1()
        .jobs()
        .inNamespace(NAMESPACE)
        .withName(job)
        .patch(
            io.fabric8.kubernetes.client.dsl.base.PatchContext.of(
                io.fabric8.kubernetes.client.dsl.base.PatchType.JSON),
            patch);
  }

  @Test
  @DisplayName(
      "When an admitted Job loses its state label, then it keeps the lock until it ends, no other"
          + " Job runs meanwhile, and its end hands the lock on")
  void unlabelledRunningJobKeepsTheLock() {
    createState(harness, "unlabelled", 300);
    create(harness.client(), "unlabelled-1", "unlabelled");
    create(harness.client(), "unlabelled-2", "unlabelled");
    eventually().until(() -> running(job("unlabelled-1")));
    String holder = lease("unlabelled").getSpec().getHolderIdentity();

    relabel("unlabelled-1", null);
    await()
        .during(Duration.ofSeconds(2))
        .atMost(Duration.ofSeconds(10))
        .until(
            () ->
                !running(job("unlabelled-2"))
                    && holder.equals(lease("unlabelled").getSpec().getHolderIdentity()));

    finish(harness.client(), "unlabelled-1", true);
    eventually().until(() -> running(job("unlabelled-2")));
    finish(harness.client(), "unlabelled-2", true);
    eventually().until(() -> lease("unlabelled").getSpec().getHolderIdentity() == null);
  }

  @Test
  @DisplayName(
      "When an admitted Job is relabelled to another state, then it still holds the first state's"
          + " lock until it ends, and it neither runs in nor blocks the other state's queue")
  void relabelledRunningJobStaysWithItsState() {
    createState(harness, "origin", 300);
    createState(harness, "elsewhere", 300);
    create(harness.client(), "origin-1", "origin");
    create(harness.client(), "origin-2", "origin");
    eventually().until(() -> running(job("origin-1")));

    relabel("origin-1", "elsewhere");
    create(harness.client(), "elsewhere-1", "elsewhere");
    // The other state's own Job is admitted: origin-1 does not count as its runner.
    eventually().until(() -> running(job("elsewhere-1")));
    await()
        .during(Duration.ofSeconds(1))
        .atMost(Duration.ofSeconds(10))
        .until(
            () ->
                !running(job("origin-2"))
                    && String.valueOf(lease("origin").getSpec().getHolderIdentity())
                        .startsWith("job/origin-1/"));

    finish(harness.client(), "origin-1", true);
    eventually().until(() -> running(job("origin-2")));
    assertThat(lease("elsewhere").getSpec().getHolderIdentity()).startsWith("job/elsewhere-1/");
    finish(harness.client(), "origin-2", true);
    finish(harness.client(), "elsewhere-1", true);
  }
}
