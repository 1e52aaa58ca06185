package io.leasehold.chart;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.tuple;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.marcnuri.helm.Helm;
import com.marcnuri.helm.LintResult;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerPort;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.PodSecurityContext;
import io.fabric8.kubernetes.api.model.PodSpec;
import io.fabric8.kubernetes.api.model.Probe;
import io.fabric8.kubernetes.api.model.SecurityContext;
import io.fabric8.kubernetes.api.model.WeightedPodAffinityTerm;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.rbac.PolicyRule;
import io.fabric8.kubernetes.api.model.rbac.Subject;
import io.fabric8.kubernetes.client.utils.KubernetesSerialization;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The Helm chart under {@code charts/leasehold}, rendered with the real Helm 3 (helm-java) and
 * checked object by object: the RBAC it grants against the API calls the code makes, the
 * Deployment's wiring and hardening, the optional objects, and the values schema.
 */
class HelmChartTest {

  private static final Path ROOT =
      Path.of(System.getProperty("leasehold.projectRoot")).toAbsolutePath().normalize();
  private static final Path CHART = ROOT.resolve("charts/leasehold");
  private static final String CRD_FILE = "terraformstates.leasehold.io-v1.yml";
  private static final String RELEASE = "leasehold";
  private static final String NAMESPACE = "leasehold-system";
  private static final String SERVICE_ACCOUNT = "leasehold";

  /** helm template renders for Kubernetes 1.20 unless told: the chart needs 1.29 or newer. */
  static final String KUBE_VERSION = "v1.31.0";

  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
  private static final KubernetesSerialization KUBE = new KubernetesSerialization();

  /**
   * One permission: an API group, a resource (or subresource), a verb, and the one object name it
   * is limited to ("" for any).
   */
  record Permission(String group, String resource, String verb, String name) {
    Permission(String group, String resource, String verb) {
      this(group, resource, verb, "");
    }

    @Override
    public String toString() {
      return (group.isEmpty() ? "core" : group)
          + "/"
          + resource
          + ":"
          + verb
          + (name.isEmpty() ? "" : "[" + name + "]");
    }
  }

  private static Set<Permission> permissions(String group, String resource, String... verbs) {
    Set<Permission> result = new HashSet<>();
    for (String verb : verbs) {
      result.add(new Permission(group, resource, verb));
    }
    return result;
  }

  private static Set<Permission> named(
      String group, String resource, String name, String... verbs) {
    Set<Permission> result = new HashSet<>();
    for (String verb : verbs) {
      result.add(new Permission(group, resource, verb, name));
    }
    return result;
  }

  @SafeVarargs
  private static Set<Permission> union(Set<Permission>... sets) {
    Set<Permission> result = new HashSet<>();
    for (Set<Permission> set : sets) {
      result.addAll(set);
    }
    return Set.copyOf(result);
  }

  /**
   * Terraform's lock Leases and the leader-election Lease (LeaseLock, StateBackend; the client's
   * leader elector patches its Lease). RbacCoversCallsTest records these calls.
   */
  private static final Set<Permission> LEASE_CALLS =
      permissions(
          "coordination.k8s.io",
          "leases",
          "get",
          "list",
          "watch",
          "create",
          "update",
          "patch",
          "delete");

  /** The backend's CA, published as ConfigMap leasehold-ca for runners (CaPublisher). */
  private static final Set<Permission> CA_PUBLISHER_CALLS =
      union(
          permissions("", "configmaps", "create"),
          named("", "configmaps", "leasehold-ca", "get", "update"));

  /**
   * In the release namespace when it is not watched: the leader-election Lease and the replicas'
   * heartbeat Leases (created, renewed, watched and deleted by each replica, named after it), the
   * self-signed certificate's Secret by name, Events on the operator's pod.
   */
  private static final Set<Permission> RELEASE_CALLS =
      union(
          permissions(
              "coordination.k8s.io",
              "leases",
              "create",
              "get",
              "list",
              "watch",
              "update",
              "patch",
              "delete"),
          permissions("", "secrets", "create"),
          named("", "secrets", "leasehold-tls", "get", "update"),
          permissions("", "events", "create"));

  /**
   * The API calls the operator makes in each watched namespace: the TerraformState informer and its
   * annotation patches, status updates, Leases, state Secrets (informer, backend writes, Delete
   * policy), runner Jobs (informer, a running Job that lost its label, unsuspend patch, a skipped
   * Job deleted), Events, the runner pod lookup and the pods of an ending Job.
   */
  private static final Set<Permission> NAMESPACED_CALLS =
      union(
          permissions("leasehold.io", "terraformstates", "get", "list", "watch", "patch", "update"),
          permissions("leasehold.io", "terraformstates/status", "get", "update"),
          LEASE_CALLS,
          permissions("", "secrets", "get", "list", "watch", "create", "update", "delete"),
          permissions("batch", "jobs", "get", "list", "watch", "patch", "delete"),
          permissions("", "events", "create"),
          permissions("", "pods", "get", "list"),
          CA_PUBLISHER_CALLS);

  /**
   * The backend's TokenReview and SubjectAccessReview, which are cluster-scoped, and the read of
   * the TerraformState CRD (CrdCompatibility).
   */
  private static final Set<Permission> REVIEW_CALLS =
      union(
          named(
              "apiextensions.k8s.io",
              "customresourcedefinitions",
              "terraformstates.leasehold.io",
              "get"),
          permissions("authentication.k8s.io", "tokenreviews", "create"),
          permissions("authorization.k8s.io", "subjectaccessreviews", "create"),
          permissions("authorization.k8s.io", "selfsubjectrulesreviews", "create"));

  private static final Set<Permission> ALL_CALLS = union(NAMESPACED_CALLS, REVIEW_CALLS);

  private static final String NON_DEFAULT_VALUES =
      """
      replicas: 3
      watchNamespaces: [team-a, team-b]
      logFormat: text
      logLevel: DEBUG
      maxStateBytes: 67108864
      resources:
        limits:
          memory: 768Mi
      maxLockWait: 30m
      networkPolicy:
        backend:
          namespaces: [ci]
          namespaceSelector:
            matchLabels:
              leasehold.io/runners: "true"
          podSelector:
            matchLabels:
              app: terraform
        metrics:
          namespaces: [monitoring]
      serviceMonitor:
        enabled: true
        interval: 15s
      admissionPolicy:
        mutating:
          apiVersion: v1
        validating:
          apiVersion: v1
      runnerRbac:
        - namespace: team-a
          serviceAccount: terraform-runner
          states: [network, dns]
          createServiceAccount: true
        - namespace: team-b
          serviceAccount: ci
        - namespace: team-b
          serviceAccount: dashboards
          access: readOnly
      """;

  private static Rendered defaults;
  private static Rendered custom;

