package io.leasehold.queue;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import java.time.Instant;
import java.util.Comparator;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The order in which runner Jobs arrived. Creation timestamps have second precision, so Jobs
 * created within one second (generateName, CI bursts) are told apart by the order in which the API
 * server's watch announced their creation, which is the order it accepted them. Jobs that were
 * already there when the operator started are told apart, within a second, by their resource
 * versions when those are numbers (etcd's revisions are), then by name.
 *
 * <p>Once a Job is in its state's line (kept on the lock Lease), that place is what counts; this
 * order only decides where newly seen Jobs join.
 */
public final class Arrivals {

  private final AtomicLong sequence = new AtomicLong();
  private final Map<String, Long> seen = new ConcurrentHashMap<>();

  /** A Job's creation was announced by the watch (not found in the initial list). */
  public void created(Job job) {
    seen.putIfAbsent(job.getMetadata().getUid(), sequence.incrementAndGet());
  }

  /** A Job is gone: forget it. */
  public void forget(String uid) {
    seen.remove(uid);
  }

  /**
   * Where a Job stands in order of arrival: creation time; within a second, Jobs there before the
   * operator saw them first, then the watch's order, then resource version, then name. Computed
   * once per Job and sort, so the order is total even while new Jobs are announced.
   */
  public Key key(Job job) {
    return new Key(
        createdAt(job),
        seen.getOrDefault(job.getMetadata().getUid(), -1L),
        resourceVersion(job),
        job.getMetadata().getName());
  }

  /** A Job's place in order of arrival. */
  public record Key(Instant created, long watched, long resourceVersion, String name)
      implements Comparable<Key> {
    private static final Comparator<Key> ORDER =
        Comparator.comparing(Key::created)
            .thenComparingLong(Key::watched)
            .thenComparingLong(Key::resourceVersion)
            .thenComparing(Key::name);

    @Override
    public int compareTo(Key other) {
      return ORDER.compare(this, other);
    }
  }

  private static long resourceVersion(Job job) {
    try {
      return Long.parseLong(job.getMetadata().getResourceVersion());
    } catch (NumberFormatException | NullPointerException e) {
      return Long.MAX_VALUE;
    }
  }

  private static Instant createdAt(Job job) {
    String created = job.getMetadata().getCreationTimestamp();
    try {
      return created == null ? Instant.MAX : Instant.parse(created);
    } catch (RuntimeException e) {
      return Instant.MAX;
    }
  }
}
