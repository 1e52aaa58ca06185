package io.leasehold.operator;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.api.reconciler.DeleteControl;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.leasehold.api.DeletionPolicy;
import io.leasehold.api.TerraformState;
import io.leasehold.api.TerraformStateStatus;
import io.leasehold.kube.EventRecorder;
import io.leasehold.kube.TolerantSerialization;
import io.leasehold.lock.Holder;
import io.leasehold.lock.LockService;
import io.leasehold.queue.JobAdmission;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateOwnership;
import io.leasehold.state.WriteJournal;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.BiConsumer;

/**
 * A TerraformState's deletion, by its {@code deletionPolicy}. Nothing is admitted any more; a
 * runner Job admitted before keeps its lock until it ends, and the finalizer stays until then.
 * {@code Retain} leaves the state, its history and the Lease for stock Terraform (waiting first for
 * a lock taken through leasehold's backend to be released); {@code Delete} takes the deletion lock
 * and removes the state Secrets, the history and the Lease. While it waits the Ready condition says
 * for what.
 */
final class StateDeletion {

  private static final long DELETION_RETRY_MILLIS = 10_000;
  private static final long CONFLICT_RETRY_MILLIS = TerraformStateReconciler.CONFLICT_RETRY_MILLIS;
  private static final String FORCE_UNLOCK_ANNOTATION =
      TerraformStateReconciler.FORCE_UNLOCK_ANNOTATION;

  private final KubernetesClient client;
  private final EventRecorder events;
  private final LockService locks;
  private final JobAdmission admission;
  private final SharedCaches caches;
  private final Leadership leadership;
  private final StatusWrites statuses;
  private final ForceUnlocks forceUnlocks;
  private final BiConsumer<ResourceID, String> forget;

  /**
   * @param forget forgets what this replica kept about a TerraformState that is gone, by its ID and
   *     {@code namespace/name}
   */
  StateDeletion(
      KubernetesClient client,
      EventRecorder events,
      LockService locks,
      JobAdmission admission,
      SharedCaches caches,
      Leadership leadership,
      StatusWrites statuses,
      ForceUnlocks forceUnlocks,
      BiConsumer<ResourceID, String> forget) {
    this.client = client;
    this.events = events;
    this.locks = locks;
    this.admission = admission;
    this.caches = caches;
    this.leadership = leadership;
    this.statuses = statuses;
    this.forceUnlocks = forceUnlocks;
    this.forget = forget;
  }

