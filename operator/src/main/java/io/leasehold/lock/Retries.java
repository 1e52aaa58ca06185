package io.leasehold.lock;

import io.leasehold.api.DisplayText;
import io.leasehold.lock.LockService.Answer;
import io.leasehold.lock.LockService.Granted;
import io.leasehold.lock.LockService.Refusal;
import io.leasehold.lock.LockService.Refused;
import io.leasehold.state.StateNames;
import java.util.Optional;

/**
 * A LOCK with a lock ID that already holds the lock: a retry of the request that took it (its
 * answer was lost) is granted again; another request reusing the ID is refused.
 */
final class Retries {

  private Retries() {}

  /**
   * A LOCK with the lock ID its own identity already holds the lock with. Terraform makes a new
   * lock ID for every lock, so this is a retry of the request that took it, whose answer was lost:
   * granted again, but only when it carries the very LockInfo the lock was taken with (its Created
   * time included). Any other LockInfo under that ID is another request reusing it: it is refused
   * as {@link Refusal#ID_IN_USE}, so that two requests are never both told they hold the lock.
   */
  static Answer retryOrConflict(Holder h, Optional<LockInfo> held, LockInfo asked) {
    if (held.isPresent() && held.get().equals(asked)) {
      return new Granted(asked.id(), null, false);
    }
    String heldAs =
        held.map(
                i ->
                    "Operation "
                        + DisplayText.clean(i.operation(), 64)
                        + ", Who "
                        + DisplayText.clean(i.who(), 64)
                        + ", Created "
                        + DisplayText.clean(i.created(), 64))
            .orElse("no LockInfo");
    return new Refused(
        Refusal.ID_IN_USE,
        "lock ID "
            + asked.id()
            + " already holds the lock for another request of the same identity with a different"
            + " LockInfo ("
            + heldAs
            + "; this request: Operation "
            + DisplayText.clean(asked.operation(), 64)
            + ", Who "
            + DisplayText.clean(asked.who(), 64)
            + ", Created "
            + DisplayText.clean(asked.created(), 64)
            + "): a LOCK with a held lock ID is granted again only as a retry with the same"
            + " LockInfo; use a new lock ID",
        Optional.of(h));
  }

  /**
   * A LOCK with the lock ID of a plan that holds the lock: a retry of the request that took it when
   * it is the same identity's with the same LockInfo, as {@link #retryOrConflict} tells. A LOCK
   * under that ID for anything but a plan (an apply) is never a retry: granting it would tell a run
   * that writes it holds a lock that is only a plan's, shared with other plans.
   */
  static Answer planRetry(StateNames names, PlanHolds.Plan held, LockInfo info, Caller caller) {
    if (!held.ownedBy(caller)) {
      return new Refused(
          Refusal.NOT_OWNER,
          "lock "
              + info.id()
              + " of "
              + names.namespace()
              + "/"
              + names.name()
              + " is held by a plan of another identity ("
              + held.who()
              + "); "
              + caller.describe()
              + " needs the force-unlock permission on terraformstates/state to use it",
          Optional.of(held.asHolder()));
    }
    if (PlanHolds.isPlan(info) && held.sameRequest(info, caller.identity())) {
      return new Granted(info.id(), null, false);
    }
    return retryOrConflict(held.asHolder(), held.asHolder().info(), info);
  }
}
