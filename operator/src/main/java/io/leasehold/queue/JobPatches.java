package io.leasehold.queue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.EventRecorder;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.format.DateTimeFormatter;

/**
 * Writes to runner Jobs: each a patch conditional on the Job's UID (a Job re-created under the same
 * name is never taken for the one looked at), told to the caches at once. Unsuspending a Job
 * admitted under the lock marks it admitted, for the state, with the time.
 */
final class JobPatches {

  private static final ObjectMapper MAPPER = new ObjectMapper();

  private final KubernetesClient client;
  private final EventRecorder events;
  private final Clock clock;
  private final JobAdmission.WriteListener written;
  private final Announcements announcements;

  JobPatches(
      KubernetesClient client,
      EventRecorder events,
      Clock clock,
      JobAdmission.WriteListener written,
      Announcements announcements) {
    this.client = client;
    this.events = events;
    this.clock = clock;
    this.written = written;
    this.announcements = announcements;
  }

  /**
   * Deletes {@code job} and its pods (in the background); a Job already gone is left alone. Only
   * for a Job that never ran: one skipped for a newer Job of its run group.
   */
  void deleteJob(Job job) {
    try {
      client
          .batch()
          .v1()
          .jobs()
          .inNamespace(job.getMetadata().getNamespace())
          .withName(job.getMetadata().getName())
          .withPropagationPolicy(io.fabric8.kubernetes.api.model.DeletionPropagation.BACKGROUND)
          .delete();
    } catch (io.fabric8.kubernetes.client.KubernetesClientException e) {
      if (e.getCode() != 404) {
        throw e;
      }
    }
  }

  /** Applies JSON {@code patch} to {@code job} and tells the caches of the version written. */
  void patchJob(TerraformState state, Job job, ArrayNode patch) {
    patchJob(state, job, PatchType.JSON, patch.toString());
  }

  /**
   * Applies {@code patch} of {@code type} to {@code job}; returns and tells the version written.
   */
  Job patchJob(TerraformState state, Job job, PatchType type, String patch) {
    Job patched =
        client
            .batch()
            .v1()
            .jobs()
            .inNamespace(job.getMetadata().getNamespace())
            .resource(job)
            .patch(PatchContext.of(type), patch);
    written.jobWritten(state, patched, job);
    return patched;
  }

  /** Unsuspends {@code job}, admitted under the lock of {@code lease}, marking it admitted. */
  void unsuspend(TerraformState state, StateNames names, Job job, Lease lease) {
    // A merge patch: it adds the marks whether or not the Job has annotations yet (a JSON patch
    // adding under /metadata/annotations fails where the Job has none). The UID in it is a
    // precondition: the API server refuses to change it (422), so a Job re-created under the same
    // name, with another UID, is not admitted by this lock.
    ObjectNode patch = MAPPER.createObjectNode();
    ObjectNode metadata = patch.putObject("metadata");
    metadata.put("uid", uid(job));
    ObjectNode marks = metadata.putObject("annotations");
    marks.put(
        RunnerJobs.ADMITTED_ANNOTATION, DateTimeFormatter.ISO_INSTANT.format(clock.instant()));
    marks.put(RunnerJobs.ADMITTED_FOR_ANNOTATION, names.name());
    patch.putObject("spec").put("suspend", false);
    try {
      patchJob(state, job, PatchType.JSON_MERGE, patch.toString());
    } catch (KubernetesClientException e) {
      if (e.getCode() == 404 || (e.getCode() == 422 && mentionsUid(e))) {
        // Deleted (or re-created) in between: the next pass finds it gone and passes the lock on.
        return;
      }
      // Refused for another reason (an admission policy, a quota): say so where the user looks,
      // and try again with backoff; the lock stays with this Job, which is first in line.
      events.warning(
          job,
          "UnsuspendRefused",
          "the lock on "
              + names.name()
              + " is taken for this Job but the API server refused to unsuspend it ("
              + e.getCode()
              + "): "
              + refusal(e)
              + "; retrying");
      throw e;
    }
    // The admission is told by the marks the patch set (time and state) and the state's Events;
    // an Event on the Job as well would be one more write per handoff.
    announcements.again(uid(job));
  }

  /** Whether the API server refused a change because of the UID precondition. */
  static boolean mentionsUid(KubernetesClientException e) {
    return e.getStatus() != null
        && e.getStatus().getDetails() != null
        && e.getStatus().getDetails().getCauses() != null
        && e.getStatus().getDetails().getCauses().stream()
            .anyMatch(c -> "metadata.uid".equals(c.getField()));
  }

  /** The API server's reason for a refusal: its message, which names no state content. */
  static String refusal(KubernetesClientException e) {
    return e.getStatus() != null && e.getStatus().getMessage() != null
        ? e.getStatus().getMessage()
        : String.valueOf(e.getMessage());
  }

  private static String uid(Job job) {
    return job.getMetadata().getUid();
  }

  private static String name(Job job) {
    return job.getMetadata().getName();
  }
}
