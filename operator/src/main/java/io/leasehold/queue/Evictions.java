package io.leasehold.queue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.EventRecorder;
import io.leasehold.state.StateNames;
import java.util.Collection;
import java.util.List;

/**
 * Runner Jobs a user suspended again after their admission: once their pods have ended and the lock
 * is no longer theirs, they rejoin the line at the back, as Kueue requeues an evicted workload.
 * Leasehold itself never suspends an admitted Job.
 */
final class Evictions {

  private static final ObjectMapper MAPPER = new ObjectMapper();

  private final EventRecorder events;
  private final Arrivals arrivals;
  private final JobRuns runs;
  private final JobPatches patches;
  private final Announcements announcements;

  Evictions(
      EventRecorder events,
      Arrivals arrivals,
      JobRuns runs,
      JobPatches patches,
      Announcements announcements) {
    this.events = events;
    this.arrivals = arrivals;
    this.runs = runs;
    this.patches = patches;
    this.announcements = announcements;
  }

  /**
   * Jobs suspended again by a user after their admission, their pods ended and the lock no longer
   * theirs, rejoin the line at the back, as Kueue requeues an evicted workload.
   */
  boolean requeueEvicted(
      TerraformState state, StateNames names, Collection<Job> jobs, String holderUid) {
    boolean requeued = false;
    for (Job j : RunQueue.of(names.name(), jobs, arrivals).running()) {
      if (!uid(j).equals(holderUid)
          && JobRuns.suspendedAgain(j)
          && runs.progress(names, uid(j), j) == JobRuns.Run.ENDED) {
        requeued |= requeue(state, names, j);
      }
    }
    return requeued;
  }

  /**
   * Puts a Job a user suspended again after its admission, and whose pods have ended, back in line
   * (at the back): the marks of its admission are removed, so it waits like a new Job. Returns
   * whether it did (false when the Job is gone or was replaced).
   */
  boolean requeue(TerraformState state, StateNames names, Job job) {
    ArrayNode patch = MAPPER.createArrayNode();
    patch.addObject().put("op", "test").put("path", "/metadata/uid").put("value", uid(job));
    for (String key : List.of(RunnerJobs.ADMITTED_ANNOTATION, RunnerJobs.ADMITTED_FOR_ANNOTATION)) {
      if (job.getMetadata().getAnnotations() != null
          && job.getMetadata().getAnnotations().containsKey(key)) {
        patch
            .addObject()
            .put("op", "remove")
            .put("path", "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1"));
      }
    }
    try {
      patches.patchJob(state, job, patch);
    } catch (KubernetesClientException e) {
      if (e.getCode() == 404 || e.getCode() == 422) {
        return false;
      }
      throw e;
    }
    announcements.again(uid(job));
    events.normal(
        job,
        "Requeued",
        "the Job was suspended after its admission: its pods have ended and its lock on "
            + names.name()
            + " is released; it waits in line again, at the back, and runs again in its turn"
            + " (delete the Job to cancel it)");
    return true;
  }

  private static String uid(Job job) {
    return job.getMetadata().getUid();
  }

  private static String name(Job job) {
    return job.getMetadata().getName();
  }
}
