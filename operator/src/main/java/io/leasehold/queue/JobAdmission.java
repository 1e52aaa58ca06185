package io.leasehold.queue;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobBuilder;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.Holder;
import io.leasehold.lock.JobLiveness;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.lock.Ticket;
import io.leasehold.ops.AuditLog;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * Admits a state's runner Jobs one at a time, in their turn in the state's line: the lock is taken
 * for the Job (through the {@link LockService}) and only then is the Job unsuspended; the moment it
 * completes, fails or is deleted the lock goes to the next in line (a Job in the same write, or
 * released for a waiting client). An admitted Job is followed by its UID, whatever becomes of its
 * labels. Renewals run on their own schedule ({@link Renewals}).
 *
 * <p>This class decides each pass; the parts are done by one class per job: {@link JobRuns} (where
 * admitted Jobs are in their run, strays included), {@link UnadmittedJobs} (Jobs running without
 * admission are suspended again), {@link Evictions} (Jobs a user suspended again rejoin the line),
 * {@link JobPatches} (the writes to Jobs), {@link RunGroups} (redundant runs skipped) and {@link
 * Announcements} (what a Job is told once).
 */
public final class JobAdmission {

  /** Written as the holder's Operation in Terraform's LockInfo. */
  public static final String OPERATION = "leasehold-run";

  /** How often a running Job that lost its label is looked at, having left the watch. */
  static final Duration UNWATCHED_HOLDER_POLL = Duration.ofSeconds(1);

  /**
   * How often a Job that is ending (deleted, being deleted, or suspended again) is looked at until
   * its pods have ended: pods are not watched.
   */
  static final Duration ENDING_POLL = Duration.ofSeconds(1);

  /**
   * How soon to look again after a Job was put back in line: the write that did it is taken as this
   * operator's own and triggers no reconcile, and the line and status must show it.
   */
  static final Duration REQUEUED_RECHECK = Duration.ofMillis(50);

  /**
   * How soon to look again while a client of another replica is first in line for the free lock:
   * that replica grants it; if it stopped, its places go once its heartbeat times out.
   */
  static final Duration CLIENT_FIRST_RECHECK = Duration.ofSeconds(1);

  /**
   * How soon to look again after this replica changed the line itself (freed the lock with someone
   * in line): its own Lease writes bring it no watch event, so without this the next in line would
   * wait for someone else's write, which may never come.
   */
  static final Duration OWN_WRITE_RECHECK = Duration.ofMillis(100);

  /** The label the Job controller puts on a Job's pods: the Job's UID. */
  public static final String CONTROLLER_UID_LABEL = JobLiveness.CONTROLLER_UID_LABEL;

  /**
   * What the deletion of a state waits for.
   *
   * @param lease the lock Lease, if there is one
   * @param running the admitted Jobs (by name) that have not ended: the deletion waits for them
   * @param recheckAfter when to look again (zero: when a watch event says something changed)
   */
  public record WindDown(Optional<Lease> lease, List<String> running, Duration recheckAfter) {}

  /**
   * What the queue looks like after this pass, and when to look again.
   *
   * @param holder the Job holding the lock, if one does
   * @param handedOver the lock was handed from a Job that ended to the next in this pass
   */
  public record Outcome(
      Lease lease,
      RunQueue queue,
      Optional<Job> holder,
      Duration recheckAfter,
      boolean handedOver) {
    Outcome(Lease lease, RunQueue queue, Optional<Job> holder, Duration recheckAfter) {
      this(lease, queue, holder, recheckAfter, false);
    }
  }

  /** Told after each write, so informer caches can show it before its watch event arrives. */
  public interface WriteListener {
    void jobWritten(TerraformState state, Job written, Job before);
  }

  private final LockService locks;
  private final EventRecorder events;
  private final Clock clock;
  private final LeaseholdMetrics metrics;
  private final Arrivals arrivals;
  private final Announcements announcements;
  private final JobRuns runs;
  private final JobPatches patches;
  private final UnadmittedJobs unadmitted;
  private final Evictions evictions;
  private final RunGroups runGroups;

