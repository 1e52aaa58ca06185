package io.leasehold.queue;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.Holder;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.Ticket;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * What the queue tells a runner Job once: its place in line (the Queued Event), and the notes kept
 * by key for the other once-only Events of {@link JobAdmission} (a Job running without the lock,
 * one that could not be suspended, one whose state is being deleted). A note is dropped when what
 * it told changed (the Job was admitted, suspended, requeued), so the next change is told again.
 */
final class Announcements {

  private final EventRecorder events;

  /** Keys of what was told: a Job's UID for its place, else a kind and the UID ({@code stray/}). */
  private final Set<String> announced = ConcurrentHashMap.newKeySet();

  Announcements(EventRecorder events) {
    this.events = events;
  }

  /** Whether {@code key} is told now: true the first time, false until it is dropped again. */
  boolean once(String key) {
    return announced.add(key);
  }

  /** Drops note {@code key}, so it is told again at the next occasion. */
  void again(String key) {
    announced.remove(key);
  }

  /** Tells each waiting Job, once, where it stands in line and behind whom. */
  void announce(TerraformState state, RunQueue queue, Lease lease) {
    if (queue.waiting().isEmpty()) {
      return;
    }
    String holder = Holder.of(lease).map(Holder::summary).orElse(null);
    List<Ticket> line = LeaseLock.line(lease).tickets();
    for (Job job : queue.waiting()) {
      if (!once(uid(job))) {
        continue;
      }
      int index = -1;
      for (int i = 0; i < line.size(); i++) {
        if (line.get(i).id().equals(uid(job))) {
          index = i;
          break;
        }
      }
      String behind;
      if (index > 0) {
        Ticket before = line.get(index - 1);
        behind = before.isJob() ? "behind Job " + before.who() : "behind client " + before.who();
      } else {
        behind = holder != null ? "behind the lock holder " + holder : "at the head";
      }
      events.normal(
          job,
          "Queued",
          "waiting for the lock on "
              + state.getMetadata().getName()
              + (index >= 0 ? " at position " + (index + 1) : "")
              + ", "
              + behind);
    }
  }

  /** Forgets a Job that is gone, so memory does not grow with Jobs that come and go. */
  void forget(String uid) {
    announced.remove(uid);
    announced.remove("stray/" + uid);
    announced.remove("deleting/" + uid);
    announced.remove("run-label/" + uid);
  }

  private static String uid(Job job) {
    return job.getMetadata().getUid();
  }

  private static String name(Job job) {
    return job.getMetadata().getName();
  }
}
