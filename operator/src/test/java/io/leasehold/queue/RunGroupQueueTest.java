package io.leasehold.queue;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static io.leasehold.support.RunnerJobFixtures.finish;
import static io.leasehold.support.RunnerJobFixtures.get;
import static io.leasehold.support.RunnerJobFixtures.running;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobBuilder;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.Ticket;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.state.StateNames;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RunnerJobFixtures;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Run groups on the embedded API: waiting runner Jobs of one leasehold.io/run-group collapse to the
 * newest, which alone runs; the older ones stay suspended, marked skipped (deleted once the newest
 * has ended), and are told which Job runs instead.
 */
class RunGroupQueueTest {

  private static final String GROUP = "network-apply";
  private static OperatorHarness harness;
  private static LeaseholdMetrics metrics;

  @BeforeAll
  static void start() {
    metrics = LeaseholdMetrics.discarding();
    harness = OperatorHarness.start(metrics);
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static ConditionFactory eventually() {
    return await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(20));
  }

  private static void createState(String name, Boolean skipRedundant) {
    TerraformState state = new TerraformState();
    state.getMetadata().setName(name);
    state.getMetadata().setNamespace(NAMESPACE);
    state.getSpec().getQueue().setSkipRedundant(skipRedundant);
    harness.client().resource(state).create();
  }

  /** Creates a waiting runner Job of {@code state}, in run group {@code group} (null: none). */
  private static Job create(String name, String state, String group, String run) {
    JobBuilder b = new JobBuilder(RunnerJobFixtures.runner(name, state, true));
    if (group != null) {
      b.editMetadata().addToLabels(RunGroups.GROUP_LABEL, group).endMetadata();
    }
    if (run != null) {
      b.editMetadata().addToLabels(RunGroups.RUN_LABEL, run).endMetadata();
    }
    return harness.client().resource(b.build()).create();
  }

  private static Job job(String name) {
    return get(harness.client(), name);
  }

  private static boolean skipped(String name) {
    return RunGroups.skipped(job(name));
  }

  /**
   * The skipped Job {@code name} is deleted once the Job that ran instead has ended, which happens
   * only to a Job never admitted (an admitted Job is never deleted).
   */
  private static void neverAdmittedThenDeleted(String name) {
    eventually().until(() -> job(name) == null || RunnerJobs.admitted(job(name)));
    assertThat(job(name)).as(name + " deleted, never admitted").isNull();
  }

  private static double skippedCount() {
    return metrics.registry().get("leasehold.queue.skipped").counter().count();
  }

  /** The names of the Jobs in the state's line, in order. */
  private static List<String> line(String state) {
    Lease lease =
        harness
            .client()
            .leases()
            .inNamespace(NAMESPACE)
            .withName(new StateNames(NAMESPACE, state, "default").leaseName())
            .get();
    if (lease == null) {
      return List.of();
    }
    return LeaseLock.line(lease).tickets().stream().filter(Ticket::isJob).map(Ticket::who).toList();
  }

  /** Who holds the state's lock, as its Lease names it; null when nobody does. */
  private static String holder(String state) {
    return harness
        .client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName(new StateNames(NAMESPACE, state, "default").leaseName())
        .get()
        .getSpec()
        .getHolderIdentity();
  }

  /** Waits for {@code name} to run, then finishes it. */
  private static void runToEnd(String name) {
    eventually().until(() -> running(job(name)));
    finish(harness.client(), name, true);
    eventually().until(() -> RunnerJobs.finished(job(name)));
  }

