package io.leasehold.operator;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.leasehold.api.QueueEntry;
import io.leasehold.api.TerraformState;
import io.leasehold.api.TerraformStateStatus;
import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockService;
import io.leasehold.lock.Ticket;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.queue.JobAdmission;
import io.leasehold.queue.RunQueue;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Tells of the line: the Jobs and waiting clients in the status in the order they are served (the
 * first {@value #MAX_QUEUE_IN_STATUS}), the running Job, the queue-length metric, and a Warning,
 * once per Job, for a runner Job that runs outside the queue because it could not be suspended.
 */
final class QueueReport {

  private static final int MAX_QUEUE_IN_STATUS = 50;

  private final LockService locks;
  private final EventRecorder events;
  private final LeaseholdMetrics metrics;
  private final Set<String> warnedUnserialized = ConcurrentHashMap.newKeySet();

  QueueReport(LockService locks, EventRecorder events, LeaseholdMetrics metrics) {
    this.locks = locks;
    this.events = events;
    this.metrics = metrics;
  }

  /** Forgets Job {@code uid}, which is gone. */
  void forgetJob(String uid) {
    warnedUnserialized.remove(uid);
  }

  /** The line in the status: Jobs and waiting clients in the order they are served. */
  void record(TerraformState resource, TerraformStateStatus status, JobAdmission.Outcome outcome) {
    RunQueue queue = outcome.queue();
    List<QueueEntry> entries = new ArrayList<>();
    Set<String> lined = new HashSet<>();
    Set<String> waitingJobs = new HashSet<>();
    queue.waiting().forEach(j -> waitingJobs.add(j.getMetadata().getUid()));
    Instant now = Instant.now();
    for (Ticket t : locks.kept(LeaseLock.line(outcome.lease()), now).tickets()) {
      if (t.isJob() && !waitingJobs.contains(t.id())) {
        continue;
      }
      lined.add(t.id());
      entries.add(
          new QueueEntry(
              t.isJob() ? "job" : "client",
              t.who(),
              entries.size() + 1,
              t.since().toString(),
              t.isJob() ? null : t.gone() == null));
    }
    for (Job job : queue.waiting()) {
      if (!lined.contains(job.getMetadata().getUid())) {
        entries.add(
            new QueueEntry(
                "job",
                job.getMetadata().getName(),
                entries.size() + 1,
                job.getMetadata().getCreationTimestamp(),
                null));
      }
    }
    status.setQueued(entries.size());
    metrics.queueLength(
        resource.getMetadata().getNamespace() + "/" + resource.getMetadata().getName(),
        entries.size());
    status.setQueue(
        entries.isEmpty()
            ? null
            : List.copyOf(entries.subList(0, Math.min(entries.size(), MAX_QUEUE_IN_STATUS))));
    status.setRunningJob(outcome.holder().map(j -> j.getMetadata().getName()).orElse(null));
    List<String> unserialized =
        queue.unserialized().stream().map(j -> j.getMetadata().getName()).toList();
    status.setUnserializedRunners(unserialized.isEmpty() ? null : unserialized);
    for (Job job : queue.unserialized()) {
      if (warnedUnserialized.add(job.getMetadata().getUid())) {
        String message =
            "Job "
                + job.getMetadata().getName()
                + " targets "
                + resource.getMetadata().getName()
                + " and runs outside the queue, without the lock, and leasehold could not"
                + " suspend it (see its SuspendRefused Event); create runner Jobs suspended, and"
                + " let leasehold alone unsuspend them";
        events.warning(job, "UnserializedRunner", message);
        events.warning(resource, "UnserializedRunner", message);
      }
    }
  }
}