  @TempDir static Path tmp;

  @BeforeAll
  static void render() throws IOException {
    defaults = Rendered.of("");
    custom = Rendered.of(NON_DEFAULT_VALUES);
  }

  /** The documents of one {@code helm template}, parsed. */
  record Rendered(List<JsonNode> docs) {

    static Rendered of(String values) throws IOException {
      return new Rendered(parse(template(values)));
    }

    List<JsonNode> ofKind(String kind) {
      return docs.stream().filter(d -> kind.equals(d.path("kind").asText())).toList();
    }

    JsonNode one(String kind) {
      List<JsonNode> found = ofKind(kind);
      assertThat(found).as("rendered %s objects", kind).hasSize(1);
      return found.get(0);
    }

    Deployment deployment() {
      return KUBE.convertValue(one("Deployment"), Deployment.class);
    }

    Container container() {
      List<Container> containers = deployment().getSpec().getTemplate().getSpec().getContainers();
      assertThat(containers).as("containers of the Deployment").hasSize(1);
      return containers.get(0);
    }
  }

  private static String template(String values) throws IOException {
    Path file = Files.createTempFile(tmp, "values", ".yaml");
    Files.writeString(file, values, StandardCharsets.UTF_8);
    return template(values, KUBE_VERSION);
  }

  private static String template(String values, String kubeVersion) throws IOException {
    Path file = Files.createTempFile(tmp, "values", ".yaml");
    Files.writeString(file, values, StandardCharsets.UTF_8);
    return new Helm(CHART)
        .template()
        .withName(RELEASE)
        .withNamespace(NAMESPACE)
        .withKubeVersion(kubeVersion)
        .withValuesFile(file)
        .call();
  }

  private static List<JsonNode> parse(String manifest) throws IOException {
    List<JsonNode> docs = new ArrayList<>();
    try (var it = YAML.readerFor(JsonNode.class).<JsonNode>readValues(manifest)) {
      while (it.hasNext()) {
        JsonNode doc = it.next();
        if (doc != null && !doc.isNull() && !doc.isEmpty()) {
          assertThat(doc.path("apiVersion").asText()).as("apiVersion of %s", doc).isNotEmpty();
          assertThat(doc.path("kind").asText()).as("kind of %s", doc).isNotEmpty();
          assertThat(doc.at("/metadata/name").asText()).as("name of %s", doc).isNotEmpty();
          docs.add(doc);
        }
      }
    }
    return docs;
  }

  private static Set<Permission> permissionsOf(JsonNode role) {
    Set<Permission> result = new HashSet<>();
    for (JsonNode rule : role.path("rules")) {
      PolicyRule r = KUBE.convertValue(rule, PolicyRule.class);
      List<String> names =
          r.getResourceNames() == null || r.getResourceNames().isEmpty()
              ? List.of("")
              : r.getResourceNames();
      for (String group : r.getApiGroups()) {
        for (String resource : r.getResources()) {
          for (String verb : r.getVerbs()) {
            for (String name : names) {
              result.add(new Permission(group, resource, verb, name));
            }
          }
        }
      }
    }
    return result;
  }

  private static void assertNoWildcard(Rendered rendered) {
    for (String kind : List.of("ClusterRole", "Role")) {
      for (JsonNode role : rendered.ofKind(kind)) {
        assertThat(role.path("rules").toString())
            .as("%s %s grants a wildcard", kind, role.at("/metadata/name").asText())
            .doesNotContain("\"*\"");
        assertThat(role.has("aggregationRule")).isFalse();
      }
    }
  }

  /** The operator's own ClusterRole (the others are the aggregated user roles). */
  static JsonNode operatorClusterRole(Rendered rendered) {
    List<JsonNode> found =
        rendered.ofKind("ClusterRole").stream()
            .filter(
                r ->
                    "operator"
                        .equals(r.at("/metadata/labels/app.kubernetes.io~1component").asText()))
            .toList();
    assertThat(found).as("the operator's ClusterRole").hasSize(1);
    return found.get(0);
  }

  private static JsonNode find(List<JsonNode> docs, String namespace, String name) {
    List<JsonNode> found =
        docs.stream()
            .filter(d -> namespace.equals(d.at("/metadata/namespace").asText()))
            .filter(d -> name.equals(d.at("/metadata/name").asText()))
            .toList();
    assertThat(found).as("%s/%s", namespace, name).hasSize(1);
    return found.get(0);
  }

  /** The binding exists, names the role, and binds it to the operator's ServiceAccount only. */
  private static void assertBindsOperator(JsonNode binding, String roleKind, String roleName) {
    assertThat(binding.at("/roleRef/kind").asText()).isEqualTo(roleKind);
    assertThat(binding.at("/roleRef/name").asText()).isEqualTo(roleName);
    List<Subject> subjects = new ArrayList<>();
    binding.path("subjects").forEach(n -> subjects.add(KUBE.convertValue(n, Subject.class)));
    assertThat(subjects)
        .extracting(Subject::getKind, Subject::getName, Subject::getNamespace)
        .containsExactly(tuple("ServiceAccount", SERVICE_ACCOUNT, NAMESPACE));
  }

  @Test
  @DisplayName("helm lint --strict passes on the chart")
  void lintPasses() {
    LintResult result = new Helm(CHART).lint().strict().call();
    assertThat(result.isFailed()).as("helm lint --strict: %s", result.getMessages()).isFalse();
    assertThat(result.getMessages())
        .as("helm lint --strict messages")
        .noneMatch(m -> m.contains("[ERROR]") || m.contains("[WARNING]"));
  }

  private static String notes(String valuesText) throws IOException {
    Path values = Files.createTempFile(tmp, "values", ".yaml");
    Files.writeString(values, valuesText, StandardCharsets.UTF_8);
    String output =
        new Helm(CHART)
            .install()
            .withName(RELEASE)
            .withNamespace(NAMESPACE)
            .withKubeVersion(KUBE_VERSION)
            .withValuesFile(values)
            .clientOnly()
            .dryRun()
            .call()
            .getOutput();
    return output.substring(output.indexOf("NOTES:"));
  }

  @Test
  @DisplayName(
      "The install notes say where the backend is (https), where runners find its CA, and how to"
          + " check the operator")
  void notes() throws IOException {
    assertThat(notes(NON_DEFAULT_VALUES))
        .contains("https://leasehold." + NAMESPACE + ".svc:8080/v1/states/NS/NAME")
        // A short ?wait= with -lock-timeout for the total wait: Terraform stays interruptible.
        .contains("/v1/states/NS/NAME/lock?wait=25s\"")
        .contains("terraform apply -lock-timeout=10m")
        .contains("ConfigMap leasehold-ca (key ca.crt)")
        .contains("audience\nleasehold")
        .contains("kubectl -n " + NAMESPACE + " rollout status deployment/leasehold")
        .contains("kubectl -n " + NAMESPACE + " get lease leasehold-leader")
        .contains("Watching: team-a, team-b.")
        .doesNotContain("admits no namespace");
    assertThat(notes("tls: {mode: none}\n"))
        .contains("http://leasehold." + NAMESPACE + ".svc:8080/v1/states/NS/NAME")
        .contains("WARNING: tls.mode is none");
    assertThat(notes("")).contains("cluster-wide: it can read and write every Secret and Lease");
  }

