package io.leasehold.queue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobBuilder;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.Holder;
import io.leasehold.lock.JobLiveness;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.lock.Ticket;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.format.DateTimeFormatter;
import java.util.Collection;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Admits a state's runner Jobs one at a time, in their turn in the state's line: the lock is taken
 * for the Job (through the {@link LockService}) and only then is the Job unsuspended; the moment it
 * completes, fails or is deleted the lock goes to the next in line (a Job in the same write, or
 * released for a waiting client). An admitted Job is followed by its UID, whatever becomes of its
 * labels. Renewals run on their own schedule ({@link Renewals}).
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
   * Where an admitted Job is in its run: running; ending (deleted, being deleted, or suspended
   * again by a user) while its pods still run, so it keeps the lock; or ended.
   */
  enum Run {
    RUNNING,
    ENDING,
    ENDED
  }

  /**
   * What the deletion of a state waits for.
   *
   * @param lease the lock Lease, if there is one
   * @param running the admitted Jobs (by name) that have not ended: the deletion waits for them
   * @param recheckAfter when to look again (zero: when a watch event says something changed)
   */
  public record WindDown(Optional<Lease> lease, List<String> running, Duration recheckAfter) {}

  private static final ObjectMapper MAPPER = new ObjectMapper();

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

  private final KubernetesClient client;
  private final LockService locks;
  private final EventRecorder events;
  private final Clock clock;
  private final WriteListener written;
  private final LeaseholdMetrics metrics;
  private final Arrivals arrivals;

  /** UIDs of waiting Jobs already told their position, so each hears it once. */
  private final Set<String> announced = ConcurrentHashMap.newKeySet();

  /** Per state: the client first in line that a free lock has waited for, and since when. */
  public JobAdmission(
      KubernetesClient client,
      LockService locks,
      EventRecorder events,
      Clock clock,
      WriteListener written,
      LeaseholdMetrics metrics,
      Arrivals arrivals) {
    this.client = client;
    this.locks = locks;
    this.events = events;
    this.clock = clock;
    this.written = written;
    this.metrics = metrics;
    this.arrivals = arrivals;
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
      jobs = suspendUnadmitted(state, names, jobs, queue.unserialized());
      queue = RunQueue.of(names.name(), jobs, arrivals);
    }
    int duration = state.getSpec().getLock().getLeaseDurationSeconds();
    Instant now = clock.instant();
    keepHeldWhileRunning(names, queue, duration);
    // Waiting Jobs join the line in their order of arrival; Jobs no longer waiting leave it.
    Lease lease =
        locks.lineUp(
            names, queue.waiting().stream().map(j -> Ticket.job(uid(j), name(j), now)).toList());
    Optional<Holder> holder = Holder.of(lease, now);
    Optional<String> heldUid = holder.flatMap(Holder::jobUid);

    if (heldUid.isPresent()) {
      HolderJob found = holderJob(names, jobs, holder.get());
      Job job = found.job();
      Run run = progress(names, heldUid.get(), job);
      if (run != Run.ENDED) {
        if (run == Run.RUNNING && !RunnerJobs.admitted(job)) {
          // The lock was taken for it but the operator stopped before unsuspending it; unless
          // another admitted Job still runs (the Lease was edited by hand): then it waits.
          List<Job> others =
              strays(names, lease, jobs).running().stream()
                  .filter(j -> !uid(j).equals(heldUid.get()))
                  .toList();
          if (others.isEmpty()) {
            unsuspend(state, names, job, lease);
          } else if (announced.add("stray/" + uid(others.get(0)))) {
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
        boolean requeued = requeueEvicted(state, names, jobs, heldUid.get());
        announce(state, queue, lease);
        return new Outcome(
            lease,
            queue,
            Optional.ofNullable(job),
            requeued
                ? REQUEUED_RECHECK
                : run == Run.ENDING
                    ? ENDING_POLL
                    : found.watched() ? Duration.ZERO : UNWATCHED_HOLDER_POLL);
      }
      return handOn(state, names, lease, jobs, queue, job, holder.get(), duration);
    }

    // Jobs admitted earlier that may still run although their lock is gone (broken, expired
    // while the operator was away, taken over): found by UID, whatever their labels say now.
    Strays strays = strays(names, lease, jobs);
    if (!strays.ended().isEmpty()) {
      lease = locks.ended(names, strays.ended());
      // That write was made on the Lease as it is now: someone may have taken the lock meanwhile.
      holder = Holder.of(lease, now);
    }
    boolean requeued = false;
    for (Job evicted : strays.evicted()) {
      requeued |= requeue(state, names, evicted);
    }
    if (requeued) {
      // Looked at again at once, with the requeued Jobs in line.
      announce(state, queue, lease);
      return new Outcome(lease, queue, Optional.empty(), REQUEUED_RECHECK);
    }
    if (holder.isPresent() && !locks.mayTakeOver(names.namespace(), holder.get())) {
      // Held by someone leasehold does not admit for (stock Terraform, an HTTP client):
      // the queue waits until they release it.
      announce(state, queue, lease);
      return new Outcome(lease, queue, Optional.empty(), strays.recheck());
    }
    if (!strays.running().isEmpty()) {
      // Admitting another would run two at once.
      Job stray = strays.running().get(0);
      if (announced.add("stray/" + uid(stray))) {
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
      if (job.isPresent() && podsLeftOver(names, job.get())) {
        // Its turn, but pods of a run it started unadmitted still terminate: it waits for them,
        // first in line, so its run never overlaps theirs.
        announce(state, queue, lease);
        return new Outcome(lease, queue, Optional.empty(), ENDING_POLL);
      }
      if (job.isPresent()) {
        lease = admit(state, names, lease, job.get(), duration, null);
        RunQueue after = RunQueue.of(names.name(), admittedCopy(jobs, job.get(), names), arrivals);
        announce(state, after, lease);
        return new Outcome(lease, after, job, Duration.ZERO);
      }
    }
    Duration recheck = recheckWhileClientsGoFirst(next);
    announce(state, queue, lease);
    return new Outcome(lease, queue, Optional.empty(), recheck);
  }

  /**
   * Labelled Jobs of the state that run without having been admitted (unsuspended by someone else:
   * a user's patch, a cluster without the chart's admission policies) are suspended again, as Kueue
   * suspends a workload it has not admitted, with a Warning on the Job and the state naming who
   * unsuspended it where the API server recorded it. They keep their place in line (a Job that was
   * waiting in it is not removed, since it waits again) and run in their turn. A Job the Lease
   * names (it holds the lock, or was admitted for the state and has not ended) is never suspended
   * here, whatever its annotations say. Each suspension is conditional on the version of the Job
   * looked at.
   *
   * @return {@code jobs} with each Job suspended here as it was written
   * @throws KubernetesClientException with code 409 when a Job changed since it was read
   */
  private Collection<Job> suspendUnadmitted(
      TerraformState state, StateNames names, Collection<Job> jobs, List<Job> unadmitted) {
    Optional<Lease> lease = locks.existing(names);
    Optional<Holder> holder = lease.flatMap(l -> Holder.of(l, clock.instant()));
    Set<String> named = new java.util.HashSet<>();
    holder.flatMap(Holder::jobUid).ifPresent(named::add);
    lease.ifPresent(l -> LeaseLock.running(l).forEach(r -> named.add(r.uid())));
    java.util.Map<String, Job> suspended = new java.util.HashMap<>();
    for (Job job : unadmitted) {
      if (named.contains(uid(job))) {
        continue;
      }
      // Looked at as the API server has it now: the cache may be behind.
      Job fresh =
          client.batch().v1().jobs().inNamespace(names.namespace()).withName(name(job)).get();
      if (fresh == null
          || !uid(job).equals(uid(fresh))
          || RunnerJobs.admitted(fresh)
          || RunnerJobs.suspended(fresh)
          || RunnerJobs.finished(fresh)
          || fresh.getMetadata().getDeletionTimestamp() != null) {
        continue;
      }
      Optional<String> setBy = RunnerJobs.suspendSetBy(fresh);
      ObjectNode patch = MAPPER.createObjectNode();
      ObjectNode metadata = patch.putObject("metadata");
      metadata.put("uid", uid(fresh));
      metadata.put("resourceVersion", fresh.getMetadata().getResourceVersion());
      patch.putObject("spec").put("suspend", true);
      Job patched;
      try {
        patched =
            client
                .batch()
                .v1()
                .jobs()
                .inNamespace(names.namespace())
                .resource(fresh)
                .patch(PatchContext.of(PatchType.JSON_MERGE), patch.toString());
      } catch (KubernetesClientException e) {
        if (e.getCode() == 404 || (e.getCode() == 422 && mentionsUid(e))) {
          continue;
        }
        if (e.getCode() == 409) {
          throw e;
        }
        // Refused (RBAC, a policy): it stays listed as running outside the queue.
        if (announced.add("unsuspendable/" + uid(job))) {
          events.warning(
              job,
              "SuspendRefused",
              "the Job runs without having been admitted for "
                  + names.name()
                  + " but the API server refused to suspend it ("
                  + e.getCode()
                  + "): "
                  + refusal(e));
        }
        continue;
      }
      written.jobWritten(state, patched, job);
      suspended.put(uid(patched), patched);
      announced.remove(uid(job));
      announced.remove("unsuspendable/" + uid(job));
      String message =
          "Job "
              + name(job)
              + " targets "
              + names.name()
              + " but runs without having been admitted: "
              + setBy
                  .map(m -> "spec.suspend was last set by " + m)
                  .orElse("the API server does not record who unsuspended it")
              + "; "
              + holder
                  .map(h -> "the lock is held by " + h.summary())
                  .orElse("the lock was not taken for it")
              + ". Only the Job leasehold admits may run: it is suspended again (the Job"
              + " controller deletes its pods) and waits in line, keeping its place, to run in its"
              + " turn";
      events.warning(job, "UnadmittedJobSuspended", message);
      events.warning(state, "UnadmittedJobSuspended", message);
    }
    if (suspended.isEmpty()) {
      return jobs;
    }
    List<Job> after = new java.util.ArrayList<>(jobs.size());
    for (Job j : jobs) {
      after.add(suspended.getOrDefault(uid(j), j));
    }
    return after;
  }

  /** The Job the lock is held for, found by UID even when its labels no longer say so. */
  private record HolderJob(Job job, boolean watched) {}

  /**
   * Admitted Jobs not holding the lock: those still running, those seen to have ended, and when to
   * look again (soon when one of them is not watched, having lost its label).
   */
  private record Strays(
      List<Job> running, Set<String> ended, List<Job> evicted, Duration recheck) {}

  /**
   * The admitted Jobs of the state: those still running (or ending, their pods still running),
   * those that ended, and those of them a user suspended again (to be put back in line). Reads
   * only; nothing is changed here.
   */
  private Strays strays(StateNames names, Lease lease, Collection<Job> jobs) {
    java.util.Map<String, Job> byUid = new java.util.HashMap<>();
    for (Job j : jobs) {
      byUid.put(uid(j), j);
    }
    List<Job> running = new java.util.ArrayList<>();
    Set<String> ended = new java.util.HashSet<>();
    List<Job> evicted = new java.util.ArrayList<>();
    boolean poll = false;
    Set<String> seen = new java.util.HashSet<>();
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
        poll && !running.isEmpty() ? UNWATCHED_HOLDER_POLL : Duration.ZERO);
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

  private HolderJob holderJob(StateNames names, Collection<Job> jobs, Holder holder) {
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
      return podsRunning(names.namespace(), uid) ? Run.ENDING : Run.ENDED;
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
  private boolean podsLeftOver(StateNames names, Job job) {
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
  private static boolean suspendedAgain(Job job) {
    return RunnerJobs.admitted(job) && RunnerJobs.suspended(job) && !RunnerJobs.finished(job);
  }

  /**
   * Whether any pod of Job {@code uid} has not ended (pending, running, or terminating), found by
   * the label the Job controller puts on them.
   */
  private boolean podsRunning(String namespace, String uid) {
    return JobLiveness.podsRunning(client, namespace, uid);
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

  /**
   * Jobs suspended again by a user after their admission, their pods ended and the lock no longer
   * theirs, rejoin the line at the back, as Kueue requeues an evicted workload.
   */
  private boolean requeueEvicted(
      TerraformState state, StateNames names, Collection<Job> jobs, String holderUid) {
    boolean requeued = false;
    for (Job j : RunQueue.of(names.name(), jobs, arrivals).running()) {
      if (!uid(j).equals(holderUid)
          && suspendedAgain(j)
          && progress(names, uid(j), j) == Run.ENDED) {
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
  private boolean requeue(TerraformState state, StateNames names, Job job) {
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
      patchJob(state, job, patch);
    } catch (KubernetesClientException e) {
      if (e.getCode() == 404 || e.getCode() == 422) {
        return false;
      }
      throw e;
    }
    announced.remove(uid(job));
    events.normal(
        job,
        "Requeued",
        "the Job was suspended after its admission: its pods have ended and its lock on "
            + names.name()
            + " is released; it waits in line again, at the back, and runs again in its turn"
            + " (delete the Job to cancel it)");
    return true;
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
        strays(names, lease, jobs).running().stream().anyMatch(j -> !uid(j).equals(endedUid));
    if (next.isPresent() && next.get().isJob() && !othersRunning) {
      Optional<Job> job = queue.waitingJob(next.get().id());
      // A next Job whose pods of a run it started unadmitted still terminate is not admitted
      // yet: the lock is released, and the Job, first in line, takes it once they have ended.
      if (job.isPresent() && !podsLeftOver(names, job.get())) {
        Lease handed = admit(state, names, lease, job.get(), duration, endedUid);
        if (ended != null) {
          events.normal(
              ended,
              "LockReleased",
              "Job "
                  + ending
                  + "; the lock on "
                  + names.name()
                  + " passed to Job "
                  + name(job.get()));
        }
        endedAt(ended).ifPresent(t -> metrics.handoff(Duration.between(t, clock.instant())));
        RunQueue after = RunQueue.of(names.name(), admittedCopy(jobs, job.get(), names), arrivals);
        announce(state, after, handed);
        return new Outcome(handed, after, job, Duration.ZERO, true);
      }
    }
    Lease released = locks.releaseJob(lease, endedUid);
    if (ended != null) {
      events.normal(
          ended, "LockReleased", "Job " + ending + "; the lock on " + names.name() + " is free");
    } else {
      events.normal(
          state,
          "LockReleased",
          "runner Job " + endedName + " is gone; the lock on " + names.name() + " is free");
    }
    announce(state, queue, released);
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

  /** Takes the lock for {@code job} and then unsuspends it. */
  private Lease admit(
      TerraformState state, StateNames names, Lease lease, Job job, int duration, String endedUid) {
    Lease held = locks.admit(lease, jobLock(names, job), uid(job), duration, endedUid);
    unsuspend(state, names, job, held);
    return held;
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

  /** Applies JSON {@code patch} to {@code job} and tells the caches of the version written. */
  private void patchJob(TerraformState state, Job job, ArrayNode patch) {
    patchJob(state, job, PatchType.JSON, patch.toString());
  }

  private void patchJob(TerraformState state, Job job, PatchType type, String patch) {
    Job patched =
        client
            .batch()
            .v1()
            .jobs()
            .inNamespace(job.getMetadata().getNamespace())
            .resource(job)
            .patch(PatchContext.of(type), patch);
    written.jobWritten(state, patched, job);
  }

  private void unsuspend(TerraformState state, StateNames names, Job job, Lease lease) {
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
    announced.remove(uid(job));
    events.normal(
        job,
        "Admitted",
        "lock "
            + lease.getSpec().getHolderIdentity()
            + " on "
            + state.getMetadata().getName()
            + " taken for this Job; it is unsuspended and runs now");
  }

  private static boolean mentionsUid(KubernetesClientException e) {
    return e.getStatus() != null
        && e.getStatus().getDetails() != null
        && e.getStatus().getDetails().getCauses() != null
        && e.getStatus().getDetails().getCauses().stream()
            .anyMatch(c -> "metadata.uid".equals(c.getField()));
  }

  /** The API server's reason for a refusal: its message, which names no state content. */
  private static String refusal(KubernetesClientException e) {
    return e.getStatus() != null && e.getStatus().getMessage() != null
        ? e.getStatus().getMessage()
        : String.valueOf(e.getMessage());
  }

  /** Tells each waiting Job, once, where it stands in line and behind whom. */
  private void announce(TerraformState state, RunQueue queue, Lease lease) {
    if (queue.waiting().isEmpty()) {
      return;
    }
    String holder = Holder.of(lease).map(Holder::summary).orElse(null);
    List<Ticket> line = LeaseLock.line(lease).tickets();
    for (Job job : queue.waiting()) {
      if (!announced.add(uid(job))) {
        continue;
      }
      int index = -1;
      for (int i = 0; i < line.size(); i++) {
        if (line.get(i).id().equals(uid(job))) {
          index = i;
          break;
        }
      }
      String behind;
      if (index > 0) {
        Ticket before = line.get(index - 1);
        behind = before.isJob() ? "behind Job " + before.who() : "behind client " + before.who();
      } else {
        behind = holder != null ? "behind the lock holder " + holder : "at the head";
      }
      events.normal(
          job,
          "Queued",
          "waiting for the lock on "
              + state.getMetadata().getName()
              + (index >= 0 ? " at position " + (index + 1) : "")
              + ", "
              + behind);
    }
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
      jobs = suspendUnadmitted(state, names, jobs, queue.unserialized());
      queue = RunQueue.of(names.name(), jobs, arrivals);
    }
    for (Job job : queue.waiting()) {
      if (announced.add("deleting/" + uid(job))) {
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
    java.util.LinkedHashSet<String> running = new java.util.LinkedHashSet<>();
    Duration recheck = Duration.ZERO;
    Optional<Holder> holder = Holder.of(lease, clock.instant());
    Optional<String> heldUid = holder.flatMap(Holder::jobUid);
    if (heldUid.isPresent()) {
      HolderJob holderJob = holderJob(names, jobs, holder.get());
      Job job = holderJob.job();
      Run run = progress(names, heldUid.get(), job);
      if (run == Run.ENDED) {
        recordHold(lease);
        lease = locks.releaseJob(lease, heldUid.get());
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
        recheck = run == Run.ENDING || !holderJob.watched() ? ENDING_POLL : Duration.ZERO;
      }
    }
    Strays strays = strays(names, lease, jobs);
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
    announced.remove(uid);
    announced.remove("stray/" + uid);
    announced.remove("deleting/" + uid);
  }

  /** The Jobs with {@code admitted} as it is now that it was admitted (for the status). */
  private static Collection<Job> admittedCopy(
      Collection<Job> jobs, Job admitted, StateNames names) {
    List<Job> copy = new java.util.ArrayList<>(jobs.size() + 1);
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

  private static String key(StateNames names) {
    return names.namespace() + "/" + names.name();
  }

  private static String uid(Job job) {
    return job.getMetadata().getUid();
  }

  private static String name(Job job) {
    return job.getMetadata().getName();
  }
}
