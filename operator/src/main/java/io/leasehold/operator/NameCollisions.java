package io.leasehold.operator;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.leasehold.api.TerraformState;
import io.leasehold.api.TerraformStateStatus;
import io.leasehold.kube.EventRecorder;
import io.leasehold.queue.Arrivals;
import io.leasehold.queue.RunQueue;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateOwnership;
import java.util.Collection;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A TerraformState refused its names because another owns them ({@link StateOwnership}): the owner
 * gets a Warning when the collision is new or changed, and each Job waiting for the refused one is
 * told once why it waits. The reconciler then refuses the state (Degraded naming the owner) and
 * looks again every {@value TerraformStateReconciler#COLLISION_RECHECK_MILLIS} ms, since the
 * owner's deletion does not trigger it.
 */
final class NameCollisions {

  private final EventRecorder events;
  private final SharedCaches caches;
  private final Arrivals arrivals;
  private final Set<String> warnedRefused = ConcurrentHashMap.newKeySet();

  NameCollisions(EventRecorder events, SharedCaches caches, Arrivals arrivals) {
    this.events = events;
    this.caches = caches;
    this.arrivals = arrivals;
  }

  /** Forgets Job {@code uid}, which is gone. */
  void forgetJob(String uid) {
    warnedRefused.remove(uid);
  }

  /**
   * Tells the owner (when the collision is new or its message changed) and the waiting Jobs (each
   * once) that {@code names} are refused.
   */
  void tell(
      StateNames names,
      Collection<Job> jobs,
      TerraformStateStatus previous,
      StateOwnership.Collision collision) {
    boolean changed =
        !collision
            .message()
            .equals(
                Conditions.find(previous.getConditions(), Conditions.DEGRADED)
                    .map(c -> c.getMessage())
                    .orElse(""));
    if (changed && collision.owner().isPresent()) {
      TerraformState owner = caches.cachedState(names.namespace(), collision.owner().get());
      if (owner != null) {
        events.warning(
            owner,
            "NameCollision",
            "TerraformState "
                + names.name()
                + " (workspace "
                + names.workspace()
                + ") maps to the same Secret "
                + names.secretName()
                + " and Lease "
                + names.leaseName()
                + " as this one; it is refused (created later, or those objects are labelled for"
                + " this one): nothing of this state is"
                + " read, written, locked or deleted through it");
      }
    }
    for (Job job : RunQueue.of(names.name(), jobs, arrivals).waiting()) {
      if (warnedRefused.add(job.getMetadata().getUid())) {
        events.warning(
            job,
            "NameCollision",
            "TerraformState "
                + names.name()
                + " is refused (NameCollision): this Job waits suspended until that is resolved;"
                + " see kubectl describe tfstate "
                + names.name());
      }
    }
  }
}
