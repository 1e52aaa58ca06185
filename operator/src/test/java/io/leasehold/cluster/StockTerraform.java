package io.leasehold.cluster;

import io.fabric8.kubernetes.api.model.rbac.PolicyRuleBuilder;
import io.fabric8.kubernetes.api.model.rbac.RoleBindingBuilder;
import io.fabric8.kubernetes.api.model.rbac.RoleBuilder;
import io.fabric8.kubernetes.api.model.rbac.SubjectBuilder;
import java.nio.file.Path;
import java.time.Duration;

/**
 * Stock Terraform's {@code kubernetes} backend as a user outside leasehold runs it: its own
 * ServiceAccount, granted on Secrets and Leases what that backend needs (and nothing of leasehold),
 * a kubeconfig with that account's API-server token, and the backend block naming the same state.
 */
public final class StockTerraform {

  private StockTerraform() {}

  /**
   * Creates ServiceAccount {@code name} in {@code namespace} with a Role for Terraform's kubernetes
   * backend (state Secrets: get, list, create, update, delete; lock Leases: get, create, update),
   * and writes a kubeconfig for it to {@code file}.
   */
  public static Path kubeconfig(RealCluster cluster, String namespace, String name, Path file) {
    cluster.serviceAccount(namespace, name);
    cluster
        .admin()
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
                        .withApiGroups("")
                        .withResources("secrets")
                        .withVerbs("get", "list", "create", "update", "delete")
                        .build(),
                    new PolicyRuleBuilder()
                        .withApiGroups("coordination.k8s.io")
                        .withResources("leases")
                        .withVerbs("get", "create", "update")
                        .build())
                .build())
        .serverSideApply();
    cluster
        .admin()
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
    String token =
        cluster.token(namespace, name, ClusterOperator.API_AUDIENCE, Duration.ofMinutes(30));
    return cluster.kubeconfigWithToken(file, token, namespace);
  }

  /** The {@code kubernetes} backend block for TerraformState {@code name} (workspace default). */
  public static String backend(Path kubeconfig, String namespace, String name) {
    return """
        terraform {
          backend "kubernetes" {
            secret_suffix = "%s"
            namespace     = "%s"
            config_path   = "%s"
          }
        }
        """
        .formatted(name, namespace, kubeconfig.toAbsolutePath());
  }
}