  public JobAdmission(
      KubernetesClient client,
      LockService locks,
      EventRecorder events,
      Clock clock,
      WriteListener written,
      LeaseholdMetrics metrics,
      Arrivals arrivals) {
    this.locks = locks;
    this.events = events;
    this.clock = clock;
    this.metrics = metrics;
    this.arrivals = arrivals;
    this.announcements = new Announcements(events);
    this.runs = new JobRuns(client, arrivals);
    this.patches = new JobPatches(client, events, clock, written, announcements);
    this.unadmitted = new UnadmittedJobs(client, locks, events, clock, written, announcements);
    this.evictions = new Evictions(events, arrivals, runs, patches, announcements);
    this.runGroups = new RunGroups(locks, events, clock, metrics, patches, announcements);
  }

  /**
   * One pass over a state's Jobs and lock.
   *
   * @throws KubernetesClientException with code 409 when the Lease or a Job changed since it was
   *     read: nothing was decided on stale data; look again
   */
  public Outcome run(TerraformState state, StateNames names, Collection<Job> jobs) {
    RunQueue queue = RunQueue.of(names.name(), jobs, arrivals);
    if (!queue.unserialized().isEmpty()) {
      // Running without having been admitted: suspended again, they wait in line like the rest.
      jobs = unadmitted.suspend(state, names, jobs, queue.unserialized());
      queue = RunQueue.of(names.name(), jobs, arrivals);
    }
    int duration = state.getSpec().getLock().getLeaseDurationSeconds();
    Instant now = clock.instant();
    keepHeldWhileRunning(names, queue, duration);
    // Redundant runs of a run group are skipped before anyone lines up or is admitted.
    Collection<Job> kept = runGroups.skip(state, names, jobs, queue);
    if (kept != jobs) {
      jobs = kept;
      queue = RunQueue.of(names.name(), jobs, arrivals);
    }
    // Waiting Jobs join the line in their order of arrival; Jobs no longer waiting leave it.
    boolean hold = state.getSpec().getQueue().isHold();
    boolean wasHeld = locks.existing(names).map(LeaseLock::held).orElse(false);
    Lease lease =
        locks.lineUp(
            names,
            queue.waiting().stream().map(j -> Ticket.job(uid(j), name(j), now)).toList(),
            hold);
    QueueHold.tell(events, state, names, wasHeld, lease, hold);
    Optional<Holder> holder = Holder.of(lease, now);
    Optional<String> heldUid = holder.flatMap(Holder::jobUid);

    if (heldUid.isPresent()) {
      JobRuns.HolderJob found = runs.holderJob(names, jobs, holder.get());
      Job job = found.job();
      JobRuns.Run run = runs.progress(names, heldUid.get(), job);
      if (run != JobRuns.Run.ENDED) {
        if (run == JobRuns.Run.RUNNING && !RunnerJobs.admitted(job)) {
          // The lock was taken for it but the operator stopped before unsuspending it; unless
          // another admitted Job still runs (the Lease was edited by hand): then it waits.
          List<Job> others =
              runs.strays(names, lease, jobs).running().stream()
                  .filter(j -> !uid(j).equals(heldUid.get()))
                  .toList();
          if (others.isEmpty()) {
            patches.unsuspend(state, names, job, lease);
          } else if (announcements.once("stray/" + uid(others.get(0)))) {
            events.warning(
                others.get(0),
                "RunningWithoutLock",
                "Job is running but no longer holds the lock on "
                    + names.name()
                    + " (the Lease names Job "
                    + name(job)
                    + "); no other Job is admitted until it ends");
          }
        }
        boolean requeued = evictions.requeueEvicted(state, names, jobs, heldUid.get());
        announcements.announce(state, queue, lease);
        return new Outcome(
            lease,
            queue,
            Optional.ofNullable(job),
            requeued
                ? REQUEUED_RECHECK
                : run == JobRuns.Run.ENDING
                    ? ENDING_POLL
                    : found.watched() ? Duration.ZERO : UNWATCHED_HOLDER_POLL);
      }
      return handOn(state, names, lease, jobs, queue, job, holder.get(), duration);
    }

    // Jobs admitted earlier that may still run although their lock is gone (broken, expired
    // while the operator was away, taken over): found by UID, whatever their labels say now.
    JobRuns.Strays strays = runs.strays(names, lease, jobs);
    if (!strays.ended().isEmpty()) {
      lease = locks.ended(names, strays.ended());
      // That write was made on the Lease as it is now: someone may have taken the lock meanwhile.
      holder = Holder.of(lease, now);
    }
    boolean requeued = false;
    for (Job evicted : strays.evicted()) {
      requeued |= evictions.requeue(state, names, evicted);
    }
    if (requeued) {
      // Looked at again at once, with the requeued Jobs in line.
      announcements.announce(state, queue, lease);
      return new Outcome(lease, queue, Optional.empty(), REQUEUED_RECHECK);
    }
    if (holder.isPresent() && !locks.mayTakeOver(names.namespace(), holder.get())) {
      // Held by someone leasehold does not admit for (stock Terraform, an HTTP client):
      // the queue waits until they release it.
      announcements.announce(state, queue, lease);
      return new Outcome(lease, queue, Optional.empty(), strays.recheck());
    }
    if (!strays.running().isEmpty()) {
      // Admitting another would run two at once.
      Job stray = strays.running().get(0);
      if (announcements.once("stray/" + uid(stray))) {
        events.warning(
            stray,
            "RunningWithoutLock",
            "Job is running but no longer holds the lock on "
                + names.name()
                + "; no other Job is admitted until it ends");
      }
      return new Outcome(lease, queue, Optional.empty(), strays.recheck());
    }
    Optional<Ticket> next = locks.next(lease);
    if (next.isPresent() && next.get().isJob()) {
      Optional<Job> job = queue.waitingJob(next.get().id());
      if (job.isPresent() && runs.podsLeftOver(names, job.get())) {
        // Its turn, but pods of a run it started unadmitted still terminate: it waits for them,
        // first in line, so its run never overlaps theirs.
        announcements.announce(state, queue, lease);
        return new Outcome(lease, queue, Optional.empty(), ENDING_POLL);
      }
      if (job.isPresent()) {
        lease = admit(state, names, lease, job.get(), duration, null, null);
        RunQueue after = RunQueue.of(names.name(), admittedCopy(jobs, job.get(), names), arrivals);
        announcements.announce(state, after, lease);
        return new Outcome(lease, after, job, Duration.ZERO);
      }
    }
    Duration recheck = recheckWhileClientsGoFirst(next);
    announcements.announce(state, queue, lease);
    return new Outcome(lease, queue, Optional.empty(), recheck);
  }

