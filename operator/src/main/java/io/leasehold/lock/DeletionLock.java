package io.leasehold.lock;

import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.kube.ApiRefusals;
import io.leasehold.lock.LeaseStore.Step;
import io.leasehold.lock.LockService.Answer;
import io.leasehold.lock.LockService.Granted;
import io.leasehold.lock.LockService.NotNow;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.time.temporal.ChronoUnit;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The lock a TerraformState's deletion takes (deletionPolicy Delete) before its state is deleted,
 * so that nothing is deleted under a client or runner Job in the middle of a run. Its ID is stable
 * for the TerraformState, so every retry of the deletion asks for the same lock, and a lock Lease
 * last seen held by it is never recreated: the state was deleted on purpose.
 */
final class DeletionLock {

  /** The start of every deletion lock's ID. */
  static final String PREFIX = "leasehold-delete/";

  private static final Logger LOG = LoggerFactory.getLogger(DeletionLock.class);

  private final LeaseStore store;
  private final Clock clock;
  private final TakeOvers takeOvers;

  DeletionLock(LeaseStore store, Clock clock, TakeOvers takeOvers) {
    this.store = store;
    this.clock = clock;
    this.takeOvers = takeOvers;
  }

  /** The deletion lock's ID: stable for the TerraformState, so every retry asks for the same. */
  static String id(String stateUid) {
    return PREFIX + stateUid;
  }

  /**
   * Takes the lock to delete the state, with an ID stable across retries: granted when free or
   * already taken for this deletion; otherwise says who holds it. Granted without a Lease when
   * there is none and none can be created because its namespace is being deleted: nobody can take
   * the lock there any more.
   */
  Answer lock(StateNames names, String stateUid) {
    String id = id(stateUid);
    LockInfo info =
        new LockInfo(
            id,
            "delete",
            "deleting TerraformState "
                + names.namespace()
                + "/"
                + names.name()
                + " (deletionPolicy Delete)",
            "leasehold",
            "leasehold",
            clock.instant().truncatedTo(ChronoUnit.SECONDS).toString(),
            names.secretName());
    try {
      return store.freshTransition(
          names,
          lease -> {
            Optional<Holder> holder = Holder.of(lease, clock.instant());
            if (holder.isPresent() && holder.get().id().equals(id)) {
              return Step.answer(new Granted(id, lease, false));
            }
            if (holder.isPresent() && !takeOvers.mayTakeOver(names.namespace(), holder.get())) {
              return Step.answer(new NotNow(holder, LeaseLock.holderJson(lease), 0));
            }
            return new Step<>(
                LeaseLock.tookOver(
                    LeaseLock.heldBy(lease, info, Caller.LEASEHOLD.identity()), holder),
                new Granted(id, null, holder.isPresent()));
          });
    } catch (KubernetesClientException e) {
      if (!ApiRefusals.namespaceTerminating(e)) {
        throw e;
      }
      // The Lease is gone (only a create is refused so) and its namespace is being deleted: no
      // one, stock Terraform included, can create it to take the lock, and the namespace
      // controller removes whatever is left. Waiting for a lock would hold the namespace forever.
      LOG.info(
          "{}/{}: lock Lease {} is gone and its namespace is being deleted; the state is deleted"
              + " without taking the lock",
          names.namespace(),
          names.name(),
          names.leaseName());
      return new Granted(id, null, false);
    }
  }

  /**
   * Deletes the lock Lease of a state deleted with {@code deletionPolicy: Delete}, whose deletion
   * holds the lock: only at the version the API server has now, so a Lease someone changed
   * meanwhile is not deleted (the conflict is retried by the caller). Returns whether there was
   * one.
   */
  boolean deleteWithState(StateNames names) {
    return store.deleteAsSeen(names);
  }
}