  @Test
  @DisplayName(
      "By default one ClusterRole grants exactly the API calls the code makes, bound to the"
          + " operator's ServiceAccount, and there are no Roles")
  void clusterWide() {
    assertNoWildcard(defaults);
    JsonNode clusterRole = operatorClusterRole(defaults);
    assertThat(permissionsOf(clusterRole)).containsExactlyInAnyOrderElementsOf(ALL_CALLS);
    assertBindsOperator(
        defaults.one("ClusterRoleBinding"),
        "ClusterRole",
        clusterRole.at("/metadata/name").asText());
    assertThat(defaults.ofKind("Role")).isEmpty();
    assertThat(defaults.ofKind("RoleBinding")).isEmpty();
    assertThat(defaults.one("ServiceAccount").at("/metadata/name").asText())
        .isEqualTo(SERVICE_ACCOUNT);
  }

  @Test
  @DisplayName(
      "With watchNamespaces the ClusterRole holds only the reviews, each watched namespace gets a"
          + " Role with the namespaced calls, and the release namespace a Role limited by name to"
          + " the release's leader-election Lease and certificate Secret")
  void namespaced() {
    assertNoWildcard(custom);
    JsonNode clusterRole = operatorClusterRole(custom);
    assertThat(permissionsOf(clusterRole)).containsExactlyInAnyOrderElementsOf(REVIEW_CALLS);
    assertBindsOperator(
        custom.one("ClusterRoleBinding"), "ClusterRole", clusterRole.at("/metadata/name").asText());

    List<JsonNode> operatorRoles =
        custom.ofKind("Role").stream().filter(r -> !isRunnerRole(r)).toList();
    Map<String, Set<Permission>> byNamespace = new LinkedHashMap<>();
    for (JsonNode role : operatorRoles) {
      byNamespace.put(role.at("/metadata/namespace").asText(), permissionsOf(role));
      JsonNode binding =
          find(
              custom.ofKind("RoleBinding"),
              role.at("/metadata/namespace").asText(),
              role.at("/metadata/name").asText());
      assertBindsOperator(binding, "Role", role.at("/metadata/name").asText());
    }
    assertThat(byNamespace)
        .containsOnlyKeys("team-a", "team-b", NAMESPACE)
        .hasSize(operatorRoles.size());
    assertThat(byNamespace.get("team-a")).containsExactlyInAnyOrderElementsOf(NAMESPACED_CALLS);
    assertThat(byNamespace.get("team-b")).containsExactlyInAnyOrderElementsOf(NAMESPACED_CALLS);
    assertThat(byNamespace.get(NAMESPACE)).containsExactlyInAnyOrderElementsOf(RELEASE_CALLS);
  }

  @Test
  @DisplayName(
      "When the release namespace is itself watched, its Role already covers the"
          + " leader-election Lease and no extra Role is rendered")
  void releaseNamespaceWatched() throws IOException {
    Rendered rendered = Rendered.of("watchNamespaces: [" + NAMESPACE + ", team-a]\n");
    Map<String, Set<Permission>> byNamespace = new LinkedHashMap<>();
    for (JsonNode role : rendered.ofKind("Role")) {
      assertThat(byNamespace.put(role.at("/metadata/namespace").asText(), permissionsOf(role)))
          .as("a second Role in %s", role.at("/metadata/namespace").asText())
          .isNull();
    }
    assertThat(byNamespace).containsOnlyKeys(NAMESPACE, "team-a");
    assertThat(byNamespace.values())
        .allSatisfy(p -> assertThat(p).containsExactlyInAnyOrderElementsOf(NAMESPACED_CALLS));
    assertThat(rendered.ofKind("RoleBinding")).hasSize(2);
  }

  private static boolean isRunnerRole(JsonNode role) {
    return role.path("rules").toString().contains("terraformstates/state");
  }

  @Test
  @DisplayName(
      "runnerRbac grants each runner ServiceAccount exactly get and update on"
          + " terraformstates/state (a readOnly reader get alone), for the listed states only,"
          + " and creates the ServiceAccount when asked, with no API-server token mounted")
  void runnerRbac() {
    List<JsonNode> runnerRoles =
        custom.ofKind("Role").stream().filter(r -> isRunnerRole(r)).toList();
    assertThat(runnerRoles).hasSize(3);

    JsonNode teamA =
        runnerRoles.stream()
            .filter(r -> "team-a".equals(r.at("/metadata/namespace").asText()))
            .findFirst()
            .orElseThrow();
    PolicyRule rule = onlyRule(teamA);
    assertThat(rule.getApiGroups()).containsExactly("leasehold.io");
    assertThat(rule.getResources()).containsExactly("terraformstates/state");
    assertThat(rule.getVerbs()).containsExactlyInAnyOrder("get", "update");
    assertThat(rule.getResourceNames()).containsExactly("network", "dns");
    assertRunnerBinding(teamA, "terraform-runner");

    JsonNode teamB = find(runnerRoles, "team-b", "leasehold-runner-ci");
    PolicyRule all = onlyRule(teamB);
    assertThat(all.getResources()).containsExactly("terraformstates/state");
    assertThat(all.getVerbs()).containsExactlyInAnyOrder("get", "update");
    assertThat(all.getResourceNames()).as("no states listed: every state").isNullOrEmpty();
    assertRunnerBinding(teamB, "ci");

    JsonNode reader = find(runnerRoles, "team-b", "leasehold-reader-dashboards");
    PolicyRule read = onlyRule(reader);
    assertThat(read.getResources()).containsExactly("terraformstates/state");
    assertThat(read.getVerbs()).as("terraform_remote_state only reads").containsExactly("get");
    assertRunnerBinding(reader, "dashboards");

    List<JsonNode> accounts = custom.ofKind("ServiceAccount");
    assertThat(accounts)
        .extracting(
            a -> a.at("/metadata/namespace").asText() + "/" + a.at("/metadata/name").asText())
        .containsExactlyInAnyOrder(NAMESPACE + "/" + SERVICE_ACCOUNT, "team-a/terraform-runner");
    assertThat(
            find(accounts, "team-a", "terraform-runner")
                .path("automountServiceAccountToken")
                .toString())
        .as("a runner needs no API-server token, only its projected token for leasehold")
        .isEqualTo("false");
  }

