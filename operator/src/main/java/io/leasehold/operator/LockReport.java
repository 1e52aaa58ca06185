package io.leasehold.operator;

import io.leasehold.api.LockStatus;
import io.leasehold.api.TerraformState;
import io.leasehold.api.TerraformStateStatus;
import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.Holder;
import io.leasehold.lock.LeaseLock;
import io.leasehold.queue.JobAdmission;
import java.util.Objects;
import java.util.Optional;

/**
 * Tells of the lock: its holder in the status with the Locked condition, and an Event for each
 * change of hands (taken, released, handed over by the queue, taken over once it expired, or
 * changed by someone editing the Lease), told once per change.
 */
final class LockReport {

  private final EventRecorder events;

  LockReport(EventRecorder events) {
    this.events = events;
  }

  /**
   * The lock in the status: its holder (and the plans holding it beside each other), how many hold
   * it, and the Locked condition.
   */
  static void record(
      TerraformStateStatus status,
      Conditions conditions,
      Optional<Holder> holder,
      java.util.List<Holder> plans) {
    status.setPlans(plans.isEmpty() ? null : plans.stream().map(LockReport::lockStatus).toList());
    status.setHolders(
        holder.isEmpty() || holder.get().unreadable() ? 0 : Math.max(1, plans.size()));
    if (holder.isPresent() && holder.get().unreadable()) {
      status.setLock(null);
      status.setHolder(Holder.UNREADABLE_ID);
      conditions.set(
          Conditions.LOCKED,
          true,
          TerraformStateReconciler.FIELD_UNREADABLE,
          "the lock Lease cannot be read (see its Events), so who holds the lock is not known: it"
              + " counts as held, and leasehold leaves the Lease untouched until it is corrected");
    } else if (holder.isPresent()) {
      Holder h = holder.get();
      status.setLock(lockStatus(h));
      status.setHolder(
          plans.size() > 1
              ? h.summary()
                  + " and "
                  + (plans.size() - 1)
                  + " more plan"
                  + (plans.size() > 2 ? "s" : "")
              : h.summary());
      String message =
          "locked by "
              + h.summary()
              + " with lock ID "
              + h.id()
              + (h.vouched()
                  ? "; leasehold renews this lock for its holder"
                  : "; leasehold cannot vouch that this holder is alive");
      conditions.set(
          Conditions.LOCKED,
          true,
          h.info().isPresent() ? "Held" : "HeldWithoutLockInfo",
          h.info().isPresent()
              ? message
              : message
                  + ". The Lease carries no "
                  + LeaseLock.LOCK_INFO_ANNOTATION
                  + " annotation, so stock Terraform fails at once instead of waiting");
    } else {
      status.setLock(null);
      status.setHolder(null);
      conditions.set(Conditions.LOCKED, false, "Unlocked", "the state is not locked");
    }
  }

  private static LockStatus lockStatus(Holder h) {
    LockStatus status = new LockStatus();
    status.setId(h.id());
    h.info()
        .ifPresent(
            i -> {
              status.setWho(emptyToNull(i.who()));
              status.setOperation(emptyToNull(i.operation()));
              status.setInfo(emptyToNull(i.info()));
              status.setSince(emptyToNull(i.created()));
              status.setVersion(emptyToNull(i.version()));
            });
    status.setVouched(h.vouched());
    status.setPod(h.pod().map(io.leasehold.lock.HolderPod::describe).orElse(null));
    return status;
  }

  private static String emptyToNull(String s) {
    return s == null || s.isEmpty() ? null : s;
  }

  /**
   * The Events for the lock's change from {@code before} (as the status last told it) to {@code
   * after}: nothing when the same lock is held.
   */
  void transition(
      TerraformState resource,
      LockStatus before,
      Optional<Holder> after,
      JobAdmission.Outcome outcome) {
    String beforeId = before == null ? null : before.getId();
    String afterId = after.map(Holder::id).orElse(null);
    if (Objects.equals(beforeId, afterId)) {
      return;
    }
    if (outcome.handedOver() && beforeId != null && afterId != null) {
      // A queue handover: one Event rather than a release and a take, and the handovers of a
      // busy queue gathered into one Event per window.
      events.aggregated(
          resource,
          "LockHandedOver",
          "lock passed from " + describe(before) + " to " + after.get().summary());
      return;
    }
    Optional<String> tookOverFrom =
        afterId == null ? Optional.empty() : LeaseLock.tookOverFrom(outcome.lease());
    if (beforeId != null && tookOverFrom.filter(beforeId::equals).isPresent()) {
      // Not released: its holder stopped renewing it, and the lock was taken from it.
      events.warning(
          resource,
          "LockTakenOver",
          "lock "
              + beforeId
              + " held by "
              + describe(before)
              + " expired and was taken over by "
              + after.get().summary()
              + " (lock "
              + afterId
              + ")");
      return;
    }
    if (beforeId != null
        && afterId != null
        && beforeId.startsWith(LeaseLock.JOB_PREFIX)
        && afterId.startsWith(LeaseLock.JOB_PREFIX)) {
      // One runner Job's lock replaced by another's, but not by leasehold's queue.
      events.warning(
          resource,
          "LockChangedOutsideLeasehold",
          "the lock Lease changed from "
              + describe(before)
              + " to "
              + after.get().summary()
              + " without leasehold handing it over: someone edited the Lease");
      return;
    }
    if (beforeId != null) {
      events.normal(
          resource,
          "LockReleased",
          "lock " + beforeId + " held by " + describe(before) + " was released");
    }
    if (afterId != null) {
      Holder h = after.get();
      events.normal(
          resource,
          "LockTaken",
          "lock "
              + afterId
              + " taken by "
              + h.summary()
              + tookOverFrom.map(id -> ", over expired lock " + id).orElse(""));
      if (h.info().isEmpty()) {
        events.warning(
            resource,
            "LockHeldWithoutLockInfo",
            "lock "
                + afterId
                + " carries no "
                + LeaseLock.LOCK_INFO_ANNOTATION
                + " annotation: stock Terraform will fail at once rather than wait for it");
      }
    }
  }

  private static String describe(LockStatus lock) {
    String who = lock.getWho() == null ? lock.getId() : lock.getWho();
    return lock.getOperation() == null ? who : who + " (" + lock.getOperation() + ")";
  }
}
