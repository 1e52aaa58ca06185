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

  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
  private static final KubernetesSerialization KUBE = new KubernetesSerialization();

  /** One permission: an API group, a resource (or subresource) and a verb. */
  record Permission(String group, String resource, String verb) {
    @Override
    public String toString() {
      return (group.isEmpty() ? "core" : group) + "/" + resource + ":" + verb;
    }
  }

  private static Set<Permission> permissions(String group, String resource, String... verbs) {
    Set<Permission> result = new HashSet<>();
    for (String verb : verbs) {
      result.add(new Permission(group, resource, verb));
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

  /**
   * The API calls the operator makes in each watched namespace: the TerraformState informer and its
   * annotation patches, status updates, Leases, state Secrets (informer, backend writes, Delete
   * policy), runner Jobs (informer, unsuspend patch), Events, and the runner pod lookup.
   */
  private static final Set<Permission> NAMESPACED_CALLS =
      union(
          permissions("leasehold.io", "terraformstates", "get", "list", "watch", "patch", "update"),
          permissions("leasehold.io", "terraformstates/status", "get", "patch", "update"),
          LEASE_CALLS,
          permissions("", "secrets", "get", "list", "watch", "create", "update", "delete"),
          permissions("batch", "jobs", "list", "watch", "patch"),
          permissions("", "events", "create"),
          permissions("", "pods", "get"));

  /** The backend's TokenReview and SubjectAccessReview, which are cluster-scoped. */
  private static final Set<Permission> REVIEW_CALLS =
      union(
          permissions("authentication.k8s.io", "tokenreviews", "create"),
          permissions("authorization.k8s.io", "subjectaccessreviews", "create"),
          permissions("authorization.k8s.io", "selfsubjectrulesreviews", "create"));

  private static final Set<Permission> ALL_CALLS = union(NAMESPACED_CALLS, REVIEW_CALLS);

  private static final String NON_DEFAULT_VALUES =
      """
      replicas: 3
      watchNamespaces: [team-a, team-b]
      logFormat: json
      logLevel: DEBUG
      maxStateBytes: 268435456
      maxLockWait: 30m
      networkPolicy:
        enabled: true
        backend:
          namespaceSelector:
            matchLabels:
              leasehold.io/runners: "true"
          podSelector:
            matchLabels:
              app: terraform
        metrics:
          namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: monitoring
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
    return new Helm(CHART)
        .template()
        .withName(RELEASE)
        .withNamespace(NAMESPACE)
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
      assertThat(r.getResourceNames())
          .as("resourceNames of %s rule %s", role.at("/metadata/name").asText(), rule)
          .isNullOrEmpty();
      for (String group : r.getApiGroups()) {
        for (String resource : r.getResources()) {
          for (String verb : r.getVerbs()) {
            result.add(new Permission(group, resource, verb));
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

  @Test
  @DisplayName("The chart's CRD is byte for byte the generated CRD committed under crds/")
  void chartCrdMatchesCommittedCrd() throws IOException {
    Path committed = ROOT.resolve("crds").resolve(CRD_FILE);
    Path inChart = CHART.resolve("crds").resolve(CRD_FILE);
    String fix = "copy it with `cp crds/" + CRD_FILE + " charts/leasehold/crds/`";
    assertThat(inChart).as("%s is missing; %s", inChart, fix).exists();
    assertThat(Files.mismatch(inChart, committed))
        .as("%s differs from %s (first differing byte); %s", inChart, committed, fix)
        .isEqualTo(-1L);
    try (var files = Files.list(CHART.resolve("crds"))) {
      assertThat(files.map(p -> p.getFileName().toString()))
          .as("files in the chart's crds/")
          .containsExactly(CRD_FILE);
    }
  }

  @Test
  @DisplayName("The install notes say where the backend is and how to check the operator")
  void notes() throws IOException {
    Path values = Files.createTempFile(tmp, "values", ".yaml");
    Files.writeString(values, NON_DEFAULT_VALUES, StandardCharsets.UTF_8);
    String output =
        new Helm(CHART)
            .install()
            .withName(RELEASE)
            .withNamespace(NAMESPACE)
            .withValuesFile(values)
            .clientOnly()
            .dryRun()
            .call()
            .getOutput();
    String notes = output.substring(output.indexOf("NOTES:"));
    assertThat(notes)
        .contains("http://leasehold." + NAMESPACE + ".svc:8080/v1/states/NS/NAME")
        .contains("kubectl -n " + NAMESPACE + " rollout status deployment/leasehold")
        .contains("Watching: team-a, team-b.");
  }

  @Test
  @DisplayName(
      "By default one ClusterRole grants exactly the API calls the code makes, bound to the"
          + " operator's ServiceAccount, and there are no Roles")
  void clusterWide() {
    assertNoWildcard(defaults);
    JsonNode clusterRole = defaults.one("ClusterRole");
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
          + " Role with the namespaced calls, and the release namespace a Role for the"
          + " leader-election Lease")
  void namespaced() {
    assertNoWildcard(custom);
    JsonNode clusterRole = custom.one("ClusterRole");
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
    assertThat(byNamespace.get(NAMESPACE)).containsExactlyInAnyOrderElementsOf(LEASE_CALLS);
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
          + " terraformstates/state, for the listed states only, and creates the ServiceAccount"
          + " when asked")
  void runnerRbac() {
    List<JsonNode> runnerRoles =
        custom.ofKind("Role").stream().filter(r -> isRunnerRole(r)).toList();
    assertThat(runnerRoles).hasSize(2);

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

    JsonNode teamB =
        runnerRoles.stream()
            .filter(r -> "team-b".equals(r.at("/metadata/namespace").asText()))
            .findFirst()
            .orElseThrow();
    PolicyRule all = onlyRule(teamB);
    assertThat(all.getResources()).containsExactly("terraformstates/state");
    assertThat(all.getVerbs()).containsExactlyInAnyOrder("get", "update");
    assertThat(all.getResourceNames()).as("no states listed: every state").isNullOrEmpty();
    assertRunnerBinding(teamB, "ci");

    List<JsonNode> accounts = custom.ofKind("ServiceAccount");
    assertThat(accounts)
        .extracting(
            a -> a.at("/metadata/namespace").asText() + "/" + a.at("/metadata/name").asText())
        .containsExactlyInAnyOrder(NAMESPACE + "/" + SERVICE_ACCOUNT, "team-a/terraform-runner");
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
    assertThat(pod.getTerminationGracePeriodSeconds()).isEqualTo(30L);
    assertThat(defaults.container().getImage()).isEqualTo("ghcr.io/leasehold/leasehold:0.1.0");
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
            "--max-state-bytes=134217728",
            "--max-lock-wait=15m");
    assertThat(custom.container().getArgs())
        .containsExactly(
            "run",
            "--http-port=8080",
            "--management-port=8081",
            "--leader-election-namespace=$(POD_NAMESPACE)",
            "--namespace=team-a,team-b",
            "--max-state-bytes=268435456",
            "--max-lock-wait=30m");
  }

  @Test
  @DisplayName(
      "The environment carries the pod's namespace, the log format and level, and the JVM's"
          + " memory options")
  void env() {
    Map<String, EnvVar> env = envOf(defaults.container());
    assertThat(env)
        .containsOnlyKeys(
            "POD_NAMESPACE", "LEASEHOLD_LOG_FORMAT", "LEASEHOLD_LOG_LEVEL", "JAVA_TOOL_OPTIONS");
    assertThat(env.get("POD_NAMESPACE").getValueFrom().getFieldRef().getFieldPath())
        .isEqualTo("metadata.namespace");
    assertThat(env.get("LEASEHOLD_LOG_FORMAT").getValue()).isEqualTo("text");
    assertThat(env.get("LEASEHOLD_LOG_LEVEL").getValue()).isEqualTo("INFO");
    assertThat(env.get("JAVA_TOOL_OPTIONS").getValue())
        .isEqualTo("-XX:MaxRAMPercentage=75 -XX:+ExitOnOutOfMemoryError");

    Map<String, EnvVar> customEnv = envOf(custom.container());
    assertThat(customEnv.get("LEASEHOLD_LOG_FORMAT").getValue()).isEqualTo("json");
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
      "NetworkPolicy, ServiceMonitor and the admission policies are rendered only when enabled"
          + " (the policies: where the cluster serves their API, or a version is set)")
  void onlyWhenEnabled() {
    for (String kind :
        List.of(
            "NetworkPolicy",
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
      "The NetworkPolicy admits the configured runners to 8080 and the metrics namespaces to"
          + " 8081, and leaves egress open")
  void networkPolicy() {
    JsonNode policy = custom.one("NetworkPolicy");
    assertThat(KUBE.convertValue(policy.at("/spec/podSelector/matchLabels"), Map.class))
        .isEqualTo(custom.deployment().getSpec().getSelector().getMatchLabels());
    assertThat(policy.at("/spec/policyTypes").toString()).isEqualTo("[\"Ingress\"]");
    JsonNode ingress = policy.at("/spec/ingress");
    assertThat(ingress).hasSize(2);
    assertThat(ingress.at("/0/ports/0/port").asInt()).isEqualTo(8080);
    assertThat(ingress.at("/0/ports")).hasSize(1);
    assertThat(ingress.at("/0/from/0/namespaceSelector/matchLabels/leasehold.io~1runners").asText())
        .isEqualTo("true");
    assertThat(ingress.at("/0/from/0/podSelector/matchLabels/app").asText()).isEqualTo("terraform");
    assertThat(ingress.at("/1/ports/0/port").asInt()).isEqualTo(8081);
    assertThat(ingress.at("/1/ports")).hasSize(1);
    assertThat(
            ingress
                .at("/1/from/0/namespaceSelector/matchLabels/kubernetes.io~1metadata.name")
                .asText())
        .isEqualTo("monitoring");
    assertThat(ingress.at("/1/from/0").has("podSelector")).isFalse();
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
      })
  void refused(String values, String field) {
    assertThatThrownBy(() -> template(values + "\n"))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("schema")
        .hasMessageContaining(field);
  }

  @Test
  @DisplayName("The defaults and the non-default example pass the schema")
  void acceptsDefaultsAndExample() {
    assertThat(defaults.docs()).isNotEmpty();
    assertThat(custom.docs()).isNotEmpty();
  }
}