  private static PolicyRule onlyRule(JsonNode role) {
    assertThat(role.path("rules")).hasSize(1);
    return KUBE.convertValue(role.path("rules").get(0), PolicyRule.class);
  }

  private static void assertRunnerBinding(JsonNode role, String serviceAccount) {
    String namespace = role.at("/metadata/namespace").asText();
    JsonNode binding =
        find(custom.ofKind("RoleBinding"), namespace, role.at("/metadata/name").asText());
    assertThat(binding.at("/roleRef/kind").asText()).isEqualTo("Role");
    assertThat(binding.at("/roleRef/name").asText()).isEqualTo(role.at("/metadata/name").asText());
    assertThat(binding.path("subjects")).hasSize(1);
    assertThat(binding.at("/subjects/0/kind").asText()).isEqualTo("ServiceAccount");
    assertThat(binding.at("/subjects/0/name").asText()).isEqualTo(serviceAccount);
    assertThat(binding.at("/subjects/0/namespace").asText()).isEqualTo(namespace);
  }

  @Test
  @DisplayName(
      "By default it runs two replicas of ghcr.io/leasehold/leasehold:<appVersion> as the chart's"
          + " ServiceAccount, with a PodDisruptionBudget keeping one available")
  void replicasAndImage() {
    Deployment deployment = defaults.deployment();
    assertThat(deployment.getMetadata().getNamespace()).isEqualTo(NAMESPACE);
    assertThat(deployment.getSpec().getReplicas()).isEqualTo(2);
    PodSpec pod = deployment.getSpec().getTemplate().getSpec();
    assertThat(pod.getServiceAccountName()).isEqualTo(SERVICE_ACCOUNT);
    assertThat(pod.getTerminationGracePeriodSeconds())
        .as("preStop sleep 5 s + drain 20 s + 10 s")
        .isEqualTo(35L);
    assertThat(defaults.container().getImage())
        .isEqualTo("ghcr.io/leasehold/leasehold:" + System.getProperty("leasehold.projectVersion"));
    assertThat(defaults.container().getImagePullPolicy()).isEqualTo("IfNotPresent");

    JsonNode pdb = defaults.one("PodDisruptionBudget");
    assertThat(pdb.at("/spec/minAvailable").asInt()).isEqualTo(1);
    assertThat(KUBE.convertValue(pdb.at("/spec/selector/matchLabels"), Map.class))
        .isEqualTo(deployment.getSpec().getSelector().getMatchLabels());
    assertThat(deployment.getSpec().getTemplate().getMetadata().getLabels())
        .containsAllEntriesOf(deployment.getSpec().getSelector().getMatchLabels());

    assertThat(custom.deployment().getSpec().getReplicas()).isEqualTo(3);
    assertThat(custom.ofKind("PodDisruptionBudget")).hasSize(1);
  }

  @Test
  @DisplayName("With a single replica no PodDisruptionBudget is rendered (it would block drains)")
  void singleReplica() throws IOException {
    Rendered rendered = Rendered.of("replicas: 1\n");
    assertThat(rendered.deployment().getSpec().getReplicas()).isEqualTo(1);
    assertThat(rendered.ofKind("PodDisruptionBudget")).isEmpty();
  }

  @Test
  @DisplayName(
      "The container's arguments are run, the ports, the leader-election namespace, the"
          + " watched namespaces and the backend limits from values")
  void args() {
    assertThat(defaults.container().getArgs())
        .containsExactly(
            "run",
            "--http-port=8080",
            "--management-port=8081",
            "--leader-election-namespace=$(POD_NAMESPACE)",
            "--leader-election-lease=leasehold-leader",
            "--max-state-bytes=33554432",
            "--max-lock-wait=15m",
            "--tls-self-signed=leasehold-tls",
            "--tls-dns-name=leasehold,leasehold.leasehold-system,leasehold.leasehold-system.svc,"
                + "leasehold.leasehold-system.svc.cluster.local",
            "--tls-publish-ca=leasehold-ca",
            "--token-audience=leasehold",
            "--shutdown-delay=0s",
            "--drain-timeout=20s");
    assertThat(custom.container().getArgs())
        .containsExactly(
            "run",
            "--http-port=8080",
            "--management-port=8081",
            "--leader-election-namespace=$(POD_NAMESPACE)",
            "--leader-election-lease=leasehold-leader",
            "--namespace=team-a,team-b",
            "--max-state-bytes=67108864",
            "--max-lock-wait=30m",
            "--tls-self-signed=leasehold-tls",
            "--tls-dns-name=leasehold,leasehold.leasehold-system,leasehold.leasehold-system.svc,"
                + "leasehold.leasehold-system.svc.cluster.local",
            "--tls-publish-ca=leasehold-ca",
            "--tls-publish-namespace=team-a,team-b",
            "--token-audience=leasehold",
            "--shutdown-delay=0s",
            "--drain-timeout=20s");
  }

  @Test
  @DisplayName(
      "The environment carries the pod's namespace, name and UID (for Events on it), its address"
          + " (where the other replicas ask whether it runs), the log format and level, and the"
          + " JVM's memory options")
  void env() {
    Map<String, EnvVar> env = envOf(defaults.container());
    assertThat(env)
        .containsOnlyKeys(
            "POD_NAMESPACE",
            "POD_NAME",
            "POD_UID",
            "POD_IP",
            "LEASEHOLD_LOG_FORMAT",
            "LEASEHOLD_LOG_LEVEL",
            "JAVA_TOOL_OPTIONS");
    assertThat(env.get("POD_NAMESPACE").getValueFrom().getFieldRef().getFieldPath())
        .isEqualTo("metadata.namespace");
    assertThat(env.get("POD_NAME").getValueFrom().getFieldRef().getFieldPath())
        .isEqualTo("metadata.name");
    assertThat(env.get("POD_UID").getValueFrom().getFieldRef().getFieldPath())
        .isEqualTo("metadata.uid");
    assertThat(env.get("POD_IP").getValueFrom().getFieldRef().getFieldPath())
        .isEqualTo("status.podIP");
    assertThat(env.get("LEASEHOLD_LOG_FORMAT").getValue()).isEqualTo("json");
    assertThat(env.get("LEASEHOLD_LOG_LEVEL").getValue()).isEqualTo("INFO");
    assertThat(env.get("JAVA_TOOL_OPTIONS").getValue())
        .isEqualTo("-XX:MaxRAMPercentage=75 -XX:+ExitOnOutOfMemoryError");

    Map<String, EnvVar> customEnv = envOf(custom.container());
    assertThat(customEnv.get("LEASEHOLD_LOG_FORMAT").getValue()).isEqualTo("text");
    assertThat(customEnv.get("LEASEHOLD_LOG_LEVEL").getValue()).isEqualTo("DEBUG");
  }