  /**
   * Deletion. Nothing is admitted any more and the Jobs waiting are told so; a Job admitted before
   * keeps its lock, renewed, until it ends (its pods included), and the finalizer stays until then;
   * then its lock is released. The force-unlock annotation still works. {@code Retain} then leaves
   * the state, its history and the Lease for stock Terraform; {@code Delete} takes the lock
   * (waiting for any holder to release it) and removes the state Secrets, the history and the
   * Lease, so a TerraformState created again starts clean. A TerraformState that never owned its
   * names (no spec, an invalid name, a name collision) deletes nothing.
   */
  DeleteControl cleanup(TerraformState resource, Context<TerraformState> context) {
    ResourceID id = ResourceID.fromResource(resource);
    String key = resource.getMetadata().getNamespace() + "/" + resource.getMetadata().getName();
    if (resource.getSpec() == null) {
      Optional<DeleteControl> waiting = windDownWithoutSpec(resource, context);
      if (waiting.isPresent()) {
        return waiting.get();
      }
      forget.accept(id, key);
      events.normal(
          resource,
          "StateRetained",
          TolerantSerialization.unreadable(resource)
              .map(
                  u ->
                      u.says()
                          + ". The state this TerraformState names is not known, so nothing is"
                          + " deleted")
              .orElse("the TerraformState has no spec, so it names no state: nothing is deleted"));
      return DeleteControl.defaultDelete();
    }
    StateNames names = StateOwnership.namesOf(resource);
    if (names.problem().isPresent()) {
      forget.accept(id, key);
      return DeleteControl.defaultDelete();
    }
    Optional<StateOwnership.Collision> collision = StateOwnership.check(resource, caches);
    if (collision.isPresent()) {
      forget.accept(id, key);
      events.normal(
          resource,
          "StateRetained",
          "this TerraformState was refused its names (NameCollision), so nothing is deleted: "
              + collision.get().message());
      return DeleteControl.defaultDelete();
    }
    if (!leadership.leading()) {
      return DeleteControl.noFinalizerRemoval().rescheduleAfter(DELETION_RETRY_MILLIS);
    }
    forceUnlocks.ifAsked(resource, names);
    TerraformStateStatus previous = statuses.previous(resource);
    JobAdmission.WindDown wound;
    try {
      wound = admission.windDown(resource, names, context.getSecondaryResources(Job.class));
    } catch (KubernetesClientException e) {
      if (e.getCode() != 409) {
        throw e;
      }
      return DeleteControl.noFinalizerRemoval().rescheduleAfter(CONFLICT_RETRY_MILLIS);
    }
    DeletionPolicy policy = resource.getSpec().getDeletionPolicy();
    if (!wound.running().isEmpty()) {
      String message =
          "deletion (deletionPolicy "
              + policy
              + ") waits for runner Job "
              + String.join(", ", wound.running())
              + ", admitted before it, to end: the Job keeps the lock, renewed, until its pods"
              + " have ended; no other Job is admitted";
      waitForDeletion(
          resource, context, previous, wound.lease(), "DeletionWaitingForRunner", message);
      return DeleteControl.noFinalizerRemoval()
          .rescheduleAfter(
              wound.recheckAfter().isZero()
                  ? DELETION_RETRY_MILLIS
                  : wound.recheckAfter().toMillis());
    }
    Optional<Holder> backendClient =
        wound
            .lease()
            .flatMap(l -> Holder.of(l, Instant.now()))
            .filter(
                h ->
                    h.jobUid().isEmpty()
                        && h.owner().isPresent()
                        && !h.id()
                            .equals(LockService.deletionLockId(resource.getMetadata().getUid())));
    if (policy == DeletionPolicy.Retain && backendClient.isPresent()) {
      // Taken through leasehold's backend: its client writes and unlocks through this
      // TerraformState, so it stays until then (an apply in progress is not lost, and its lock
      // is not left held where only a force-unlock could release it).
      Holder h = backendClient.get();
      String message =
          "deletionPolicy Retain: waiting for lock "
              + h.id()
              + " held by "
              + h.summary()
              + ", taken through leasehold's backend, to be released: its client may still write"
              + " and unlock (the "
              + FORCE_UNLOCK_ANNOTATION
              + " annotation releases it)";
      waitForDeletion(
          resource, context, previous, wound.lease(), "DeletionWaitingForUnlock", message);
      return DeleteControl.noFinalizerRemoval().rescheduleAfter(DELETION_RETRY_MILLIS);
    }
    if (policy == DeletionPolicy.Retain) {
      // A Delete deletion that took its lock and failed part-way, then changed to Retain: the
      // lock was this deletion's own, and nothing else ever releases it.
      String deletionLock = LockService.deletionLockId(resource.getMetadata().getUid());
      boolean heldForDeletion =
          wound
              .lease()
              .flatMap(l -> Holder.of(l, Instant.now()))
              .map(h -> h.id().equals(deletionLock))
              .orElse(false);
      if (heldForDeletion
          && locks.forceUnlock(names, Optional.of(deletionLock)) instanceof LockService.Released) {
        events.normal(
            resource,
            "LockReleased",
            "lock "
                + deletionLock
                + ", taken to delete the state, is released: deletionPolicy is Retain now");
      }
      forget.accept(id, key);
      events.normal(
          resource,
          "StateRetained",
          "deletionPolicy Retain: "
              + names.secretName()
              + ", its history and Lease "
              + names.leaseName()
              + " are left in place for stock Terraform; a TerraformState created again with this"
              + " name and workspace adopts them");
      return DeleteControl.defaultDelete();
    }
    // The deletion lock has an ID fixed for this TerraformState, so a retry asks for the same.
    LockService.Answer taken = locks.lockForDeletion(names, resource.getMetadata().getUid());
    if (taken instanceof LockService.NotNow blocked) {
      Holder blocker = blocked.holder().orElseThrow();
      String message =
          "deletionPolicy Delete: waiting for lock "
              + blocker.id()
              + " held by "
              + blocker.summary()
              + " to be released before the state is deleted (the "
              + FORCE_UNLOCK_ANNOTATION
              + " annotation releases it)";
      waitForDeletion(
          resource, context, previous, wound.lease(), "DeletionWaitingForUnlock", message);
      return DeleteControl.noFinalizerRemoval().rescheduleAfter(DELETION_RETRY_MILLIS);
    }
    // We hold the lock now: nobody can write the state while it is deleted.
    List<String> deleted = deleteState(names);
    forget.accept(id, key);
    events.normal(
        resource,
        "StateDeleted",
        "deletionPolicy Delete: removed "
            + (deleted.isEmpty() ? "nothing (there was no state)" : String.join(", ", deleted)));
    return DeleteControl.defaultDelete();
  }

