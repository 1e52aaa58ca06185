package io.leasehold.operator;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.DisplayText;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.LockService;
import io.leasehold.lock.Ticket;
import io.leasehold.ops.AuditLog;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.queue.JobAdmission;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Cancelling waiting runs, by annotation: on the TerraformState ({@value #CANCEL}: lock IDs, Job
 * names, or {@code all}) or on a waiting runner Job ({@value RunnerJobs#CANCEL_ANNOTATION}). A
 * cancelled client is answered 409 with the reason by the replica holding its request and never
 * gets the lock; a cancelled Job stays suspended, out of the line, and is never admitted. Nothing
 * that holds the lock or runs is touched. Each cancel is one {@code RunCancelled} Event on the
 * TerraformState, audit lines and the {@code leasehold.runs.cancelled} counter.
 *
 * <p>A cancel on the TerraformState covers only the runs that arrived by its time ({@value
 * #CANCEL_AT}; stamped with the time leasehold first sees the cancel when it is missing), and is
 * carried out once: {@value #CANCEL_DONE} records the cancel done, so a GitOps tool applying the
 * same annotations again cancels nothing, and runs that arrived later are never cancelled by it.
 */
final class RunCancels {

  /**
   * On a TerraformState: which waiting runs to cancel (comma-separated lock IDs, Job names, all).
   */
  static final String CANCEL = "leasehold.io/cancel";

  /** On a TerraformState: only runs that arrived by this time (RFC 3339) are cancelled. */
  static final String CANCEL_AT = "leasehold.io/cancel-at";

  /** On a TerraformState: who asks, as they say (not checked), told to those cancelled. */
  static final String CANCEL_BY = "leasehold.io/cancel-by";

  /** On a TerraformState: why, told to those cancelled. */
  static final String CANCEL_REASON = "leasehold.io/cancel-reason";

  /** On a TerraformState, set by leasehold: the cancel last carried out ({@code TIME TARGETS}). */
  static final String CANCEL_DONE = "leasehold.io/cancel-done";

  /** Most targets one cancel names. */
  static final int MAX_TARGETS = 64;

  private static final Logger LOG = LoggerFactory.getLogger(RunCancels.class);
  private static final ObjectMapper MAPPER = new ObjectMapper();
  private static final int TEXT_KEPT = 120;

  private final KubernetesClient client;
  private final LockService locks;
  private final EventRecorder events;
  private final LeaseholdMetrics metrics;
  private final JobAdmission.WriteListener written;
  private final Clock clock;

  /** Running Jobs already told that their cancel annotation changes nothing (bounded). */
  private final Set<String> toldRunning =
      Collections.newSetFromMap(
          new LinkedHashMap<>() {
            @Override
            protected boolean removeEldestEntry(Map.Entry<String, Boolean> eldest) {
              return size() > 4096;
            }
          });

  RunCancels(
      KubernetesClient client,
      LockService locks,
      EventRecorder events,
      LeaseholdMetrics metrics,
      JobAdmission.WriteListener written,
      Clock clock) {
    this.client = client;
    this.locks = locks;
    this.events = events;
    this.metrics = metrics;
    this.written = written;
    this.clock = clock;
  }

  /** Carries out the cancels the state's and its Jobs' annotations ask for, if any. */
  void ifAsked(TerraformState state, StateNames names, Collection<Job> jobs) {
    List<Job> ours =
        jobs.stream()
            .filter(j -> RunnerJobs.stateName(j).map(names.name()::equals).orElse(false))
            .filter(j -> !RunnerJobs.finished(j) && j.getMetadata().getDeletionTimestamp() == null)
            .toList();
    for (Job job : ours) {
      String asked = annotation(job.getMetadata().getAnnotations(), RunnerJobs.CANCEL_ANNOTATION);
      if (asked != null && !marked(job)) {
        cancelJob(state, names, job, asked);
      }
    }
    Map<String, String> annotations = state.getMetadata().getAnnotations();
    String targets = annotation(annotations, CANCEL);
    if (targets != null) {
      cancelFromState(state, names, ours, annotations, targets);
    }
  }

  // ------------------------------------------------------------------ a Job's own annotation

  private void cancelJob(TerraformState state, StateNames names, Job job, String asked) {
    String uid = job.getMetadata().getUid();
    String name = job.getMetadata().getName();
    if (!RunnerJobs.suspended(job) || RunnerJobs.admitted(job)) {
      tellRunning(state, names, job);
      return;
    }
    String why =
        "cancelled by annotation "
            + RunnerJobs.CANCEL_ANNOTATION
            + " on runner Job "
            + names.namespace()
            + "/"
            + name
            + (asked.isBlank() ? "" : ": " + DisplayText.clean(asked, TEXT_KEPT));
    LockService.CancelOutcome outcome =
        locks.cancelWaiting(
            names,
            new LockService.CancelRequest(
                false, Set.of(), Map.of(uid, name), clock.instant(), why));
    if (outcome.cancelled().isEmpty()) {
      // It holds the lock (taken for it, not yet unsuspended): it runs.
      tellRunning(state, names, job);
      return;
    }
    mark(state, job, why);
    cancelled(state, names, outcome.cancelled(), "job", why, null);
    events.normal(
        state,
        "RunCancelled",
        "cancelled waiting runner Job "
            + name
            + " ("
            + why
            + "): it stays suspended and is never admitted; delete it when done with it");
  }

  private void tellRunning(TerraformState state, StateNames names, Job job) {
    if (!toldRunning.add(job.getMetadata().getUid())) {
      return;
    }
    String message =
        RunnerJobs.CANCEL_ANNOTATION
            + " ignored: runner Job "
            + job.getMetadata().getName()
            + " was admitted and runs (it holds the lock on "
            + names.name()
            + "); leasehold never stops a run. Delete the Job to stop it; its lock is released"
            + " when it ends";
    events.warning(job, "CancelIgnored", message);
    events.warning(state, "CancelIgnored", message);
  }

  // ------------------------------------------------------------- the TerraformState's annotation

  private void cancelFromState(
      TerraformState state,
      StateNames names,
      List<Job> jobs,
      Map<String, String> annotations,
      String targets) {
    String atText = annotation(annotations, CANCEL_AT);
    Instant now = clock.instant();
    Instant at;
    if (atText == null) {
      // Stamped first, so the time this cancel covers is kept with it: applied again, it cancels
      // nothing that arrived since.
      at = now;
      if (!stamp(state, targets, at)) {
        return;
      }
    } else {
      try {
        at = Instant.parse(atText.trim());
      } catch (DateTimeParseException e) {
        events.warning(
            state,
            "CancelRefused",
            CANCEL
                + " not carried out: "
                + CANCEL_AT
                + " "
                + DisplayText.clean(atText, TEXT_KEPT)
                + " is not an RFC 3339 time such as 2026-01-31T12:00:00Z");
        return;
      }
    }
    String done = at + " " + targets.trim();
    if (done.equals(annotation(annotations, CANCEL_DONE))) {
      return;
    }
    // A time ahead of this replica's clock covers no run that arrives after now.
    Instant arrivedBy = at.isAfter(now) ? now : at;
    List<String> asked = targets(targets);
    if (asked.isEmpty() || asked.size() > MAX_TARGETS) {
      events.warning(
          state,
          "CancelRefused",
          CANCEL
              + " not carried out: it names "
              + (asked.isEmpty() ? "nothing" : asked.size() + " targets, more than " + MAX_TARGETS)
              + "; give comma-separated lock IDs or Job names, or all");
      markDone(state, done);
      return;
    }
    boolean all = asked.contains("all");
    Map<String, String> cancelJobs = new LinkedHashMap<>();
    Set<String> lockIds = new LinkedHashSet<>();
    List<String> leftAlone = new ArrayList<>();
    for (Job job : jobs) {
      String name = job.getMetadata().getName();
      boolean named = all || asked.contains(name);
      if (!named || marked(job)) {
        continue;
      }
      if (!RunnerJobs.suspended(job) || RunnerJobs.admitted(job)) {
        if (!all) {
          leftAlone.add("runner Job " + name + " runs (it was admitted)");
        }
      } else if (created(job).isAfter(arrivedBy)) {
        leftAlone.add("runner Job " + name + " arrived after " + at);
      } else {
        cancelJobs.put(job.getMetadata().getUid(), name);
      }
    }
    for (String target : asked) {
      if (!target.equals("all")
          && jobs.stream().noneMatch(j -> j.getMetadata().getName().equals(target))) {
        lockIds.add(target);
      }
    }
    String why = why(names, annotations);
    LockService.CancelOutcome outcome =
        locks.cancelWaiting(
            names, new LockService.CancelRequest(all, lockIds, cancelJobs, arrivedBy, why));
    leftAlone.addAll(outcome.leftAlone());
    for (Ticket t : outcome.cancelled()) {
      if (t.isJob()) {
        jobs.stream()
            .filter(j -> j.getMetadata().getUid().equals(t.id()))
            .findFirst()
            .ifPresent(j -> mark(state, j, why));
      }
    }
    cancelled(state, names, outcome.cancelled(), "state", why, at);
    if (outcome.cancelled().isEmpty()) {
      events.normal(
          state,
          "RunCancelNotNeeded",
          "nothing waiting to cancel for "
              + CANCEL
              + "="
              + DisplayText.clean(targets, TEXT_KEPT)
              + (leftAlone.isEmpty() ? "" : ": " + String.join("; ", leftAlone)));
    } else {
      events.normal(
          state,
          "RunCancelled",
          "cancelled "
              + outcome.cancelled().size()
              + " waiting run"
              + (outcome.cancelled().size() == 1 ? "" : "s")
              + " that arrived by "
              + at
              + " ("
              + why
              + "): "
              + String.join(", ", outcome.cancelled().stream().map(RunCancels::describe).toList())
              + (leftAlone.isEmpty() ? "" : "; left alone: " + String.join("; ", leftAlone)));
    }
    markDone(state, done);
  }

  /** What those cancelled are told: where the cancel came from, who asked and why, if said. */
  private static String why(StateNames names, Map<String, String> annotations) {
    String by = annotation(annotations, CANCEL_BY);
    String reason = annotation(annotations, CANCEL_REASON);
    return "cancelled by annotation "
        + CANCEL
        + " on TerraformState "
        + names.namespace()
        + "/"
        + names.name()
        + (by == null || by.isBlank() ? "" : ", by " + DisplayText.clean(by, TEXT_KEPT))
        + (reason == null || reason.isBlank() ? "" : ": " + DisplayText.clean(reason, TEXT_KEPT));
  }

  private static List<String> targets(String value) {
    List<String> targets = new ArrayList<>();
    for (String part : value.split(",")) {
      String t = part.trim();
      if (!t.isEmpty() && !targets.contains(t)) {
        targets.add(t);
      }
    }
    return targets;
  }

  private static String describe(Ticket t) {
    return t.isJob()
        ? "runner Job " + t.who()
        : "client " + t.id() + (t.who() == null || t.who().isBlank() ? "" : " (" + t.who() + ")");
  }

  /** Audit lines and the counter, one per run cancelled. */
  private void cancelled(
      TerraformState state,
      StateNames names,
      List<Ticket> runs,
      String via,
      String why,
      Instant at) {
    for (Ticket t : runs) {
      String kind = t.isJob() ? "job" : "client";
      metrics.runCancelled(kind, via);
      AuditLog.line("run-cancelled", names.namespace(), names.name())
          .with("workspace", names.workspace())
          .with("kind", kind)
          .with(t.isJob() ? "jobUid" : "lockId", t.id())
          .with(t.isJob() ? "job" : "lockWho", t.who())
          .with("arrived", t.since())
          .with("via", via)
          .with("cancelAt", at)
          .with("replica", locks.replica())
          .with("reason", why)
          .log();
    }
  }

  private static Instant created(Job job) {
    String created = job.getMetadata().getCreationTimestamp();
    try {
      return created == null ? Instant.EPOCH : Instant.parse(created);
    } catch (DateTimeParseException e) {
      return Instant.EPOCH;
    }
  }

  private static boolean marked(Job job) {
    return annotation(job.getMetadata().getAnnotations(), RunnerJobs.CANCELLED_ANNOTATION) != null;
  }

  private static String annotation(Map<String, String> annotations, String key) {
    return annotations == null ? null : annotations.get(key);
  }

  // ------------------------------------------------------------------------------ writes

  /** Marks {@code job} cancelled, so it stays out of the line for good. */
  private void mark(TerraformState state, Job job, String why) {
    ObjectNode patch = MAPPER.createObjectNode();
    ObjectNode metadata = patch.putObject("metadata");
    // A precondition: a Job re-created under the same name is not marked.
    metadata.put("uid", job.getMetadata().getUid());
    metadata
        .putObject("annotations")
        .put(
            RunnerJobs.CANCELLED_ANNOTATION,
            clock.instant().truncatedTo(ChronoUnit.SECONDS) + " " + why);
    try {
      Job patched =
          client
              .batch()
              .v1()
              .jobs()
              .inNamespace(job.getMetadata().getNamespace())
              .resource(job)
              .patch(PatchContext.of(PatchType.JSON_MERGE), patch.toString());
      written.jobWritten(state, patched, job);
    } catch (KubernetesClientException e) {
      // The lock Lease records it as cancelled: it does not join the line meanwhile.
      LOG.warn(
          "{}/{}: runner Job {} was cancelled but could not be marked so: {}",
          job.getMetadata().getNamespace(),
          state.getMetadata().getName(),
          job.getMetadata().getName(),
          e.getMessage());
    }
  }

  /** Writes {@value #CANCEL_AT} as {@code at}, unless the cancel changed meanwhile. */
  private boolean stamp(TerraformState state, String targets, Instant at) {
    ArrayNode patch = MAPPER.createArrayNode();
    patch.addObject().put("op", "test").put("path", pointer(CANCEL)).put("value", targets);
    patch.addObject().put("op", "add").put("path", pointer(CANCEL_AT)).put("value", at.toString());
    return patch(state, patch, CANCEL_AT);
  }

  private void markDone(TerraformState state, String done) {
    ArrayNode patch = MAPPER.createArrayNode();
    patch.addObject().put("op", "add").put("path", pointer(CANCEL_DONE)).put("value", done);
    patch(state, patch, CANCEL_DONE);
  }

  private boolean patch(TerraformState state, ArrayNode patch, String key) {
    try {
      client
          .resources(TerraformState.class)
          .inNamespace(state.getMetadata().getNamespace())
          .withName(state.getMetadata().getName())
          .patch(PatchContext.of(PatchType.JSON), patch.toString());
      return true;
    } catch (KubernetesClientException e) {
      LOG.info(
          "{}/{}: annotation {} not written: {}",
          state.getMetadata().getNamespace(),
          state.getMetadata().getName(),
          key,
          e.getMessage());
      return false;
    }
  }

  private static String pointer(String key) {
    return "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1");
  }
}
