package io.leasehold.queue;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;

/**
 * The runner Jobs of one state, as the cluster shows them: those leasehold admitted and that still
 * run, those waiting in order (creation time, then name), and those that started without being
 * admitted. Derived from the Jobs alone, so it survives operator restarts.
 */
public record RunQueue(List<Job> running, List<Job> waiting, List<Job> unserialized) {

  private static Instant createdAt(Job job) {
    String created = job.getMetadata().getCreationTimestamp();
    return created == null ? Instant.MAX : Instant.parse(created);
  }

  /**
   * Sorts by creation time, then name, parsing each creation time once: a queue of hundreds of Jobs
   * is sorted on every pass, and parsing inside the comparator dominated a handoff.
   */
  private static List<Job> sorted(List<Job> jobs) {
    record Keyed(Instant created, String name, Job job) {}
    return jobs.stream()
        .map(j -> new Keyed(createdAt(j), j.getMetadata().getName(), j))
        .sorted(Comparator.comparing(Keyed::created).thenComparing(Keyed::name))
        .map(Keyed::job)
        .toList();
  }

  public static RunQueue of(String stateName, Collection<Job> jobs) {
    List<Job> running = new ArrayList<>();
    List<Job> waiting = new ArrayList<>();
    List<Job> unserialized = new ArrayList<>();
    for (Job job : jobs) {
      if (!RunnerJobs.stateName(job).map(stateName::equals).orElse(false)
          || RunnerJobs.finished(job)
          || job.getMetadata().getDeletionTimestamp() != null) {
        continue;
      }
      if (RunnerJobs.admitted(job)) {
        running.add(job);
      } else if (RunnerJobs.suspended(job)) {
        waiting.add(job);
      } else {
        unserialized.add(job);
      }
    }
    return new RunQueue(sorted(running), sorted(waiting), sorted(unserialized));
  }

  public Optional<Job> head() {
    return waiting.isEmpty() ? Optional.empty() : Optional.of(waiting.get(0));
  }

  /** 1-based position of a waiting Job, or 0 when it is not waiting. */
  public int position(Job job) {
    for (int i = 0; i < waiting.size(); i++) {
      if (waiting.get(i).getMetadata().getUid().equals(job.getMetadata().getUid())) {
        return i + 1;
      }
    }
    return 0;
  }
}
