package io.leasehold.operator;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.javaoperatorsdk.operator.api.config.informer.InformerEventSourceConfiguration;
import io.javaoperatorsdk.operator.api.reconciler.Cleaner;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.api.reconciler.ControllerConfiguration;
import io.javaoperatorsdk.operator.api.reconciler.DeleteControl;
import io.javaoperatorsdk.operator.api.reconciler.EventSourceContext;
import io.javaoperatorsdk.operator.api.reconciler.PrimaryUpdateAndCacheUtils;
import io.javaoperatorsdk.operator.api.reconciler.Reconciler;
import io.javaoperatorsdk.operator.api.reconciler.UpdateControl;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.javaoperatorsdk.operator.processing.event.source.EventSource;
import io.javaoperatorsdk.operator.processing.event.source.informer.InformerEventSource;
import io.javaoperatorsdk.operator.processing.retry.GradualRetry;
import io.leasehold.api.DeletionPolicy;
import io.leasehold.api.LockStatus;
import io.leasehold.api.QueueEntry;
import io.leasehold.api.StateFacts;
import io.leasehold.api.TerraformState;
import io.leasehold.api.TerraformStateStatus;
import io.leasehold.kube.EventRecorder;
import io.leasehold.kube.MetadataOnlySecrets;
import io.leasehold.kube.TolerantSerialization;
import io.leasehold.lock.Holder;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockService;
import io.leasehold.lock.Ticket;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.queue.Arrivals;
import io.leasehold.queue.JobAdmission;
import io.leasehold.queue.RunQueue;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateKeeper;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateOwnership;
import io.leasehold.state.StateUnreadableException;
import java.time.Clock;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keeps each TerraformState's lock Lease in place and its status true to the stored state, the lock
 * and the line, admits its runner Jobs in their turn (through {@link JobAdmission} and the {@link
 * LockService}), and carries out force-unlock and deletion. Never writes the state. Only the leader
 * reconciles.
 */
