package io.leasehold.operator;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.Holder;
import io.leasehold.lock.LockService;
import io.leasehold.ops.AuditLog;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.state.StateNames;
import java.util.Map;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The {@value TerraformStateReconciler#FORCE_UNLOCK_ANNOTATION} annotation: the lock is released
 * when its ID is the one named (also while the TerraformState is being deleted), an Event says what
 * came of it, and the annotation is removed unless a newer request replaced it meanwhile.
 */
final class ForceUnlocks {

  private static final Logger LOG = LoggerFactory.getLogger(ForceUnlocks.class);
  private static final ObjectMapper MAPPER = new ObjectMapper();
  private static final String FORCE_UNLOCK_ANNOTATION =
      TerraformStateReconciler.FORCE_UNLOCK_ANNOTATION;

  private final KubernetesClient client;
  private final LockService locks;
  private final EventRecorder events;
  private final LeaseholdMetrics metrics;

  ForceUnlocks(
      KubernetesClient client, LockService locks, EventRecorder events, LeaseholdMetrics metrics) {
    this.client = client;
    this.locks = locks;
    this.events = events;
    this.metrics = metrics;
  }

  /** Carries out the force-unlock the annotation asks for, if it does. */
  void ifAsked(TerraformState resource, StateNames names) {
    Map<String, String> annotations = resource.getMetadata().getAnnotations();
    String lockId = annotations == null ? null : annotations.get(FORCE_UNLOCK_ANNOTATION);
    if (lockId != null) {
      forceUnlock(resource, names, lockId);
    }
  }

  private void forceUnlock(TerraformState resource, StateNames names, String lockId) {
    LockService.Answer answer = locks.forceUnlock(names, Optional.of(lockId));
    AuditLog.Line line =
        AuditLog.line("force-unlock", names.namespace(), names.name())
            .with("workspace", names.workspace())
            .with("lockId", lockId)
            .with("replica", locks.replica());
    if (answer instanceof LockService.Released released) {
      metrics.lockForced("annotation");
      Holder h = released.previous();
      line.with("holderLockId", h.id())
          .with("holder", h.summary())
          .with("jobUid", h.jobUid().orElse(null))
          .with("nested", released.nested() ? "true" : null)
          .with("reason", "the " + FORCE_UNLOCK_ANNOTATION + " annotation")
          .log();
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
      AuditLog.line("force-unlock-refused", names.namespace(), names.name())
          .with("workspace", names.workspace())
          .with("lockId", lockId)
          .with("replica", locks.replica())
          .with("holderLockId", n.holder().get().id())
          .with("holder", n.holder().get().summary())
          .with("reason", "the annotation names another lock ID than the holder's")
          .log();
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
      AuditLog.line("force-unlock-not-needed", names.namespace(), names.name())
          .with("workspace", names.workspace())
          .with("lockId", lockId)
          .with("replica", locks.replica())
          .with("reason", "not locked")
          .log();
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
}
