package io.leasehold.lock;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.function.Consumer;

/**
 * The one place where a state's lock changes hands. Every transition (a client's LOCK and UNLOCK, a
 * runner Job's pod locking under the Job's lock, admitting a Job, renewing its lock, handing it on,
 * taking over an expired lock, force-unlocking, the deletion lock) is decided here and written as
 * one update of the Lease conditional on the version it was decided on; nothing else writes a lock
 * Lease.
 *
 * <p>The rules:
 *
 * <ul>
 *   <li>One line per state, on the Lease ({@link Line}): runner Jobs and {@code ?wait=} clients in
 *       order of arrival. A free lock goes to the first in line that may take it now: a Job (the
 *       leader admits it) or a client whose request is still connected. A client whose request
 *       ended keeps its place for a grace period, so Terraform's retry with the same lock ID is
 *       served before later arrivals, but the lock is never granted to a client that is not
 *       connected.
 *   <li>A lock belongs to the identity that took it: using its ID from another identity is refused
 *       as {@link Refusal#NOT_OWNER}, which only a force-unlock may override. A runner Job's lock
 *       belongs to the Job's pods.
 *   <li>A runner Job's lock is taken over only once its Lease went unrenewed for its duration and
 *       the Job has ended (read from the API: {@link #mayTakeOver}), so a leader that stalls or
 *       stops renewing never lets a second run start beside the first. Locks of clients and of
 *       stock Terraform never expire.
 * </ul>
 *
 * <p>Answers are in the lock's own words (granted, held by whom, refused and why); the HTTP backend
 * turns them into status codes and the reconciler into status and Events. All methods block on the
 * Kubernetes API.
 *
 * <p>This class is the front the other packages use; the work is done by one class per job: {@link
 * LeaseStore} reads and writes the Lease (conditional writes, retries), {@link ClientLocks} decides
 * clients' LOCKs and serves the waiters, {@link Unlocks} releases, {@link WriteChecks} lets writes
 * through, {@link JobLocks} handles runner Jobs' locks, {@link DeletionLock} a deletion's, and
 * {@link TakeOvers} says when a lapsed lock may be taken over. Who takes a free lock next is {@link
 * LockCore}'s decision, on the Lease as {@link CoreView} presents it.
 */
public final class LockService {

  /**
   * @param ticketGrace how long a client whose request ended keeps its place in line
   */
  public record Settings(Duration ticketGrace) {
    public static final Settings DEFAULTS = new Settings(Duration.ofSeconds(30));
  }

  /** Where Leases are read from before asking the API: the shared informer cache. */
  public interface LeaseSource {
    LeaseSource NONE = (namespace, name) -> Optional.empty();

    Optional<Lease> cached(String namespace, String name);

    /** Told of each Lease written, so the cache can show it before its watch event arrives. */
    default void written(Lease before, Lease after) {}

    /** Tells {@code listener} of every change to a lock Lease the watch reports. */
    default void onChange(Consumer<Lease> listener) {}

    /**
     * Why state {@code namespace/name} takes no new locks (its TerraformState is being deleted), or
     * empty when it does.
     */
    default Optional<String> closed(String namespace, String name) {
      return Optional.empty();
    }

    /**
     * How many plans may hold state {@code namespace/name}'s lock at once: its TerraformState's
     * spec.queue.maxParallelPlans, as this replica's cache shows it.
     */
    default int maxParallelPlans(String namespace, String name) {
      return io.leasehold.api.QueueSpec.DEFAULT_MAX_PARALLEL_PLANS;
    }

    /** Lease {@code name} as it was when the watch reported it deleted, if it did lately. */
    default Optional<Lease> deleted(String namespace, String name) {
      return Optional.empty();
    }

    /** Forgets a deleted Lease once it is recreated (or exists again). */
    default void forgetDeleted(String namespace, String name) {}
  }

  /** A request waiting on this replica whose connection is open. */
  public record Waiting(LockInfo info, Caller caller) {}

