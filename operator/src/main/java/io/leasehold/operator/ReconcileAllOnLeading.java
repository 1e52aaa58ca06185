package io.leasehold.operator;

import io.javaoperatorsdk.operator.api.reconciler.IndexedResourceCache;
import io.javaoperatorsdk.operator.processing.event.Event;
import io.javaoperatorsdk.operator.processing.event.EventHandler;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.javaoperatorsdk.operator.processing.event.source.AbstractEventSource;
import io.leasehold.api.TerraformState;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Asks for a reconciliation of every TerraformState each time this replica becomes the leader.
 *
 * <p>A replica that does not lead answers each reconciliation at once, doing nothing; whatever
 * happened to a state meanwhile (a Job ended or was created, a client took or released the lock)
 * waits for the next look. Without this, a replica that leads again after losing leadership would
 * look at such a state only when its next change came or its late recheck fell due, its line
 * stalled and its Events late until then. A reconciliation still running when this fires is
 * followed by another once it ends (the Java Operator SDK never runs two at once for one state).
 */
final class ReconcileAllOnLeading extends AbstractEventSource<Void, TerraformState> {

  private static final Logger LOG = LoggerFactory.getLogger(ReconcileAllOnLeading.class);

  private final IndexedResourceCache<TerraformState> states;

  ReconcileAllOnLeading(IndexedResourceCache<TerraformState> states) {
    super(Void.class, "reconcile-all-on-leading");
    this.states = states;
  }

  /** Asks for a reconciliation of every TerraformState in the cache. */
  void reconcileAll() {
    EventHandler handler = getEventHandler();
    if (handler == null) {
      // Not registered yet: the first reconciliations of every state are still to come.
      return;
    }
    long[] count = {0};
    states
        .list()
        .forEach(
            s -> {
              handler.handleEvent(new Event(ResourceID.fromResource(s)));
              count[0]++;
            });
    LOG.info("leading: reconciling all {} TerraformStates", count[0]);
  }

  @Override
  public Set<Void> getSecondaryResources(TerraformState primary) {
    return Set.of();
  }
}
