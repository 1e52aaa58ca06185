package io.leasehold.queue;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class RunnerJobsTest {

  private static Job job(String managedFields) throws Exception {
    return new ObjectMapper()
        .readValue(
            "{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"metadata\":{\"name\":\"run\","
                + "\"namespace\":\"default\",\"managedFields\":"
                + managedFields
                + "},\"spec\":{\"suspend\":false}}",
            Job.class);
  }

  @Test
  @DisplayName(
      "Who unsuspended a Job is read from the field manager owning spec.suspend, as a real API"
          + " server records it, not from the managers of other fields")
  void suspendSetByNamesTheManagerOfSpecSuspend() throws Exception {
    Job patched =
        job(
            "[{\"manager\":\"kubectl-create\",\"operation\":\"Update\",\"apiVersion\":\"batch/v1\","
                + "\"time\":\"2026-12-07T10:00:00Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":"
                + "{\"f:metadata\":{\"f:labels\":{\".\":{},\"f:leasehold.io/state\":{}}},"
                + "\"f:spec\":{\"f:backoffLimit\":{},\"f:template\":{}}}},"
                + "{\"manager\":\"kube-controller-manager\",\"operation\":\"Update\","
                + "\"apiVersion\":\"batch/v1\",\"time\":\"2026-12-07T10:01:00Z\","
                + "\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:status\":{\"f:active\":{}}},"
                + "\"subresource\":\"status\"},"
                + "{\"manager\":\"kubectl-patch\",\"operation\":\"Update\",\"apiVersion\":"
                + "\"batch/v1\",\"time\":\"2026-12-07T10:00:30Z\",\"fieldsType\":\"FieldsV1\","
                + "\"fieldsV1\":{\"f:spec\":{\"f:suspend\":{}}}}]");
    assertThat(RunnerJobs.suspendSetBy(patched))
        .contains("kubectl-patch (Update at 2026-12-07T10:00:30Z)");
  }

  @Test
  @DisplayName("A Job without field ownership records names no one")
  void noManagedFieldsNamesNoOne() throws Exception {
    assertThat(RunnerJobs.suspendSetBy(job("[]"))).isEmpty();
    assertThat(
            RunnerJobs.suspendSetBy(
                job(
                    "[{\"manager\":\"kubectl-create\",\"operation\":\"Update\","
                        + "\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:spec\":{}}}]")))
        .isEmpty();
  }
}
