package io.leasehold.lock;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * The lock as {@link LockCore} sees it, read from a Lease by one replica: the holder (unless its
 * lock ran out), the line as this replica knows it (its own clients connected exactly when their
 * requests are open here), which of the replicas named in line are alive, and whether the state is
 * being deleted. Jobs count as admissible: the leader admits them.
 */
final class CoreView {

  /** The name the view gives the leader, which always counts as alive. */
  static final String LEADER = "\u0000leader";

  private CoreView() {}

  /**
   * @param line the line as {@link PlaceKeeping#kept} left it at {@code now}: places of replicas
   *     not alive then are marked gone; liveness is not judged again here
   * @param connected the lock IDs of this replica's requests that are open now; null to judge this
   *     replica's clients by their places alone, as another replica would
   */
  static LockCore.State of(
      Lease lease, Line line, Instant now, String self, Set<String> connected, boolean closing) {
    List<LockCore.Holding> holders = new ArrayList<>();
    List<PlanHolds.Plan> plans = PlanHolds.of(lease);
    if (!plans.isEmpty()) {
      plans.forEach(
          p -> holders.add(LockCore.Holding.client(p.id(), LockCore.Mode.SHARED, p.owner())));
    } else {
      Holder.of(lease, now)
          .filter(h -> !h.expired())
          .ifPresent(
              h ->
                  holders.add(
                      new LockCore.Holding(h.id(), kind(h), LockCore.Mode.EXCLUSIVE, null)));
    }
    List<LockCore.Place> places = new ArrayList<>();
    Set<String> alive = new LinkedHashSet<>();
    alive.add(self);
    alive.add(LEADER);
    for (Ticket t : line.tickets()) {
      if (t.isJob()) {
        places.add(LockCore.Place.job(t.id(), LockCore.Mode.EXCLUSIVE));
        continue;
      }
      Instant away = t.gone();
      if (self.equals(t.replica()) && connected != null) {
        away = connected.contains(t.id()) ? null : (t.gone() != null ? t.gone() : now);
      } else if (t.replica() != null && t.gone() == null) {
        // The line was kept by PlaceKeeping a moment ago, which marked the places of replicas
        // not alive then as gone: judged again here, a replica found gone in between (its
        // heartbeat, a probe on another thread) would be passed over while its places are
        // written back unmarked, and the grant would jump connected clients.
        alive.add(t.replica());
      }
      places.add(
          new LockCore.Place(
              t.id(),
              LockCore.Kind.CLIENT,
              t.forPlan() ? LockCore.Mode.SHARED : LockCore.Mode.EXCLUSIVE,
              t.owner(),
              t.replica(),
              away));
    }
    return new LockCore.State(
        holders, places, alive, Optional.of(LEADER), closing, LeaseLock.held(lease));
  }

  private static LockCore.Kind kind(Holder h) {
    if (h.jobUid().isPresent()) {
      return LockCore.Kind.JOB;
    }
    if (h.id().startsWith(DeletionLock.PREFIX)) {
      return LockCore.Kind.DELETION;
    }
    return h.owner().isPresent() ? LockCore.Kind.CLIENT : LockCore.Kind.OTHER;
  }
}
