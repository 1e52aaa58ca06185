package io.leasehold.embedded;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.TerraformState;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RunnerJobFixtures;
import java.time.Duration;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * {@code run --embedded} installs the chart's admission policies: the embedded API then treats
 * runner Jobs as a cluster with the chart installed does, and the operator admits them through
 * those policies.
 */
class EmbeddedAdmissionTest {

  private OperatorHarness harness;
  private KubernetesClient user;

  @BeforeEach
  void start() {
    harness = OperatorHarness.apiOnly();
    harness.api().installAdmissionPolicies();
    harness.startOperator();
    user = harness.api().newClient(null);
  }

  @AfterEach
  void stop() {
    user.close();
    harness.close();
  }

  private Job job(String name) {
    return RunnerJobFixtures.get(harness.client(), name);
  }

  @Test
  @DisplayName(
      "Runner Jobs written without suspend come back suspended and queue: the first is admitted,"
          + " the second waits, nobody else can unsuspend it, and it runs when the first ends")
  void runnerJobsWithoutSuspendAreQueued() {
    TerraformState state = new TerraformState();
    state.getMetadata().setName("network");
    state.getMetadata().setNamespace(NAMESPACE);
    user.resource(state).create();

    Job first = RunnerJobFixtures.runner("first", "network", false);
    first.getSpec().setSuspend(null);
    assertThat(user.resource(first).create().getSpec().getSuspend()).isTrue();
    Job second = RunnerJobFixtures.runner("second", "network", false);
    assertThat(user.resource(second).create().getSpec().getSuspend()).isTrue();

    await()
        .atMost(Duration.ofSeconds(20))
        .untilAsserted(
            () -> {
              assertThat(RunnerJobFixtures.running(job("first"))).isTrue();
              TerraformState s = harness.get("network");
              assertThat(s.getStatus()).isNotNull();
              assertThat(s.getStatus().getQueued()).isEqualTo(1);
            });
    assertThat(RunnerJobs.suspended(job("second"))).isTrue();
    assertThat(harness.get("network").getStatus().getUnserializedRunners()).isNullOrEmpty();

    assertThatThrownBy(
            () ->
                user.batch()
                    .v1()
                    .jobs()
                    .inNamespace(NAMESPACE)
                    .withName("second")
                    .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"spec\":{\"suspend\":false}}"))
        .isInstanceOfSatisfying(
            KubernetesClientException.class,
            e -> {
              assertThat(e.getCode()).isEqualTo(403);
              assertThat(e.getStatus().getMessage())
                  .contains("only leasehold (" + EmbeddedKubernetes.OPERATOR_USER + ")");
            });
    assertThat(RunnerJobs.suspended(job("second"))).isTrue();

    RunnerJobFixtures.finish(harness.client(), "first", true);
    await().atMost(Duration.ofSeconds(20)).until(() -> RunnerJobFixtures.running(job("second")));
  }

  @Test
  @DisplayName("Jobs without the leasehold.io/state label are stored as written")
  void otherJobsAreLeftAlone() {
    Job plain = RunnerJobFixtures.runner("plain", "x", false);
    plain.getMetadata().getLabels().clear();
    plain.getMetadata().getLabels().put("app", "web");
    Job stored = user.resource(plain).create();
    assertThat(stored.getSpec().getSuspend()).isFalse();
    assertThat(
            user.batch()
                .v1()
                .jobs()
                .inNamespace(NAMESPACE)
                .withName("plain")
                .patch(PatchContext.of(PatchType.JSON_MERGE), "{\"spec\":{\"suspend\":true}}")
                .getSpec()
                .getSuspend())
        .isTrue();
  }
}