  @Test
  @DisplayName(
      "When three applies of one group queue behind a running Job of that group, then the two"
          + " older are skipped (suspended, labelled, Events naming the newest), the running Job"
          + " is left alone, when it ends only the newest is admitted, and once that has ended"
          + " the skipped Jobs are deleted")
  void threeAppliesCollapseToTheNewest() {
    createState("collapse", null);
    double before = skippedCount();
    create("collapse-running", "collapse", GROUP, null);
    eventually().until(() -> running(job("collapse-running")));
    create("collapse-1", "collapse", GROUP, null);
    create("collapse-2", "collapse", GROUP, "apply");
    create("collapse-3", "collapse", GROUP, null);

    eventually().until(() -> skipped("collapse-1") && skipped("collapse-2"));
    eventually().until(() -> line("collapse").equals(List.of("collapse-3")));
    // collapse-1 is skipped for a newer Job of its group: collapse-3, or collapse-2 when the
    // operator saw collapse-2 queued before collapse-3 was created.
    for (String old : List.of("collapse-1", "collapse-2")) {
      Job j = job(old);
      String newer = j.getMetadata().getAnnotations().get(RunGroups.SKIPPED_FOR_ANNOTATION);
      assertThat(newer)
          .isIn(
              old.equals("collapse-1")
                  ? List.of("collapse-2", "collapse-3")
                  : List.of("collapse-3"));
      assertThat(j.getMetadata().getAnnotations()).containsKey(RunGroups.SKIPPED_AT_ANNOTATION);
      assertThat(RunnerJobs.suspended(j)).isTrue();
      assertThat(harness.events(old))
          .anyMatch(
              e ->
                  e.startsWith("Normal Skipped: skipped: Job " + newer + " of run group " + GROUP)
                      && e.contains("never admitted"));
      assertThat(harness.events("collapse"))
          .anyMatch(
              e -> e.startsWith("Normal Skipped: runner Job " + old + " skipped: Job " + newer));
    }
    assertThat(skippedCount() - before).isEqualTo(2.0);
    // The running Job of the group is never touched.
    assertThat(running(job("collapse-running"))).isTrue();
    assertThat(RunGroups.skipped(job("collapse-running"))).isFalse();

    finish(harness.client(), "collapse-running", true);
    eventually().until(() -> running(job("collapse-3")));
    // While the newer Job runs, the skipped ones are kept as they were: never admitted.
    for (String old : List.of("collapse-1", "collapse-2")) {
      assertThat(RunnerJobs.admitted(job(old))).as(old + " never admitted").isFalse();
      assertThat(RunnerJobs.suspended(job(old))).isTrue();
    }
    finish(harness.client(), "collapse-3", true);
    eventually()
        .until(
            () ->
                harness.get("collapse").getStatus() != null
                    && harness.get("collapse").getStatus().getRunningJob() == null
                    && line("collapse").isEmpty());
    // Once it has ended they are deleted, so Jobs that never ran do not pile up.
    eventually().until(() -> job("collapse-1") == null && job("collapse-2") == null);
    assertThat(harness.get("collapse").getStatus().getQueue()).isNullOrEmpty();
  }

  @Test
  @DisplayName(
      "When a destroy waits between applies of one group, then no apply before it is skipped by"
          + " one after it, the destroy is never skipped, and they run in order")
  void aWaitingDestroyStopsTheCollapse() {
    createState("barrier", null);
    create("barrier-running", "barrier", null, null);
    eventually().until(() -> running(job("barrier-running")));
    create("barrier-1", "barrier", GROUP, null);
    create("barrier-destroy", "barrier", GROUP, "destroy");
    create("barrier-2", "barrier", GROUP, null);
    create("barrier-3", "barrier", GROUP, null);

    // barrier-2 skipped for barrier-3 shows the group was looked at with all four waiting.
    eventually().until(() -> skipped("barrier-2"));
    assertThat(job("barrier-2").getMetadata().getAnnotations())
        .containsEntry(RunGroups.SKIPPED_FOR_ANNOTATION, "barrier-3");
    assertThat(skipped("barrier-1")).isFalse();
    assertThat(skipped("barrier-destroy")).isFalse();
    eventually()
        .until(() -> line("barrier").equals(List.of("barrier-1", "barrier-destroy", "barrier-3")));

    finish(harness.client(), "barrier-running", true);
    runToEnd("barrier-1");
    runToEnd("barrier-destroy");
    runToEnd("barrier-3");
    neverAdmittedThenDeleted("barrier-2");
  }

  @Test
  @DisplayName(
      "When plans of a group queue among its applies, then the plans are never skipped and never"
          + " skip an apply, while the applies collapse across them")
  void plansAreNeverSkipped() {
    createState("plans", null);
    create("plans-running", "plans", GROUP, null);
    eventually().until(() -> running(job("plans-running")));
    create("plans-p1", "plans", GROUP, "plan");
    create("plans-a1", "plans", GROUP, null);
    create("plans-p2", "plans", GROUP, "plan");
    create("plans-a2", "plans", GROUP, null);
    create("plans-p3", "plans", GROUP, "plan");

    eventually().until(() -> skipped("plans-a1"));
    eventually()
        .until(() -> line("plans").equals(List.of("plans-p1", "plans-p2", "plans-a2", "plans-p3")));
    assertThat(List.of("plans-p1", "plans-p2", "plans-a2", "plans-p3"))
        .noneMatch(RunGroupQueueTest::skipped);
  }