  private static Map<String, EnvVar> envOf(Container container) {
    return container.getEnv().stream()
        .collect(
            Collectors.toMap(
                EnvVar::getName,
                e -> e,
                (a, b) -> {
                  throw new AssertionError("duplicate env " + a.getName());
                },
                LinkedHashMap::new));
  }

  @Test
  @DisplayName(
      "It exposes the backend on 8080 and health and metrics on 8081, probed on /healthz and"
          + " /readyz, and the Service forwards both ports")
  void portsAndProbes() {
    Container container = defaults.container();
    assertThat(container.getPorts())
        .extracting(ContainerPort::getName, ContainerPort::getContainerPort)
        .containsExactlyInAnyOrder(tuple("backend", 8080), tuple("http-metrics", 8081));
    assertProbe(container.getLivenessProbe(), "/healthz");
    assertProbe(container.getReadinessProbe(), "/readyz");
    assertProbe(container.getStartupProbe(), "/healthz");
    assertThat(
            container.getStartupProbe().getFailureThreshold()
                * container.getStartupProbe().getPeriodSeconds())
        .as("seconds the startup probe allows")
        .isGreaterThanOrEqualTo(120);

    JsonNode service = defaults.one("Service");
    assertThat(service.at("/spec/type").asText()).isEqualTo("ClusterIP");
    Map<String, String> ports = new LinkedHashMap<>();
    for (JsonNode port : service.at("/spec/ports")) {
      ports.put(
          port.path("name").asText(),
          port.path("port").asInt() + "->" + port.path("targetPort").asText());
    }
    assertThat(ports)
        .containsExactlyInAnyOrderEntriesOf(
            Map.of("backend", "8080->backend", "http-metrics", "8081->http-metrics"));
    assertThat(KUBE.convertValue(service.at("/spec/selector"), Map.class))
        .isEqualTo(defaults.deployment().getSpec().getSelector().getMatchLabels());
  }

  private static void assertProbe(Probe probe, String path) {
    assertThat(probe).as("probe on %s", path).isNotNull();
    assertThat(probe.getHttpGet().getPath()).isEqualTo(path);
    assertThat(probe.getHttpGet().getPort().getStrVal()).isEqualTo("http-metrics");
  }

  @Test
  @DisplayName(
      "The pod meets the restricted Pod Security Standard: non-root 65532, RuntimeDefault"
          + " seccomp, no privilege escalation, a read-only root with an emptyDir on /tmp, all"
          + " capabilities dropped")
  void securityContexts() {
    PodSpec pod = defaults.deployment().getSpec().getTemplate().getSpec();
    PodSecurityContext podContext = pod.getSecurityContext();
    assertThat(podContext.getRunAsNonRoot()).isTrue();
    assertThat(podContext.getRunAsUser()).isEqualTo(65532L);
    assertThat(podContext.getRunAsGroup()).isEqualTo(65532L);
    assertThat(podContext.getFsGroup()).isEqualTo(65532L);
    assertThat(podContext.getSeccompProfile().getType()).isEqualTo("RuntimeDefault");

    SecurityContext context = defaults.container().getSecurityContext();
    assertThat(context.getAllowPrivilegeEscalation()).isFalse();
    assertThat(context.getReadOnlyRootFilesystem()).isTrue();
    assertThat(context.getCapabilities().getDrop()).containsExactly("ALL");
    assertThat(context.getCapabilities().getAdd()).isNullOrEmpty();
    assertThat(context.getPrivileged()).isNotEqualTo(Boolean.TRUE);

    assertThat(defaults.container().getVolumeMounts())
        .anySatisfy(
            m -> {
              assertThat(m.getMountPath()).isEqualTo("/tmp");
              assertThat(pod.getVolumes())
                  .anySatisfy(
                      v -> {
                        assertThat(v.getName()).isEqualTo(m.getName());
                        assertThat(v.getEmptyDir()).isNotNull();
                      });
            });
    assertThat(pod.getHostNetwork()).isNotEqualTo(Boolean.TRUE);
    assertThat(pod.getHostPID()).isNotEqualTo(Boolean.TRUE);
  }

  @Test
  @DisplayName(
      "Resources default to 100m CPU and 256Mi requested, 512Mi memory limit, and the pods"
          + " prefer different nodes")
  void resourcesAndAntiAffinity() {
    var resources = defaults.container().getResources();
    assertThat(resources.getRequests().get("cpu").toString()).isEqualTo("100m");
    assertThat(resources.getRequests().get("memory").toString()).isEqualTo("256Mi");
    assertThat(resources.getLimits().get("memory").toString()).isEqualTo("512Mi");
    assertThat(resources.getLimits()).doesNotContainKey("cpu");

    Deployment deployment = defaults.deployment();
    List<WeightedPodAffinityTerm> preferred =
        deployment
            .getSpec()
            .getTemplate()
            .getSpec()
            .getAffinity()
            .getPodAntiAffinity()
            .getPreferredDuringSchedulingIgnoredDuringExecution();
    assertThat(preferred).hasSize(1);
    assertThat(preferred.get(0).getPodAffinityTerm().getTopologyKey())
        .isEqualTo("kubernetes.io/hostname");
    assertThat(preferred.get(0).getPodAffinityTerm().getLabelSelector().getMatchLabels())
        .isEqualTo(deployment.getSpec().getSelector().getMatchLabels());
  }