  /**
   * A Lease that is gone while a Job admitted for the state still runs (deleted while the operator
   * was away) is created held for that Job: the lock is never free under a running Job.
   */
  private void keepHeldWhileRunning(StateNames names, RunQueue queue, int duration) {
    if (queue.running().isEmpty() || locks.existing(names).isPresent()) {
      return;
    }
    Job job = queue.running().get(0);
    List<LeaseLock.RunningJob> running =
        queue.running().stream().map(j -> new LeaseLock.RunningJob(uid(j), name(j))).toList();
    locks.recreateForRunning(names, jobLock(names, job), duration, running);
  }

  /** The Job holding the lock ended: the lock goes to the next in line, or is released. */
  private Outcome handOn(
      TerraformState state,
      StateNames names,
      Lease lease,
      Collection<Job> jobs,
      RunQueue queue,
      Job ended,
      Holder holder,
      int duration) {
    String ending = RunnerJobs.ending(ended);
    String endedName = ended != null ? name(ended) : LeaseLock.jobName(holder.id());
    recordHold(lease);
    Optional<Ticket> next = locks.next(lease);
    String endedUid = holder.jobUid().orElse("");
    boolean othersRunning =
        runs.strays(names, lease, jobs).running().stream().anyMatch(j -> !uid(j).equals(endedUid));
    if (next.isPresent() && next.get().isJob() && !othersRunning) {
      Optional<Job> job = queue.waitingJob(next.get().id());
      // A next Job whose pods of a run it started unadmitted still terminate is not admitted
      // yet: the lock is released, and the Job, first in line, takes it once they have ended.
      if (job.isPresent() && !runs.podsLeftOver(names, job.get())) {
        // Told once, on the state (LockHandedOver, from this Job to the next); the next Job's
        // admission is marked on it by the same patch that unsuspends it.
        Lease handed = admit(state, names, lease, job.get(), duration, endedUid, endedName);
        endedAt(ended).ifPresent(t -> metrics.handoff(Duration.between(t, clock.instant())));
        RunQueue after = RunQueue.of(names.name(), admittedCopy(jobs, job.get(), names), arrivals);
        announcements.announce(state, after, handed);
        return new Outcome(handed, after, job, Duration.ZERO, true);
      }
    }
    Lease released = locks.releaseJob(lease, endedUid);
    jobLockReleased(names, endedName, endedUid, ended != null ? "Job " + ending : "Job gone");
    if (ended != null) {
      events.normal(
          ended, "LockReleased", "Job " + ending + "; the lock on " + names.name() + " is free");
    } else {
      events.normal(
          state,
          "LockReleased",
          "runner Job " + endedName + " is gone; the lock on " + names.name() + " is free");
    }
    announcements.announce(state, queue, released);
    return new Outcome(
        released,
        queue,
        Optional.empty(),
        locks.next(released).isPresent() ? OWN_WRITE_RECHECK : Duration.ZERO);
  }

