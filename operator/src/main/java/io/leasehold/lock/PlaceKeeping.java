package io.leasehold.lock;

import java.time.Duration;
import java.time.Instant;

/**
 * Which places in line may still wait: not those of clients whose grace period ran out, and none of
 * a replica that is not alive (crashed, stopped, or an earlier run of a restarted one), so that no
 * write to the lock keeps them and they never block a free lock.
 *
 * @param grace how long a client whose request ended keeps its place in line
 * @param liveness which replicas are alive
 */
record PlaceKeeping(Duration grace, ReplicaLiveness liveness) {

  /** The places of {@code line} that may still wait at {@code now}. */
  Line kept(Line line, Instant now) {
    return line.pruned(now, grace).filter(t -> !t.isClient() || liveness.alive(t.replica()));
  }
}
