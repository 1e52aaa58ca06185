package io.leasehold.queue;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.LeaseLock;
import io.leasehold.state.StateNames;

/** Tells, once each time, that a state's queue was held (spec.queue.hold) or let go. */
final class QueueHold {

  private QueueHold() {}

  /**
   * @param wasHeld whether the lock Lease said the queue was held before this reconcile
   * @param lease the lock Lease as written now
   * @param hold what the TerraformState asks for
   */
  static void tell(
      EventRecorder events,
      TerraformState state,
      StateNames names,
      boolean wasHeld,
      Lease lease,
      boolean hold) {
    if (hold == wasHeld || LeaseLock.held(lease) != hold) {
      return;
    }
    if (hold) {
      events.normal(
          state,
          "QueueHeld",
          "spec.queue.hold is true: nothing new is admitted to the lock on "
              + names.name()
              + " (runner Jobs and HTTP-backend clients); the run holding it finishes, and those"
              + " waiting keep their places");
    } else {
      events.normal(
          state,
          "QueueReleased",
          "spec.queue.hold is false: the lock on "
              + names.name()
              + " is admitted again, in the order of the line");
    }
  }
}