  /**
   * The lock is free and the first in line is a client of a live replica, which grants it; should
   * that replica stop, its places are dropped once its heartbeat times out, and the Jobs behind
   * them are admitted at the next look. Returns when to look again.
   */
  private static Duration recheckWhileClientsGoFirst(Optional<Ticket> next) {
    return next.isPresent() && next.get().isClient() ? CLIENT_FIRST_RECHECK : Duration.ZERO;
  }

  private void recordHold(Lease lease) {
    var acquired = lease.getSpec().getAcquireTime();
    if (acquired != null) {
      metrics.lockHeld(Duration.between(acquired.toInstant(), clock.instant()), "job");
    }
  }

  /** When a finished Job ended, as the Job controller recorded it. */
  private static Optional<Instant> endedAt(Job job) {
    if (job == null || job.getStatus() == null || job.getStatus().getConditions() == null) {
      return Optional.empty();
    }
    return job.getStatus().getConditions().stream()
        .filter(
            c ->
                ("Complete".equals(c.getType()) || "Failed".equals(c.getType()))
                    && "True".equals(c.getStatus()))
        .map(c -> c.getLastTransitionTime())
        .filter(Objects::nonNull)
        .map(Instant::parse)
        .findFirst();
  }

  /**
   * Takes the lock for {@code job} (handed on from Job {@code endedUid}, {@code endedName}, when
   * not null) and then unsuspends it.
   */
  private Lease admit(
      TerraformState state,
      StateNames names,
      Lease lease,
      Job job,
      int duration,
      String endedUid,
      String endedName) {
    LockInfo jobLock = jobLock(names, job);
    Lease held = locks.admit(lease, jobLock, uid(job), duration, endedUid);
    AuditLog.line("job-admitted", names.namespace(), names.name())
        .with("workspace", names.workspace())
        .with("lockId", jobLock.id())
        .with("job", name(job))
        .with("jobUid", uid(job))
        .with("handoffFromJob", endedName)
        .with("handoffFromJobUid", endedUid)
        .with("replica", locks.replica())
        .with("reason", endedUid == null ? "its turn, the lock free" : "handed on: the Job ended")
        .log();
    patches.unsuspend(state, names, job, held);
    return held;
  }

  /** The audit line of a runner Job's lock released (not handed on). */
  private void jobLockReleased(StateNames names, String job, String jobUid, String reason) {
    AuditLog.line("job-lock-released", names.namespace(), names.name())
        .with("workspace", names.workspace())
        .with("job", job)
        .with("jobUid", jobUid)
        .with("replica", locks.replica())
        .with("reason", reason)
        .log();
  }

  /** The LockInfo leasehold holds the lock with for runner Job {@code job}. */
  private LockInfo jobLock(StateNames names, Job job) {
    return new LockInfo(
        RunnerJobs.holderId(job),
        OPERATION,
        "runner Job "
            + names.namespace()
            + "/"
            + name(job)
            + " admitted by leasehold; the lock is renewed while it runs",
        "job/" + name(job),
        "leasehold",
        DateTimeFormatter.ISO_INSTANT.format(clock.instant()),
        names.secretName());
  }

