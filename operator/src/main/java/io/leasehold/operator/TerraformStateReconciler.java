package io.leasehold.operator;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.javaoperatorsdk.operator.api.reconciler.Cleaner;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.api.reconciler.ControllerConfiguration;
import io.javaoperatorsdk.operator.api.reconciler.DeleteControl;
import io.javaoperatorsdk.operator.api.reconciler.EventSourceContext;
import io.javaoperatorsdk.operator.api.reconciler.Reconciler;
import io.javaoperatorsdk.operator.api.reconciler.UpdateControl;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.javaoperatorsdk.operator.processing.event.source.EventSource;
import io.javaoperatorsdk.operator.processing.retry.GradualRetry;
import io.leasehold.api.StateFacts;
import io.leasehold.api.TerraformState;
import io.leasehold.api.TerraformStateStatus;
import io.leasehold.kube.EventRecorder;
import io.leasehold.kube.TolerantSerialization;
import io.leasehold.lock.Holder;
import io.leasehold.lock.LockService;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.queue.Arrivals;
import io.leasehold.queue.JobAdmission;
import io.leasehold.state.StateKeeper;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateOwnership;
import io.leasehold.state.StateUnreadableException;
import java.time.Clock;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keeps each TerraformState's lock Lease in place and its status true to the stored state, the lock
 * and the line, admits its runner Jobs in their turn (through {@link JobAdmission} and the {@link
 * LockService}), and carries out force-unlock and deletion. Never writes the state. Only the leader
 * reconciles.
 *
 * <p>This class decides what a reconcile does; the parts are done by one class per job: {@link
 * StateWatches} (what is watched and which states a change concerns), {@link StatusWrites} (the
 * status as it stands, written conditionally), {@link LockReport} and {@link QueueReport} (the lock
 * and the line in the status, and the lock's Events), {@link ForceUnlocks}, {@link HistoryPruning},
 * {@link NameCollisions}, {@link ObjectWarnings} and {@link StateDeletion} (deletionPolicy).
 */
@ControllerConfiguration(name = "terraformstate", generationAwareEventProcessing = false)
@GradualRetry(maxAttempts = 20, initialInterval = 100, intervalMultiplier = 2, maxInterval = 10_000)
public class TerraformStateReconciler
    implements Reconciler<TerraformState>, Cleaner<TerraformState>, JobAdmission.WriteListener {

  /** Annotation on a TerraformState asking leasehold to release the lock with this ID. */
  public static final String FORCE_UNLOCK_ANNOTATION = "leasehold.io/force-unlock";

  /** Ready and Degraded reason, and Event reason, for an object with a field it cannot read. */
  public static final String FIELD_UNREADABLE = "FieldUnreadable";

  /** How often a TerraformState refused its names looks again whether they are free now. */
  static final long COLLISION_RECHECK_MILLIS = 10_000;

  /** How soon a reconcile that met a conflicting change looks again, with fresh caches. */
  static final long CONFLICT_RETRY_MILLIS = 50;

  private static final long STATUS_REWRITTEN_RECHECK_MILLIS = 1_000;
  private static final Logger LOG = LoggerFactory.getLogger(TerraformStateReconciler.class);

  private final EventRecorder events;
  private final FaultSettling faults = new FaultSettling();
  private final JobAdmission admission;
  private final SharedCaches caches;
  private final Leadership leadership;
  private final StateKeeper stateKeeper;
  private final LeaseholdMetrics metrics;
  private final StatusWrites statuses = new StatusWrites();
  private final LockReport lockReport;
  private final QueueReport queueReport;
  private final ForceUnlocks forceUnlocks;
  private final VanishedPodLocks podLocks;
  private final RunCancels cancels;
  private final HistoryPruning history;
  private final NameCollisions collisions;
  private final ObjectWarnings warnings;
  private final StateWatches watches;
  private final StateDeletion deletion;

  /**
   * @param podRecheck how often the pod holding a state's lock is looked at ({@link
   *     VanishedPodLocks})
   */
  public TerraformStateReconciler(
      KubernetesClient client,
      EventRecorder events,
      LeaseholdMetrics metrics,
      LockService locks,
      SharedCaches caches,
      Leadership leadership,
      Arrivals arrivals,
      java.time.Duration podRecheck) {
    this.events = events;
    this.metrics = metrics;
    this.caches = caches;
    this.leadership = leadership;
    this.admission =
        new JobAdmission(client, locks, events, Clock.systemUTC(), this, metrics, arrivals);
    this.stateKeeper = new StateKeeper(client);
    this.lockReport = new LockReport(events);
    this.queueReport = new QueueReport(locks, events, metrics);
    this.forceUnlocks = new ForceUnlocks(client, locks, events, metrics);
    this.podLocks = new VanishedPodLocks(client, locks, caches, events, metrics, podRecheck);
    this.cancels = new RunCancels(client, locks, events, metrics, this, Clock.systemUTC());
    this.history = new HistoryPruning(client, events);
    this.collisions = new NameCollisions(events, caches, arrivals);
    this.warnings = new ObjectWarnings(events, caches, leadership);
    this.watches =
        new StateWatches(
            caches, leadership, admission, arrivals, warnings, queueReport, collisions);
    this.deletion =
        new StateDeletion(
            client,
            events,
            locks,
            admission,
            caches,
            leadership,
            statuses,
            forceUnlocks,
            this::forget);
  }

  @Override
  public List<EventSource<?, TerraformState>> prepareEventSources(
      EventSourceContext<TerraformState> context) {
    return watches.prepare(context);
  }

  @Override
  public void jobWritten(TerraformState state, Job written, Job before) {
    watches.jobWritten(state, written, before);
  }

  @Override
  public UpdateControl<TerraformState> reconcile(
      TerraformState resource, Context<TerraformState> context) {
    TerraformStateStatus previous = statuses.previous(resource);
    long generation = Optional.ofNullable(resource.getMetadata().getGeneration()).orElse(0L);
    TerraformStateStatus status = new TerraformStateStatus();
    status.setObservedGeneration(generation);
    Conditions conditions = new Conditions(previous.getConditions(), generation);

    if (!leadership.leading()) {
      // Leadership was lost: the new leader does it, or this replica, should it lead again.
      return UpdateControl.<TerraformState>noUpdate()
          .rescheduleAfter(leadership.notLeadingRecheck());
    }
    Optional<TolerantSerialization.Unreadable> unreadable =
        TolerantSerialization.unreadable(resource);
    if (unreadable.isPresent()) {
      // Only an API server that does not check the CRD's schema (or a CRD newer than this
      // operator) lets such a value in. What this TerraformState asks for is not known, so
      // nothing is done for it; every other state goes on.
      UpdateControl<TerraformState> control =
          refuse(
              resource,
              context,
              previous,
              status,
              conditions,
              FIELD_UNREADABLE,
              unreadableMessage(unreadable.get()));
      // A status it cannot read is written anew just now: look again once that is done.
      return unreadable.get().field().startsWith("status")
          ? control.rescheduleAfter(STATUS_REWRITTEN_RECHECK_MILLIS)
          : control;
    }
    if (resource.getSpec() == null) {
      // Only an API server that does not enforce the CRD's rules lets the spec go.
      return refuse(
          resource,
          context,
          previous,
          status,
          conditions,
          "SpecMissing",
          "the TerraformState has no spec, and spec.workspace selects the state: nothing is read,"
              + " locked or written for it until the spec is restored (the CRD's rules refuse"
              + " removing it; the API server did not enforce them)");
    }
    StateNames names = StateOwnership.namesOf(resource);
    Optional<String> invalid = names.problem();
    if (invalid.isPresent()) {
      return refuse(
          resource,
          context,
          previous,
          status,
          conditions,
          "InvalidName",
          "cannot manage this state: " + invalid.get());
    }
    Optional<StateOwnership.Collision> collision = StateOwnership.check(resource, caches);
    if (collision.isPresent()) {
      return refuseCollision(
          resource, names, context, previous, status, conditions, collision.get());
    }
    // Told at the first look as leader too, not only when the watch next brings them.
    context.getSecondaryResources(Job.class).forEach(warnings::warnIfUnreadable);
    caches.cached(names.namespace(), names.leaseName()).ifPresent(warnings::warnIfUnreadable);
    history.prune(resource, names);
    forceUnlocks.ifAsked(resource, names);
    // Before admission: a lock released now goes to the next in line in this pass.
    Optional<java.time.Duration> podRecheck = podLocks.check(resource, names);
    // Before admission: a run cancelled now is not admitted in this pass.
    cancels.ifAsked(resource, names, context.getSecondaryResources(Job.class));

    JobAdmission.Outcome queue;
    try {
      queue = admission.run(resource, names, context.getSecondaryResources(Job.class));
    } catch (KubernetesClientException e) {
      if (e.getCode() != 409) {
        throw e;
      }
      // Someone (a backend client, stock Terraform) changed the Lease or Job since it was read:
      // nothing was written; look again at once with fresh caches.
      LOG.debug(
          "{}/{}: {} changed meanwhile; retrying", names.namespace(), names.name(), e.getMessage());
      return UpdateControl.<TerraformState>noUpdate().rescheduleAfter(CONFLICT_RETRY_MILLIS);
    }
    Lease lease = queue.lease();
    queueReport.record(resource, status, queue);

    Optional<Holder> holder = Holder.of(lease);
    lockReport.transition(resource, previous.getLock(), holder, queue);
    List<Holder> plans = Holder.plans(lease);
    LockReport.record(status, conditions, holder, plans);
    metrics.plansRunning(
        resource.getMetadata().getNamespace() + "/" + resource.getMetadata().getName(),
        plans.size());

    List<Secret> secrets = new ArrayList<>(context.getSecondaryResources(Secret.class));
    String degradedReason = null;
    String degradedMessage = null;
    try {
      Optional<StateFacts> facts =
          stateKeeper.observe(resource, names, secrets, previous.getState(), notices(resource));
      status.setState(facts.orElse(null));
      conditions.set(
          Conditions.READY,
          true,
          facts.isPresent() ? "StateReadable" : "NoStateYet",
          facts
              .map(
                  f ->
                      "state serial "
                          + f.serialText()
                          + (f.encrypted() ? " (OpenTofu-encrypted)" : "")
                          + ", lineage "
                          + f.getLineage()
                          + ", in "
                          + f.getSecretName()
                          + (f.getChunks() > 1 ? " and " + (f.getChunks() - 1) + " chunk(s)" : ""))
              .orElse(
                  "no state stored yet; Terraform creates "
                      + names.secretName()
                      + " on its first write"));
    } catch (StateUnreadableException e) {
      // Terraform writes a chunked state one Secret at a time, so a reader can catch it half
      // written. A fault counts only once the same Secrets show it after a settling time.
      if (!faults.settled(ResourceID.fromResource(resource), fingerprint(secrets, e))) {
        // Until then Ready and Degraded say what they said; the lock's news is written now, so
        // that its Events are not told again at the next look.
        status.setState(previous.getState());
        for (String type : List.of(Conditions.READY, Conditions.DEGRADED)) {
          Conditions.find(previous.getConditions(), type)
              .ifPresent(
                  c ->
                      conditions.set(
                          type, "True".equals(c.getStatus()), c.getReason(), c.getMessage()));
        }
        status.setConditions(conditions.build());
        return statuses
            .write(resource, context, previous, status)
            .rescheduleAfter(FaultSettling.SETTLE);
      }
      degradedReason = "StateUnreadable";
      degradedMessage =
          "state in Secret "
              + e.objectName()
              + " cannot be read and is left untouched: "
              + e.getMessage();
      // The last facts known to be good stay visible; the condition says they may be stale.
      status.setState(previous.getState());
      conditions.set(Conditions.READY, false, degradedReason, degradedMessage);
      if (!degradedMessage.equals(
          Conditions.find(previous.getConditions(), Conditions.DEGRADED)
              .map(c -> c.getMessage())
              .orElse(""))) {
        events.warning(resource, degradedReason, degradedMessage);
        LOG.warn("{}/{}: {}", names.namespace(), names.name(), degradedMessage);
      }
    }
    if (degradedReason == null) {
      faults.clear(ResourceID.fromResource(resource));
      conditions.set(Conditions.DEGRADED, false, "AsExpected", "nothing is wrong");
    } else {
      conditions.set(Conditions.DEGRADED, true, degradedReason, degradedMessage);
    }
    status.setConditions(conditions.build());
    UpdateControl<TerraformState> control = statuses.write(resource, context, previous, status);
    Optional<java.time.Duration> recheck =
        queue.recheckAfter().isZero() ? Optional.empty() : Optional.of(queue.recheckAfter());
    if (podRecheck.isPresent()
        && (recheck.isEmpty() || podRecheck.get().compareTo(recheck.get()) < 0)) {
      recheck = podRecheck;
    }
    recheck.ifPresent(control::rescheduleAfter);
    return control;
  }

  /**
   * A TerraformState whose state cannot be managed (no spec, an invalid name, names another owns):
   * nothing of the state is read, locked or written; the conditions say why, with a Warning when
   * the reason or message changes.
   */
  private UpdateControl<TerraformState> refuse(
      TerraformState resource,
      Context<TerraformState> context,
      TerraformStateStatus previous,
      TerraformStateStatus status,
      Conditions conditions,
      String reason,
      String message) {
    conditions.set(Conditions.READY, false, reason, message);
    conditions.set(Conditions.LOCKED, false, reason, "no lock is kept for this state");
    conditions.set(Conditions.DEGRADED, true, reason, message);
    if ("SpecMissing".equals(reason) || FIELD_UNREADABLE.equals(reason)) {
      // The lock is not looked at meanwhile: what status last said of it stays, so restoring the
      // spec reports only what changed.
      status.setLock(previous.getLock());
      status.setHolder(previous.getHolder());
    }
    if (FIELD_UNREADABLE.equals(reason)) {
      // A lock held stays held, by whoever held it: Locked goes on saying what it said.
      Conditions.find(previous.getConditions(), Conditions.LOCKED)
          .ifPresent(
              c ->
                  conditions.set(
                      Conditions.LOCKED,
                      "True".equals(c.getStatus()),
                      c.getReason(),
                      c.getMessage()));
    }
    if (!message.equals(
        Conditions.find(previous.getConditions(), Conditions.DEGRADED)
            .map(c -> c.getMessage())
            .orElse(""))) {
      events.warning(resource, reason, message);
    }
    metrics.queueLength(
        resource.getMetadata().getNamespace() + "/" + resource.getMetadata().getName(), 0);
    status.setConditions(conditions.build());
    return statuses.write(resource, context, previous, status);
  }

  /**
   * Why a TerraformState with a field that cannot be read is left alone: the field by its path and
   * the type it should have, never its value.
   */
  static String unreadableMessage(TolerantSerialization.Unreadable unreadable) {
    if (unreadable.field().startsWith("status")) {
      return unreadable.says() + ". leasehold writes the status anew";
    }
    return unreadable.says()
        + ". What this TerraformState asks for is not known, so nothing is read, locked, written"
        + " or deleted for it until the field is corrected; a lock already held stays held, and"
        + " other TerraformStates are not affected";
  }

  /**
   * Refused for a name collision: Degraded naming the owner, a Warning on both (once), and the Jobs
   * waiting for it told why they wait. Looked at again every few seconds: the owner's deletion does
   * not trigger this one.
   */
  private UpdateControl<TerraformState> refuseCollision(
      TerraformState resource,
      StateNames names,
      Context<TerraformState> context,
      TerraformStateStatus previous,
      TerraformStateStatus status,
      Conditions conditions,
      StateOwnership.Collision collision) {
    collisions.tell(names, context.getSecondaryResources(Job.class), previous, collision);
    UpdateControl<TerraformState> control =
        refuse(
            resource, context, previous, status, conditions, "NameCollision", collision.message());
    return control.rescheduleAfter(COLLISION_RECHECK_MILLIS);
  }

  private static String fingerprint(List<Secret> secrets, StateUnreadableException e) {
    return e.getMessage() + "|" + versions(secrets);
  }

  private static String versions(List<Secret> secrets) {
    return secrets.stream()
        .map(x -> x.getMetadata().getName() + "@" + x.getMetadata().getResourceVersion())
        .sorted()
        .collect(java.util.stream.Collectors.joining("|"));
  }

  /** Events the state keeper asks for, on {@code resource}. */
  private StateKeeper.Notices notices(TerraformState resource) {
    return new StateKeeper.Notices() {
      @Override
      public void normal(String reason, String message) {
        events.normal(resource, reason, message);
      }

      @Override
      public void warning(String reason, String message) {
        events.warning(resource, reason, message);
      }
    };
  }

  /**
   * Deletion, by the state's deletionPolicy: {@link StateDeletion}. A Job admitted before keeps its
   * lock until it ends, and the finalizer stays until then; a TerraformState that never owned its
   * names (no spec, an invalid name, a name collision) deletes nothing.
   */
  @Override
  public DeleteControl cleanup(TerraformState resource, Context<TerraformState> context) {
    return deletion.cleanup(resource, context);
  }

  /** Forgets what this replica kept about a TerraformState that is gone. */
  private void forget(ResourceID id, String key) {
    stateKeeper.forget(new StateNames(id.getNamespace().orElse(""), id.getName(), ""));
    statuses.forget(id);
    history.forget(id);
    metrics.queueLength(key, 0);
    metrics.plansRunning(key, 0);
  }
}
