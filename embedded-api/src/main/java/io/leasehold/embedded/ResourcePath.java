package io.leasehold.embedded;

import java.util.Map;
import java.util.Optional;

/** The parts of a Kubernetes API resource URL that the embedded API server needs. */
record ResourcePath(String group, String version, String plural, boolean isSubresource) {

  /** Kinds of the built-in resources that leasehold, Terraform and kubectl write. */
  static final Map<String, String> BUILT_IN =
      Map.ofEntries(
          Map.entry("/namespaces", "Namespace"),
          Map.entry("/secrets", "Secret"),
          Map.entry("/configmaps", "ConfigMap"),
          Map.entry("/serviceaccounts", "ServiceAccount"),
          Map.entry("/pods", "Pod"),
          Map.entry("/services", "Service"),
          Map.entry("/events", "Event"),
          Map.entry("coordination.k8s.io/leases", "Lease"),
          Map.entry("batch/jobs", "Job"),
          Map.entry("batch/cronjobs", "CronJob"),
          Map.entry("events.k8s.io/events", "Event"),
          Map.entry("rbac.authorization.k8s.io/roles", "Role"),
          Map.entry("rbac.authorization.k8s.io/rolebindings", "RoleBinding"),
          Map.entry("rbac.authorization.k8s.io/clusterroles", "ClusterRole"),
          Map.entry("rbac.authorization.k8s.io/clusterrolebindings", "ClusterRoleBinding"),
          Map.entry("apiextensions.k8s.io/customresourcedefinitions", "CustomResourceDefinition"),
          Map.entry(
              "admissionregistration.k8s.io/validatingadmissionpolicies",
              "ValidatingAdmissionPolicy"),
          Map.entry(
              "admissionregistration.k8s.io/validatingadmissionpolicybindings",
              "ValidatingAdmissionPolicyBinding"),
          Map.entry(
              "admissionregistration.k8s.io/mutatingadmissionpolicies", "MutatingAdmissionPolicy"),
          Map.entry(
              "admissionregistration.k8s.io/mutatingadmissionpolicybindings",
              "MutatingAdmissionPolicyBinding"));

  /** Parses {@code /api/v1/...} and {@code /apis/GROUP/VERSION/...} resource paths. */
  static Optional<ResourcePath> parse(String rawPath) {
    return ApiRequest.parse(rawPath)
        .map(r -> new ResourcePath(r.group(), r.version(), r.plural(), r.subresource() != null));
  }

  String apiVersion() {
    return group.isEmpty() ? version : group + "/" + version;
  }

  String groupResource() {
    return group + "/" + plural;
  }

  boolean isCustomResourceDefinitions() {
    return "apiextensions.k8s.io".equals(group) && "customresourcedefinitions".equals(plural);
  }
}
