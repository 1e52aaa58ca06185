package io.leasehold.lock;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.embedded.EmbeddedKubernetes;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** Whether a finished runner Job's pods have all ended, and when that costs a pod list. */
class JobLivenessTest {

  private static EmbeddedKubernetes api;
  private static KubernetesClient client;

  @BeforeAll
  static void start() {
    api = EmbeddedKubernetes.start(0);
    client = api.newClient();
  }

  @AfterAll
  static void stop() {
    client.close();
    api.close();
  }

  private static Job finished(String name, Integer terminating, int active) {
    Job job =
        client
            .resource(
                new JobBuilder()
                    .withNewMetadata()
                    .withName(name)
                    .withNamespace("default")
                    .endMetadata()
                    .withNewSpec()
                    .withNewTemplate()
                    .withNewSpec()
                    .addNewContainer()
                    .withName("tf")
                    .withImage("hashicorp/terraform:1.11")
                    .endContainer()
                    .withRestartPolicy("Never")
                    .endSpec()
                    .endTemplate()
                    .endSpec()
                    .build())
            .create();
    client
        .resource(
            new PodBuilder()
                .withNewMetadata()
                .withName(name + "-pod")
                .withNamespace("default")
                .addToLabels(JobLiveness.CONTROLLER_UID_LABEL, job.getMetadata().getUid())
                .endMetadata()
                .withNewSpec()
                .addNewContainer()
                .withName("tf")
                .withImage("hashicorp/terraform:1.11")
                .endContainer()
                .endSpec()
                .build())
        .create();
    job.setStatus(
        new io.fabric8.kubernetes.api.model.batch.v1.JobStatusBuilder()
            .addNewCondition()
            .withType("Failed")
            .withStatus("True")
            .endCondition()
            .withActive(active)
            .withTerminating(terminating)
            .build());
    return job;
  }

  @Test
  @DisplayName(
      "A finished Job whose controller counts terminating pods and reports none active, ready or"
          + " terminating has no pod left, without listing pods; where the count is missing or"
          + " shows pods, the pods are listed and a running one keeps the Job alive")
  void terminatingCountSparesThePodList() {
    // The pod exists and runs in each case: only a list would see it.
    assertThat(JobLiveness.podsRunning(client, finished("counted", 0, 0))).isFalse();
    assertThat(JobLiveness.podsRunning(client, finished("uncounted", null, 0))).isTrue();
    assertThat(JobLiveness.podsRunning(client, finished("terminating", 1, 0))).isTrue();
    assertThat(JobLiveness.podsRunning(client, finished("active", 0, 1))).isTrue();
  }
}
