package io.leasehold.queue;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobBuilder;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.lock.Holder;
import io.leasehold.lock.JobLiveness;
import io.leasehold.lock.LeaseLock;
import io.leasehold.state.StateNames;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Where admitted runner Jobs are in their run, read from the API: the Job the lock is held for
 * (found by UID even when its labels no longer say so), and the admitted Jobs that do not hold it
 * (strays: still running, ended, or suspended again by a user). A Job has ended only once its pods
 * have: until then its last write may still come. Reads only; nothing is changed here.
 */
final class JobRuns {

  /**
   * Where an admitted Job is in its run: running; ending (deleted, being deleted, or suspended
   * again by a user) while its pods still run, so it keeps the lock; or ended.
   */
  enum Run {
    RUNNING,
    ENDING,
    ENDED
  }

  /** The Job the lock is held for, found by UID even when its labels no longer say so. */
  record HolderJob(Job job, boolean watched) {}

  /**
   * Admitted Jobs not holding the lock: those still running, those seen to have ended, and when to
   * look again (soon when one of them is not watched, having lost its label).
   */
  record Strays(List<Job> running, Set<String> ended, List<Job> evicted, Duration recheck) {}

  private final KubernetesClient client;
  private final Arrivals arrivals;

  JobRuns(KubernetesClient client, Arrivals arrivals) {
    this.client = client;
    this.arrivals = arrivals;
  }

  /**
   * The admitted Jobs of the state: those still running (or ending, their pods still running),
   * those that ended, and those of them a user suspended again (to be put back in line). Reads
   * only; nothing is changed here.
   */
  Strays strays(StateNames names, Lease lease, Collection<Job> jobs) {
    Map<String, Job> byUid = new HashMap<>();
    for (Job j : jobs) {
      byUid.put(uid(j), j);
    }
    List<Job> running = new ArrayList<>();
    Set<String> ended = new HashSet<>();
    List<Job> evicted = new ArrayList<>();
    boolean poll = false;
    Set<String> seen = new HashSet<>();
    for (Job j : RunQueue.of(names.name(), jobs, arrivals).running()) {
      seen.add(uid(j));
      Run run = progress(names, uid(j), j);
      if (run == Run.ENDED) {
        ended.add(uid(j));
        if (suspendedAgain(j)) {
          evicted.add(j);
        }
      } else {
        running.add(j);
        poll |= run == Run.ENDING;
      }
    }
    for (LeaseLock.RunningJob r : LeaseLock.running(lease)) {
      if (seen.contains(r.uid())) {
        continue;
      }
      Job job = byUid.get(r.uid());
      if (job == null) {
        Job byName =
            client.batch().v1().jobs().inNamespace(names.namespace()).withName(r.name()).get();
        job = byName != null && r.uid().equals(uid(byName)) ? byName : null;
        poll |= job != null;
      }
      // A Job the lock was taken for but that was never unsuspended (the operator stopped in
      // between, and the lock has since been broken or passed on) has not started: it waits in
      // line again, it is not a Job that runs without its lock.
      Run run = neverStarted(job) ? Run.ENDED : progress(names, r.uid(), job);
      if (run == Run.ENDED) {
        ended.add(r.uid());
      } else {
        if (job != null) {
          running.add(job);
        } else {
          running.add(gone(names, r));
        }
        poll |= run == Run.ENDING;
      }
    }
    return new Strays(
        running,
        ended,
        evicted,
        poll && !running.isEmpty() ? JobAdmission.UNWATCHED_HOLDER_POLL : Duration.ZERO);
  }

  /** A Job that is gone but whose pods still run, as a placeholder naming it. */
  private static Job gone(StateNames names, LeaseLock.RunningJob r) {
    return new JobBuilder()
        .withNewMetadata()
        .withName(r.name())
        .withUid(r.uid())
        .withNamespace(names.namespace())
        .endMetadata()
        .build();
  }

  HolderJob holderJob(StateNames names, Collection<Job> jobs, Holder holder) {
    String uid = holder.jobUid().orElseThrow();
    for (Job j : jobs) {
      if (uid.equals(uid(j))) {
        return new HolderJob(j, true);
      }
    }
    // Not among the labelled Jobs: its label was removed or changed, or it is gone.
    Job byName =
        client
            .batch()
            .v1()
            .jobs()
            .inNamespace(names.namespace())
            .withName(LeaseLock.jobName(holder.id()))
            .get();
    if (byName != null && uid.equals(uid(byName))) {
      boolean watched =
          RunnerJobs.stateName(byName).isPresent(); // relabelled to another state: still watched
      return new HolderJob(byName, watched);
    }
    return new HolderJob(null, true);
  }

  /**
   * Where admitted Job {@code uid} is in its run ({@code job} null when it is gone). One that
   * completed, failed, is deleted, being deleted (a finalizer, foreground deletion) or suspended
   * again has ended only once its pods have: until then its last write may still come, so it keeps
   * the lock.
   */
  Run progress(StateNames names, String uid, Job job) {
    if (job != null && RunnerJobs.finished(job)) {
      // Failed (a deadline passed, say) while its pod still terminates: its last write may come.
      // Finished: its status may already say none of its pods runs, sparing the pod list.
      return JobLiveness.podsRunning(client, job) ? Run.ENDING : Run.ENDED;
    }
    boolean ending =
        job == null || job.getMetadata().getDeletionTimestamp() != null || suspendedAgain(job);
    if (!ending) {
      return Run.RUNNING;
    }
    return podsRunning(names.namespace(), uid) ? Run.ENDING : Run.ENDED;
  }

  /**
   * Whether a waiting Job still has pods of a run it started without being admitted, suspended
   * again since (the Job controller deletes them, each within its grace period). Only a Job whose
   * status shows it started is looked at.
   */
  boolean podsLeftOver(StateNames names, Job job) {
    var status = job.getStatus();
    boolean started =
        status != null
            && (status.getStartTime() != null
                || positive(status.getActive())
                || positive(status.getTerminating())
                || positive(status.getReady()));
    return started && podsRunning(names.namespace(), uid(job));
  }

  private static boolean positive(Integer n) {
    return n != null && n > 0;
  }

  /** Suspended and never admitted: it has no pod and never had one. */
  private static boolean neverStarted(Job job) {
    return job != null
        && RunnerJobs.suspended(job)
        && !RunnerJobs.admitted(job)
        && !RunnerJobs.finished(job)
        && (job.getStatus() == null
            || (job.getStatus().getStartTime() == null
                && (job.getStatus().getActive() == null || job.getStatus().getActive() == 0)));
  }

  /** Admitted, then suspended again (by a user: leasehold never suspends a Job). */
  static boolean suspendedAgain(Job job) {
    return RunnerJobs.admitted(job) && RunnerJobs.suspended(job) && !RunnerJobs.finished(job);
  }

  /**
   * Whether any pod of Job {@code uid} has not ended (pending, running, or terminating), found by
   * the label the Job controller puts on them.
   */
  private boolean podsRunning(String namespace, String uid) {
    return JobLiveness.podsRunning(client, namespace, uid);
  }

  private static String uid(Job job) {
    return job.getMetadata().getUid();
  }

  private static String name(Job job) {
    return job.getMetadata().getName();
  }
}