  /** Why a request was refused. */
  public enum Refusal {
    /** The lock ID belongs to another identity: only a force-unlock may use it. */
    NOT_OWNER,
    /** The line has no more places for clients. */
    LINE_FULL,
    /** The lock ID is not (or no longer) the holder's. */
    STALE_LOCK,
    /** Someone holds the lock and the request carries no lock ID. */
    LOCKED,
    /**
     * The state's TerraformState is being deleted: no new lock is granted and nothing is written
     * without the lock held since before.
     */
    DELETING,
    /**
     * The lock ID is held by a request of the same identity with a different LockInfo: not a retry
     * of the request that took it, but another one reusing its ID.
     */
    ID_IN_USE,
    /** A write under a plan's lock: plans share the lock and never write the state. */
    PLAN_LOCK,
    /** What the request would record does not fit in the lock Lease ({@link LeaseSize}). */
    TOO_LARGE,
    /**
     * A force-unlock that could not be decided in time after it arrived: it would act on the lock
     * as it is later, not as its requester saw it.
     */
    TOO_LATE,
    /**
     * The run was cancelled while it waited ({@link #cancelWaiting}): it never gets the lock, and a
     * LOCK with its lock ID is refused for a while.
     */
    CANCELLED
  }

  /** What a LOCK, UNLOCK or write check came to. */
  public sealed interface Answer permits Granted, NotNow, Refused, Released, NotHeld, Allowed {}

  /**
   * The lock is the requester's (now, or already).
   *
   * @param lease the Lease as written (to undo a grant whose answer could not be delivered); null
   *     when nothing was written
   * @param tookOver an expired lock was taken over
   */
  public record Granted(String lockId, Lease lease, boolean tookOver) implements Answer {}

  /**
   * Not now: someone holds the lock, or others stand before the requester in line.
   *
   * @param holder the holder, empty when the lock is free but others are first
   * @param holderJson the LockInfo to answer with
   * @param position the requester's 1-based place in line, 0 when it is not in line
   */
  public record NotNow(Optional<Holder> holder, String holderJson, int position)
      implements Answer {}

  /** Refused, with a message that says why and what to do. */
  public record Refused(Refusal refusal, String message, Optional<Holder> holder)
      implements Answer {}

  /**
   * Released. {@code previous} is who held it; {@code nested} is true when only a nested lock was.
   */
  public record Released(Holder previous, boolean nested) implements Answer {}

  /** UNLOCK or force-unlock of a lock that is not held (by that ID). */
  public record NotHeld(Optional<Holder> holder, String message) implements Answer {}

  /** A write may go ahead under the lock it carries. */
  public record Allowed() implements Answer {}

  /**
   * Which waiting runs to cancel.
   *
   * @param allClients every client waiting in line (that arrived by {@code arrivedBy})
   * @param lockIds the clients to cancel by lock ID (that arrived by {@code arrivedBy})
   * @param jobs the runner Jobs to cancel, UID to name: waiting, in line or not
   * @param arrivedBy only runs that arrived by then are cancelled
   * @param why why, and who asked, as far as known: told to the cancelled client
   */
  public record CancelRequest(
      boolean allClients,
      Set<String> lockIds,
      Map<String, String> jobs,
      Instant arrivedBy,
      String why) {
    public CancelRequest {
      lockIds = Set.copyOf(lockIds);
      jobs = Map.copyOf(jobs);
    }
  }

  /**
   * What a cancel came to.
   *
   * @param cancelled the places dropped from line (and the unlined Jobs), now recorded as cancelled
   * @param leftAlone what was named but not cancelled, and why (it holds the lock, it runs, it is
   *     not waiting, it arrived after the cancel's time)
   */
  public record CancelOutcome(List<Ticket> cancelled, List<String> leftAlone) {
    public CancelOutcome {
      cancelled = List.copyOf(cancelled);
      leftAlone = List.copyOf(leftAlone);
    }
  }

  /** The Lease kept changing under every attempt. */
  public static final class Busy extends RuntimeException {
    public Busy(StateNames names) {
      super(
          "the lock Lease "
              + names.namespace()
              + "/"
              + names.leaseName()
              + " keeps changing under every attempt; retry");
    }
  }

  private final LeaseStore store;
  private final Settings settings;
  private final ReplicaLiveness liveness;
  private final PlaceKeeping places;
  private final TakeOvers takeOvers;
  private final ClientLocks clients;
  private final Unlocks unlocks;
  private final WriteChecks writeChecks;
  private final JobLocks jobLocks;
  private final DeletionLock deletion;
  private final Cancels cancels;

  public LockService(
      KubernetesClient client, LeaseSource leases, Clock clock, String replica, Settings settings) {
    this(client, leases, clock, ReplicaLiveness.alone(replica), settings, JobLiveness.of(client));
  }

  /**
   * @param jobs tells whether the runner Job a lapsed lock is held for still runs
   */
  public LockService(
      KubernetesClient client,
      LeaseSource leases,
      Clock clock,
      String replica,
      Settings settings,
      JobLiveness jobs) {
    this(client, leases, clock, ReplicaLiveness.alone(replica), settings, jobs);
  }

