package io.leasehold.lock;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.kube.ApiRefusals;
import io.leasehold.lock.LeaseStore.Step;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The locks of runner Jobs: their places in line, admitting the next Job (taking the lock for it),
 * renewing a running Job's lock, releasing it when the Job ended, and keeping the lock held when
 * its Lease disappears under a running Job. The leader's queue ({@code io.leasehold.queue}) drives
 * these; every change is one conditional write of the Lease.
 */
final class JobLocks {

  private static final Logger LOG = LoggerFactory.getLogger(JobLocks.class);

  private final LeaseStore store;
  private final Clock clock;
  private final String replica;
  private final ReplicaLiveness liveness;
  private final PlaceKeeping places;
  private final TakeOvers takeOvers;
  private final LockCore core;

  JobLocks(
      LeaseStore store,
      Clock clock,
      ReplicaLiveness liveness,
      PlaceKeeping places,
      TakeOvers takeOvers,
      LockCore core) {
    this.store = store;
    this.clock = clock;
    this.replica = liveness.self();
    this.liveness = liveness;
    this.places = places;
    this.takeOvers = takeOvers;
    this.core = core;
  }

  /**
   * Keeps the Jobs in line in step with the Jobs waiting: appends those not yet in line, in the
   * order given (their order of arrival), and removes those no longer waiting. Returns the Lease,
   * written only if the line or the hold changed.
   *
   * @param hold whether the state's queue is held (recorded on the Lease for every replica)
   */
  Lease lineUp(StateNames names, List<Ticket> waitingJobs, boolean hold) {
    Lease[] written = new Lease[1];
    Set<String> waiting = waitingJobs.stream().map(Ticket::id).collect(Collectors.toSet());
    Lease unchanged =
        store.transition(
            names,
            lease -> {
              Line line = LeaseLock.line(lease);
              // A Job cancelled while it waited never takes a place again.
              Set<String> cancelled = Cancels.jobs(lease, clock.instant());
              Line next =
                  places.kept(
                      line.filter(
                          t ->
                              !t.isJob()
                                  || waiting.contains(t.id()) && !cancelled.contains(t.id())),
                      clock.instant());
              long room = LeaseSize.lineRoom(lease, next);
              for (Ticket job : waitingJobs) {
                if (cancelled.contains(job.id())) {
                  continue;
                }
                if (next.jobs() >= Line.MAX_JOBS) {
                  break;
                }
                if (next.find(job.id()).isEmpty()) {
                  room -= LeaseSize.place(job);
                  if (room < 0) {
                    // No room left on the Lease: it waits unlined, like Jobs beyond MAX_JOBS.
                    break;
                  }
                  next = next.append(job);
                }
              }
              if (next.equals(line) && LeaseLock.held(lease) == hold) {
                return Step.answer(lease);
              }
              Lease changed = LeaseLock.withLine(lease, next);
              return new Step<>(
                  LeaseLock.withAnnotation(
                      changed, LeaseLock.HOLD_ANNOTATION, hold ? "true" : null),
                  (Lease) null);
            },
            written);
    return unchanged != null ? unchanged : written[0];
  }

  /** Who the lock goes to next, as every replica sees it: the first Job or client in line. */
  Optional<Ticket> next(Lease lease) {
    Instant now = clock.instant();
    Line line = places.kept(LeaseLock.line(lease), now);
    LockCore.State seen = CoreView.of(lease, line, now, replica, null, false);
    // Who would take it were it free now (the holder may be the Job that just ended).
    LockCore.State free =
        new LockCore.State(List.of(), seen.line(), seen.alive(), seen.leader(), false, seen.held());
    Optional<Ticket> next =
        core.step(free, new LockCore.Tick(), now).effects().stream()
            .filter(e -> e instanceof LockCore.Granted)
            .map(e -> ((LockCore.Granted) e).id())
            .findFirst()
            .flatMap(line::find);
    next.filter(t -> t.isClient() && t.replica() != null && !t.replica().equals(replica))
        .filter(t -> line.tickets().stream().anyMatch(Ticket::isJob))
        .filter(t -> seen.holders().stream().allMatch(h -> h.kind() == LockCore.Kind.JOB))
        // Another replica's turn with Jobs waiting behind it: if that replica does not take the
        // lock (it may have died just now), it is asked whether it still runs.
        .ifPresent(t -> liveness.suspect(t.replica()));
    return next;
  }

