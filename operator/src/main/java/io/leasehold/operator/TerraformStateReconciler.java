package io.leasehold.operator;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
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
import io.leasehold.kube.MetadataOnlySecrets;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.queue.JobAdmission;
import io.leasehold.queue.RunQueue;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.state.StateKeeper;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateUnreadableException;
import java.time.Clock;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keeps each TerraformState's lock Lease in place and its status true to the stored state and the
 * lock, without ever taking, clearing or changing a lock someone holds or writing the state.
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
  private final JobAdmission admission;
  private final Set<String> warnedUnserialized = ConcurrentHashMap.newKeySet();
  private final StateKeeper stateKeeper;
  private InformerEventSource<Lease, TerraformState> leases;
  private InformerEventSource<Job, TerraformState> jobs;

  private final LeaseholdMetrics metrics;

  public TerraformStateReconciler(
      KubernetesClient client, EventRecorder events, LeaseholdMetrics metrics) {
    this.client = client;
    this.events = events;
    this.metrics = metrics;
    this.admission = new JobAdmission(client, events, Clock.systemUTC(), this, metrics);
    this.stateKeeper = new StateKeeper(client);
  }

  @Override
  public List<EventSource<?, TerraformState>> prepareEventSources(
      EventSourceContext<TerraformState> context) {
    // Terraform labels its Secrets and its Lease tfstate=true and tfstateSecretSuffix=<name>;
    // leasehold creates its Leases with the same labels, so one selector finds both.
    leases =
        new InformerEventSource<>(
            InformerEventSourceConfiguration.from(Lease.class, TerraformState.class)
                .withName("leases")
                .withLabelSelector(TERRAFORM_SELECTOR)
                .withSecondaryToPrimaryMapper(TerraformStateReconciler::bySuffixLabel)
                .build(),
            context);
    var secrets =
        new InformerEventSource<>(
            InformerEventSourceConfiguration.from(Secret.class, TerraformState.class)
                .withName("secrets")
                .withItemStore(new MetadataOnlySecrets())
                .withLabelSelector(TERRAFORM_SELECTOR)
                .withSecondaryToPrimaryMapper(TerraformStateReconciler::bySuffixLabel)
                .build(),
            context);
    jobs =
        new InformerEventSource<>(
            InformerEventSourceConfiguration.from(Job.class, TerraformState.class)
                .withName("jobs")
                .withLabelSelector(RunnerJobs.STATE_LABEL)
                .withSecondaryToPrimaryMapper(
                    job ->
                        RunnerJobs.stateName(job)
                            .map(n -> Set.of(new ResourceID(n, job.getMetadata().getNamespace())))
                            .orElse(Set.of()))
                .withOnDeleteFilter(
                    (job, unknown) -> {
                      admission.forget(job.getMetadata().getUid());
                      warnedUnserialized.remove(job.getMetadata().getUid());
                      return true;
                    })
                .build(),
            context);
    return List.of(leases, secrets, jobs);
  }

  @Override
  public void leaseWritten(TerraformState state, Lease written, Lease before) {
    leases.handleRecentResourceUpdate(ResourceID.fromResource(state), written, before);
  }

  @Override
  public void jobWritten(TerraformState state, Job written, Job before) {
    jobs.handleRecentResourceUpdate(ResourceID.fromResource(state), written, before);
  }

  private static Set<ResourceID> bySuffixLabel(io.fabric8.kubernetes.api.model.HasMetadata o) {
    Map<String, String> labels = o.getMetadata().getLabels();
    String suffix = labels == null ? null : labels.get(StateNames.LABEL_SUFFIX);
    return suffix == null
        ? Set.of()
        : Set.of(new ResourceID(suffix, o.getMetadata().getNamespace()));
  }

  static StateNames namesOf(TerraformState state) {
    return new StateNames(
        state.getMetadata().getNamespace(),
        state.getMetadata().getName(),
        state.getSpec().getWorkspace());
  }

  @Override
  public UpdateControl<TerraformState> reconcile(
      TerraformState resource, Context<TerraformState> context) {
    StateNames names = namesOf(resource);
    TerraformStateStatus previous =
        resource.getStatus() == null ? new TerraformStateStatus() : resource.getStatus();
    long generation = Optional.ofNullable(resource.getMetadata().getGeneration()).orElse(0L);
    TerraformStateStatus status = new TerraformStateStatus();
    status.setObservedGeneration(generation);
    Conditions conditions = new Conditions(previous.getConditions(), generation);

    Optional<String> invalid = names.problem();
    if (invalid.isPresent()) {
      String message = "cannot manage this state: " + invalid.get();
      conditions.set(Conditions.READY, false, "InvalidName", message);
      conditions.set(Conditions.LOCKED, false, "InvalidName", "no lock is kept for this state");
      conditions.set(Conditions.DEGRADED, true, "InvalidName", message);
      if (!"InvalidName"
          .equals(Conditions.reason(previous.getConditions(), Conditions.DEGRADED).orElse(""))) {
        events.warning(resource, "InvalidName", message);
      }
      status.setConditions(conditions.build());
      return writeStatus(resource, previous, status);
    }

    LeaseLock lock = new LeaseLock(client, names);
    Lease lease =
        context.getSecondaryResources(Lease.class).stream()
            .filter(l -> names.leaseName().equals(l.getMetadata().getName()))
            .findFirst()
            .orElse(null);
    if (lease == null) {
      lease = lock.ensureExists();
      leases.handleRecentResourceCreate(ResourceID.fromResource(resource), lease);
    }

    String forceUnlockId = annotation(resource, FORCE_UNLOCK_ANNOTATION);
    if (forceUnlockId != null) {
      lease = forceUnlock(resource, lock, forceUnlockId).orElse(lease);
    }

    JobAdmission.Outcome queue;
    try {
      queue = admission.run(resource, names, lease, context.getSecondaryResources(Job.class));
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
    lease = queue.lease();
    recordQueue(resource, status, queue);

    Optional<LeaseLock.Holder> holder = LeaseLock.Holder.of(lease);
    recordLockTransition(resource, previous.getLock(), holder);
    if (holder.isPresent()) {
      LeaseLock.Holder h = holder.get();
      status.setLock(h.toStatus());
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
      conditions.set(Conditions.LOCKED, false, "Unlocked", "the state is not locked");
    }

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
        return UpdateControl.<TerraformState>noUpdate().rescheduleAfter(FaultSettling.SETTLE);
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
    UpdateControl<TerraformState> control = writeStatus(resource, previous, status);
    if (!queue.recheckAfter().isZero()) {
      control.rescheduleAfter(queue.recheckAfter());
    }
    return control;
  }

  private void recordQueue(
      TerraformState resource, TerraformStateStatus status, JobAdmission.Outcome outcome) {
    RunQueue queue = outcome.queue();
    status.setQueued(queue.waiting().size());
    metrics.queueLength(
        resource.getMetadata().getNamespace() + "/" + resource.getMetadata().getName(),
        queue.waiting().size());
    List<QueueEntry> entries = new ArrayList<>();
    for (int i = 0; i < queue.waiting().size() && i < MAX_QUEUE_IN_STATUS; i++) {
      Job job = queue.waiting().get(i);
      entries.add(
          new QueueEntry(
              job.getMetadata().getName(), i + 1, job.getMetadata().getCreationTimestamp()));
    }
    status.setQueue(entries.isEmpty() ? null : entries);
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
                + " but was created without spec.suspend: true, so it runs outside the queue"
                + " and without the lock; create runner Jobs suspended";
        events.warning(job, "UnserializedRunner", message);
        events.warning(resource, "UnserializedRunner", message);
      }
    }
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

  private Optional<Lease> forceUnlock(TerraformState resource, LeaseLock lock, String lockId) {
    LeaseLock.ForceUnlockResult result = lock.forceUnlock(lockId);
    String who = result.previousHolder().map(LeaseLock.Holder::summary).orElse("nobody");
    if (result.outcome() == LeaseLock.ForceUnlockOutcome.RELEASED) {
      metrics.lockForced("annotation");
    }
    switch (result.outcome()) {
      case RELEASED ->
          events.normal(
              resource,
              "ForceUnlocked",
              "released lock "
                  + lockId
                  + " held by "
                  + who
                  + result
                      .previousHolder()
                      .flatMap(LeaseLock.Holder::info)
                      .map(i -> i.created() == null ? "" : " since " + i.created())
                      .orElse("")
                  + ", as asked by the "
                  + FORCE_UNLOCK_ANNOTATION
                  + " annotation");
      case ID_MISMATCH ->
          events.warning(
              resource,
              "ForceUnlockRefused",
              "lock left alone: "
                  + FORCE_UNLOCK_ANNOTATION
                  + " names lock "
                  + lockId
                  + " but the lock is held by "
                  + who
                  + " with ID "
                  + result.previousHolder().map(LeaseLock.Holder::id).orElse("?"));
      case NOT_LOCKED ->
          events.normal(
              resource,
              "ForceUnlockNotNeeded",
              "the state is not locked; " + FORCE_UNLOCK_ANNOTATION + " " + lockId + " ignored");
      case CONFLICT -> {
        // The Lease changed while we looked; keep the annotation and look again.
        throw new KubernetesClientException(
            "lock Lease changed during force-unlock; retrying", 409, null);
      }
      default -> throw new IllegalStateException(result.outcome().toString());
    }
    removeAnnotation(resource, FORCE_UNLOCK_ANNOTATION, lockId);
    return lock.read();
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
      TerraformState resource, LockStatus before, Optional<LeaseLock.Holder> after) {
    String beforeId = before == null ? null : before.getId();
    String afterId = after.map(LeaseLock.Holder::id).orElse(null);
    if (Objects.equals(beforeId, afterId)) {
      return;
    }
    if (beforeId != null
        && afterId != null
        && beforeId.startsWith(RunnerJobs.HOLDER_PREFIX)
        && afterId.startsWith(RunnerJobs.HOLDER_PREFIX)) {
      // A queue handover: one Event rather than a release and a take.
      events.normal(
          resource,
          "LockHandedOver",
          "lock passed from " + describe(before) + " to " + after.get().summary());
      return;
    }
    if (beforeId != null) {
      events.normal(
          resource,
          "LockReleased",
          "lock " + beforeId + " held by " + describe(before) + " was released");
    }
    if (afterId != null) {
      LeaseLock.Holder h = after.get();
      events.normal(resource, "LockTaken", "lock " + afterId + " taken by " + h.summary());
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

  private UpdateControl<TerraformState> writeStatus(
      TerraformState resource, TerraformStateStatus previous, TerraformStateStatus status) {
    if (status.equals(previous)) {
      return UpdateControl.noUpdate();
    }
    // JSON Patch "add /status" replaces the whole status: fields that became empty go away,
    // which a merge patch of an object without them would not do.
    ArrayNode patch = MAPPER.createArrayNode();
    ObjectNode op = patch.addObject();
    op.put("op", "add").put("path", "/status");
    op.set("value", MAPPER.valueToTree(status));
    client
        .resources(TerraformState.class)
        .inNamespace(resource.getMetadata().getNamespace())
        .resource(resource)
        .subresource("status")
        .patch(PatchContext.of(PatchType.JSON), patch.toString());
    return UpdateControl.noUpdate();
  }

  private static String annotation(TerraformState resource, String key) {
    Map<String, String> annotations = resource.getMetadata().getAnnotations();
    return annotations == null ? null : annotations.get(key);
  }

  @Override
  public DeleteControl cleanup(TerraformState resource, Context<TerraformState> context) {
    StateNames names = namesOf(resource);
    stateKeeper.forget(names);
    metrics.queueLength(names.namespace() + "/" + names.name(), 0);
    if (names.problem().isPresent()) {
      return DeleteControl.defaultDelete();
    }
    if (resource.getSpec().getDeletionPolicy() == DeletionPolicy.Retain) {
      events.normal(
          resource,
          "StateRetained",
          "deletionPolicy Retain: "
              + names.secretName()
              + " and Lease "
              + names.leaseName()
              + " are left in place for stock Terraform");
      return DeleteControl.defaultDelete();
    }
    LeaseLock lock = new LeaseLock(client, names);
    String deletionLockId = "leasehold-delete-" + UUID.randomUUID();
    Optional<LeaseLock.Holder> blocker;
    try {
      blocker =
          lock.tryAcquire(
              new LockInfo(
                  deletionLockId,
                  "delete",
                  "deleting TerraformState "
                      + names.namespace()
                      + "/"
                      + names.name()
                      + " (deletionPolicy Delete)",
                  "leasehold",
                  "",
                  Instant.now().truncatedTo(ChronoUnit.SECONDS).toString(),
                  names.secretName()));
    } catch (KubernetesClientException e) {
      if (e.getCode() == 409) {
        return DeleteControl.noFinalizerRemoval().rescheduleAfter(1_000);
      }
      throw e;
    }
    if (blocker.isPresent()) {
      String message =
          "deletionPolicy Delete: waiting for lock "
              + blocker.get().id()
              + " held by "
              + blocker.get().summary()
              + " to be released before the state is deleted";
      TerraformStateStatus previous =
          resource.getStatus() == null ? new TerraformStateStatus() : resource.getStatus();
      if (!message.equals(
          Conditions.find(previous.getConditions(), Conditions.READY)
              .map(c -> c.getMessage())
              .orElse(""))) {
        events.warning(resource, "DeletionWaitingForUnlock", message);
      }
      TerraformStateStatus status = copyOf(previous);
      long generation = Optional.ofNullable(resource.getMetadata().getGeneration()).orElse(0L);
      Conditions conditions = new Conditions(previous.getConditions(), generation);
      previous
          .getConditions()
          .forEach(
              c ->
                  conditions.set(
                      c.getType(), "True".equals(c.getStatus()), c.getReason(), c.getMessage()));
      conditions.set(Conditions.READY, false, "DeletionWaitingForUnlock", message);
      status.setConditions(conditions.build());
      writeStatus(resource, previous, status);
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
      if (names.chunkIndex(secret.getMetadata().getName()) >= 0) {
        client
            .secrets()
            .inNamespace(names.namespace())
            .resource(secret)
            .lockResourceVersion(secret.getMetadata().getResourceVersion())
            .delete();
        deleted.add(secret.getMetadata().getName());
      }
    }
    // Still ours (we took it above): delete it only at the version we hold.
    lock.read()
        .ifPresent(
            l ->
                client
                    .leases()
                    .inNamespace(names.namespace())
                    .resource(l)
                    .lockResourceVersion(l.getMetadata().getResourceVersion())
                    .delete());
    deleted.add("Lease " + names.leaseName());
    events.normal(
        resource, "StateDeleted", "deletionPolicy Delete: removed " + String.join(", ", deleted));
    return DeleteControl.defaultDelete();
  }

  private static TerraformStateStatus copyOf(TerraformStateStatus s) {
    return MAPPER.convertValue(MAPPER.valueToTree(s), TerraformStateStatus.class);
  }
}