  /**
   * @param liveness which replicas are alive; places in line of the others are dropped
   */
  public LockService(
      KubernetesClient client,
      LeaseSource leases,
      Clock clock,
      ReplicaLiveness liveness,
      Settings settings) {
    this(client, leases, clock, liveness, settings, JobLiveness.of(client));
  }

  /**
   * @param liveness which replicas are alive; places in line of the others are dropped
   * @param jobs tells whether the runner Job a lapsed lock is held for still runs
   */
  public LockService(
      KubernetesClient client,
      LeaseSource leases,
      Clock clock,
      ReplicaLiveness liveness,
      Settings settings,
      JobLiveness jobs) {
    this.store = new LeaseStore(client, leases, clock);
    this.settings = settings;
    this.liveness = liveness;
    this.places = new PlaceKeeping(settings.ticketGrace(), liveness);
    this.takeOvers = new TakeOvers(jobs);
    LockCore core = new LockCore(new LockCore.Rules(settings.ticketGrace(), 1, Line.MAX_CLIENTS));
    this.clients = new ClientLocks(store, clock, liveness, places, takeOvers, core);
    this.unlocks = new Unlocks(store, clock);
    this.writeChecks = new WriteChecks(store, clock, takeOvers);
    this.jobLocks = new JobLocks(store, clock, liveness, places, takeOvers, core);
    this.deletion = new DeletionLock(store, clock, takeOvers);
    this.cancels = new Cancels(store, clock, places);
  }

  /** This replica's name, as its places in line record it. */
  public String replica() {
    return liveness.self();
  }

  /** Tells {@code listener} of every change to a lock Lease (from the watch). */
  public void onLeaseChange(Consumer<Lease> listener) {
    store.source().onChange(listener);
  }

  public Settings settings() {
    return settings;
  }

  /** Which replicas are alive. */
  public ReplicaLiveness liveness() {
    return liveness;
  }

  // ---------------------------------------------------------------- reading the Lease

  /** The Lease as last seen (the cache), created unlocked when there is none. */
  public Lease current(StateNames names) {
    return store.current(names);
  }

  /** The Lease as the API server has it now, created unlocked when there is none. */
  public Lease fresh(StateNames names) {
    return store.fresh(names);
  }

  /** The Lease as cached, or as the API server has it; empty when there is none. Never creates. */
  public Optional<Lease> existing(StateNames names) {
    return store.existing(names);
  }

  /** Why the state takes no new locks: its TerraformState is being deleted. Empty when it does. */
  public Optional<String> closed(StateNames names) {
    return store.closed(names);
  }

  /**
   * The places that may still wait at {@code now}: without clients whose grace ran out and without
   * every place of a replica that is not alive, so that they never block a free lock.
   */
  public Line kept(Line line, Instant now) {
    return places.kept(line, now);
  }

  /**
   * Whether lock {@code h} of a state in {@code namespace} may be taken over now: {@link
   * TakeOvers}.
   */
  public boolean mayTakeOver(String namespace, Holder h) {
    return takeOvers.mayTakeOver(namespace, h);
  }

  // ------------------------------------------------------------------------------ client locks

  /** A client's LOCK: {@link ClientLocks#lock}. */
  public Answer lock(
      StateNames names, LockInfo info, Caller caller, boolean waits, Map<String, Waiting> local) {
    return clients.lock(names, info, caller, waits, local);
  }

  /** Grants the free lock to the first in line if that is a connected request of this replica. */
  public Optional<Granted> serve(StateNames names, Map<String, Waiting> local) {
    return clients.serve(names, local);
  }

  /** Client {@code id}'s request on this replica ended: it keeps its place for the grace period. */
  public void left(StateNames names, String id) {
    clients.left(names, id);
  }

  /** Removes from line the clients whose grace period ran out. */
  public void prune(StateNames names) {
    clients.prune(names);
  }

  /** Undoes a grant whose answer could not be delivered; returns whether it was undone. */
  public boolean undo(StateNames names, Granted granted, Caller caller) {
    return clients.undo(names, granted, caller);
  }

  /** UNLOCK by the lock's holder: {@link Unlocks#unlock}. */
  public Answer unlock(StateNames names, String lockId, Caller caller) {
    return unlocks.unlock(names, lockId, caller);
  }

  /** Releases the lock whoever holds it, or only when its ID is {@code expectedId}. */
  public Answer forceUnlock(StateNames names, Optional<String> expectedId) {
    return unlocks.forceUnlock(names, expectedId);
  }

