package io.leasehold.queue;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.leasehold.kube.TolerantSerialization;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;

/**
 * The runner Jobs of one state, as the cluster shows them: those admitted for it that still run,
 * those waiting in order of arrival, and those that started without being admitted. Derived from
 * the Jobs alone; the line on the lock Lease keeps the order once a Job has joined it. A Job
 * skipped for a newer one of its run group ({@link RunGroups}) is in none of them.
 */
public record RunQueue(List<Job> running, List<Job> waiting, List<Job> unserialized) {

  /** Sorts by order of arrival, computing each Job's key once. */
  private static List<Job> sorted(List<Job> jobs, Arrivals arrivals) {
    record Keyed(Arrivals.Key key, Job job) {}
    return jobs.stream()
        .map(j -> new Keyed(arrivals.key(j), j))
        .sorted(Comparator.comparing(Keyed::key))
        .map(Keyed::job)
        .toList();
  }

  public static RunQueue of(String stateName, Collection<Job> jobs, Arrivals arrivals) {
    List<Job> running = new ArrayList<>();
    List<Job> waiting = new ArrayList<>();
    List<Job> unserialized = new ArrayList<>();
    for (Job job : jobs) {
      if (RunnerJobs.finished(job) || job.getMetadata().getDeletionTimestamp() != null) {
        continue;
      }
      if (RunnerJobs.admitted(job)) {
        // An admitted Job belongs to the state it was admitted for, whatever its label says now.
        if (RunnerJobs.admittedFor(job, stateName)) {
          running.add(job);
        }
        continue;
      }
      if (!RunnerJobs.stateName(job).map(stateName::equals).orElse(false)) {
        continue;
      }
      if (TolerantSerialization.unreadable(job).isPresent()) {
        // What it asks to run is not known: it waits out of the line until it is corrected.
        continue;
      }
      if (RunnerJobs.cancelled(job)) {
        // Cancelled while it waited: it stays suspended and out of the line for good.
        continue;
      }
      if (RunnerJobs.suspended(job)) {
        if (!RunGroups.skipped(job)) {
          // A Job skipped for a newer one of its run group waits no more.
          waiting.add(job);
        }
      } else {
        unserialized.add(job);
      }
    }
    return new RunQueue(
        sorted(running, arrivals), sorted(waiting, arrivals), sorted(unserialized, arrivals));
  }

  public Optional<Job> head() {
    return waiting.isEmpty() ? Optional.empty() : Optional.of(waiting.get(0));
  }

  public Optional<Job> waitingJob(String uid) {
    return waiting.stream().filter(j -> uid.equals(j.getMetadata().getUid())).findFirst();
  }
}
