package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * What the embedded API serves, as discovery describes it: the built-in resources leasehold,
 * Terraform and kubectl use, and the resources of every stored CustomResourceDefinition.
 */
final class ApiResources {

  static final List<String> ALL_VERBS =
      List.of("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch");
  static final List<String> SUBRESOURCE_VERBS = List.of("get", "patch", "update");

  /** One resource of one group-version. */
  record Resource(
      String group,
      String version,
      String plural,
      String singular,
      String kind,
      boolean namespaced,
      List<String> shortNames,
      List<String> categories,
      List<String> verbs,
      List<String> subresources,
      JsonNode crd) {

    String groupVersion() {
      return group.isEmpty() ? version : group + "/" + version;
    }

    boolean isCustom() {
      return crd != null;
    }

    /** A review (TokenReview, SubjectAccessReview ...): created only, answered, never stored. */
    boolean isReview() {
      return verbs.equals(List.of("create"));
    }
  }

  /** A group-version and its resources, in the order discovery lists them. */
  record GroupVersion(String group, String version, List<Resource> resources) {
    String groupVersion() {
      return group.isEmpty() ? version : group + "/" + version;
    }
  }

  static final List<Resource> BUILT_IN =
      List.of(
          builtIn("", "namespaces", "Namespace", false, List.of("ns"), List.of(), "status"),
          builtIn("", "configmaps", "ConfigMap", true, List.of("cm"), List.of()),
          builtIn("", "secrets", "Secret", true, List.of(), List.of()),
          builtIn("", "serviceaccounts", "ServiceAccount", true, List.of("sa"), List.of()),
          builtIn("", "pods", "Pod", true, List.of("po"), List.of("all"), "status"),
          builtIn("", "services", "Service", true, List.of("svc"), List.of("all"), "status"),
          builtIn("", "events", "Event", true, List.of("ev"), List.of()),
          builtIn(
              "apps",
              "deployments",
              "Deployment",
              true,
              List.of("deploy"),
              List.of("all"),
              "status"),
          builtIn("batch", "jobs", "Job", true, List.of(), List.of("all"), "status"),
          builtIn("batch", "cronjobs", "CronJob", true, List.of("cj"), List.of("all"), "status"),
          builtIn("coordination.k8s.io", "leases", "Lease", true, List.of(), List.of()),
          builtIn("events.k8s.io", "events", "Event", true, List.of("ev"), List.of()),
          builtIn("rbac.authorization.k8s.io", "roles", "Role", true, List.of(), List.of()),
          builtIn(
              "rbac.authorization.k8s.io",
              "rolebindings",
              "RoleBinding",
              true,
              List.of(),
              List.of()),
          builtIn(
              "rbac.authorization.k8s.io",
              "clusterroles",
              "ClusterRole",
              false,
              List.of(),
              List.of()),
          builtIn(
              "rbac.authorization.k8s.io",
              "clusterrolebindings",
              "ClusterRoleBinding",
              false,
              List.of(),
              List.of()),
          builtIn(
              "apiextensions.k8s.io",
              "customresourcedefinitions",
              "CustomResourceDefinition",
              false,
              List.of("crd", "crds"),
              List.of(),
              "status"),
          admission("validatingadmissionpolicies", "ValidatingAdmissionPolicy", "v1", "status"),
          admission("validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", "v1"),
          admission("mutatingadmissionpolicies", "MutatingAdmissionPolicy", "v1"),
          admission("mutatingadmissionpolicybindings", "MutatingAdmissionPolicyBinding", "v1"),
          // The beta versions the chart can be made to render (admissionPolicy.*.apiVersion), for
          // clusters of Kubernetes 1.34 and 1.35 with the beta enabled.
          admission(
              "validatingadmissionpolicies", "ValidatingAdmissionPolicy", "v1beta1", "status"),
          admission(
              "validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", "v1beta1"),
          admission("mutatingadmissionpolicies", "MutatingAdmissionPolicy", "v1beta1"),
          admission("mutatingadmissionpolicybindings", "MutatingAdmissionPolicyBinding", "v1beta1"),
          review("authentication.k8s.io", "tokenreviews", "TokenReview"),
          review("authorization.k8s.io", "subjectaccessreviews", "SubjectAccessReview"),
          review("authorization.k8s.io", "selfsubjectaccessreviews", "SelfSubjectAccessReview"),
          review("authorization.k8s.io", "selfsubjectrulesreviews", "SelfSubjectRulesReview"));

