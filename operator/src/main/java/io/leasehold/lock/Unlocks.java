package io.leasehold.lock;

import io.leasehold.lock.LeaseStore.Step;
import io.leasehold.lock.LockService.Answer;
import io.leasehold.lock.LockService.NotHeld;
import io.leasehold.lock.LockService.Refusal;
import io.leasehold.lock.LockService.Refused;
import io.leasehold.lock.LockService.Released;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.Instant;
import java.util.Optional;

/**
 * Releasing a lock: an UNLOCK by the identity that holds it (or the nested lock of a runner Job's
 * pod), and a force-unlock, which releases it whoever holds it. Both are decided on the Lease as
 * the API server has it, so an UNLOCK right after its LOCK never finds "nothing to do" in a cache
 * that does not show the grant yet.
 */
final class Unlocks {

  private final LeaseStore store;
  private final Clock clock;

  Unlocks(LeaseStore store, Clock clock) {
    this.store = store;
    this.clock = clock;
  }

  /**
   * UNLOCK by the lock's holder: releases it (or the nested lock of a runner Job's pod). The ID of
   * a lock another identity owns is refused as {@link Refusal#NOT_OWNER}; see {@link #forceUnlock}.
   */
  Answer unlock(StateNames names, String lockId, Caller caller) {
    return store.freshTransition(
        names,
        lease -> {
          Optional<Holder> holder = Holder.of(lease, clock.instant());
          if (holder.isEmpty()) {
            return Step.answer(
                new NotHeld(
                    Optional.empty(), "lock " + lockId + " is not held: the state is unlocked"));
          }
          Optional<PlanHolds.Plan> plan = PlanHolds.find(lease, lockId);
          if (plan.isPresent()) {
            if (!plan.get().ownedBy(caller)) {
              return Step.answer(
                  new Refused(
                      Refusal.NOT_OWNER,
                      "lock "
                          + lockId
                          + " is held by a plan of another identity ("
                          + plan.get().who()
                          + "); releasing it needs the force-unlock permission",
                      Optional.of(plan.get().asHolder())));
            }
            return new Step<>(
                PlanHolds.without(lease, lockId), new Released(plan.get().asHolder(), false));
          }
          Holder h = holder.get();
          if (h.id().equals(lockId)) {
            if (!Ownership.ownedBy(h, caller)) {
              return Step.answer(Ownership.notOwner(names, h, caller));
            }
            return new Step<>(LeaseLock.released(lease), new Released(h, false));
          }
          Optional<Holder.Nested> nested = h.nested();
          if (nested.isPresent() && nested.get().info().id().equals(lockId)) {
            if (!Ownership.ownsNested(nested.get(), caller)) {
              return Step.answer(
                  new Refused(
                      Refusal.NOT_OWNER,
                      "lock "
                          + lockId
                          + " was taken by another identity (the runner Job's pod); releasing"
                          + " it needs the force-unlock permission",
                      holder));
            }
            return new Step<>(LeaseLock.withNested(lease, null, null), new Released(h, true));
          }
          return Step.answer(
              new NotHeld(
                  holder,
                  "lock "
                      + lockId
                      + " does not hold the state: it is locked by "
                      + h.summary()
                      + " (lock ID "
                      + h.id()
                      + ")"));
        });
  }

  /**
   * Releases the lock whoever holds it, or only when its ID is {@code expectedId}: {@code terraform
   * force-unlock} and the {@code leasehold.io/force-unlock} annotation. The caller has checked that
   * the requester may.
   */
  Answer forceUnlock(StateNames names, Optional<String> expectedId) {
    return forceUnlock(names, expectedId, Instant.MAX);
  }

  /**
   * As {@link #forceUnlock(StateNames, Optional)}, decided by {@code notAfter} or not at all: a
   * force-unlock that names no lock ({@code terraform force-unlock} sends none) breaks whatever is
   * held when it is decided, so one held up (this replica stalled, the API slow) past the moment
   * its requester has likely given up would break a lock taken since, perhaps a runner Job's that
   * has just started. It is refused instead, with nothing released.
   */
  Answer forceUnlock(StateNames names, Optional<String> expectedId, Instant notAfter) {
    return store.freshTransition(
        names,
        lease -> {
          if (clock.instant().isAfter(notAfter)) {
            return Step.answer(
                new Refused(
                    Refusal.TOO_LATE,
                    "the force-unlock was not done: it could not be decided by "
                        + notAfter
                        + " (the lock could have changed hands since it was asked for); nothing"
                        + " was released, look at the lock and ask again",
                    Holder.of(lease, clock.instant())));
          }
          Optional<Holder> holder = Holder.of(lease, clock.instant());
          if (holder.isEmpty()) {
            return Step.answer(new NotHeld(Optional.empty(), "the state is not locked"));
          }
          Holder h = holder.get();
          if (h.unreadable()) {
            // Writing it would replace what cannot be read: it is corrected by hand.
            return Step.answer(
                new NotHeld(
                    holder,
                    "the lock Lease "
                        + names.leaseName()
                        + " cannot be read, so who holds the lock is not known; leasehold leaves"
                        + " it untouched: correct the Lease"));
          }
          Optional<PlanHolds.Plan> plan = expectedId.flatMap(id -> PlanHolds.find(lease, id));
          if (plan.isPresent()) {
            // One plan's lock: the other plans keep theirs.
            return new Step<>(
                PlanHolds.without(lease, plan.get().id()),
                new Released(plan.get().asHolder(), false));
          }
          if (expectedId.isPresent() && !expectedId.get().equals(h.id())) {
            Optional<Holder.Nested> nested = h.nested();
            if (nested.isPresent() && nested.get().info().id().equals(expectedId.get())) {
              return new Step<>(LeaseLock.withNested(lease, null, null), new Released(h, true));
            }
            return Step.answer(
                new NotHeld(
                    holder,
                    "lock "
                        + expectedId.get()
                        + " is not the holder's: the lock is held by "
                        + h.summary()
                        + " with ID "
                        + h.id()));
          }
          return new Step<>(LeaseLock.released(lease), new Released(h, false));
        });
  }

  /**
   * Releases lock {@code lockId} because {@code pod}, the pod that took it, is gone or has ended:
   * only while the Lease shows that very lock, taken by that very pod (a lock that changed hands
   * since the pod was looked at, or was taken again, is left alone), and never a runner Job's or a
   * plan's. Decided on the Lease as the API server has it and written conditionally on it.
   */
  Answer releaseVanishedPod(StateNames names, String lockId, HolderPod pod) {
    return store.freshTransition(
        names,
        lease -> {
          Optional<Holder> holder = Holder.of(lease, clock.instant());
          if (holder.isEmpty()
              || holder.get().unreadable()
              || holder.get().vouched()
              || !holder.get().id().equals(lockId)
              || !holder.get().pod().equals(Optional.of(pod))
              || !PlanHolds.of(lease).isEmpty()) {
            return Step.answer(
                new NotHeld(
                    holder,
                    "lock "
                        + lockId
                        + " of pod "
                        + pod.describe()
                        + " is no longer held by it: nothing released"));
          }
          return new Step<>(LeaseLock.released(lease), new Released(holder.get(), false));
        });
  }
}
