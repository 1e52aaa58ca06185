package io.leasehold.cluster;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.support.Terraform;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Runner Jobs on a real control plane: the chart's admission policies judged by the real API
 * server, the real Job controller creating pods, the real scheduler placing them on the fake node,
 * kwok running them, the operator (the production jar, the chart's ServiceAccount and RBAC)
 * admitting them one at a time and handing the lock on when a pod ends.
 */
class RunnerJobsClusterIT {

  private static final Duration WAIT = Duration.ofSeconds(60);
  private static final ObjectMapper JSON = new ObjectMapper();

  private static RealCluster cluster;
  private static KubernetesClient admin;
  private static String ns;
  private static ClusterOperator operator;

  @TempDir Path work;

  @BeforeAll
  static void start() throws Exception {
    cluster = RealCluster.get();
    admin = cluster.admin();
    ns = cluster.newNamespace("jobs");
    ChartInstall chart = ChartInstall.apply(cluster, ns);
    ChartInstall.awaitCrd(admin);
    operator = ClusterOperator.start(cluster, chart, ns, 1);
  }

  /** A TerraformState of the test's own, Ready. */
  private static String newState(String name) {
    admin.resource(ClusterFixtures.state(ns, name)).create();
    ClusterFixtures.awaitReady(admin, ns, name);
    return name;
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
      "A runner Job created without spec.suspend is suspended by the chart's mutating policy,"
          + " admitted by the operator, run by the Job controller on the fake node, and the lock"
          + " goes to the next Job only once the first one's pod has ended")
  void jobsRunOneAtATimeThroughTheJobController() {
    String state = newState("network");
    Job first = admin.resource(ClusterFixtures.runnerJob(ns, "first", state, true)).create();
    assertThat(first.getSpec().getSuspend())
        .as("spec.suspend set at creation by the MutatingAdmissionPolicy")
        .isTrue();
    Job second = admin.resource(ClusterFixtures.runnerJob(ns, "second", state, true)).create();
    assertThat(second.getSpec().getSuspend()).isTrue();

    Pod pod = ClusterFixtures.awaitRunningPod(admin, ns, "first", WAIT);
    assertThat(pod.getSpec().getNodeName()).as("placed by the scheduler").isEqualTo("kwok-node-0");
    assertThat(holder(state)).contains("first");
    await()
        .atMost(WAIT)
        .untilAsserted(
            () ->
                assertThat(ClusterFixtures.status(admin, ns, state).getQueued())
                    .as("the second Job waits in line")
                    .isEqualTo(1));
    assertThat(job("second").getSpec().getSuspend()).as("second still suspended").isTrue();
    assertThat(admin.pods().inNamespace(ns).withLabel("job-name", "second").list().getItems())
        .as("no pod of the second Job while the first runs")
        .isEmpty();

    // The first Job's pod finishes; the Job controller marks it Complete; the lock moves on.
    ClusterFixtures.release(admin, pod);
    Pod secondPod = ClusterFixtures.awaitRunningPod(admin, ns, "second", WAIT);
    Job done = job("first");
    assertThat(RunnerJobs.finished(done)).as("first Job complete").isTrue();
    Instant firstEnded = Instant.parse(done.getStatus().getCompletionTime());
    Instant secondStarted = Instant.parse(secondPod.getMetadata().getCreationTimestamp());
    assertThat(secondStarted)
        .as("second pod created after first ended")
        .isAfterOrEqualTo(firstEnded.minusSeconds(1));
    assertThat(holder(state)).contains("second");

    ClusterFixtures.release(admin, secondPod);
    await()
        .atMost(WAIT)
        .untilAsserted(
            () -> assertThat(holder(state)).as("lock free after the last Job").isEmpty());
  }

  @Test
  @DisplayName(
      "Unsuspending a waiting runner Job is refused by the chart's validating policy for anyone but"
          + " the operator, cluster admins included")
  void nobodyButTheOperatorUnsuspendsAWaitingJob() {
    String state = newState("dns");
    Job blocker = admin.resource(ClusterFixtures.runnerJob(ns, "blocker", state, true)).create();
    Pod running = ClusterFixtures.awaitRunningPod(admin, ns, "blocker", WAIT);
    admin.resource(ClusterFixtures.runnerJob(ns, "eager", state, true)).create();
    assertThatThrownBy(
            () ->
                admin
                    .batch()
                    .v1()
                    .jobs()
                    .inNamespace(ns)
                    .withName("eager")
                    .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"spec\":{\"suspend\":false}}"))
        .isInstanceOf(KubernetesClientException.class)
        .satisfies(e -> assertThat(((KubernetesClientException) e).getCode()).isEqualTo(403))
        .hasMessageContaining("leasehold");
    assertThat(job("eager").getSpec().getSuspend()).isTrue();
    ClusterFixtures.release(admin, running);
    ClusterFixtures.awaitRunningPod(admin, ns, "eager", WAIT);
    assertThat(blocker.getMetadata().getUid()).isNotNull();
    ClusterFixtures.release(admin, ClusterFixtures.awaitRunningPod(admin, ns, "eager", WAIT));
    await().atMost(WAIT).untilAsserted(() -> assertThat(holder(state)).isEmpty());
  }

  @Test
  @DisplayName(
      "The admitted Job's pod, authenticated by a token bound to it (audience leasehold), runs a"
          + " real terraform apply through the backend at once, while a runner that is not that"
          + " pod is told the Job holds the lock")
  void theAdmittedPodAppliesWhileOthersAreToldWhoHolds() throws Exception {
    String state = newState("storage");
    Job job = admin.resource(ClusterFixtures.runnerJob(ns, "apply", state, true)).create();
    Pod pod = ClusterFixtures.awaitRunningPod(admin, ns, "apply", WAIT);
    String ca = operator.caPem(WAIT);
    String url = operator.replica(0).stateUrl(state);

    Terraform podTerraform = new Terraform(Files.createDirectories(work.resolve("pod")));
    podTerraform.writeConfig(
        Terraform.httpBackend(url, "25s") + "resource \"terraform_data\" \"a\" { input = 1 }\n");
    podTerraform
        .env("TF_HTTP_USERNAME", "runner")
        .env("TF_HTTP_PASSWORD", cluster.podToken(pod, "leasehold"))
        .env("TF_HTTP_CLIENT_CA_CERTIFICATE_PEM", ca);
    podTerraform.run("init", "-input=false").assertOk();
    podTerraform.run("apply", "-auto-approve", "-lock-timeout=0s").assertOk();

    // Another runner of the same namespace, not the Job's pod: the lock is the Job's.
    Terraform other = new Terraform(Files.createDirectories(work.resolve("other")));
    other.writeConfig(
        Terraform.httpBackend(url, null) + "resource \"terraform_data\" \"a\" { input = 2 }\n");
    other
        .env("TF_HTTP_USERNAME", "runner")
        .env(
            "TF_HTTP_PASSWORD",
            cluster.token(ns, ChartInstall.RUNNER, "leasehold", Duration.ofMinutes(30)))
        .env("TF_HTTP_CLIENT_CA_CERTIFICATE_PEM", ca);
    other.run("init", "-input=false").assertOk();
    Terraform.Result refused = other.run("apply", "-auto-approve", "-lock-timeout=0s");
    assertThat(refused.exitCode()).as("refused while the Job holds the lock").isNotZero();
    assertThat(refused.output() + refused.errors()).contains("Error acquiring the state lock");

    assertThat(ClusterFixtures.status(admin, ns, state).getState().getSerial())
        .as("the pod's apply was stored")
        .isGreaterThanOrEqualTo(1L);
    ClusterFixtures.release(admin, pod);
    await().atMost(WAIT).untilAsserted(() -> assertThat(holder(state)).isEmpty());
    assertThat(job.getMetadata().getName()).isEqualTo("apply");
    Terraform.Result after = other.run("apply", "-auto-approve", "-lock-timeout=30s");
    after.assertOk();
  }

  private static Job job(String name) {
    return admin.batch().v1().jobs().inNamespace(ns).withName(name).get();
  }

  /** The lock Lease's holderIdentity ("" when free). */
  private static String holder(String state) {
    Lease lease = admin.leases().inNamespace(ns).withName("lock-tfstate-default-" + state).get();
    return lease == null || lease.getSpec().getHolderIdentity() == null
        ? ""
        : lease.getSpec().getHolderIdentity();
  }
}
