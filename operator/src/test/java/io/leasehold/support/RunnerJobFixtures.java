package io.leasehold.support;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.JobConditionBuilder;
import io.fabric8.kubernetes.api.model.batch.v1.JobStatus;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.queue.RunnerJobs;
import java.time.Instant;

/** Runner Jobs as users create them, and their ending as the Job controller would write it. */
public final class RunnerJobFixtures {

  private RunnerJobFixtures() {}

  public static Job runner(String name, String state, boolean suspended) {
    return new JobBuilder()
        .withNewMetadata()
        .withName(name)
        .withNamespace(OperatorHarness.NAMESPACE)
        .addToLabels(RunnerJobs.STATE_LABEL, state)
        .endMetadata()
        .withNewSpec()
        .withSuspend(suspended)
        .withNewTemplate()
        .withNewSpec()
        .addNewContainer()
        .withName("terraform")
        .withImage("hashicorp/terraform:1.11")
        .withArgs("apply", "-auto-approve")
        .endContainer()
        .withRestartPolicy("Never")
        .endSpec()
        .endTemplate()
        .endSpec()
        .build();
  }

  public static Job create(KubernetesClient client, String name, String state) {
    return client.resource(runner(name, state, true)).create();
  }

  public static Job get(KubernetesClient client, String name) {
    return client.batch().v1().jobs().inNamespace(OperatorHarness.NAMESPACE).withName(name).get();
  }

  /** Marks the Job Complete (or Failed), as the Job controller does when its pod ends. */
  public static void finish(KubernetesClient client, String name, boolean succeeded) {
    String now = Instant.now().toString();
    client
        .batch()
        .v1()
        .jobs()
        .inNamespace(OperatorHarness.NAMESPACE)
        .withName(name)
        .editStatus(
            j -> {
              if (j.getStatus() == null) {
                j.setStatus(new JobStatus());
              }
              j.getStatus()
                  .getConditions()
                  .add(
                      new JobConditionBuilder()
                          .withType(succeeded ? "Complete" : "Failed")
                          .withStatus("True")
                          .withLastTransitionTime(now)
                          .build());
              if (succeeded) {
                j.getStatus().setSucceeded(1);
                j.getStatus().setCompletionTime(now);
              } else {
                j.getStatus().setFailed(1);
              }
              return j;
            });
  }

  /** Admitted: leasehold unsuspended it; running until it finishes. */
  public static boolean running(Job job) {
    return job != null
        && RunnerJobs.admitted(job)
        && !RunnerJobs.suspended(job)
        && !RunnerJobs.finished(job);
  }
}
