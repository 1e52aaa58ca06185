package io.leasehold.queue;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static io.leasehold.support.RunnerJobFixtures.create;
import static io.leasehold.support.RunnerJobFixtures.finish;
import static io.leasehold.support.RunnerJobFixtures.get;
import static io.leasehold.support.RunnerJobFixtures.running;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.QueueEntry;
import io.leasehold.api.TerraformState;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.state.StateNames;
import io.leasehold.support.BackendHttp;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.awaitility.core.ConditionFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * A runner Job's lock goes on only once the Job has ended, its pods included; a Job suspended again
 * by a user gives up the lock and waits in line again; a Lease deleted or edited by hand never
 * frees the lock under a running Job or client.
 */
class JobEndingTest {

  private static final String HOLD = "test.leasehold.io/hold";
  private static OperatorHarness harness;
  private static BackendHttp backend;

  @BeforeAll
  static void start() {
    harness = OperatorHarness.start();
    backend = new BackendHttp(harness.startBackend(64L * 1024 * 1024));
  }

  @AfterAll
  static void stop() {
    harness.close();
  }

  private static ConditionFactory eventually() {
    return await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(50));
  }

  private static void createState(String name) {
    TerraformState state = new TerraformState();
    state.getMetadata().setName(name);
    state.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(state).create();
  }

  private static Lease lease(String state) {
    return harness
        .client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName(new StateNames(NAMESPACE, state, "default").leaseName())
        .get();
  }

  private static String holder(String state) {
    Lease lease = lease(state);
    return lease == null ? null : lease.getSpec().getHolderIdentity();
  }

  private static Job job(String name) {
    return get(harness.client(), name);
  }

  /** A pod of {@code job} in phase {@code phase}, labelled as the Job controller labels it. */
  private static Pod pod(Job job, String phase) {
    Pod pod =
        harness
            .client()
            .resource(
                new PodBuilder()
                    .withNewMetadata()
                    .withName(job.getMetadata().getName() + "-pod")
                    .withNamespace(NAMESPACE)
                    .addToLabels(JobAdmission.CONTROLLER_UID_LABEL, job.getMetadata().getUid())
                    .endMetadata()
                    .withNewSpec()
                    .addNewContainer()
                    .withName("terraform")
                    .withImage("hashicorp/terraform:1.11")
                    .endContainer()
                    .endSpec()
                    .build())
            .create();
    return setPhase(pod, phase);
  }

  private static Pod setPhase(Pod pod, String phase) {
    return harness
        .client()
        .pods()
        .inNamespace(NAMESPACE)
        .withName(pod.getMetadata().getName())
        .editStatus(
            p -> {
              p.setStatus(new io.fabric8.kubernetes.api.model.PodStatus());
              p.getStatus().setPhase(phase);
              return p;
            });
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
      "When a running Job is deleted while its pod still runs (a finalizer holds the Job), then"
          + " it keeps the lock and the next Job waits; when the pod ends, the lock is handed on")
  void deletedJobKeepsTheLockWhileItsPodsRun() {
    createState("pods");
    Job first = create(harness.client(), "pods-1", "pods");
    create(harness.client(), "pods-2", "pods");
    eventually().until(() -> running(job("pods-1")));
    Pod pod = pod(first, "Running");
    harness
        .client()
        .batch()
        .v1()
        .jobs()
        .inNamespace(NAMESPACE)
        .withName("pods-1")
        .edit(
            j -> {
              j.getMetadata().setFinalizers(List.of(HOLD));
              return j;
            });

    harness.client().batch().v1().jobs().inNamespace(NAMESPACE).withName("pods-1").delete();

    eventually().until(() -> job("pods-1").getMetadata().getDeletionTimestamp() != null);
    await()
        .during(Duration.ofSeconds(3))
        .atMost(Duration.ofSeconds(10))
        .until(
            () -> holder("pods").startsWith("job/pods-1/") && !RunnerJobs.admitted(job("pods-2")));

    setPhase(pod, "Succeeded");

    eventually().until(() -> running(job("pods-2")) && holder("pods").startsWith("job/pods-2/"));
    // One Event tells the handover, on the state; none on either Job.
    assertThat(harness.events("pods"))
        .anyMatch(
            e ->
                e.startsWith("Normal LockHandedOver")
                    && e.indexOf("pods-1") < e.indexOf("pods-2")
                    && e.contains("pods-1"));
    assertThat(harness.events("pods-1")).noneMatch(e -> e.contains("LockReleased"));
    assertThat(harness.events("pods-2")).noneMatch(e -> e.contains("Admitted"));
    assertThat(job("pods-2").getMetadata().getAnnotations())
        .containsEntry(RunnerJobs.ADMITTED_FOR_ANNOTATION, "pods")
        .containsKey(RunnerJobs.ADMITTED_ANNOTATION);
    harness
        .client()
        .batch()
        .v1()
        .jobs()
        .inNamespace(NAMESPACE)
        .withName("pods-1")
        .edit(
            j -> {
              j.getMetadata().setFinalizers(List.of());
              return j;
            });
  }

  @Test
  @DisplayName(
      "When a running Job is marked Failed while its pod still terminates (its deadline passed),"
          + " then it keeps the lock and the next Job waits; when the pod ends, the lock is handed"
          + " on")
  void failedJobKeepsTheLockWhileItsPodTerminates() {
    createState("deadline");
    Job first = create(harness.client(), "deadline-1", "deadline");
    create(harness.client(), "deadline-2", "deadline");
    eventually().until(() -> running(job("deadline-1")));
    Pod pod = pod(first, "Running");

    finish(harness.client(), "deadline-1", false);

    await()
        .during(Duration.ofSeconds(3))
        .atMost(Duration.ofSeconds(10))
        .until(
            () ->
                holder("deadline").startsWith("job/deadline-1/")
                    && !RunnerJobs.admitted(job("deadline-2")));

    setPhase(pod, "Failed");

    eventually()
        .until(
            () -> running(job("deadline-2")) && holder("deadline").startsWith("job/deadline-2/"));
  }

  @Test
  @DisplayName(
      "When a running Job is gone but its pod still terminates, then the lock stays with it"
          + " until the pod is gone, and only then goes to the next Job")
  void goneJobKeepsTheLockUntilItsPodIsGone() {
    createState("gone");
    Job first = create(harness.client(), "gone-1", "gone");
    create(harness.client(), "gone-2", "gone");
    eventually().until(() -> running(job("gone-1")));
    Pod pod = pod(first, "Running");

    harness.client().batch().v1().jobs().inNamespace(NAMESPACE).withName("gone-1").delete();

    eventually().until(() -> job("gone-1") == null);
    await()
        .during(Duration.ofSeconds(3))
        .atMost(Duration.ofSeconds(10))
        .until(() -> holder("gone").startsWith("job/gone-1/") && !running(job("gone-2")));

    harness.client().resource(pod).delete();

    eventually().until(() -> running(job("gone-2")) && holder("gone").startsWith("job/gone-2/"));
  }

  @Test
  @DisplayName(
      "When a user suspends an admitted Job again, then once its pod has ended its lock goes to"
          + " the next Job with an Event, and it waits in line again at the back, to run again in"
          + " its turn")
  void resuspendedJobIsRequeued() {
    createState("evict");
    Job first = create(harness.client(), "evict-1", "evict");
    create(harness.client(), "evict-2", "evict");
    eventually().until(() -> running(job("evict-1")));
    Pod pod = pod(first, "Running");

    harness
        .client()
        .batch()
        .v1()
        .jobs()
        .inNamespace(NAMESPACE)
        .withName("evict-1")
        .edit(
            j -> {
              j.getSpec().setSuspend(true);
              return j;
            });

    await()
        .during(Duration.ofSeconds(2))
        .atMost(Duration.ofSeconds(10))
        .until(() -> holder("evict").startsWith("job/evict-1/") && !running(job("evict-2")));

    setPhase(pod, "Failed");

    eventually()
        .until(
            () ->
                running(job("evict-2"))
                    && !RunnerJobs.admitted(job("evict-1"))
                    && queued("evict").equals(List.of("evict-1")));
    assertThat(harness.events("evict-1")).anyMatch(e -> e.startsWith("Normal Requeued"));
    assertThat(RunnerJobs.suspended(job("evict-1"))).isTrue();

    finish(harness.client(), "evict-2", true);

    eventually().until(() -> running(job("evict-1")) && holder("evict").startsWith("job/evict-1/"));
  }

  @Test
  @DisplayName(
      "When the Lease is deleted by hand under a running Job, then it is recreated held for that"
          + " Job at once: a client asking right after never gets the lock")
  void deletedLeaseIsRecreatedHeldForTheJob() {
    createState("relet");
    create(harness.client(), "relet-1", "relet");
    eventually().until(() -> running(job("relet-1")));
    String jobLock = holder("relet");

    harness.client().resource(lease("relet")).delete();
    BackendHttp.Answer asked =
        backend.lock(NAMESPACE + "/relet", BackendHttp.lockInfo("sneak-1", "eve@laptop"), null);

    assertThat(asked.status()).isEqualTo(423);
    eventually().until(() -> lease("relet") != null);
    assertThat(holder("relet")).isEqualTo(jobLock);
    assertThat(LeaseLock.running(lease("relet"))).isNotEmpty();
    finish(harness.client(), "relet-1", true);
    eventually().until(() -> holder("relet") == null);
  }

  @Test
  @DisplayName(
      "When the Lease is deleted by hand while a client holds the lock mid-apply, then it is"
          + " recreated held by that client, whose write and unlock go through")
  void deletedLeaseIsRecreatedHeldForTheClient() {
    createState("relet-client");
    eventually().until(() -> lease("relet-client") != null);
    String state = NAMESPACE + "/relet-client";
    LockInfo mine = BackendHttp.lockInfo("apply-1", "alice@laptop");
    assertThat(backend.lock(state, mine, null).status()).isEqualTo(200);
    eventually()
        .until(
            () ->
                harness.get("relet-client").getStatus() != null
                    && "alice@laptop (apply)"
                        .equals(harness.get("relet-client").getStatus().getHolder()));

    harness.client().resource(lease("relet-client")).delete();

    assertThat(backend.post(state, "apply-1", TerraformStates.stateJson(1, "lin-r", 1)).status())
        .isEqualTo(200);
    assertThat(holder("relet-client")).isEqualTo("apply-1");
    assertThat(backend.unlock(state, mine).status()).isEqualTo(200);
    assertThat(holder("relet-client")).isNull();
  }

  @Test
  @DisplayName(
      "When the Lease is edited by hand from one runner Job's lock to another's, then a"
          + " LockChangedOutsideLeasehold Warning says so (not a hand-over), and the second Job is"
          + " not started while the first still runs")
  void handEditedLeaseIsReportedAsSuch() {
    createState("edited");
    create(harness.client(), "edited-1", "edited");
    Job second = create(harness.client(), "edited-2", "edited");
    eventually().until(() -> running(job("edited-1")));
    eventually()
        .until(
            () ->
                harness.status("edited").getLock() != null
                    && harness.status("edited").getLock().getId().startsWith("job/"));
    String secondLock = LeaseLock.jobLockId("edited-2", second.getMetadata().getUid());
    LockInfo info =
        new LockInfo(secondLock, "leasehold-run", "", "job/edited-2", "leasehold", "", "");

    harness
        .client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName(lease("edited").getMetadata().getName())
        .edit(
            l -> {
              l.getSpec().setHolderIdentity(secondLock);
              l.getMetadata()
                  .getAnnotations()
                  .putAll(
                      Map.of(
                          LeaseLock.LOCK_INFO_ANNOTATION,
                          info.toJson(),
                          LeaseLock.HELD_FOR_ANNOTATION,
                          secondLock));
              return l;
            });

    eventually()
        .until(
            () ->
                harness.events("edited").stream()
                    .anyMatch(e -> e.startsWith("Warning LockChangedOutsideLeasehold")));
    assertThat(harness.events("edited")).noneMatch(e -> e.contains("LockHandedOver"));
    await()
        .during(Duration.ofSeconds(2))
        .atMost(Duration.ofSeconds(10))
        .until(() -> !RunnerJobs.admitted(job("edited-2")));

    finish(harness.client(), "edited-1", true);

    eventually().until(() -> running(job("edited-2")));
  }
}