  /**
   * Takes the lock for a runner Job (its turn has come: the lock is free, expired, or held by the
   * Job that just ended, {@code endedUid}), removes it from line and records it as running, in one
   * conditional write on {@code lease}.
   *
   * @throws KubernetesClientException with code 409 when the Lease changed since it was read, or
   *     when {@code lease} shows the lock held by anyone else (nothing is written then)
   */
  Lease admit(Lease lease, LockInfo jobLock, String jobUid, int durationSeconds, String endedUid) {
    Optional<Holder> holder = Holder.of(lease, clock.instant());
    if (holder.isPresent()
        && !holder.get().jobUid().filter(u -> u.equals(endedUid) || u.equals(jobUid)).isPresent()
        && !takeOvers.mayTakeOver(lease.getMetadata().getNamespace(), holder.get())) {
      // Decided on an older version of the Lease: the lock was taken meanwhile. Never over it.
      throw new KubernetesClientException(
          "the lock on Lease "
              + lease.getMetadata().getName()
              + " is held by "
              + holder.get().id()
              + ": runner Job "
              + LeaseLock.jobName(jobLock.id())
              + " is not admitted over it; look again",
          409,
          null);
    }
    List<LeaseLock.RunningJob> running =
        new ArrayList<>(
            LeaseLock.running(lease).stream()
                .filter(r -> !r.uid().equals(endedUid) && !r.uid().equals(jobUid))
                .toList());
    running.add(new LeaseLock.RunningJob(jobUid, LeaseLock.jobName(jobLock.id())));
    Optional<Holder> takenOver =
        holder.filter(
            h ->
                h.expired()
                    && !h.jobUid().filter(u -> u.equals(endedUid) || u.equals(jobUid)).isPresent());
    Lease held =
        LeaseLock.withRunning(
            LeaseLock.withLine(
                LeaseLock.tookOver(
                    LeaseLock.heldFor(lease, jobLock, durationSeconds, clock.instant()), takenOver),
                places.kept(LeaseLock.line(lease).without(jobUid), clock.instant())),
            running);
    return store.write(lease, held);
  }

  /**
   * Releases the lock of runner Job {@code endedUid}, which ended, in one conditional write on
   * {@code lease}.
   *
   * @throws KubernetesClientException with code 409 when the Lease changed since it was read
   */
  Lease releaseJob(Lease lease, String endedUid) {
    return store.write(
        lease,
        LeaseLock.withRunning(
            LeaseLock.withLine(
                LeaseLock.released(lease), places.kept(LeaseLock.line(lease), clock.instant())),
            LeaseLock.running(lease).stream().filter(r -> !r.uid().equals(endedUid)).toList()));
  }

  /** Forgets runner Jobs seen to have ended while someone else held the lock. */
  Lease ended(StateNames names, Set<String> endedUids) {
    return store.update(
        names,
        lease ->
            LeaseLock.withRunning(
                lease,
                LeaseLock.running(lease).stream()
                    .filter(r -> !endedUids.contains(r.uid()))
                    .toList()));
  }

  /**
   * Renews the lock of runner Job lock {@code holderId} if it still holds it. Returns the renewed
   * Lease, or empty when the lock is no longer that Job's.
   */
  Optional<Lease> renew(StateNames names, String holderId, int durationSeconds) {
    Lease[] written = new Lease[1];
    boolean renewed =
        store.transition(
            names,
            lease -> {
              Optional<Holder> h = Holder.of(lease, clock.instant());
              if (h.isEmpty() || !h.get().vouched() || !h.get().id().equals(holderId)) {
                return Step.answer(Boolean.FALSE);
              }
              return new Step<>(
                  LeaseLock.renewed(lease, durationSeconds, clock.instant()), Boolean.TRUE);
            },
            written);
    return renewed ? Optional.of(written[0]) : Optional.empty();
  }

  /**
   * The Lease is gone while runner Job {@code jobLock}, admitted for the state, still runs: it is
   * created as it was when the watch saw it deleted (its lock and line) or, when that is not known
   * (the operator was away), held for that Job, so the lock is never free under a running Job.
   * Returns the Lease, or the one someone else created first; empty when none can be created
   * because its namespace is being deleted (the Job with it): nobody can take the lock there.
   */
  Optional<Lease> recreateForRunning(
      StateNames names, LockInfo jobLock, int durationSeconds, List<LeaseLock.RunningJob> running) {
    try {
      Lease created =
          store.recreate(
              names,
              () ->
                  LeaseLock.heldForRunning(
                      names, jobLock, durationSeconds, clock.instant(), running));
      LOG.warn(
          "{}/{}: the lock Lease {} was gone while runner Job {} ran; it is recreated held by {}",
          names.namespace(),
          names.name(),
          names.leaseName(),
          LeaseLock.jobName(jobLock.id()),
          Holder.of(created, clock.instant()).map(Holder::summary).orElse("nobody"));
      return Optional.of(created);
    } catch (KubernetesClientException e) {
      if (e.getCode() == 409) {
        return Optional.of(store.peek(names).orElseThrow(() -> e));
      }
      if (ApiRefusals.namespaceTerminating(e)) {
        return Optional.empty();
      }
      throw e;
    }
  }

  /**
   * Empties the line: the state is being deleted, and nobody waiting in it will be served. Returns
   * the Lease, or empty when there is none.
   */
  Optional<Lease> clearLine(StateNames names) {
    Optional<Lease> existing = store.existing(names);
    if (existing.isEmpty() || LeaseLock.line(existing.get()).isEmpty()) {
      return existing;
    }
    return Optional.of(
        store.update(
            names,
            lease ->
                LeaseLock.line(lease).isEmpty() ? lease : LeaseLock.withLine(lease, Line.EMPTY)));
  }
}
