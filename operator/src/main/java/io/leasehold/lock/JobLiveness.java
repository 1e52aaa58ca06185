package io.leasehold.lock;

import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobCondition;
import io.fabric8.kubernetes.client.KubernetesClient;

/**
 * Whether the runner Job a lock is held for may still run. A runner Job's lock is taken over only
 * once the Job has ended, whatever its Lease's renew time says: a leader that stalls, or stops
 * renewing, must never let a second run start beside the first.
 */
@FunctionalInterface
public interface JobLiveness {

  /** The label the Job controller puts on a Job's pods: the Job's UID. */
  String CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid";

  /**
   * Whether Job {@code name} with UID {@code uid} may still run: it exists with that UID and has
   * neither completed nor failed, or one of its pods has not ended (pending, running or
   * terminating). Blocking.
   *
   * @throws RuntimeException when that cannot be told (the API cannot be read); the lock is then
   *     not taken over
   */
  boolean mayRun(String namespace, String name, String uid);

  /** Reads the Job and its pods from the API server. */
  static JobLiveness of(KubernetesClient client) {
    return (namespace, name, uid) -> {
      Job job = client.batch().v1().jobs().inNamespace(namespace).withName(name).get();
      if (job != null && uid.equals(job.getMetadata().getUid()) && !finished(job)) {
        return true;
      }
      // Gone (or replaced by a Job of the same name), completed or failed: it has ended once none
      // of its pods still runs, since its last write may still come.
      return podsRunning(client, namespace, uid);
    };
  }

  /** Complete or Failed: the Job will run no more pods. */
  static boolean finished(Job job) {
    if (job.getStatus() == null || job.getStatus().getConditions() == null) {
      return false;
    }
    for (JobCondition c : job.getStatus().getConditions()) {
      if (("Complete".equals(c.getType()) || "Failed".equals(c.getType()))
          && "True".equals(c.getStatus())) {
        return true;
      }
    }
    return false;
  }

  /**
   * Whether any pod of Job {@code uid} has not ended (pending, running, or terminating), found by
   * the label the Job controller puts on them.
   */
  static boolean podsRunning(KubernetesClient client, String namespace, String uid) {
    return client
        .pods()
        .inNamespace(namespace)
        .withLabel(CONTROLLER_UID_LABEL, uid)
        .list()
        .getItems()
        .stream()
        .anyMatch(JobLiveness::notEnded);
  }

  /**
   * Whether any pod of {@code job} (finished, as its status says) has not ended. Where the Job
   * controller counts its terminating pods ({@code status.terminating}, set by clusters whose Job
   * controller tracks pod termination, as Kubernetes does since 1.29 by default), a finished Job
   * with no active, ready or terminating pod has none left, and the pods are not listed; elsewhere
   * they are.
   */
  static boolean podsRunning(KubernetesClient client, Job job) {
    var status = job.getStatus();
    if (status != null
        && status.getTerminating() != null
        && finished(job)
        && zero(status.getActive())
        && zero(status.getReady())
        && zero(status.getTerminating())) {
      return false;
    }
    return podsRunning(client, job.getMetadata().getNamespace(), job.getMetadata().getUid());
  }

  private static boolean zero(Integer n) {
    return n == null || n == 0;
  }

  private static boolean notEnded(Pod p) {
    return p.getStatus() == null
        || !("Succeeded".equals(p.getStatus().getPhase())
            || "Failed".equals(p.getStatus().getPhase()));
  }
}
