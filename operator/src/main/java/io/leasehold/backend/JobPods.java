package io.leasehold.backend;

/** Whether a requester is a pod of a runner Job, so its terraform can lock under the Job's lock. */
@FunctionalInterface
public interface JobPods {

  /** Never: where requests are not authenticated, no request can speak for a Job. */
  JobPods NONE = (who, namespace, jobUid) -> false;

  boolean isPodOfJob(Requester who, String namespace, String jobUid);
}
