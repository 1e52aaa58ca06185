package io.leasehold.operator;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.EventRecorder;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateNames;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keeps a state's history to {@code spec.history.keep}: lowering it drops the oldest kept versions
 * at once, not at the next write, with an Event saying how many.
 */
final class HistoryPruning {

  private static final Logger LOG = LoggerFactory.getLogger(HistoryPruning.class);

  private final KubernetesClient client;
  private final EventRecorder events;

  /** The history.keep each state's history was last pruned to (by this replica). */
  private final Map<ResourceID, Integer> prunedTo = new ConcurrentHashMap<>();

  HistoryPruning(KubernetesClient client, EventRecorder events) {
    this.client = client;
    this.events = events;
  }

  /**
   * Drops the oldest kept versions beyond {@code spec.history.keep} when that changed (or was not
   * looked at since this replica started): lowering it takes effect at once, not at the next write.
   */
  void prune(TerraformState resource, StateNames names) {
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

  /** Forgets a TerraformState that is gone. */
  void forget(ResourceID id) {
    prunedTo.remove(id);
  }
}