  /** As {@link #forceUnlock(StateNames, Optional)}, refused if not decided by {@code notAfter}. */
  public Answer forceUnlock(StateNames names, Optional<String> expectedId, Instant notAfter) {
    return unlocks.forceUnlock(names, expectedId, notAfter);
  }

  /**
   * Releases lock {@code lockId} of {@code pod}, which is gone or has ended, if the Lease still
   * shows that lock taken by that pod: {@link Unlocks#releaseVanishedPod}.
   */
  public Answer releaseVanishedPod(StateNames names, String lockId, HolderPod pod) {
    return unlocks.releaseVanishedPod(names, lockId, pod);
  }

  /** Whether a POST or DELETE carrying {@code lockId} may go ahead: {@link WriteChecks}. */
  public Answer checkWrite(StateNames names, String lockId, Caller caller, String what) {
    return writeChecks.checkWrite(names, lockId, caller, what);
  }

  // ------------------------------------------------------------------------------ runner Jobs

  /**
   * Keeps the Jobs in line in step with the Jobs waiting, and the hold: {@link JobLocks#lineUp}.
   */
  public Lease lineUp(StateNames names, List<Ticket> waitingJobs, boolean hold) {
    return jobLocks.lineUp(names, waitingJobs, hold);
  }

  /** Who the lock goes to next, as every replica sees it: the first Job or client in line. */
  public Optional<Ticket> next(Lease lease) {
    return jobLocks.next(lease);
  }

  /**
   * Takes the lock for a runner Job whose turn has come: {@link JobLocks#admit}.
   *
   * @throws KubernetesClientException with code 409 when the Lease changed since it was read, or
   *     when {@code lease} shows the lock held by anyone else (nothing is written then)
   */
  public Lease admit(
      Lease lease, LockInfo jobLock, String jobUid, int durationSeconds, String endedUid) {
    return jobLocks.admit(lease, jobLock, jobUid, durationSeconds, endedUid);
  }

  /**
   * Releases the lock of runner Job {@code endedUid}, which ended, in one conditional write.
   *
   * @throws KubernetesClientException with code 409 when the Lease changed since it was read
   */
  public Lease releaseJob(Lease lease, String endedUid) {
    return jobLocks.releaseJob(lease, endedUid);
  }

  /** Forgets runner Jobs seen to have ended while someone else held the lock. */
  public Lease ended(StateNames names, Set<String> endedUids) {
    return jobLocks.ended(names, endedUids);
  }

  /** Renews runner Job lock {@code holderId} if it still holds the lock; empty when not. */
  public Optional<Lease> renew(StateNames names, String holderId, int durationSeconds) {
    return jobLocks.renew(names, holderId, durationSeconds);
  }

  /** Creates the Lease gone under a running runner Job: {@link JobLocks#recreateForRunning}. */
  public Optional<Lease> recreateForRunning(
      StateNames names, LockInfo jobLock, int durationSeconds, List<LeaseLock.RunningJob> running) {
    return jobLocks.recreateForRunning(names, jobLock, durationSeconds, running);
  }

  /** Empties the line of a state being deleted; empty when there is no Lease. */
  public Optional<Lease> clearLine(StateNames names) {
    return jobLocks.clearLine(names);
  }

  // ------------------------------------------------------------------------------ cancelling

  /** Cancels waiting runs in one conditional write: {@link Cancels#cancel}. */
  public CancelOutcome cancelWaiting(StateNames names, CancelRequest request) {
    return cancels.cancel(names, request);
  }

  /**
   * Which of {@code lockIds} (this replica's waiting requests) were cancelled, with the refusal to
   * answer each with; read from the Lease as cached (a cancel's write wakes the waiters).
   */
  public Map<String, Refused> cancelled(StateNames names, Collection<String> lockIds) {
    if (lockIds.isEmpty()) {
      return Map.of();
    }
    return cancels.cancelled(names, lockIds);
  }

  // ------------------------------------------------------------------------------ deletion

  /** The deletion lock's ID: stable for the TerraformState, so every retry asks for the same. */
  public static String deletionLockId(String stateUid) {
    return DeletionLock.id(stateUid);
  }

  /** Takes the lock to delete the state (deletionPolicy Delete): {@link DeletionLock#lock}. */
  public Answer lockForDeletion(StateNames names, String stateUid) {
    return deletion.lock(names, stateUid);
  }

  /** Deletes the lock Lease of a state deleted with {@code deletionPolicy: Delete}. */
  public boolean deleteWithState(StateNames names) {
    return deletion.deleteWithState(names);
  }
}
