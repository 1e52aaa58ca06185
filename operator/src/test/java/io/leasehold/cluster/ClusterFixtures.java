package io.leasehold.cluster;

import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.batch.v1.JobBuilder;
import io.fabric8.kubernetes.api.model.rbac.PolicyRuleBuilder;
import io.fabric8.kubernetes.api.model.rbac.RoleBindingBuilder;
import io.fabric8.kubernetes.api.model.rbac.RoleBuilder;
import io.fabric8.kubernetes.api.model.rbac.SubjectBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.TerraformState;
import io.leasehold.api.TerraformStateSpec;
import io.leasehold.api.TerraformStateStatus;
import io.leasehold.queue.RunnerJobs;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

/** TerraformStates, runner Jobs and their pods on the real cluster. */
public final class ClusterFixtures {

  /** A pod of a Job with this annotation keeps running on the fake node until it is removed. */
  public static final String HOLD = "leasehold.io/test-hold";

  private ClusterFixtures() {}

  /** A TerraformState in workspace {@code default}. */
  public static TerraformState state(String namespace, String name) {
    TerraformState state = new TerraformState();
    state.getMetadata().setName(name);
    state.getMetadata().setNamespace(namespace);
    state.setSpec(new TerraformStateSpec());
    return state;
  }

  /** {@link ChartInstall#awaitCrd}, for callers that may not throw InterruptedException. */
  public static void awaitCrdQuietly(KubernetesClient client) {
    try {
      ChartInstall.awaitCrd(client);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /** Waits until the operator reports the state Ready. */
  public static void awaitReady(KubernetesClient client, String namespace, String name) {
    await()
        .atMost(Duration.ofSeconds(60))
        .ignoreExceptions()
        .until(
            () -> {
              TerraformStateStatus s = status(client, namespace, name);
              return s != null
                  && s.getConditions().stream()
                      .anyMatch(c -> "Ready".equals(c.getType()) && "True".equals(c.getStatus()));
            });
  }

  /** The state's status as last written (null before the operator wrote one). */
  public static TerraformStateStatus status(
      KubernetesClient client, String namespace, String name) {
    TerraformState state =
        client.resources(TerraformState.class).inNamespace(namespace).withName(name).get();
    return state == null ? null : state.getStatus();
  }

  /**
   * A runner Job as a user writes it, without {@code spec.suspend} (the chart's mutating policy
   * sets it): ServiceAccount {@link ChartInstall#RUNNER}, no API-server token; with {@code hold},
   * its pod runs until {@link #release}.
   */
  public static Job runnerJob(String namespace, String name, String state, boolean hold) {
    JobBuilder job =
        new JobBuilder()
            .withNewMetadata()
            .withName(name)
            .withNamespace(namespace)
            .addToLabels(RunnerJobs.STATE_LABEL, state)
            .endMetadata()
            .withNewSpec()
            .withBackoffLimit(0)
            .withNewTemplate()
            .withNewMetadata()
            .endMetadata()
            .withNewSpec()
            .withServiceAccountName(ChartInstall.RUNNER)
            .withAutomountServiceAccountToken(false)
            .withRestartPolicy("Never")
            .addNewContainer()
            .withName("terraform")
            .withImage("hashicorp/terraform:1.11")
            .withArgs("apply", "-auto-approve")
            .endContainer()
            .endSpec()
            .endTemplate()
            .endSpec();
    if (hold) {
      job.editSpec()
          .editTemplate()
          .editMetadata()
          .addToAnnotations(HOLD, "true")
          .endMetadata()
          .endTemplate()
          .endSpec();
    }
    return job.build();
  }

  /** The pods of a Job (by the Job controller's {@code job-name} label). */
  public static List<Pod> pods(KubernetesClient client, String namespace, String job) {
    return client.pods().inNamespace(namespace).withLabel("job-name", job).list().getItems();
  }

  /** Waits until a pod of the Job runs on the fake node, and returns it. */
  public static Pod awaitRunningPod(
      KubernetesClient client, String namespace, String job, Duration timeout) {
    AtomicReference<Pod> found = new AtomicReference<>();
    await()
        .atMost(timeout)
        .ignoreExceptions()
        .until(
            () -> {
              for (Pod p : pods(client, namespace, job)) {
                if (p.getStatus() != null
                    && "Running".equals(p.getStatus().getPhase())
                    && p.getMetadata().getDeletionTimestamp() == null) {
                  found.set(p);
                  return true;
                }
              }
              return false;
            });
    return found.get();
  }

  /** Lets a held pod finish: kwok completes it (exit 0) and the Job controller ends the Job. */
  public static void release(KubernetesClient client, Pod pod) {
    client
        .pods()
        .inNamespace(pod.getMetadata().getNamespace())
        .withName(pod.getMetadata().getName())
        .patch(
            PatchContext.of(PatchType.JSON_MERGE),
            "{\"metadata\":{\"annotations\":{\"" + HOLD + "\":null}}}");
  }

  /**
   * A ServiceAccount {@code name} of {@code namespace} granted {@code verbs} on
   * terraformstates/state (the backend's permissions, as a user's Role would grant them), with a
   * Role and RoleBinding of the same name; returns a token for it with the audience leasehold.
   */
  public static String grantState(
      RealCluster cluster, String namespace, String name, Duration valid, String... verbs) {
    KubernetesClient admin = cluster.admin();
    cluster.serviceAccount(namespace, name);
    admin
        .rbac()
        .roles()
        .inNamespace(namespace)
        .resource(
            new RoleBuilder()
                .withNewMetadata()
                .withName(name)
                .withNamespace(namespace)
                .endMetadata()
                .withRules(
                    new PolicyRuleBuilder()
                        .withApiGroups("leasehold.io")
                        .withResources("terraformstates/state")
                        .withVerbs(verbs)
                        .build())
                .build())
        .serverSideApply();
    admin
        .rbac()
        .roleBindings()
        .inNamespace(namespace)
        .resource(
            new RoleBindingBuilder()
                .withNewMetadata()
                .withName(name)
                .withNamespace(namespace)
                .endMetadata()
                .withNewRoleRef("rbac.authorization.k8s.io", "Role", name)
                .withSubjects(
                    new SubjectBuilder()
                        .withKind("ServiceAccount")
                        .withName(name)
                        .withNamespace(namespace)
                        .build())
                .build())
        .serverSideApply();
    return cluster.token(namespace, name, "leasehold", valid);
  }
}
