package io.leasehold.queue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.Holder;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockService;
import io.leasehold.state.StateNames;
import java.time.Clock;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * Runner Jobs that run without having been admitted are suspended again: only the Job leasehold
 * admits under the lock may run. See {@link #suspend}.
 */
final class UnadmittedJobs {

  private static final ObjectMapper MAPPER = new ObjectMapper();

  private final KubernetesClient client;
  private final LockService locks;
  private final EventRecorder events;
  private final Clock clock;
  private final JobAdmission.WriteListener written;
  private final Announcements announcements;

  UnadmittedJobs(
      KubernetesClient client,
      LockService locks,
      EventRecorder events,
      Clock clock,
      JobAdmission.WriteListener written,
      Announcements announcements) {
    this.client = client;
    this.locks = locks;
    this.events = events;
    this.clock = clock;
    this.written = written;
    this.announcements = announcements;
  }

  /**
   * Labelled Jobs of the state that run without having been admitted (unsuspended by someone else:
   * a user's patch, a cluster without the chart's admission policies) are suspended again, as Kueue
   * suspends a workload it has not admitted, with a Warning on the Job and the state naming who
   * unsuspended it where the API server recorded it. They keep their place in line (a Job that was
   * waiting in it is not removed, since it waits again) and run in their turn. A Job the Lease
   * names (it holds the lock, or was admitted for the state and has not ended) is never suspended
   * here, whatever its annotations say. Each suspension is conditional on the version of the Job
   * looked at.
   *
   * @return {@code jobs} with each Job suspended here as it was written
   * @throws KubernetesClientException with code 409 when a Job changed since it was read
   */
  Collection<Job> suspend(
      TerraformState state, StateNames names, Collection<Job> jobs, List<Job> unadmitted) {
    Optional<Lease> lease = locks.existing(names);
    Optional<Holder> holder = lease.flatMap(l -> Holder.of(l, clock.instant()));
    Set<String> named = new HashSet<>();
    holder.flatMap(Holder::jobUid).ifPresent(named::add);
    lease.ifPresent(l -> LeaseLock.running(l).forEach(r -> named.add(r.uid())));
    Map<String, Job> suspended = new HashMap<>();
    for (Job job : unadmitted) {
      if (named.contains(uid(job))) {
        continue;
      }
      // Looked at as the API server has it now: the cache may be behind.
      Job fresh =
          client.batch().v1().jobs().inNamespace(names.namespace()).withName(name(job)).get();
      if (fresh == null
          || !uid(job).equals(uid(fresh))
          || RunnerJobs.admitted(fresh)
          || RunnerJobs.suspended(fresh)
          || RunnerJobs.finished(fresh)
          || fresh.getMetadata().getDeletionTimestamp() != null) {
        continue;
      }
      Optional<String> setBy = RunnerJobs.suspendSetBy(fresh);
      ObjectNode patch = MAPPER.createObjectNode();
      ObjectNode metadata = patch.putObject("metadata");
      metadata.put("uid", uid(fresh));
      metadata.put("resourceVersion", fresh.getMetadata().getResourceVersion());
      patch.putObject("spec").put("suspend", true);
      Job patched;
      try {
        patched =
            client
                .batch()
                .v1()
                .jobs()
                .inNamespace(names.namespace())
                .resource(fresh)
                .patch(PatchContext.of(PatchType.JSON_MERGE), patch.toString());
      } catch (KubernetesClientException e) {
        if (e.getCode() == 404 || (e.getCode() == 422 && JobPatches.mentionsUid(e))) {
          continue;
        }
        if (e.getCode() == 409) {
          throw e;
        }
        // Refused (RBAC, a policy): it stays listed as running outside the queue.
        if (announcements.once("unsuspendable/" + uid(job))) {
          events.warning(
              job,
              "SuspendRefused",
              "the Job runs without having been admitted for "
                  + names.name()
                  + " but the API server refused to suspend it ("
                  + e.getCode()
                  + "): "
                  + JobPatches.refusal(e));
        }
        continue;
      }
      written.jobWritten(state, patched, job);
      suspended.put(uid(patched), patched);
      announcements.again(uid(job));
      announcements.again("unsuspendable/" + uid(job));
      String message =
          "Job "
              + name(job)
              + " targets "
              + names.name()
              + " but runs without having been admitted: "
              + setBy
                  .map(m -> "spec.suspend was last set by " + m)
                  .orElse("the API server does not record who unsuspended it")
              + "; "
              + holder
                  .map(h -> "the lock is held by " + h.summary())
                  .orElse("the lock was not taken for it")
              + ". Only the Job leasehold admits may run: it is suspended again (the Job"
              + " controller deletes its pods) and waits in line, keeping its place, to run in its"
              + " turn";
      events.warning(job, "UnadmittedJobSuspended", message);
      events.warning(state, "UnadmittedJobSuspended", message);
    }
    if (suspended.isEmpty()) {
      return jobs;
    }
    List<Job> after = new ArrayList<>(jobs.size());
    for (Job j : jobs) {
      after.add(suspended.getOrDefault(uid(j), j));
    }
    return after;
  }

  private static String uid(Job job) {
    return job.getMetadata().getUid();
  }

  private static String name(Job job) {
    return job.getMetadata().getName();
  }
}