  @Test
  @DisplayName(
      "When Jobs carry no run-group label, then none is skipped, however many wait: all run in"
          + " their turn")
  void withoutTheLabelNothingIsSkipped() {
    createState("unlabelled", null);
    create("unlabelled-running", "unlabelled", null, null);
    eventually().until(() -> running(job("unlabelled-running")));
    create("unlabelled-1", "unlabelled", null, null);
    create("unlabelled-g1", "unlabelled", GROUP, null);
    create("unlabelled-2", "unlabelled", null, null);
    create("unlabelled-g2", "unlabelled", GROUP, null);

    // The grouped pair shows the Jobs were looked at together.
    eventually().until(() -> skipped("unlabelled-g1"));
    eventually()
        .until(
            () ->
                line("unlabelled")
                    .equals(List.of("unlabelled-1", "unlabelled-2", "unlabelled-g2")));
    assertThat(skipped("unlabelled-1") || skipped("unlabelled-2")).isFalse();

    finish(harness.client(), "unlabelled-running", true);
    runToEnd("unlabelled-1");
    runToEnd("unlabelled-2");
    runToEnd("unlabelled-g2");
  }

  @Test
  @DisplayName(
      "When the state sets spec.queue.skipRedundant: false, then applies of one group are not"
          + " skipped: each runs in its turn; set back to true, the older waiting ones are")
  void settingOffSkipsNothing() {
    createState("kept", false);
    create("kept-running", "kept", GROUP, null);
    eventually().until(() -> running(job("kept-running")));
    create("kept-1", "kept", GROUP, null);
    create("kept-2", "kept", GROUP, null);
    create("kept-3", "kept", GROUP, null);

    // Lined up: the pass that would have skipped them has run.
    eventually().until(() -> line("kept").equals(List.of("kept-1", "kept-2", "kept-3")));
    assertThat(List.of("kept-1", "kept-2", "kept-3")).noneMatch(RunGroupQueueTest::skipped);

    finish(harness.client(), "kept-running", true);
    eventually().until(() -> running(job("kept-1")));
    assertThat(List.of("kept-2", "kept-3")).noneMatch(RunGroupQueueTest::skipped);
    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("kept")
        .patch(
            PatchContext.of(PatchType.JSON_MERGE),
            "{\"spec\":{\"queue\":{\"skipRedundant\":true}}}");
    eventually().until(() -> skipped("kept-2"));
    assertThat(skipped("kept-3")).isFalse();
    assertThat(running(job("kept-1"))).as("the running Job is left alone").isTrue();
    finish(harness.client(), "kept-1", true);
    runToEnd("kept-3");
    neverAdmittedThenDeleted("kept-2");
  }

  @Test
  @DisplayName(
      "When the operator stopped after taking the lock for a Job but before unsuspending it, and a"
          + " newer Job of its group is queued, then that Job is not skipped: it runs, then the"
          + " newer one")
  void aJobWhoseLockIsTakenIsNeverSkipped() {
    try (OperatorHarness h = OperatorHarness.apiOnly()) {
      StateNames names = new StateNames(NAMESPACE, "taken", "default");
      JobQueueTest.createState(h, "taken", 300);
      Job old =
          h.client()
              .resource(
                  new JobBuilder(RunnerJobFixtures.runner("taken-old", "taken", true))
                      .editMetadata()
                      .addToLabels(RunGroups.GROUP_LABEL, GROUP)
                      .endMetadata()
                      .build())
              .create();
      h.client()
          .resource(
              new JobBuilder(RunnerJobFixtures.runner("taken-new", "taken", true))
                  .editMetadata()
                  .addToLabels(RunGroups.GROUP_LABEL, GROUP)
                  .endMetadata()
                  .build())
          .create();
      // As the operator left it: the lock held for taken-old, which is still suspended.
      String lockId = LeaseLock.jobLockId("taken-old", old.getMetadata().getUid());
      h.client()
          .resource(
              LeaseLock.heldForRunning(
                  names,
                  new LockInfo(
                      lockId, JobAdmission.OPERATION, "", "job/taken-old", "leasehold", "", ""),
                  300,
                  java.time.Instant.now(),
                  List.of(new LeaseLock.RunningJob(old.getMetadata().getUid(), "taken-old"))))
          .create();
      h.startOperator();
      eventually().until(() -> running(get(h.client(), "taken-old")));
      assertThat(RunGroups.skipped(get(h.client(), "taken-old"))).isFalse();
      assertThat(RunGroups.skipped(get(h.client(), "taken-new"))).isFalse();
      finish(h.client(), "taken-old", true);
      eventually().until(() -> running(get(h.client(), "taken-new")));
    }
  }