  /** The groups of the built-in resources (not of custom ones). */
  static final java.util.Set<String> BUILT_IN_GROUPS =
      BUILT_IN.stream().map(Resource::group).collect(java.util.stream.Collectors.toSet());

  private static Resource builtIn(
      String group,
      String plural,
      String kind,
      boolean namespaced,
      List<String> shortNames,
      List<String> categories,
      String... subresources) {
    return resource(
        group, "v1", plural, kind, namespaced, shortNames, categories, ALL_VERBS, subresources);
  }

  private static Resource admission(
      String plural, String kind, String version, String... subresources) {
    return resource(
        "admissionregistration.k8s.io",
        version,
        plural,
        kind,
        false,
        List.of(),
        List.of("api-extensions"),
        ALL_VERBS,
        subresources);
  }

  /** A review: created to get an answer, never stored. */
  private static Resource review(String group, String plural, String kind) {
    return resource(
        group, "v1", plural, kind, false, List.of(), List.of(), List.of("create"), new String[0]);
  }

  private static Resource resource(
      String group,
      String version,
      String plural,
      String kind,
      boolean namespaced,
      List<String> shortNames,
      List<String> categories,
      List<String> verbs,
      String[] subresources) {
    return new Resource(
        group,
        version,
        plural,
        kind.toLowerCase(java.util.Locale.ROOT),
        kind,
        namespaced,
        shortNames,
        categories,
        verbs,
        List.of(subresources),
        null);
  }

  private final List<Resource> resources;

  private ApiResources(List<Resource> resources) {
    this.resources = resources;
  }

  /** The built-in resources and those of the given CRDs (as stored: JSON objects). */
  static ApiResources of(Iterable<JsonNode> crds) {
    List<Resource> all = new ArrayList<>(BUILT_IN);
    for (JsonNode crd : crds) {
      all.addAll(fromCrd(crd));
    }
    return new ApiResources(all);
  }

  static List<Resource> fromCrd(JsonNode crd) {
    JsonNode spec = crd.path("spec");
    JsonNode names = spec.path("names");
    String group = spec.path("group").asText("");
    String plural = names.path("plural").asText("");
    String kind = names.path("kind").asText("");
    if (group.isEmpty() || plural.isEmpty() || kind.isEmpty()) {
      return List.of();
    }
    List<Resource> out = new ArrayList<>();
    for (JsonNode version : spec.path("versions")) {
      if (!version.path("served").asBoolean(true)) {
        continue;
      }
      List<String> subresources = new ArrayList<>();
      version.path("subresources").fieldNames().forEachRemaining(subresources::add);
      out.add(
          new Resource(
              group,
              version.path("name").asText(),
              plural,
              names.path("singular").asText(kind.toLowerCase(java.util.Locale.ROOT)),
              kind,
              !"Cluster".equals(spec.path("scope").asText()),
              strings(names.path("shortNames")),
              strings(names.path("categories")),
              ALL_VERBS,
              subresources,
              crd));
    }
    return out;
  }

  private static List<String> strings(JsonNode array) {
    List<String> out = new ArrayList<>();
    array.forEach(n -> out.add(n.asText()));
    return out;
  }

  /** The group-versions, core first, then groups in the order they were first listed. */
  List<GroupVersion> groupVersions() {
    Map<String, List<Resource>> byGroupVersion = new LinkedHashMap<>();
    for (Resource r : resources) {
      byGroupVersion.computeIfAbsent(r.groupVersion(), k -> new ArrayList<>()).add(r);
    }
    List<GroupVersion> out = new ArrayList<>();
    byGroupVersion.forEach(
        (gv, list) -> out.add(new GroupVersion(list.get(0).group(), list.get(0).version(), list)));
    return out;
  }

  Optional<GroupVersion> groupVersion(String group, String version) {
    return groupVersions().stream()
        .filter(gv -> gv.group().equals(group) && gv.version().equals(version))
        .findFirst();
  }

  Optional<Resource> find(String group, String version, String plural) {
    return resources.stream()
        .filter(
            r ->
                r.group().equals(group)
                    && r.plural().equals(plural)
                    && (version == null || r.version().equals(version)))
        .findFirst();
  }
}
