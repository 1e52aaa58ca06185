package io.leasehold.operator;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.api.reconciler.PrimaryUpdateAndCacheUtils;
import io.javaoperatorsdk.operator.api.reconciler.UpdateControl;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.leasehold.api.TerraformState;
import io.leasehold.api.TerraformStateStatus;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Reads and writes a TerraformState's status for the reconciler: the status as it stands (never a
 * late watch event's older version, so no transition is reported twice), written only when it
 * changed, conditionally on the version read, and keeping the fields a newer leasehold wrote.
 */
final class StatusWrites {

  private static final ObjectMapper MAPPER = new ObjectMapper();

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
  TerraformStateStatus previous(TerraformState resource) {
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
  UpdateControl<TerraformState> write(
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
    Set<String> replaced = new LinkedHashSet<>();
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

  /** Forgets the last status written for a TerraformState that is gone. */
  void forget(ResourceID id) {
    written.remove(id);
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

  /** A deep copy of {@code s}. */
  static TerraformStateStatus copyOf(TerraformStateStatus s) {
    return MAPPER.convertValue(MAPPER.valueToTree(s), TerraformStateStatus.class);
  }
}