  @Test
  @DisplayName(
      "ServiceMonitor and the admission policies are rendered only when enabled (the policies:"
          + " where the cluster serves their API, or a version is set); the NetworkPolicy unless"
          + " disabled")
  void onlyWhenEnabled() throws IOException {
    assertThat(defaults.ofKind("NetworkPolicy")).hasSize(1);
    assertThat(Rendered.of("networkPolicy: {enabled: false}\n").ofKind("NetworkPolicy")).isEmpty();
    for (String kind :
        List.of(
            "ServiceMonitor",
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding")) {
      assertThat(defaults.ofKind(kind)).as("%s by default", kind).isEmpty();
      assertThat(custom.ofKind(kind)).as("%s when enabled", kind).hasSize(1);
    }
  }

  @Test
  @DisplayName(
      "The NetworkPolicy admits to 8080 only the runners' namespaces (watched, runnerRbac's, listed"
          + " or selected) and the operator's own replicas, to 8081 only the metrics scraper's,"
          + " and leaves egress open")
  void networkPolicy() {
    JsonNode policy = custom.one("NetworkPolicy");
    assertThat(KUBE.convertValue(policy.at("/spec/podSelector/matchLabels"), Map.class))
        .isEqualTo(custom.deployment().getSpec().getSelector().getMatchLabels());
    assertThat(policy.at("/spec/policyTypes").toString()).isEqualTo("[\"Ingress\"]");
    JsonNode ingress = policy.at("/spec/ingress");
    assertThat(ingress).hasSize(3);
    assertReplicasOnly(custom, ingress.get(2));
    assertThat(ingress.at("/0/ports/0/port").asInt()).isEqualTo(8080);
    assertThat(ingress.at("/0/ports")).hasSize(1);
    JsonNode byName = ingress.at("/0/from/0/namespaceSelector/matchExpressions/0");
    assertThat(byName.path("key").asText()).isEqualTo("kubernetes.io/metadata.name");
    assertThat(byName.path("operator").asText()).isEqualTo("In");
    assertThat(KUBE.convertValue(byName.path("values"), List.class))
        .containsExactlyInAnyOrder("team-a", "team-b", "ci");
    assertThat(ingress.at("/0/from/0/podSelector/matchLabels/app").asText()).isEqualTo("terraform");
    assertThat(ingress.at("/0/from/1/namespaceSelector/matchLabels/leasehold.io~1runners").asText())
        .isEqualTo("true");
    assertThat(ingress.at("/1/ports/0/port").asInt()).isEqualTo(8081);
    assertThat(ingress.at("/1/ports")).hasSize(1);
    assertThat(ingress.at("/1/from")).hasSize(1);
    assertThat(ingress.at("/1/from/0/namespaceSelector/matchExpressions/0/values").toString())
        .isEqualTo("[\"monitoring\"]");
  }

  /** The rule that lets the operator's replicas ask each other on the backend's port. */
  private static void assertReplicasOnly(Rendered rendered, JsonNode rule) {
    assertThat(rule.at("/ports")).hasSize(1);
    assertThat(rule.at("/ports/0/port").asInt()).isEqualTo(8080);
    assertThat(rule.at("/from")).hasSize(1);
    assertThat(rule.at("/from/0/namespaceSelector").isMissingNode())
        .as("the operator's own namespace only")
        .isTrue();
    assertThat(KUBE.convertValue(rule.at("/from/0/podSelector/matchLabels"), Map.class))
        .isEqualTo(rendered.deployment().getSpec().getSelector().getMatchLabels());
  }

  @Test
  @DisplayName(
      "By default the NetworkPolicy is on and, with no runner namespace known yet, admits no pod"
          + " but the operator's own replicas (no rule with an empty 'from', which would admit"
          + " every pod), and the notes say so")
  void networkPolicyClosedByDefault() throws IOException {
    JsonNode policy = defaults.one("NetworkPolicy");
    assertThat(policy.at("/spec/ingress").isArray()).isTrue();
    assertThat(policy.at("/spec/ingress")).hasSize(1);
    assertReplicasOnly(defaults, policy.at("/spec/ingress/0"));
    assertThat(notes("")).contains("the NetworkPolicy admits no namespace to the backend yet");

    JsonNode runnersOnly =
        Rendered.of("runnerRbac: [{namespace: infra, serviceAccount: tf}]\n").one("NetworkPolicy");
    assertThat(runnersOnly.at("/spec/ingress")).hasSize(2);
    assertThat(runnersOnly.at("/spec/ingress/0/ports/0/port").asInt()).isEqualTo(8080);
    assertThat(
            runnersOnly
                .at("/spec/ingress/0/from/0/namespaceSelector/matchExpressions/0/values")
                .toString())
        .isEqualTo("[\"infra\"]");
    for (JsonNode rule : runnersOnly.at("/spec/ingress")) {
      assertThat(rule.path("from")).as("a rule without peers admits everyone").isNotEmpty();
    }
  }

  @Test
  @DisplayName("The ServiceMonitor scrapes /metrics on the http-metrics port of the Service")
  void serviceMonitor() {
    JsonNode monitor = custom.one("ServiceMonitor");
    assertThat(monitor.path("apiVersion").asText()).isEqualTo("monitoring.coreos.com/v1");
    assertThat(monitor.at("/spec/endpoints")).hasSize(1);
    assertThat(monitor.at("/spec/endpoints/0/port").asText()).isEqualTo("http-metrics");
    assertThat(monitor.at("/spec/endpoints/0/path").asText()).isEqualTo("/metrics");
    assertThat(monitor.at("/spec/endpoints/0/interval").asText()).isEqualTo("15s");
    Map<?, ?> selector = KUBE.convertValue(monitor.at("/spec/selector/matchLabels"), Map.class);
    assertThat(selector).isNotEmpty();
    assertThat(KUBE.convertValue(custom.one("Service").at("/metadata/labels"), Map.class))
        .as("labels of the Service the ServiceMonitor selects")
        .containsAllEntriesOf(selector);
    assertThat(monitor.at("/spec/namespaceSelector/matchNames").toString())
        .isEqualTo("[\"" + NAMESPACE + "\"]");
  }

  @ParameterizedTest(name = "{0} is refused naming {1}")
  @DisplayName("Wrong values are refused with a message naming the field")
  @CsvSource(
      delimiter = '|',
      value = {
        "replicas: two | replicas",
        "replicas: 0 | replicas",
        "logFormat: xml | logFormat",
        "logLevel: verbose | logLevel",
        "replicaCount: 2 | replicaCount",
        "'watchNamespaces: [\"Bad_NS\"]' | watchNamespaces",
        "'image: {pullPolicy: Sometimes}' | pullPolicy",
        "maxLockWait: soon | maxLockWait",
        "maxStateBytes: lots | maxStateBytes",
        "'networkPolicy: {enabled: yes please}' | enabled",
        "'runnerRbac: [{namespace: infra}]' | serviceAccount",
        "'runnerRbac: [{namespace: infra, serviceAccount: tf, access: admin}]' | access",
        "'tolerations: [{key: a, operator: Sometimes}]' | operator",
        "'tolerations: [{key: a, effect: NoRun}]' | effect",
        "'tolerations: [{key: a, tolerance: 1}]' | tolerance",
        "'affinity: {nodeAffinity: {required: {}}}' | required",
        "'affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution:"
            + " [{weight: 500, podAffinityTerm: {topologyKey: zone}}]}}' | weight",
        "'resources: {limits: {memory: lots}}' | memory",
        "'resources: {limit: {memory: 1Gi}}' | limit",
        "'topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone}]' | whenUnsatisfiable",
        "'tls: {mode: https}' | mode",
        "'tls: {clientAuth: {mode: always}}' | mode",
        "'image: {digest: latest}' | digest",
        "'service: {type: ExternalName}' | type",
        "'uidAssignment: random' | uidAssignment",
        "'securityContext: {privileged: maybe}' | privileged",
        "'shutdown: {drainSeconds: 0}' | drainSeconds",
        "'podSecurityContext: {runAsUser: -1}' | runAsUser",
      })
  void refused(String values, String field) {
    assertThatThrownBy(() -> template(values + "\n"))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("schema")
        .hasMessageContaining(field);
  }

  @ParameterizedTest(name = "{0} is refused: {1}")
  @DisplayName("Values that do not fit together are refused with a message naming the fix")
  @CsvSource(
      delimiter = '|',
      value = {
        "'runnerRbac: [{namespace: a, serviceAccount: tf, states: [net]}, {namespace: a,"
            + " serviceAccount: tf, states: [dns]}]' | runnerRbac lists a/tf with access readWrite"
            + " twice",
        "'terminationGracePeriodSeconds: 20' | must be larger than shutdown.preStopSleepSeconds"
            + " + shutdown.drainSeconds (25)",
        "'tls: {mode: secret}' | tls.secretName is required",
        "'tls: {clientAuth: {mode: require}}' | tls.clientAuth.caConfigMap is required",
        "'podDisruptionBudget: {maxUnavailable: 1}' | give minAvailable or maxUnavailable, not"
            + " both",
        "'maxStateBytes: 134217728' | needs a heap of at least 896 MiB (6 x maxStateBytes + 128"
            + " MiB), but resources.limits.memory 512Mi gives 384 MiB (75%): raise the limit to at"
            + " least 1195Mi",
      })
  void inconsistent(String values, String message) {
    assertThatThrownBy(() -> template(values + "\n"))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining(message);
  }

  @Test
  @DisplayName(
      "Raising maxStateBytes together with the memory limit, by the rule in docs/operations.md (Memory), is accepted")
  void memoryRaisedTogether() throws IOException {
    Rendered rendered =
        Rendered.of("maxStateBytes: 134217728\nresources: {limits: {memory: 1200Mi}}\n");
    assertThat(rendered.container().getArgs()).contains("--max-state-bytes=134217728");
  }

  @Test
  @DisplayName(
      "The leader-election Lease is named after the release, or as leaderElection.leaseName says")
  void leaderLeasePerRelease() throws IOException {
    assertThat(Rendered.of("fullnameOverride: infra-tf\n").container().getArgs())
        .contains("--leader-election-lease=infra-tf-leader");
    assertThat(Rendered.of("leaderElection: {leaseName: my-lease}\n").container().getArgs())
        .contains("--leader-election-lease=my-lease");
  }

  @Test
  @DisplayName(
      "Aggregated ClusterRoles: view reads TerraformStates only, edit also changes them and uses"
          + " their state (get, update), admin also deletes them and their state and force-unlocks")
  void aggregatedRoles() throws IOException {
    Map<String, JsonNode> byLabel = new LinkedHashMap<>();
    for (JsonNode role : defaults.ofKind("ClusterRole")) {
      role.path("metadata")
          .path("labels")
          .fieldNames()
          .forEachRemaining(
              l -> {
                if (l.startsWith("rbac.authorization.k8s.io/aggregate-to-")) {
                  byLabel.put(l.substring(l.lastIndexOf('-') + 1), role);
                }
              });
    }
    assertThat(byLabel).containsOnlyKeys("view", "edit", "admin");
    assertThat(permissionsOf(byLabel.get("view")))
        .containsExactlyInAnyOrderElementsOf(
            permissions("leasehold.io", "terraformstates", "get", "list", "watch"));
    assertThat(permissionsOf(byLabel.get("edit")))
        .containsExactlyInAnyOrderElementsOf(
            union(
                permissions("leasehold.io", "terraformstates", "create", "update", "patch"),
                permissions("leasehold.io", "terraformstates/state", "get", "update")));
    assertThat(permissionsOf(byLabel.get("admin")))
        .containsExactlyInAnyOrderElementsOf(
            union(
                permissions("leasehold.io", "terraformstates", "delete", "deletecollection"),
                permissions("leasehold.io", "terraformstates/state", "delete", "force-unlock")));
    for (JsonNode role : byLabel.values()) {
      assertThat(defaults.ofKind("ClusterRoleBinding"))
          .noneMatch(
              b -> b.at("/roleRef/name").asText().equals(role.at("/metadata/name").asText()));
    }
    assertThat(Rendered.of("rbac: {aggregateToDefaultRoles: false}\n").ofKind("ClusterRole"))
        .hasSize(1);
  }

  @Test
  @DisplayName(
      "tls.mode certManager renders a CA Issuer chain and a Certificate for the Service's names,"
          + " mounts its Secret and serves from the files; a given issuerRef replaces the chain")
  void certManager() throws IOException {
    Rendered rendered = Rendered.of("tls: {mode: certManager}\n");
    assertThat(rendered.ofKind("Issuer")).hasSize(2);
    List<JsonNode> certificates = rendered.ofKind("Certificate");
    assertThat(certificates).hasSize(2);
    JsonNode serving = find(certificates, NAMESPACE, "leasehold-tls");
    assertThat(serving.at("/spec/secretName").asText()).isEqualTo("leasehold-tls");
    assertThat(KUBE.convertValue(serving.at("/spec/dnsNames"), List.class))
        .containsExactly(
            "leasehold",
            "leasehold." + NAMESPACE,
            "leasehold." + NAMESPACE + ".svc",
            "leasehold." + NAMESPACE + ".svc.cluster.local");
    assertThat(serving.at("/spec/issuerRef/name").asText()).isEqualTo("leasehold-ca");
    assertThat(rendered.container().getArgs())
        .contains(
            "--tls-cert-file=/etc/leasehold/tls/tls.crt",
            "--tls-key-file=/etc/leasehold/tls/tls.key",
            "--tls-ca-file=/etc/leasehold/tls/ca.crt")
        .noneMatch(a -> a.startsWith("--tls-self-signed"));
    PodSpec pod = rendered.deployment().getSpec().getTemplate().getSpec();
    assertThat(pod.getVolumes())
        .anySatisfy(
            v ->
                assertThat(v.getSecret())
                    .hasFieldOrPropertyWithValue("secretName", "leasehold-tls"));

    Rendered own =
        Rendered.of(
            "tls: {mode: certManager, certManager: {issuerRef: {name: corp-ca, kind:"
                + " ClusterIssuer}}}\n");
    assertThat(own.ofKind("Issuer")).isEmpty();
    assertThat(own.one("Certificate").at("/spec/issuerRef/name").asText()).isEqualTo("corp-ca");
    assertThat(defaults.ofKind("Certificate")).isEmpty();
  }

  @Test
  @DisplayName(
      "Plain HTTP only when asked for (tls.mode none: --plain-http, no CA published); client"
          + " certificates mount the client CA; API-server tokens only when allowed")
  void tlsAndAuthOptions() throws IOException {
    List<String> plain = Rendered.of("tls: {mode: none}\n").container().getArgs();
    assertThat(plain).contains("--plain-http").noneMatch(a -> a.startsWith("--tls-"));
    assertThat(defaults.container().getArgs())
        .doesNotContain("--plain-http", "--accept-api-server-tokens");

    Rendered mtls =
        Rendered.of(
            "tls: {clientAuth: {mode: require, caConfigMap: runner-ca}}\n"
                + "auth: {acceptApiServerTokens: true, tokenAudience: tf-backend}\n");
    assertThat(mtls.container().getArgs())
        .contains(
            "--tls-client-ca=/etc/leasehold/client-ca/ca.crt",
            "--tls-client-auth=require",
            "--token-audience=tf-backend",
            "--accept-api-server-tokens");
    assertThat(mtls.deployment().getSpec().getTemplate().getSpec().getVolumes())
        .anySatisfy(
            v -> assertThat(v.getConfigMap()).hasFieldOrPropertyWithValue("name", "runner-ca"));
  }

  @Test
  @DisplayName(
      "Shutdown is ordered: with the preStop sleep action (1.30+) the process drains at once after"
          + " it; on 1.29 it waits as long itself; the grace period covers both")
  void shutdownOrdering() throws IOException {
    Container current = defaults.container();
    assertThat(current.getLifecycle().getPreStop().getSleep().getSeconds()).isEqualTo(5L);
    assertThat(current.getArgs()).contains("--shutdown-delay=0s", "--drain-timeout=20s");

    Rendered old = new Rendered(parse(template("", "v1.29.4")));
    assertThat(old.container().getLifecycle()).isNull();
    assertThat(old.container().getArgs()).contains("--shutdown-delay=5s", "--drain-timeout=20s");
    assertThat(
            old.deployment().getSpec().getTemplate().getSpec().getTerminationGracePeriodSeconds())
        .isEqualTo(35L);

    Rendered longer = Rendered.of("shutdown: {preStopSleepSeconds: 10, drainSeconds: 60}\n");
    assertThat(
            longer
                .deployment()
                .getSpec()
                .getTemplate()
                .getSpec()
                .getTerminationGracePeriodSeconds())
        .isEqualTo(80L);
    assertThatThrownBy(() -> template("", "v1.28.0"))
        .hasMessageContaining("chart requires kubeVersion");
  }

  @Test
  @DisplayName(
      "Security contexts can be overridden, and on platforms that assign UIDs the chart leaves"
          + " the user and group IDs out while keeping the rest of the restricted profile")
  void securityContextOverridesAndAssignedUids() throws IOException {
    Rendered platform = Rendered.of("uidAssignment: platform\n");
    PodSecurityContext pod =
        platform.deployment().getSpec().getTemplate().getSpec().getSecurityContext();
    assertThat(pod.getRunAsUser()).isNull();
    assertThat(pod.getRunAsGroup()).isNull();
    assertThat(pod.getFsGroup()).isNull();
    assertThat(pod.getRunAsNonRoot()).isTrue();
    assertThat(pod.getSeccompProfile().getType()).isEqualTo("RuntimeDefault");
    assertThat(platform.container().getSecurityContext().getReadOnlyRootFilesystem()).isTrue();

    Rendered custom =
        Rendered.of(
            "podSecurityContext: {runAsNonRoot: true, runAsUser: 1001, fsGroup: 1001,"
                + " seccompProfile: {type: RuntimeDefault}}\n"
                + "securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem:"
                + " true, runAsUser: 1001, capabilities: {drop: [ALL]}}\n");
    assertThat(
            custom
                .deployment()
                .getSpec()
                .getTemplate()
                .getSpec()
                .getSecurityContext()
                .getRunAsUser())
        .isEqualTo(1001L);
    assertThat(custom.container().getSecurityContext().getRunAsUser()).isEqualTo(1001L);
  }

  @Test
  @DisplayName(
      "Scheduling and rollout values: topology spread (filled with the pods' labels), PDB with"
          + " maxUnavailable, strategy, extra env, volumes and mounts, service type, image digest")
  void anchorValues() throws IOException {
    Rendered rendered =
        Rendered.of(
            """
            topologySpreadConstraints:
              - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway}
            podDisruptionBudget: {minAvailable: null, maxUnavailable: 1}
            strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1, maxSurge: 0}}
            extraEnv: [{name: HTTPS_PROXY, value: "http://proxy:3128"}]
            extraVolumes: [{name: corp-ca, configMap: {name: corp-ca}}]
            extraVolumeMounts: [{name: corp-ca, mountPath: /etc/corp-ca, readOnly: true}]
            service: {type: LoadBalancer}
            image: {digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
            """);
    Deployment deployment = rendered.deployment();
    var spread = deployment.getSpec().getTemplate().getSpec().getTopologySpreadConstraints();
    assertThat(spread).hasSize(1);
    assertThat(spread.get(0).getLabelSelector().getMatchLabels())
        .isEqualTo(deployment.getSpec().getSelector().getMatchLabels());
    JsonNode pdb = rendered.one("PodDisruptionBudget");
    assertThat(pdb.at("/spec/maxUnavailable").asInt()).isEqualTo(1);
    assertThat(pdb.at("/spec/minAvailable").isMissingNode()).isTrue();
    assertThat(deployment.getSpec().getStrategy().getRollingUpdate().getMaxSurge().getIntVal())
        .isZero();
    assertThat(envOf(rendered.container())).containsKey("HTTPS_PROXY");
    assertThat(rendered.container().getVolumeMounts())
        .anySatisfy(m -> assertThat(m.getMountPath()).isEqualTo("/etc/corp-ca"));
    assertThat(deployment.getSpec().getTemplate().getSpec().getVolumes())
        .anySatisfy(v -> assertThat(v.getName()).isEqualTo("corp-ca"));
    assertThat(rendered.one("Service").at("/spec/type").asText()).isEqualTo("LoadBalancer");
    assertThat(rendered.container().getImage())
        .isEqualTo(
            "ghcr.io/leasehold/leasehold@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");

    Deployment byDefault = defaults.deployment();
    assertThat(byDefault.getSpec().getStrategy().getRollingUpdate().getMaxUnavailable().getIntVal())
        .as("a rollout keeps every replica serving until its successor is ready")
        .isZero();
    assertThat(Rendered.of("podDisruptionBudget: {enabled: false}\n").ofKind("PodDisruptionBudget"))
        .isEmpty();
  }

  @Test
  @DisplayName("The defaults and the non-default example pass the schema")
  void acceptsDefaultsAndExample() {
    assertThat(defaults.docs()).isNotEmpty();
    assertThat(custom.docs()).isNotEmpty();
  }
}
