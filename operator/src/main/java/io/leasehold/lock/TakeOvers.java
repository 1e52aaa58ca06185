package io.leasehold.lock;

import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Whether a lock whose holder stopped renewing it may be taken over. A runner Job's lock is taken
 * over only once its Lease went unrenewed for its duration and the Job has ended (read from the
 * API), so a leader that stalls or stops renewing never lets a second run start beside the first.
 * Locks of clients and of stock Terraform never expire.
 */
final class TakeOvers {

  private static final Logger LOG = LoggerFactory.getLogger(TakeOvers.class);

  private final JobLiveness jobs;

  /**
   * @param jobs tells whether the runner Job a lapsed lock is held for still runs
   */
  TakeOvers(JobLiveness jobs) {
    this.jobs = jobs;
  }

  /**
   * Whether lock {@code h} (of a state in {@code namespace}) may be taken over now. A runner Job's
   * lock: only once its Lease went unrenewed for its duration (while the leader renews it, the
   * leader hands it on) and the Job has ended, read from the API whatever the renew time says:
   * gone, completed or failed, and none of its pods still running. Should that not be readable the
   * lock is not taken over. Any other lock leasehold vouches for: once it went unrenewed for its
   * duration. Locks of clients and of stock Terraform, and an unreadable Lease: never.
   */
  boolean mayTakeOver(String namespace, Holder h) {
    if (!h.expired()) {
      return false;
    }
    Optional<String> jobUid = h.jobUid();
    if (jobUid.isEmpty()) {
      return true;
    }
    String job = LeaseLock.jobName(h.id());
    try {
      if (!jobs.mayRun(namespace, job, jobUid.get())) {
        return true;
      }
      LOG.debug(
          "{}: lock {} went unrenewed past its duration but runner Job {} still runs; it is not"
              + " taken over",
          namespace,
          h.id(),
          job);
      return false;
    } catch (RuntimeException e) {
      LOG.warn(
          "{}: lock {} went unrenewed past its duration but whether runner Job {} still runs cannot"
              + " be read ({}); it is not taken over",
          namespace,
          h.id(),
          job,
          e.getMessage());
      return false;
    }
  }
}
