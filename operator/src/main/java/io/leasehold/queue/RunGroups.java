package io.leasehold.queue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.Holder;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockService;
import io.leasehold.ops.AuditLog;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * Run groups: waiting runner Jobs labelled with the same {@value #GROUP_LABEL} collapse to the
 * newest. When a newer apply of a group is queued, the older ones of the group still waiting are
 * skipped: never admitted, they are left suspended, labelled {@value #SKIPPED_LABEL}{@code =true},
 * with the newer Job named in {@value #SKIPPED_FOR_ANNOTATION} and in a {@code Skipped} Event on
 * the Job and on the state, and deleted once that newer Job has ended (a Job that never ran holds
 * nothing; left, it would count as active for its CronJob for good). A skipped Job leaves the line
 * for good.
 *
 * <p>Never skipped: a Job admitted (running) or one the Lease names (its lock taken, not yet
 * unsuspended); a plan ({@value #RUN_LABEL}{@code : plan}), which also never causes a skip; a
 * destroy ({@code destroy}), which also stops the collapse across it, so an apply queued before a
 * waiting destroy is not skipped by one queued after it. A {@value #RUN_LABEL} value that is none
 * of apply, plan and destroy is told in a Warning and taken like a destroy: never skipped, and no
 * skip across it. "Newer" is the order of arrival the line keeps (creation time; within one second,
 * the order the API server accepted them, then name).
 *
 * <p>Skips are decided and written before the Jobs line up and before anyone is admitted in the
 * same pass, so a Job skipped never takes the lock, even when it was first in line the moment the
 * newer Job arrived. A skip that cannot be written stops the pass (nobody is admitted in it).
 */
final class RunGroups {

  /** Label naming a runner Job's run group. */
  static final String GROUP_LABEL = "leasehold.io/run-group";

  /** Label saying what a runner Job runs: apply (also when absent), plan or destroy. */
  static final String RUN_LABEL = "leasehold.io/run";

  /** Set to {@code true} on a Job skipped: it stays suspended and out of the line. */
  static final String SKIPPED_LABEL = "leasehold.io/skipped";

  /** On a Job skipped: the newer Job of its group that runs instead. */
  static final String SKIPPED_FOR_ANNOTATION = "leasehold.io/skipped-for";

  /** On a Job skipped: when. */
  static final String SKIPPED_AT_ANNOTATION = "leasehold.io/skipped-at";

  private static final ObjectMapper MAPPER = new ObjectMapper();

  /** What a runner Job runs, for run groups. */
  enum Run {
    /** Skipped when a newer apply of its group is queued; skips the older ones. */
    APPLY,
    /** Never skipped, never skips. */
    PLAN,
    /** Never skipped, and no skip across it. */
    BARRIER
  }

  /** A Job skipped for the newest Job of its group queued after it. */
  record Skip(Job skipped, Job newer, String group) {}

  private final LockService locks;
  private final EventRecorder events;
  private final Clock clock;
  private final LeaseholdMetrics metrics;
  private final JobPatches patches;
  private final Announcements announcements;

  RunGroups(
      LockService locks,
      EventRecorder events,
      Clock clock,
      LeaseholdMetrics metrics,
      JobPatches patches,
      Announcements announcements) {
    this.locks = locks;
    this.events = events;
    this.clock = clock;
    this.metrics = metrics;
    this.patches = patches;
    this.announcements = announcements;
  }

  /** Whether the Job was skipped for a newer one of its run group. */
  static boolean skipped(Job job) {
    Map<String, String> labels = job.getMetadata().getLabels();
    return labels != null && "true".equals(labels.get(SKIPPED_LABEL));
  }

  /** What {@code job} runs, by its {@value #RUN_LABEL} label. */
  static Run run(Job job) {
    String run = label(job, RUN_LABEL);
    if (run == null || run.equals("apply")) {
      return Run.APPLY;
    }
    return run.equals("plan") ? Run.PLAN : Run.BARRIER;
  }

  /**
   * The Jobs of {@code waiting} (in order of arrival, oldest first) that a newer apply of their
   * group makes redundant, each with the newest of its group that runs instead.
   */
  static List<Skip> redundant(List<Job> waiting) {
    List<Skip> skips = new ArrayList<>();
    Map<String, Job> newest = new HashMap<>();
    for (int i = waiting.size() - 1; i >= 0; i--) {
      Job job = waiting.get(i);
      switch (run(job)) {
        case BARRIER -> newest.clear();
        case PLAN -> {}
        case APPLY -> {
          String group = label(job, GROUP_LABEL);
          if (group == null || group.isBlank()) {
            continue;
          }
          Job newer = newest.putIfAbsent(group, job);
          if (newer != null) {
            skips.add(new Skip(job, newer, group));
          }
        }
      }
    }
    Collections.reverse(skips);
    return skips;
  }

  /**
   * Skips the waiting Jobs of {@code queue} a newer one of their run group makes redundant, unless
   * the state turned it off ({@code spec.queue.skipRedundant: false}).
   *
   * @return {@code jobs} with each Job skipped here as it was written
   * @throws KubernetesClientException when a skip could not be written (409 when the Job changed
   *     since it was read): nothing may be admitted in this pass
   */
  Collection<Job> skip(
      TerraformState state, StateNames names, Collection<Job> jobs, RunQueue queue) {
    sweep(names, jobs);
    if (!state.getSpec().getQueue().isSkipRedundant()) {
      return jobs;
    }
    warnUnknownRuns(queue.waiting());
    if (redundant(queue.waiting()).isEmpty()) {
      return jobs;
    }
    // A Job whose lock is taken but which is not unsuspended yet still looks suspended: it runs.
    Set<String> named = namedByLease(names);
    List<Skip> skips =
        redundant(queue.waiting().stream().filter(j -> !named.contains(uid(j))).toList());
    Map<String, Job> written = new HashMap<>();
    for (Skip skip : skips) {
      mark(state, names, skip).ifPresent(j -> written.put(uid(j), j));
    }
    List<Job> after = new ArrayList<>(jobs.size());
    for (Job j : jobs) {
      after.add(written.getOrDefault(uid(j), j));
    }
    return after;
  }

  /**
   * Deletes the skipped Jobs whose newer Job has ended (or is gone): kept until then, suspended and
   * marked, so that while it waits or runs one can see what it replaced; then they go, so that Jobs
   * that never ran do not pile up (a CronJob counts a suspended Job as active).
   */
  private void sweep(StateNames names, Collection<Job> jobs) {
    Map<String, Job> byName = new HashMap<>();
    jobs.forEach(j -> byName.put(name(j), j));
    for (Job job : jobs) {
      if (!skipped(job)
          || RunnerJobs.admitted(job)
          || job.getMetadata().getDeletionTimestamp() != null) {
        continue;
      }
      String newerName =
          job.getMetadata().getAnnotations() == null
              ? null
              : job.getMetadata().getAnnotations().get(SKIPPED_FOR_ANNOTATION);
      Job newer = newerName == null ? null : byName.get(newerName);
      if (newer == null || RunnerJobs.finished(newer)) {
        patches.deleteJob(job);
        AuditLog.line("job-skipped-deleted", names.namespace(), names.name())
            .with("workspace", names.workspace())
            .with("job", name(job))
            .with("jobUid", uid(job))
            .with("newerJob", newerName)
            .with("replica", locks.replica())
            .log();
      }
    }
  }

  /** Marks one Job skipped and tells it; empty when the Job is gone. */
  private Optional<Job> mark(TerraformState state, StateNames names, Skip skip) {
    Job job = skip.skipped();
    String newer = name(skip.newer());
    // Conditional on the version looked at: a Job admitted, relabelled or unsuspended since is
    // never marked from an older picture of it (409: the pass is looked at again).
    ObjectNode patch = MAPPER.createObjectNode();
    ObjectNode metadata = patch.putObject("metadata");
    metadata.put("uid", uid(job));
    metadata.put("resourceVersion", job.getMetadata().getResourceVersion());
    metadata.putObject("labels").put(SKIPPED_LABEL, "true");
    ObjectNode annotations = metadata.putObject("annotations");
    annotations.put(SKIPPED_FOR_ANNOTATION, newer);
    annotations.put(SKIPPED_AT_ANNOTATION, DateTimeFormatter.ISO_INSTANT.format(clock.instant()));
    Job written;
    try {
      written = patches.patchJob(state, job, PatchType.JSON_MERGE, patch.toString());
    } catch (KubernetesClientException e) {
      if (e.getCode() == 404 || (e.getCode() == 422 && JobPatches.mentionsUid(e))) {
        return Optional.empty();
      }
      throw e;
    }
    metrics.runSkipped();
    AuditLog.line("job-skipped", names.namespace(), names.name())
        .with("workspace", names.workspace())
        .with("job", name(job))
        .with("jobUid", uid(job))
        .with("runGroup", skip.group())
        .with("newerJob", newer)
        .with("newerJobUid", uid(skip.newer()))
        .with("replica", locks.replica())
        .log();
    events.normal(
        job,
        "Skipped",
        "skipped: Job "
            + newer
            + " of run group "
            + skip.group()
            + " was queued after this one for "
            + names.name()
            + " and runs instead. This Job is never admitted: it stays suspended, out of the"
            + " line, and is deleted once that Job has ended (spec.queue.skipRedundant: false on"
            + " the TerraformState turns skipping off)");
    events.normal(
        state,
        "Skipped",
        "runner Job "
            + name(job)
            + " skipped: Job "
            + newer
            + " of run group "
            + skip.group()
            + " was queued after it and runs instead");
    announcements.again(uid(job));
    return Optional.of(written);
  }

  /** Tells, once per Job, a {@value #RUN_LABEL} value that is not apply, plan or destroy. */
  private void warnUnknownRuns(List<Job> waiting) {
    for (Job job : waiting) {
      String run = label(job, RUN_LABEL);
      if (run != null
          && !List.of("apply", "plan", "destroy").contains(run)
          && announcements.once("run-label/" + uid(job))) {
        events.warning(
            job,
            "UnknownRun",
            "label "
                + RUN_LABEL
                + "="
                + run
                + " is none of apply, plan and destroy: this Job is never skipped, and no newer"
                + " Job of a run group skips one queued before it");
      }
    }
  }

  /** The Jobs the lock Lease names: the holder, and those admitted that have not ended. */
  private Set<String> namedByLease(StateNames names) {
    Optional<Lease> lease = locks.existing(names);
    Set<String> named = new HashSet<>();
    lease.flatMap(l -> Holder.of(l, clock.instant())).flatMap(Holder::jobUid).ifPresent(named::add);
    lease.ifPresent(l -> LeaseLock.running(l).forEach(r -> named.add(r.uid())));
    return named;
  }

  private static String label(Job job, String key) {
    Map<String, String> labels = job.getMetadata().getLabels();
    return labels == null ? null : labels.get(key);
  }

  private static String uid(Job job) {
    return job.getMetadata().getUid();
  }

  private static String name(Job job) {
    return job.getMetadata().getName();
  }
}