@ControllerConfiguration(name = "terraformstate", generationAwareEventProcessing = false)
@GradualRetry(maxAttempts = 20, initialInterval = 100, intervalMultiplier = 2, maxInterval = 10_000)
public class TerraformStateReconciler
    implements Reconciler<TerraformState>, Cleaner<TerraformState>, JobAdmission.WriteListener {

  /** Annotation on a TerraformState asking leasehold to release the lock with this ID. */
  public static final String FORCE_UNLOCK_ANNOTATION = "leasehold.io/force-unlock";

  static final String TERRAFORM_SELECTOR = StateNames.LABEL_TFSTATE + "=true";
  private static final int MAX_QUEUE_IN_STATUS = 50;
  private static final long DELETION_RETRY_MILLIS = 10_000;
  private static final long CONFLICT_RETRY_MILLIS = 50;
  private static final Logger LOG = LoggerFactory.getLogger(TerraformStateReconciler.class);
  private static final ObjectMapper MAPPER = new ObjectMapper();

  private final KubernetesClient client;
  private final EventRecorder events;
  private final FaultSettling faults = new FaultSettling();
  private final LockService locks;
  private final JobAdmission admission;
  private final Arrivals arrivals;
  private final SharedCaches caches;
  private final Leadership leadership;
  private final Set<String> warnedUnserialized = ConcurrentHashMap.newKeySet();
  private final Set<String> warnedStateNotFound = ConcurrentHashMap.newKeySet();
  private final Set<String> warnedRefused = ConcurrentHashMap.newKeySet();
  private final StateKeeper stateKeeper;
  private InformerEventSource<Job, TerraformState> jobs;
  private volatile boolean jobsSynced;

  private final LeaseholdMetrics metrics;

  public TerraformStateReconciler(
      KubernetesClient client,
      EventRecorder events,
      LeaseholdMetrics metrics,
      LockService locks,
      SharedCaches caches,
      Leadership leadership,
      Arrivals arrivals) {
    this.client = client;
    this.events = events;
    this.metrics = metrics;
    this.locks = locks;
    this.caches = caches;
    this.leadership = leadership;
    this.arrivals = arrivals;
    this.admission =
        new JobAdmission(client, locks, events, Clock.systemUTC(), this, metrics, arrivals);
    this.stateKeeper = new StateKeeper(client);
  }

  @Override
  public List<EventSource<?, TerraformState>> prepareEventSources(
      EventSourceContext<TerraformState> context) {
    // Terraform labels its Secrets and its Lease tfstate=true and tfstateSecretSuffix=<name>;
    // leasehold creates its Leases with the same labels, so one selector finds both.
    var leases =
        new InformerEventSource<>(
            InformerEventSourceConfiguration.from(Lease.class, TerraformState.class)
                .withName("leases")
                .withLabelSelector(TERRAFORM_SELECTOR)
                .withSecondaryToPrimaryMapper(this::statesOfObject)
                .build(),
            context) {
          @Override
          public void onAdd(Lease lease) {
            super.onAdd(lease);
            caches.leaseChanged(lease);
            warnIfUnreadable(lease);
          }

          @Override
          public void onUpdate(Lease before, Lease after) {
            super.onUpdate(before, after);
            caches.leaseChanged(after);
            warnIfUnreadable(after);
          }

          @Override
          public void onDelete(Lease lease, boolean unknown) {
            warnedUnreadable.remove(lease.getMetadata().getUid());
            // Remembered first, so the reconcile this deletion triggers can recreate it as it was.
            caches.leaseDeleted(lease);
            super.onDelete(lease, unknown);
            caches.leaseChanged(lease);
          }
        };
    var secrets =
        new InformerEventSource<>(
            InformerEventSourceConfiguration.from(Secret.class, TerraformState.class)
                .withName("secrets")
                .withItemStore(new MetadataOnlySecrets())
                .withLabelSelector(TERRAFORM_SELECTOR)
                .withSecondaryToPrimaryMapper(this::statesOfObject)
                .build(),
            context);
    jobs =
        new InformerEventSource<>(
            InformerEventSourceConfiguration.from(Job.class, TerraformState.class)
                .withName("jobs")
                .withLabelSelector(RunnerJobs.STATE_LABEL)
                // A Job belongs to the state it is labelled for and, once admitted, to the state
                // it was admitted for, whatever its label says now.
                .withSecondaryToPrimaryMapper(TerraformStateReconciler::statesOfJob)
                .withOnDeleteFilter(
                    (job, unknown) -> {
                      String uid = job.getMetadata().getUid();
                      admission.forget(uid);
                      arrivals.forget(uid);
                      warnedUnserialized.remove(uid);
                      warnedStateNotFound.remove(uid);
                      warnedRefused.remove(uid);
                      warnedUnreadable.remove(uid);
                      return true;
                    })
                .build(),
            context) {
          @Override
          public void onAdd(Job job) {
            if (jobsSynced) {
              // Announced by the watch: its creation, in the order the API server accepted it.
              arrivals.created(job);
            }
            super.onAdd(job);
            checkStateExists(job);
            warnIfUnreadable(job);
          }

          @Override
          public void onUpdate(Job before, Job after) {
            super.onUpdate(before, after);
            checkStateExists(after);
            warnIfUnreadable(after);
          }

          @Override
          public synchronized void start() {
            super.start();
            jobsSynced = true;
          }
        };
    caches.bind(context.getPrimaryCache(), leases, secrets);
    // Each time this replica becomes the leader, every state is looked at anew: what changed while
    // it did not lead is served at once, not when the state next changes.
    var everyState = new ReconcileAllOnLeading(context.getPrimaryCache());
    leadership.onStartLeading(everyState::reconcileAll);
    return List.of(leases, secrets, jobs, everyState);
  }

  private static Set<ResourceID> statesOfJob(Job job) {
    Set<ResourceID> states = new java.util.HashSet<>();
    String ns = job.getMetadata().getNamespace();
    RunnerJobs.stateName(job).ifPresent(n -> states.add(new ResourceID(n, ns)));
    Map<String, String> a = job.getMetadata().getAnnotations();
    if (a != null && a.get(RunnerJobs.ADMITTED_FOR_ANNOTATION) != null) {
      states.add(new ResourceID(a.get(RunnerJobs.ADMITTED_FOR_ANNOTATION), ns));
    }
    return states;
  }

  /**
   * A waiting runner Job whose TerraformState does not exist is told so, once: it stays suspended
   * and is admitted once the state is created.
   */
  private void checkStateExists(Job job) {
    if (!leadership.leading()
        || RunnerJobs.finished(job)
        || RunnerJobs.admitted(job)
        || !jobsSynced) {
      return;
    }
    String state = RunnerJobs.stateName(job).orElse("");
    String ns = job.getMetadata().getNamespace();
    if (!state.isEmpty() && caches.cachedState(ns, state) != null) {
      warnedStateNotFound.remove(job.getMetadata().getUid());
      return;
    }
    if (!state.isEmpty() && caches.state(ns, state) != null) {
      return;
    }
    if (warnedStateNotFound.add(job.getMetadata().getUid())) {
      events.warning(
          job,
          "StateNotFound",
          "TerraformState '"
              + state
              + "' does not exist in namespace "
              + ns
              + "; the Job "
              + (RunnerJobs.suspended(job)
                  ? "waits suspended and is admitted once the TerraformState is created"
                  : "is not suspended, so it runs without the lock")
              + ". Check the "
              + RunnerJobs.STATE_LABEL
              + " label");
    }
  }

  /** The field each watched Job or Lease (by UID) was last told it has that cannot be read. */
  private final Map<String, String> warnedUnreadable = new ConcurrentHashMap<>();

  /**
   * A runner Job or lock Lease with a field that cannot be read gets a Warning saying which, once
   * per field: leasehold leaves it alone until it is corrected (a Job waits out of the line, or
   * keeps the lock it was admitted with; a Lease's lock counts as held), and goes on with the rest.
   */
  private void warnIfUnreadable(io.fabric8.kubernetes.api.model.HasMetadata o) {
    String uid = o.getMetadata().getUid();
    Optional<String> field = TolerantSerialization.unreadable(o).map(u -> u.says());
    if (uid == null) {
      return;
    }
    if (field.isEmpty()) {
      warnedUnreadable.remove(uid);
      return;
    }
    if (!leadership.leading() || field.get().equals(warnedUnreadable.put(uid, field.get()))) {
      return;
    }
    String consequence =
        o instanceof Job job
            ? (RunnerJobs.admitted(job)
                ? "this Job keeps the lock it was admitted with until it can be read and has ended"
                : "this Job is not admitted until the field is corrected")
            : "the lock counts as held by a holder that cannot be told, and leasehold leaves this"
                + " Lease untouched until the field is corrected";
    String message = field.get() + ": " + consequence;
    events.warning(o, FIELD_UNREADABLE, message);
    LOG.warn(
        "{} {}/{}: {}",
        o.getKind(),
        o.getMetadata().getNamespace(),
        o.getMetadata().getName(),
        message);
  }

  @Override
  public void jobWritten(TerraformState state, Job written, Job before) {
    jobs.handleRecentResourceUpdate(ResourceID.fromResource(state), written, before);
  }

  /**
   * The TerraformStates a state Secret or lock Lease concerns: the one its suffix label names, and
   * any other of the namespace whose names map to it (a name collision, seen at once).
   */
  private Set<ResourceID> statesOfObject(io.fabric8.kubernetes.api.model.HasMetadata o) {
    Map<String, String> labels = o.getMetadata().getLabels();
    String suffix = labels == null ? null : labels.get(StateNames.LABEL_SUFFIX);
    String namespace = o.getMetadata().getNamespace();
    Set<ResourceID> states = new java.util.HashSet<>();
    if (suffix != null) {
      states.add(new ResourceID(suffix, namespace));
    }
    String name = o.getMetadata().getName();
    if (caches.bound()) {
      for (TerraformState state : caches.states(namespace)) {
        if (state.getSpec() == null) {
          continue;
        }
        StateNames names = namesOf(state);
        if (name.equals(names.leaseName()) || names.chunkIndex(name) >= 0) {
          states.add(ResourceID.fromResource(state));
        }
      }
    }
    return states;
  }

  /** The names of a TerraformState that has a spec. */
  static StateNames namesOf(TerraformState state) {
    return StateOwnership.namesOf(state);
  }

  @Override
  public UpdateControl<TerraformState> reconcile(
      TerraformState resource, Context<TerraformState> context) {
    TerraformStateStatus previous = previousStatus(resource);
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
    StateNames names = namesOf(resource);
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
    context.getSecondaryResources(Job.class).forEach(this::warnIfUnreadable);
    caches.cached(names.namespace(), names.leaseName()).ifPresent(this::warnIfUnreadable);
    pruneHistory(resource, names);
    String forceUnlockId = annotation(resource, FORCE_UNLOCK_ANNOTATION);
    if (forceUnlockId != null) {
      forceUnlock(resource, names, forceUnlockId);
    }

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
    recordQueue(resource, status, queue);

    Optional<Holder> holder = Holder.of(lease);
    recordLockTransition(resource, previous.getLock(), holder, queue);
    recordLock(status, conditions, holder);

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
        return writeStatus(resource, context, previous, status)
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
    UpdateControl<TerraformState> control = writeStatus(resource, context, previous, status);
    if (!queue.recheckAfter().isZero()) {
      control.rescheduleAfter(queue.recheckAfter());
    }
    return control;
  }

  /** The lock in the status: its holder and the Locked condition. */
  private static void recordLock(
      TerraformStateStatus status, Conditions conditions, Optional<Holder> holder) {
    if (holder.isPresent() && holder.get().unreadable()) {
      status.setLock(null);
      status.setHolder(Holder.UNREADABLE_ID);
      conditions.set(
          Conditions.LOCKED,
          true,
          FIELD_UNREADABLE,
          "the lock Lease cannot be read (see its Events), so who holds the lock is not known: it"
              + " counts as held, and leasehold leaves the Lease untouched until it is corrected");
    } else if (holder.isPresent()) {
      Holder h = holder.get();
      status.setLock(lockStatus(h));
      status.setHolder(h.summary());
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
    return writeStatus(resource, context, previous, status);
  }

  /** Ready and Degraded reason, and Event reason, for an object with a field it cannot read. */
  public static final String FIELD_UNREADABLE = "FieldUnreadable";

  private static final long STATUS_REWRITTEN_RECHECK_MILLIS = 1_000;

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

  /** How often a TerraformState refused its names looks again whether they are free now. */
  static final long COLLISION_RECHECK_MILLIS = 10_000;

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
    for (Job job :
        RunQueue.of(names.name(), context.getSecondaryResources(Job.class), arrivals).waiting()) {
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
    UpdateControl<TerraformState> control =
        refuse(
            resource, context, previous, status, conditions, "NameCollision", collision.message());
    return control.rescheduleAfter(COLLISION_RECHECK_MILLIS);
  }

  /** The history.keep each state's history was last pruned to (by this replica). */
  private final Map<ResourceID, Integer> prunedTo = new ConcurrentHashMap<>();

  /**
   * Drops the oldest kept versions beyond {@code spec.history.keep} when that changed (or was not
   * looked at since this replica started): lowering it takes effect at once, not at the next write.
   */
  private void pruneHistory(TerraformState resource, StateNames names) {
    ResourceID id = ResourceID.fromResource(resource);
    int keep = resource.getSpec().getHistory().getKeep();
    Integer last = prunedTo.get(id);
    if (last != null && last == keep) {
      return;
    }
    try {
      int dropped = new StateHistory(client, names).prune(keep, Set.of());
      if (dropped > 0) {
        events.normal(
            resource,
            "HistoryPruned",
            "dropped the "
                + dropped
                + " oldest kept version(s) of the state: history.keep is "
                + keep);
      }
      prunedTo.put(id, keep);
    } catch (KubernetesClientException e) {
      // Tried again at the next reconcile.
      LOG.info(
          "{}/{}: pruning history to {} versions failed; retrying later: {}",
          names.namespace(),
          names.name(),
          keep,
          e.getMessage());
    }
  }

  /** The line in the status: Jobs and waiting clients in the order they are served. */
  private void recordQueue(
      TerraformState resource, TerraformStateStatus status, JobAdmission.Outcome outcome) {
    RunQueue queue = outcome.queue();
    List<QueueEntry> entries = new ArrayList<>();
    Set<String> lined = new java.util.HashSet<>();
    Set<String> waitingJobs = new java.util.HashSet<>();
    queue.waiting().forEach(j -> waitingJobs.add(j.getMetadata().getUid()));
    Instant now = Instant.now();
    for (Ticket t : locks.kept(LeaseLock.line(outcome.lease()), now).tickets()) {
      if (t.isJob() && !waitingJobs.contains(t.id())) {
        continue;
      }
      lined.add(t.id());
      entries.add(
          new QueueEntry(
              t.isJob() ? "job" : "client",
              t.who(),
              entries.size() + 1,
              t.since().toString(),
              t.isJob() ? null : t.gone() == null));
    }
    for (Job job : queue.waiting()) {
      if (!lined.contains(job.getMetadata().getUid())) {
        entries.add(
            new QueueEntry(
                "job",
                job.getMetadata().getName(),
                entries.size() + 1,
                job.getMetadata().getCreationTimestamp(),
                null));
      }
    }
    status.setQueued(entries.size());
    metrics.queueLength(
        resource.getMetadata().getNamespace() + "/" + resource.getMetadata().getName(),
        entries.size());
    status.setQueue(
        entries.isEmpty()
            ? null
            : List.copyOf(entries.subList(0, Math.min(entries.size(), MAX_QUEUE_IN_STATUS))));
    status.setRunningJob(outcome.holder().map(j -> j.getMetadata().getName()).orElse(null));
    List<String> unserialized =
        queue.unserialized().stream().map(j -> j.getMetadata().getName()).toList();
    status.setUnserializedRunners(unserialized.isEmpty() ? null : unserialized);
    for (Job job : queue.unserialized()) {
      if (warnedUnserialized.add(job.getMetadata().getUid())) {
        String message =
            "Job "
                + job.getMetadata().getName()
                + " targets "
                + resource.getMetadata().getName()
                + " and runs outside the queue, without the lock, and leasehold could not"
                + " suspend it (see its SuspendRefused Event); create runner Jobs suspended, and"
                + " let leasehold alone unsuspend them";
        events.warning(job, "UnserializedRunner", message);
        events.warning(resource, "UnserializedRunner", message);
      }
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
    return status;
  }

  private static String emptyToNull(String s) {
    return s == null || s.isEmpty() ? null : s;
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

  private void forceUnlock(TerraformState resource, StateNames names, String lockId) {
    LockService.Answer answer = locks.forceUnlock(names, Optional.of(lockId));
    if (answer instanceof LockService.Released released) {
      metrics.lockForced("annotation");
      Holder h = released.previous();
      String id = released.nested() ? lockId : h.id();
      events.normal(
          resource,
          "ForceUnlocked",
          "released lock "
              + id
              + (released.nested() ? " nested under the lock of " : " held by ")
              + h.summary()
              + h.info()
                  .map(
                      i ->
                          i.created() == null || i.created().isEmpty()
                              ? ""
                              : " since " + i.created())
                  .orElse("")
              + ", as asked by the "
              + FORCE_UNLOCK_ANNOTATION
              + " annotation");
    } else if (answer instanceof LockService.NotHeld n && n.holder().isPresent()) {
      events.warning(
          resource,
          "ForceUnlockRefused",
          "lock left alone: "
              + FORCE_UNLOCK_ANNOTATION
              + " names lock "
              + lockId
              + " but the lock is held by "
              + n.holder().get().summary()
              + " with ID "
              + n.holder().get().id());
    } else if (answer instanceof LockService.NotHeld) {
      events.normal(
          resource,
          "ForceUnlockNotNeeded",
          "the state is not locked; " + FORCE_UNLOCK_ANNOTATION + " " + lockId + " ignored");
    } else {
      throw new IllegalStateException(answer.toString());
    }
    removeAnnotation(resource, FORCE_UNLOCK_ANNOTATION, lockId);
  }

  private void removeAnnotation(TerraformState resource, String key, String expectedValue) {
    String pointer = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1");
    ArrayNode patch = MAPPER.createArrayNode();
    // The test op keeps a newer request (another ID set meanwhile) from being dropped.
    patch.addObject().put("op", "test").put("path", pointer).put("value", expectedValue);
    patch.addObject().put("op", "remove").put("path", pointer);
    try {
      client
          .resources(TerraformState.class)
          .inNamespace(resource.getMetadata().getNamespace())
          .resource(resource)
          .patch(PatchContext.of(PatchType.JSON), patch.toString());
    } catch (KubernetesClientException e) {
      LOG.info(
          "{}/{}: annotation {} not removed: {}",
          resource.getMetadata().getNamespace(),
          resource.getMetadata().getName(),
          key,
          e.getMessage());
    }
  }

  private void recordLockTransition(
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
      // A queue handover: one Event rather than a release and a take.
      events.normal(
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

  /**
   * The status this replica last wrote for a TerraformState: the version that write made, and the
   * versions it replaced.
   */
  private record Written(String version, Set<String> replaced, TerraformStateStatus status) {}

  private static final int REPLACED_KEPT = 16;

  private final Map<ResourceID, Written> written = new ConcurrentHashMap<>();

  /**
   * The status as it stands: the resource's, unless the resource is a version this replica's last
   * status write replaced. The Java Operator SDK keeps a status just written in its cache, but the
   * watch event of an older version, arriving late, puts that version back for a moment; a
   * transition would then be reported twice. The versions are compared for equality only.
   */
  private TerraformStateStatus previousStatus(TerraformState resource) {
    TerraformStateStatus cached =
        resource.getStatus() == null ? new TerraformStateStatus() : resource.getStatus();
    ResourceID id = ResourceID.fromResource(resource);
    Written w = written.get(id);
    if (w == null) {
      return cached;
    }
    if (resource.getStatus() == null && resource.getAdditionalProperties().containsKey("status")) {
      // A status that cannot be read: the last one this replica wrote says what was told.
      return w.status();
    }
    String version = resource.getMetadata().getResourceVersion();
    if (w.replaced().contains(version)) {
      return w.status();
    }
    if (!w.version().equals(version)) {
      // A version after the last write: the status it carries is the latest.
      written.remove(id, w);
    }
    return cached;
  }

  /**
   * Writes the status when it changed, with the Java Operator SDK's update-and-cache support: the
   * update is conditional on the version read (retried on a newer one), and the next reconcile sees
   * the written status even before its watch event arrives, so no transition is reported twice.
   */
  private UpdateControl<TerraformState> writeStatus(
      TerraformState resource,
      Context<TerraformState> context,
      TerraformStateStatus previous,
      TerraformStateStatus status) {
    if (status.equals(previous)) {
      return UpdateControl.noUpdate();
    }
    TerraformState updated =
        PrimaryUpdateAndCacheUtils.updateStatusAndCacheResource(
            resource,
            context,
            r -> {
              TerraformState copy = new TerraformState();
              copy.setMetadata(r.getMetadata());
              copy.setSpec(r.getSpec());
              // Fields this version does not know are written back as they were: at the top
              // (and a spec it could not read, kept as read), and beside the status fields it
              // writes. A status it could not read is replaced.
              r.getAdditionalProperties()
                  .forEach(
                      (k, v) -> {
                        if (!"status".equals(k)) {
                          copy.setAdditionalProperty(k, v);
                        }
                      });
              copy.setStatus(withUnknownFieldsOf(r.getStatus(), status));
              return copy;
            });
    ResourceID id = ResourceID.fromResource(resource);
    Written before = written.get(id);
    Set<String> replaced = new java.util.LinkedHashSet<>();
    if (before != null) {
      replaced.addAll(before.replaced());
      replaced.add(before.version());
    }
    replaced.add(resource.getMetadata().getResourceVersion());
    replaced.remove(updated.getMetadata().getResourceVersion());
    while (replaced.size() > REPLACED_KEPT) {
      replaced.remove(replaced.iterator().next());
    }
    written.put(id, new Written(updated.getMetadata().getResourceVersion(), replaced, status));
    return UpdateControl.noUpdate();
  }

  /**
   * {@code status} with the fields a newer leasehold wrote beside the ones this version knows, at
   * the top of the status and in its lock and state parts, kept as they are in {@code stored}.
   */
  private static TerraformStateStatus withUnknownFieldsOf(
      TerraformStateStatus stored, TerraformStateStatus status) {
    if (stored == null) {
      return status;
    }
    TerraformStateStatus written = copyOf(status);
    written.keepUnknownFieldsOf(stored);
    if (written.getLock() != null) {
      written.getLock().keepUnknownFieldsOf(stored.getLock());
    }
    if (written.getState() != null) {
      written.getState().keepUnknownFieldsOf(stored.getState());
    }
    return written;
  }

  private static String annotation(TerraformState resource, String key) {
    Map<String, String> annotations = resource.getMetadata().getAnnotations();
    return annotations == null ? null : annotations.get(key);
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
  @Override
  public DeleteControl cleanup(TerraformState resource, Context<TerraformState> context) {
    ResourceID id = ResourceID.fromResource(resource);
    String key = resource.getMetadata().getNamespace() + "/" + resource.getMetadata().getName();
    if (resource.getSpec() == null) {
      Optional<DeleteControl> waiting = windDownWithoutSpec(resource, context);
      if (waiting.isPresent()) {
        return waiting.get();
      }
      forget(id, key);
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
    StateNames names = namesOf(resource);
    if (names.problem().isPresent()) {
      forget(id, key);
      return DeleteControl.defaultDelete();
    }
    Optional<StateOwnership.Collision> collision = StateOwnership.check(resource, caches);
    if (collision.isPresent()) {
      forget(id, key);
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
    String forceUnlockId = annotation(resource, FORCE_UNLOCK_ANNOTATION);
    if (forceUnlockId != null) {
      forceUnlock(resource, names, forceUnlockId);
    }
    TerraformStateStatus previous = previousStatus(resource);
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
      forget(id, key);
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
    io.leasehold.state.WriteJournal journal = new io.leasehold.state.WriteJournal(client, names);
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
    forget(id, key);
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
    StateNames names = namesOf(assumed);
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
        previousStatus(resource),
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

  /** Forgets what this replica kept about a TerraformState that is gone. */
  private void forget(ResourceID id, String key) {
    stateKeeper.forget(new StateNames(id.getNamespace().orElse(""), id.getName(), ""));
    written.remove(id);
    prunedTo.remove(id);
    metrics.queueLength(key, 0);
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
    TerraformStateStatus status = copyOf(previous);
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
    recordLock(status, conditions, lease.flatMap(l -> Holder.of(l, Instant.now())));
    status.setConditions(conditions.build());
    status.setQueued(0);
    status.setQueue(null);
    writeStatus(resource, context, previous, status);
  }

  private static TerraformStateStatus copyOf(TerraformStateStatus s) {
    return MAPPER.convertValue(MAPPER.valueToTree(s), TerraformStateStatus.class);
  }
}