  /**
   * A TerraformState deleted after its spec went missing (where the API let it) while a runner Job
   * admitted for it held the lock: the lock Lease labelled with its name says the workspace, and
   * the Job is wound down as for {@code Retain}: the deletion waits while it runs, and its lock is
   * released once it has ended, never left held. Empty when there is no such lock (or it is
   * released now).
   */
  private Optional<DeleteControl> windDownWithoutSpec(
      TerraformState resource, Context<TerraformState> context) {
    if (!leadership.leading()) {
      return Optional.of(DeleteControl.noFinalizerRemoval().rescheduleAfter(DELETION_RETRY_MILLIS));
    }
    String namespace = resource.getMetadata().getNamespace();
    String name = resource.getMetadata().getName();
    Optional<Lease> held =
        caches
            .leases()
            .filter(
                l ->
                    namespace.equals(l.getMetadata().getNamespace())
                        && l.getMetadata().getLabels() != null
                        && name.equals(l.getMetadata().getLabels().get(StateNames.LABEL_SUFFIX))
                        && l.getMetadata().getLabels().get(StateNames.LABEL_WORKSPACE) != null
                        && Holder.of(l).flatMap(Holder::jobUid).isPresent())
            .findFirst();
    if (held.isEmpty()) {
      return Optional.empty();
    }
    Lease lease = held.get();
    TerraformState assumed = new TerraformState();
    assumed.setMetadata(resource.getMetadata());
    assumed.getSpec().setWorkspace(lease.getMetadata().getLabels().get(StateNames.LABEL_WORKSPACE));
    if (lease.getSpec().getLeaseDurationSeconds() != null) {
      assumed
          .getSpec()
          .getLock()
          .setLeaseDurationSeconds(lease.getSpec().getLeaseDurationSeconds());
    }
    assumed.getSpec().setDeletionPolicy(DeletionPolicy.Retain);
    StateNames names = StateOwnership.namesOf(assumed);
    if (names.problem().isPresent()) {
      return Optional.empty();
    }
    JobAdmission.WindDown wound;
    try {
      wound = admission.windDown(assumed, names, context.getSecondaryResources(Job.class));
    } catch (KubernetesClientException e) {
      if (e.getCode() != 409) {
        throw e;
      }
      return Optional.of(DeleteControl.noFinalizerRemoval().rescheduleAfter(CONFLICT_RETRY_MILLIS));
    }
    if (wound.running().isEmpty()) {
      return Optional.empty();
    }
    String message =
        "deletion waits for runner Job "
            + String.join(", ", wound.running())
            + ", admitted before the spec went missing, to end: the Job keeps the lock on "
            + names.leaseName()
            + " until its pods have ended, then the lock is released";
    waitForDeletion(
        resource,
        context,
        statuses.previous(resource),
        wound.lease(),
        "DeletionWaitingForRunner",
        message);
    return Optional.of(
        DeleteControl.noFinalizerRemoval()
            .rescheduleAfter(
                wound.recheckAfter().isZero()
                    ? DELETION_RETRY_MILLIS
                    : wound.recheckAfter().toMillis()));
  }

  /** The deletion waits: the Ready condition says for what, with an Event when that changes. */
  private void waitForDeletion(
      TerraformState resource,
      Context<TerraformState> context,
      TerraformStateStatus previous,
      Optional<Lease> lease,
      String reason,
      String message) {
    if (!message.equals(
        Conditions.find(previous.getConditions(), Conditions.READY)
            .map(c -> c.getMessage())
            .orElse(""))) {
      if ("DeletionWaitingForUnlock".equals(reason)) {
        events.warning(resource, reason, message);
      } else {
        events.normal(resource, reason, message);
      }
    }
    TerraformStateStatus status = StatusWrites.copyOf(previous);
    long generation = Optional.ofNullable(resource.getMetadata().getGeneration()).orElse(0L);
    Conditions conditions = new Conditions(previous.getConditions(), generation);
    if (previous.getConditions() != null) {
      previous
          .getConditions()
          .forEach(
              c ->
                  conditions.set(
                      c.getType(), "True".equals(c.getStatus()), c.getReason(), c.getMessage()));
    }
    conditions.set(Conditions.READY, false, reason, message);
    // The lock as it is now (a force-unlock, a Job's lock released), not as it was.
    LockReport.record(
        status,
        conditions,
        lease.flatMap(l -> Holder.of(l, Instant.now())),
        Holder.plans(lease.orElse(null)));
    status.setConditions(conditions.build());
    status.setQueued(0);
    status.setQueue(null);
    statuses.write(resource, context, previous, status);
  }

  /**
   * Deletes the state under the deletion lock: its Secrets (chunks included, of this workspace
   * only), the journal of an interrupted write, the history and the lock Lease. Returns what was
   * deleted.
   */
  private List<String> deleteState(StateNames names) {
    List<String> deleted = new ArrayList<>();
    var stateSecrets =
        client
            .secrets()
            .inNamespace(names.namespace())
            .withLabel(StateNames.LABEL_SUFFIX, names.name())
            .list()
            .getItems();
    for (Secret secret : stateSecrets) {
      Map<String, String> labels = secret.getMetadata().getLabels();
      if (names.chunkIndex(secret.getMetadata().getName()) >= 0
          && names.workspace().equals(labels.get(StateNames.LABEL_WORKSPACE))) {
        client
            .secrets()
            .inNamespace(names.namespace())
            .resource(secret)
            .lockResourceVersion(secret.getMetadata().getResourceVersion())
            .delete();
        deleted.add(secret.getMetadata().getName());
      }
    }
    // An interrupted write's journal would otherwise finish that write into a state created again.
    WriteJournal journal = new WriteJournal(client, names);
    journal
        .read()
        .ifPresent(
            j -> {
              journal.end(j);
              deleted.add(journal.name());
            });
    int history = new StateHistory(client, names).deleteAll();
    if (history > 0) {
      deleted.add(history + " history Secret(s)");
    }
    // Still ours (we took it above): delete it only at the version we hold.
    if (locks.deleteWithState(names)) {
      deleted.add("Lease " + names.leaseName());
    }
    return deleted;
  }
}
