package io.leasehold.operator;

import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.leasehold.kube.EventRecorder;
import io.leasehold.kube.TolerantSerialization;
import io.leasehold.queue.RunnerJobs;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Warnings about the objects the reconciler watches, each told once while this replica leads: a
 * runner Job or lock Lease with a field that cannot be read, and a waiting runner Job whose
 * TerraformState does not exist.
 */
final class ObjectWarnings {

  private static final Logger LOG = LoggerFactory.getLogger(ObjectWarnings.class);

  private final EventRecorder events;
  private final SharedCaches caches;
  private final Leadership leadership;
  private final Set<String> warnedStateNotFound = ConcurrentHashMap.newKeySet();

  /** The field each watched Job or Lease (by UID) was last told it has that cannot be read. */
  private final Map<String, String> warnedUnreadable = new ConcurrentHashMap<>();

  ObjectWarnings(EventRecorder events, SharedCaches caches, Leadership leadership) {
    this.events = events;
    this.caches = caches;
    this.leadership = leadership;
  }

  /** Forgets object {@code uid} (a Job or Lease), which is gone. */
  void forget(String uid) {
    warnedStateNotFound.remove(uid);
    warnedUnreadable.remove(uid);
  }

  /**
   * A waiting runner Job whose TerraformState does not exist is told so, once: it stays suspended
   * and is admitted once the state is created.
   *
   * @param jobsSynced whether the Jobs' event source has started; nothing is told before
   */
  void checkStateExists(Job job, boolean jobsSynced) {
    if (!leadership.leading()
        || RunnerJobs.finished(job)
        || RunnerJobs.admitted(job)
        || !jobsSynced) {
      return;
    }
    String state = RunnerJobs.stateName(job).orElse("");
    String ns = job.getMetadata().getNamespace();
    if (!state.isEmpty() && caches.cachedState(ns, state) != null) {
      warnedStateNotFound.remove(job.getMetadata().getUid());
      return;
    }
    if (!state.isEmpty() && caches.state(ns, state) != null) {
      return;
    }
    if (warnedStateNotFound.add(job.getMetadata().getUid())) {
      events.warning(
          job,
          "StateNotFound",
          "TerraformState '"
              + state
              + "' does not exist in namespace "
              + ns
              + "; the Job "
              + (RunnerJobs.suspended(job)
                  ? "waits suspended and is admitted once the TerraformState is created"
                  : "is not suspended, so it runs without the lock")
              + ". Check the "
              + RunnerJobs.STATE_LABEL
              + " label");
    }
  }

  /**
   * A runner Job or lock Lease with a field that cannot be read gets a Warning saying which, once
   * per field: leasehold leaves it alone until it is corrected (a Job waits out of the line, or
   * keeps the lock it was admitted with; a Lease's lock counts as held), and goes on with the rest.
   */
  void warnIfUnreadable(HasMetadata o) {
    String uid = o.getMetadata().getUid();
    Optional<String> field = TolerantSerialization.unreadable(o).map(u -> u.says());
    if (uid == null) {
      return;
    }
    if (field.isEmpty()) {
      warnedUnreadable.remove(uid);
      return;
    }
    if (!leadership.leading() || field.get().equals(warnedUnreadable.put(uid, field.get()))) {
      return;
    }
    String consequence =
        o instanceof Job job
            ? (RunnerJobs.admitted(job)
                ? "this Job keeps the lock it was admitted with until it can be read and has ended"
                : "this Job is not admitted until the field is corrected")
            : "the lock counts as held by a holder that cannot be told, and leasehold leaves this"
                + " Lease untouched until the field is corrected";
    String message = field.get() + ": " + consequence;
    events.warning(o, TerraformStateReconciler.FIELD_UNREADABLE, message);
    LOG.warn(
        "{} {}/{}: {}",
        o.getKind(),
        o.getMetadata().getNamespace(),
        o.getMetadata().getName(),
        message);
  }
}
