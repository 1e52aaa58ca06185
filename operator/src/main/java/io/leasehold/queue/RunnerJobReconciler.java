package io.leasehold.queue;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.javaoperatorsdk.operator.api.config.informer.Informer;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.api.reconciler.ControllerConfiguration;
import io.javaoperatorsdk.operator.api.reconciler.Reconciler;
import io.javaoperatorsdk.operator.api.reconciler.UpdateControl;
import io.leasehold.api.TerraformState;
import io.leasehold.operator.EventRecorder;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Tells the owner of a runner Job that names a TerraformState which does not exist that the Job
 * waits for it. The Job stays suspended; the TerraformState's own reconciler admits it once the
 * state appears.
 */
@ControllerConfiguration(
    name = "runnerjob",
    informer = @Informer(labelSelector = RunnerJobs.STATE_LABEL))
public class RunnerJobReconciler implements Reconciler<Job> {

  private final KubernetesClient client;
  private final EventRecorder events;
  private final Set<String> warned = ConcurrentHashMap.newKeySet();

  public RunnerJobReconciler(KubernetesClient client, EventRecorder events) {
    this.client = client;
    this.events = events;
  }

  @Override
  public UpdateControl<Job> reconcile(Job job, Context<Job> context) {
    String uid = job.getMetadata().getUid();
    if (RunnerJobs.finished(job) || RunnerJobs.admitted(job)) {
      warned.remove(uid);
      return UpdateControl.noUpdate();
    }
    String state = RunnerJobs.stateName(job).orElse("");
    boolean exists =
        !state.isEmpty()
            && client
                    .resources(TerraformState.class)
                    .inNamespace(job.getMetadata().getNamespace())
                    .withName(state)
                    .get()
                != null;
    if (!exists && warned.add(uid)) {
      events.warning(
          job,
          "StateNotFound",
          "TerraformState '"
              + state
              + "' does not exist in namespace "
              + job.getMetadata().getNamespace()
              + "; the Job "
              + (RunnerJobs.suspended(job)
                  ? "waits suspended and is admitted once the TerraformState is created"
                  : "is not suspended, so it runs without the lock")
              + ". Check the "
              + RunnerJobs.STATE_LABEL
              + " label");
    }
    return UpdateControl.noUpdate();
  }
}