  /**
   * One pass while the state's TerraformState is being deleted. Nothing is admitted: the line is
   * emptied and each waiting Job is told, once, that it never will be. A Job admitted before keeps
   * the lock, renewed, until it ends (its pods included); then its lock is released, not handed on.
   * Returns what the deletion still waits for.
   *
   * @throws KubernetesClientException with code 409 when the Lease changed since it was read
   */
  public WindDown windDown(TerraformState state, StateNames names, Collection<Job> jobs) {
    RunQueue queue = RunQueue.of(names.name(), jobs, arrivals);
    if (!queue.unserialized().isEmpty()) {
      jobs = unadmitted.suspend(state, names, jobs, queue.unserialized());
      queue = RunQueue.of(names.name(), jobs, arrivals);
    }
    for (Job job : queue.waiting()) {
      if (announcements.once("deleting/" + uid(job))) {
        events.warning(
            job,
            "StateBeingDeleted",
            "TerraformState "
                + names.name()
                + " is being deleted: this Job is not admitted for it and stays suspended; delete"
                + " the Job (should a TerraformState "
                + names.name()
                + " be created again, the Job waits in its line)");
      }
    }
    if (!queue.running().isEmpty()) {
      keepHeldWhileRunning(names, queue, state.getSpec().getLock().getLeaseDurationSeconds());
    }
    Optional<Lease> found = locks.clearLine(names);
    if (found.isEmpty()) {
      return new WindDown(Optional.empty(), List.of(), Duration.ZERO);
    }
    Lease lease = found.get();
    LinkedHashSet<String> running = new LinkedHashSet<>();
    Duration recheck = Duration.ZERO;
    Optional<Holder> holder = Holder.of(lease, clock.instant());
    Optional<String> heldUid = holder.flatMap(Holder::jobUid);
    if (heldUid.isPresent()) {
      JobRuns.HolderJob holderJob = runs.holderJob(names, jobs, holder.get());
      Job job = holderJob.job();
      JobRuns.Run run = runs.progress(names, heldUid.get(), job);
      if (run == JobRuns.Run.ENDED) {
        recordHold(lease);
        lease = locks.releaseJob(lease, heldUid.get());
        jobLockReleased(
            names,
            job != null ? name(job) : LeaseLock.jobName(holder.get().id()),
            heldUid.get(),
            (job != null ? "Job " + RunnerJobs.ending(job) : "Job gone")
                + "; the TerraformState is being deleted");
        String released =
            "; the lock on "
                + names.name()
                + " is released, not handed on: the TerraformState is being deleted";
        if (job != null) {
          events.normal(job, "LockReleased", "Job " + RunnerJobs.ending(job) + released);
        } else {
          events.normal(
              state,
              "LockReleased",
              "runner Job " + LeaseLock.jobName(holder.get().id()) + " is gone" + released);
        }
      } else {
        running.add(LeaseLock.jobName(holder.get().id()));
        recheck = run == JobRuns.Run.ENDING || !holderJob.watched() ? ENDING_POLL : Duration.ZERO;
      }
    }
    JobRuns.Strays strays = runs.strays(names, lease, jobs);
    if (!strays.ended().isEmpty()) {
      lease = locks.ended(names, strays.ended());
    }
    for (Job j : strays.running()) {
      running.add(name(j));
    }
    if (!strays.recheck().isZero()) {
      recheck = strays.recheck();
    }
    return new WindDown(Optional.of(lease), List.copyOf(running), recheck);
  }

  /** Forgets a Job that is gone, so memory does not grow with Jobs that come and go. */
  public void forget(String uid) {
    announcements.forget(uid);
  }

  /** The Jobs with {@code admitted} as it is now that it was admitted (for the status). */
  private static Collection<Job> admittedCopy(
      Collection<Job> jobs, Job admitted, StateNames names) {
    List<Job> copy = new ArrayList<>(jobs.size() + 1);
    for (Job j : jobs) {
      if (admitted == null || !uid(j).equals(uid(admitted))) {
        copy.add(j);
      }
    }
    if (admitted != null) {
      copy.add(
          new JobBuilder(admitted)
              .editMetadata()
              .addToAnnotations(RunnerJobs.ADMITTED_ANNOTATION, "now")
              .addToAnnotations(RunnerJobs.ADMITTED_FOR_ANNOTATION, names.name())
              .endMetadata()
              .editSpec()
              .withSuspend(false)
              .endSpec()
              .build());
    }
    return copy;
  }

  private static String uid(Job job) {
    return job.getMetadata().getUid();
  }

  private static String name(Job job) {
    return job.getMetadata().getName();
  }
}
