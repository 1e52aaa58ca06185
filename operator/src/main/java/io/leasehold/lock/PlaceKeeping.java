package io.leasehold.lock;

import java.time.Duration;
import java.time.Instant;

/**
 * Which places in line may still wait: not those of clients whose grace period ran out. A place of
 * a replica that is not alive (crashed, stopped, or an earlier run of a restarted one) claims a
 * request nobody holds any more: it is away from then on, so it never blocks a free lock, and kept
 * for the grace period like any client that left, so a client that retries on another replica
 * (Terraform does, with the same lock ID) still finds its place.
 *
 * @param grace how long a client whose request ended keeps its place in line
 * @param liveness which replicas are alive
 */
record PlaceKeeping(Duration grace, ReplicaLiveness liveness) {

  /** The places of {@code line} that may still wait at {@code now}. */
  Line kept(Line line, Instant now) {
    Line kept = line.pruned(now, grace);
    for (Ticket t : kept.tickets()) {
      if (t.isClient() && t.gone() == null && !liveness.alive(t.replica())) {
        kept = kept.replace(t.goneAt(now));
      }
    }
    return kept;
  }

  /**
   * {@code line} with room for one more client when it is full: without the place that has been
   * away longest among those of replicas that are not alive; empty when there is none to drop.
   */
  java.util.Optional<Line> roomFor(Line line) {
    return line.tickets().stream()
        .filter(t -> t.isClient() && t.gone() != null && !liveness.alive(t.replica()))
        .min(java.util.Comparator.comparing(Ticket::gone))
        .map(t -> line.without(t.id()));
  }
}
