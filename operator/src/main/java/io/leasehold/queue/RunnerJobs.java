package io.leasehold.queue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.ManagedFieldsEntry;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobCondition;
import io.leasehold.lock.JobLiveness;
import io.leasehold.lock.LeaseLock;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/** What leasehold reads from, and writes on, a runner Job. */
public final class RunnerJobs {

  /** Label naming the TerraformState (same namespace) a runner Job targets. */
  public static final String STATE_LABEL = "leasehold.io/state";

  /** Set, together with {@code spec.suspend: false}, when leasehold admits the Job. */
  public static final String ADMITTED_ANNOTATION = "leasehold.io/admitted-at";

  /** The TerraformState the Job was admitted for: it holds that state's lock until it ends. */
  public static final String ADMITTED_FOR_ANNOTATION = "leasehold.io/admitted-for";

  private RunnerJobs() {}

  /**
   * On a waiting runner Job, set by a user: cancel it (the value says why). It is never admitted
   * and stays suspended; on a Job that runs it changes nothing.
   */
  public static final String CANCEL_ANNOTATION = "leasehold.io/cancel";

  /**
   * On a runner Job cancelled while it waited, set by leasehold: why, and when. It is never
   * admitted and stays suspended.
   */
  public static final String CANCELLED_ANNOTATION = "leasehold.io/cancelled";

  /**
   * Whether {@code job} was cancelled while it waited (or is asked to be): suspended, never
   * admitted, and marked with {@value #CANCEL_ANNOTATION} or {@value #CANCELLED_ANNOTATION}.
   */
  public static boolean cancelled(Job job) {
    Map<String, String> a = job.getMetadata().getAnnotations();
    return a != null
        && (a.containsKey(CANCEL_ANNOTATION) || a.containsKey(CANCELLED_ANNOTATION))
        && suspended(job)
        && !admitted(job);
  }

  public static Optional<String> stateName(Job job) {
    Map<String, String> labels = job.getMetadata().getLabels();
    return Optional.ofNullable(labels == null ? null : labels.get(STATE_LABEL));
  }

  /** The lock ID for a Job: {@code job/<name>/<uid>}, so a re-created Job never inherits it. */
  public static String holderId(Job job) {
    return LeaseLock.jobLockId(job.getMetadata().getName(), job.getMetadata().getUid());
  }

  /** Complete or Failed: the Job will run no more pods. */
  public static boolean finished(Job job) {
    return JobLiveness.finished(job);
  }

  /** How the Job ended, for Events: "completed", "failed", "was deleted", ... */
  public static String ending(Job job) {
    if (job == null) {
      return "was deleted";
    }
    if (job.getStatus() != null && job.getStatus().getConditions() != null) {
      for (JobCondition c : job.getStatus().getConditions()) {
        if ("Failed".equals(c.getType()) && "True".equals(c.getStatus())) {
          return "failed";
        }
      }
    }
    if (finished(job)) {
      return "completed";
    }
    if (job.getMetadata().getDeletionTimestamp() != null) {
      return "was deleted and its pods have ended";
    }
    if (suspended(job)) {
      return "was suspended again and its pods have ended";
    }
    return "ended";
  }

  /**
   * Who last set the Job's {@code spec.suspend}, as the API server's field ownership ({@code
   * metadata.managedFields}) tells: each field manager owning it, with its operation and time,
   * newest first ("kubectl-patch (Update at 2026-01-01T10:00:00Z)"). Empty when the Job carries no
   * such record.
   */
  public static Optional<String> suspendSetBy(Job job) {
    List<ManagedFieldsEntry> entries = job.getMetadata().getManagedFields();
    if (entries == null) {
      return Optional.empty();
    }
    List<String> managers =
        entries.stream()
            .filter(e -> e.getManager() != null && ownsSuspend(e))
            .sorted(
                Comparator.comparing(
                        (ManagedFieldsEntry e) -> e.getTime() == null ? "" : e.getTime())
                    .reversed())
            .map(
                e ->
                    e.getManager()
                        + " ("
                        + (e.getOperation() == null ? "" : e.getOperation())
                        + (e.getTime() == null ? "" : " at " + e.getTime())
                        + ")")
            .distinct()
            .toList();
    return managers.isEmpty() ? Optional.empty() : Optional.of(String.join(", ", managers));
  }

  private static boolean ownsSuspend(ManagedFieldsEntry entry) {
    if (entry.getFieldsV1() == null) {
      return false;
    }
    JsonNode fields = JSON.valueToTree(entry.getFieldsV1());
    return fields.path("f:spec").has("f:suspend");
  }

  private static final ObjectMapper JSON = new ObjectMapper();

  public static boolean suspended(Job job) {
    return job.getSpec() != null && Boolean.TRUE.equals(job.getSpec().getSuspend());
  }

  public static boolean admitted(Job job) {
    Map<String, String> a = job.getMetadata().getAnnotations();
    return a != null && a.containsKey(ADMITTED_ANNOTATION);
  }

  /**
   * Whether the Job was admitted for state {@code stateName}: a Job admitted for one state and
   * relabelled to another still belongs to the first until it ends.
   */
  public static boolean admittedFor(Job job, String stateName) {
    if (!admitted(job)) {
      return false;
    }
    String admittedFor = job.getMetadata().getAnnotations().get(ADMITTED_FOR_ANNOTATION);
    return admittedFor == null
        ? stateName(job).map(stateName::equals).orElse(false)
        : admittedFor.equals(stateName);
  }
}