  @Test
  @DisplayName(
      "When the older Job is first in line for a free lock as the newer one of its group arrives,"
          + " then it is skipped and never takes the lock: the newer one does")
  void firstInLineIsSkippedBeforeItTakesTheFreeLock() {
    createState("head", null);
    create("head-running", "head", null, null);
    eventually().until(() -> running(job("head-running")));
    hold("head", true);
    create("head-old", "head", GROUP, null);
    eventually().until(() -> line("head").equals(List.of("head-old")));
    finish(harness.client(), "head-running", true);
    eventually().until(() -> holder("head") == null);
    // The lock is free, head-old first in line; the newer one arrives as the queue is let go.
    create("head-new", "head", GROUP, null);
    hold("head", false);
    eventually().until(() -> running(job("head-new")));
    assertThat(skipped("head-old")).isTrue();
    assertThat(RunnerJobs.admitted(job("head-old"))).isFalse();
  }

  @Test
  @DisplayName(
      "When the running Job ends at the moment a newer Job of the waiting one's group is"
          + " created, then either the waiting one ran (not skipped) or it was skipped and never"
          + " admitted: never both, and exactly one of the two runs")
  void endAndArrivalAtOnce() throws Exception {
    List<String> outcomes = new ArrayList<>();
    for (int i = 0; i < 6; i++) {
      String state = "race-" + (char) ('a' + i);
      createState(state, null);
      create(state + "-running", state, null, null);
      eventually().until(() -> running(job(state + "-running")));
      create(state + "-old", state, GROUP, null);
      eventually().until(() -> line(state).equals(List.of(state + "-old")));

      Runnable end = () -> finish(harness.client(), state + "-running", true);
      Runnable arrive = () -> create(state + "-new", state, GROUP, null);
      // At once, the end first, the arrival first: the operator may see both in one pass.
      switch (i % 3) {
        case 0 -> concurrently(end, arrive);
        case 1 -> {
          end.run();
          arrive.run();
        }
        default -> {
          arrive.run();
          end.run();
        }
      }

      eventually().until(() -> running(job(state + "-old")) || running(job(state + "-new")));
      Job old = job(state + "-old");
      Job fresh = job(state + "-new");
      assertThat(RunGroups.skipped(old) && RunnerJobs.admitted(old))
          .as("%s: skipped and admitted", state)
          .isFalse();
      assertThat(running(old) && running(fresh)).as("%s: both run", state).isFalse();
      assertThat(RunGroups.skipped(fresh)).as("%s: the newer one skipped", state).isFalse();
      if (running(old)) {
        outcomes.add("old ran");
        // Then the newer one waits its turn behind it, not skipped.
        runToEnd(state + "-old");
        runToEnd(state + "-new");
      } else {
        assertThat(RunGroups.skipped(old))
            .as("%s: old neither ran nor was skipped", state)
            .isTrue();
        outcomes.add("old skipped");
        runToEnd(state + "-new");
        neverAdmittedThenDeleted(state + "-old");
      }
    }
    assertThat(outcomes).hasSize(6);
  }

  private static void hold(String state, boolean hold) {
    harness
        .client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName(state)
        .patch(
            PatchContext.of(PatchType.JSON_MERGE),
            "{\"spec\":{\"queue\":{\"hold\":" + hold + "}}}");
  }

  /** Runs both at once, each started on the same signal. */
  private static void concurrently(Runnable first, Runnable second) throws Exception {
    CountDownLatch go = new CountDownLatch(1);
    CompletableFuture<Void> a =
        CompletableFuture.runAsync(
            () -> {
              awaitLatch(go);
              first.run();
            });
    CompletableFuture<Void> b =
        CompletableFuture.runAsync(
            () -> {
              awaitLatch(go);
              second.run();
            });
    go.countDown();
    CompletableFuture.allOf(a, b).get();
  }

  private static void awaitLatch(CountDownLatch latch) {
    try {
      latch.await();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }
}
