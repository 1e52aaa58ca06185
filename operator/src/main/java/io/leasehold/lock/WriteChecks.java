package io.leasehold.lock;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.lock.LockService.Allowed;
import io.leasehold.lock.LockService.Answer;
import io.leasehold.lock.LockService.Refusal;
import io.leasehold.lock.LockService.Refused;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Instant;
import java.util.Optional;

/**
 * Whether a write of the state (a POST or DELETE of the HTTP backend) may go ahead under the lock
 * it carries. Read from the API server, not the cache, so a write never goes ahead on a lock that
 * was released, broken or taken over since.
 */
final class WriteChecks {

  private final LeaseStore store;
  private final Clock clock;
  private final TakeOvers takeOvers;

  WriteChecks(LeaseStore store, Clock clock, TakeOvers takeOvers) {
    this.store = store;
    this.clock = clock;
    this.takeOvers = takeOvers;
  }

  /**
   * Whether a POST or DELETE carrying {@code lockId} may go ahead: it must carry the holder's ID
   * (or none while nobody holds the lock), and that lock must be the caller's. Read from the API
   * server, not the cache.
   */
  Answer checkWrite(StateNames names, String lockId, Caller caller, String what) {
    Lease lease = store.peek(names).orElse(null);
    if (lease == null && store.closed(names).isEmpty()) {
      // Deleted outside leasehold, perhaps under this very writer: recreated as it was.
      lease = store.fresh(names);
    }
    Instant now = clock.instant();
    Optional<Holder> holder = lease == null ? Optional.empty() : Holder.of(lease, now);
    boolean hasId = lockId != null && !lockId.isBlank();
    Optional<String> closed = store.closed(names);
    if (holder.isEmpty()) {
      if (hasId) {
        return new Refused(
            Refusal.STALE_LOCK,
            "lock " + lockId + " no longer holds the state: it was released, broken or expired",
            Optional.empty());
      }
      if (closed.isPresent()) {
        return new Refused(Refusal.DELETING, closed.get(), Optional.empty());
      }
      return new Allowed();
    }
    Holder h = holder.get();
    if (!hasId && closed.isPresent()) {
      return new Refused(Refusal.DELETING, closed.get(), holder);
    }
    if (!hasId) {
      return new Refused(
          Refusal.LOCKED,
          "locked by "
              + h.summary()
              + " (lock ID "
              + h.id()
              + "); a "
              + what
              + " without the lock (-lock=false) is refused while the state is locked",
          holder);
    }
    if (PlanHolds.find(lease, lockId).isPresent()) {
      return new Refused(
          Refusal.PLAN_LOCK,
          "lock "
              + lockId
              + " is a plan's (Operation OperationTypePlan), which shares the lock with other"
              + " plans: plans do not write; a "
              + what
              + " needs the lock of an apply",
          holder);
    }
    if (takeOvers.mayTakeOver(names.namespace(), h)) {
      return new Refused(
          Refusal.STALE_LOCK,
          "lock " + h.id() + " expired: its holder stopped renewing it; take the lock again",
          holder);
    }
    if (h.id().equals(lockId)) {
      return Ownership.ownedBy(h, caller) ? new Allowed() : Ownership.notOwner(names, h, caller);
    }
    Optional<Holder.Nested> nested = h.nested();
    if (nested.isPresent() && nested.get().info().id().equals(lockId)) {
      return Ownership.ownsNested(nested.get(), caller)
          ? new Allowed()
          : new Refused(
              Refusal.NOT_OWNER,
              "lock "
                  + lockId
                  + " was taken by the runner Job's pod; another identity needs the force-unlock"
                  + " permission to use it",
              holder);
    }
    return new Refused(
        Refusal.STALE_LOCK,
        "lock "
            + lockId
            + " does not hold the state; it is locked by "
            + h.summary()
            + " (lock ID "
            + h.id()
            + ")",
        holder);
  }
}
