package io.leasehold.lock;

import io.leasehold.lock.LockService.Refusal;
import io.leasehold.lock.LockService.Refused;
import io.leasehold.state.StateNames;
import java.util.Optional;

/**
 * Whose a lock is: the identity that took it through the backend; for a runner Job's lock, the
 * Job's pods (leasehold holds it for the Job). Using a lock ID from another identity is refused as
 * {@link Refusal#NOT_OWNER}, which only a force-unlock may override.
 */
final class Ownership {

  private Ownership() {}

  /**
   * Whether {@code caller} owns lock {@code h}: the identity that took it through the backend; for
   * a runner Job's lock, the Job's pods. A lock taken by stock Terraform records no identity, so no
   * backend client owns it.
   */
  static boolean ownedBy(Holder h, Caller caller) {
    Optional<String> jobUid = h.jobUid();
    if (jobUid.isPresent()) {
      return false;
    }
    return h.owner().map(caller.identity()::equals).orElse(false);
  }

  /**
   * Whether {@code caller} took the nested lock (a runner Job's pod's own lock under the Job's).
   */
  static boolean ownsNested(Holder.Nested nested, Caller caller) {
    return nested.owner().map(caller.identity()::equals).orElse(false);
  }

  /** The refusal for {@code caller} using lock {@code h}, which another identity owns. */
  static Refused notOwner(StateNames names, Holder h, Caller caller) {
    String owner =
        h.jobUid().isPresent()
            ? "runner Job " + LeaseLock.jobName(h.id()) + " (leasehold holds it for the Job)"
            : h.owner().map(o -> o).orElse("a client of Terraform's kubernetes backend");
    return new Refused(
        Refusal.NOT_OWNER,
        "lock "
            + h.id()
            + " of "
            + names.namespace()
            + "/"
            + names.name()
            + " belongs to "
            + owner
            + ", held by "
            + h.summary()
            + "; "
            + caller.describe()
            + " needs the force-unlock permission on terraformstates/state to use it",
        Optional.of(h));
  }
}
