package io.leasehold.operator;

import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.javaoperatorsdk.operator.api.config.informer.InformerEventSourceConfiguration;
import io.javaoperatorsdk.operator.api.reconciler.EventSourceContext;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.javaoperatorsdk.operator.processing.event.source.EventSource;
import io.javaoperatorsdk.operator.processing.event.source.informer.InformerEventSource;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.MetadataOnlySecrets;
import io.leasehold.queue.Arrivals;
import io.leasehold.queue.JobAdmission;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateOwnership;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * What the reconciler watches and which TerraformStates each change concerns: the lock Leases and
 * state Secrets (by their suffix label, and by name for a name collision), the runner Jobs (by the
 * state they are labelled and admitted for), and this replica becoming the leader, which looks at
 * every state anew. The watches also keep the shared caches current and tell the Warnings of {@link
 * ObjectWarnings}; a Job's deletion makes everything kept about it forgotten.
 */
final class StateWatches {

  private static final String TERRAFORM_SELECTOR = StateNames.LABEL_TFSTATE + "=true";

  private final SharedCaches caches;
  private final Leadership leadership;
  private final JobAdmission admission;
  private final Arrivals arrivals;
  private final ObjectWarnings warnings;
  private final QueueReport queueReport;
  private final NameCollisions collisions;
  private InformerEventSource<Job, TerraformState> jobs;
  private volatile boolean jobsSynced;

  StateWatches(
      SharedCaches caches,
      Leadership leadership,
      JobAdmission admission,
      Arrivals arrivals,
      ObjectWarnings warnings,
      QueueReport queueReport,
      NameCollisions collisions) {
    this.caches = caches;
    this.leadership = leadership;
    this.admission = admission;
    this.arrivals = arrivals;
    this.warnings = warnings;
    this.queueReport = queueReport;
    this.collisions = collisions;
  }

  /** The event sources of the reconciler: Leases, state Secrets, runner Jobs, and leading. */
  List<EventSource<?, TerraformState>> prepare(EventSourceContext<TerraformState> context) {
    // Terraform labels its Secrets and its Lease tfstate=true and tfstateSecretSuffix=<name>;
    // leasehold creates its Leases with the same labels, so one selector finds both.
    var leases =
        new InformerEventSource<>(
            InformerEventSourceConfiguration.from(Lease.class, TerraformState.class)
                .withName("leases")
                .withLabelSelector(TERRAFORM_SELECTOR)
                .withSecondaryToPrimaryMapper(this::statesOfObject)
                .build(),
            context) {
          @Override
          public void onAdd(Lease lease) {
            super.onAdd(lease);
            caches.leaseChanged(lease);
            warnings.warnIfUnreadable(lease);
          }

          @Override
          public void onUpdate(Lease before, Lease after) {
            super.onUpdate(before, after);
            caches.leaseChanged(after);
            warnings.warnIfUnreadable(after);
          }

          @Override
          public void onDelete(Lease lease, boolean unknown) {
            warnings.forget(lease.getMetadata().getUid());
            // Remembered first, so the reconcile this deletion triggers can recreate it as it was.
            caches.leaseDeleted(lease);
            super.onDelete(lease, unknown);
            caches.leaseChanged(lease);
          }
        };
    var secrets =
        new InformerEventSource<>(
            InformerEventSourceConfiguration.from(Secret.class, TerraformState.class)
                .withName("secrets")
                .withItemStore(new MetadataOnlySecrets())
                .withLabelSelector(TERRAFORM_SELECTOR)
                .withSecondaryToPrimaryMapper(this::statesOfObject)
                .build(),
            context);
    jobs =
        new InformerEventSource<>(
            InformerEventSourceConfiguration.from(Job.class, TerraformState.class)
                .withName("jobs")
                .withLabelSelector(RunnerJobs.STATE_LABEL)
                // A Job belongs to the state it is labelled for and, once admitted, to the state
                // it was admitted for, whatever its label says now.
                .withSecondaryToPrimaryMapper(StateWatches::statesOfJob)
                .withOnDeleteFilter(
                    (job, unknown) -> {
                      String uid = job.getMetadata().getUid();
                      admission.forget(uid);
                      arrivals.forget(uid);
                      queueReport.forgetJob(uid);
                      collisions.forgetJob(uid);
                      warnings.forget(uid);
                      return true;
                    })
                .build(),
            context) {
          @Override
          public void onAdd(Job job) {
            if (jobsSynced) {
              // Announced by the watch: its creation, in the order the API server accepted it.
              arrivals.created(job);
            }
            super.onAdd(job);
            warnings.checkStateExists(job, jobsSynced);
            warnings.warnIfUnreadable(job);
          }

          @Override
          public void onUpdate(Job before, Job after) {
            super.onUpdate(before, after);
            warnings.checkStateExists(after, jobsSynced);
            warnings.warnIfUnreadable(after);
          }

          @Override
          public synchronized void start() {
            super.start();
            jobsSynced = true;
          }
        };
    caches.bind(context.getPrimaryCache(), leases, secrets);
    // Each time this replica becomes the leader, every state is looked at anew: what changed while
    // it did not lead is served at once, not when the state next changes.
    var everyState = new ReconcileAllOnLeading(context.getPrimaryCache());
    leadership.onStartLeading(everyState::reconcileAll);
    return List.of(leases, secrets, jobs, everyState);
  }

  /** Tells the Jobs' cache of a Job this replica just wrote, so the next look sees it. */
  void jobWritten(TerraformState state, Job written, Job before) {
    jobs.handleRecentResourceUpdate(ResourceID.fromResource(state), written, before);
  }

  private static Set<ResourceID> statesOfJob(Job job) {
    Set<ResourceID> states = new HashSet<>();
    String ns = job.getMetadata().getNamespace();
    RunnerJobs.stateName(job).ifPresent(n -> states.add(new ResourceID(n, ns)));
    Map<String, String> a = job.getMetadata().getAnnotations();
    if (a != null && a.get(RunnerJobs.ADMITTED_FOR_ANNOTATION) != null) {
      states.add(new ResourceID(a.get(RunnerJobs.ADMITTED_FOR_ANNOTATION), ns));
    }
    return states;
  }

  /**
   * The TerraformStates a state Secret or lock Lease concerns: the one its suffix label names, and
   * any other of the namespace whose names map to it (a name collision, seen at once).
   */
  private Set<ResourceID> statesOfObject(HasMetadata o) {
    Map<String, String> labels = o.getMetadata().getLabels();
    String suffix = labels == null ? null : labels.get(StateNames.LABEL_SUFFIX);
    String namespace = o.getMetadata().getNamespace();
    Set<ResourceID> states = new HashSet<>();
    if (suffix != null) {
      states.add(new ResourceID(suffix, namespace));
    }
    String name = o.getMetadata().getName();
    if (caches.bound()) {
      for (TerraformState state : caches.states(namespace)) {
        if (state.getSpec() == null) {
          continue;
        }
        StateNames names = StateOwnership.namesOf(state);
        if (name.equals(names.leaseName()) || names.chunkIndex(name) >= 0) {
          states.add(ResourceID.fromResource(state));
        }
      }
    }
    return states;
  }
}
