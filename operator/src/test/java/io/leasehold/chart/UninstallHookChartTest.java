package io.leasehold.chart;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.marcnuri.helm.Helm;
import io.leasehold.cli.Main;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * Uninstalling without a JDK: the chart's pre-delete hook runs the image's {@code
 * remove-finalizers}, stopping the operator first, with a ServiceAccount allowed exactly what that
 * needs.
 */
class UninstallHookChartTest {

  private static final Path ROOT =
      Path.of(System.getProperty("leasehold.projectRoot", "..")).toAbsolutePath().normalize();
  private static final Path CHART = ROOT.resolve("charts/leasehold");
  private static final String NAMESPACE = "leasehold-system";
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

  /** The hook annotation's key as the tests render it (see {@link #template}). */
  private static final String HOOK = "rendered.leasehold.io/hook";

  @TempDir Path tmp;

  @Test
  @DisplayName(
      "helm uninstall runs remove-finalizers in a pre-delete Job after its RBAC exists: it stops"
          + " this release's Deployment, waits for its leader Lease, then takes the finalizers off;"
          + " the args are ones the command accepts and the pod is no backend endpoint")
  void preDeleteJobRunsRemoveFinalizers() throws IOException {
    List<JsonNode> docs = parse(template(""));
    JsonNode job = named(docs, "Job", "leasehold-remove-finalizers");
    assertThat(job.at("/metadata/annotations/rendered.leasehold.io~1hook").asText())
        .isEqualTo("pre-delete");
    assertThat(job.at("/metadata/annotations/helm.sh~1hook-weight").asInt()).isZero();
    JsonNode pod = job.at("/spec/template/spec");
    assertThat(pod.path("serviceAccountName").asText()).isEqualTo("leasehold-remove-finalizers");
    assertThat(pod.path("restartPolicy").asText()).isEqualTo("Never");
    JsonNode container = pod.path("containers").get(0);
    JsonNode deployment = named(docs, "Deployment", "leasehold");
    assertThat(container.path("image").asText())
        .isEqualTo(deployment.at("/spec/template/spec/containers/0/image").asText());
    assertThat(container.at("/securityContext"))
        .isEqualTo(deployment.at("/spec/template/spec/containers/0/securityContext"));
    assertThat(container.at("/volumeMounts/0/mountPath").asText()).isEqualTo("/tmp");
    assertThat(pod.at("/volumes/0/emptyDir").isObject()).isTrue();
    List<String> args = strings(container.path("args"));
    assertThat(args)
        .containsExactly(
            "remove-finalizers",
            "--stop-deployment=leasehold-system/leasehold",
            "--operator-lease=leasehold-system/leasehold-leader",
            "--stop-timeout=150s");
    // The image's command line accepts them as they are.
    CommandLine.ParseResult parsed = Main.commandLine().parseArgs(args.toArray(String[]::new));
    assertThat(parsed.subcommand().commandSpec().name()).isEqualTo("remove-finalizers");
    assertThat(parsed.subcommand().matchedOptions()).hasSize(3);
    // The operator's Deployment was found by that name and Lease: both are the release's own.
    assertThat(deployment.at("/spec/template/spec/containers/0/args").toString())
        .contains("--leader-election-lease=leasehold-leader");
    // The backend Service does not send Terraform's requests to the hook's pod.
    Map<String, Object> selector =
        YAML.convertValue(named(docs, "Service", "leasehold").at("/spec/selector"), Map.class);
    Map<String, Object> podLabels =
        YAML.convertValue(job.at("/spec/template/metadata/labels"), Map.class);
    assertThat(selector).isNotEmpty();
    assertThat(podLabels.entrySet().containsAll(selector.entrySet()))
        .as("the Service selects the hook's pod")
        .isFalse();

    // Its RBAC is created before it (a lower weight), and only at uninstall.
    for (String kind :
        List.of("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")) {
      JsonNode o =
          named(
              docs,
              kind,
              kind.startsWith("Cluster")
                  ? "leasehold-leasehold-system-remove-finalizers"
                  : "leasehold-remove-finalizers");
      assertThat(o.at("/metadata/annotations/rendered.leasehold.io~1hook").asText())
          .as(kind)
          .isEqualTo("pre-delete");
      assertThat(o.at("/metadata/annotations/helm.sh~1hook-weight").asInt()).as(kind).isNegative();
    }
  }

  @Test
  @DisplayName(
      "The hook's ServiceAccount may patch only this release's Deployment, read only its leader"
          + " Lease, and get, list and update TerraformStates: nothing of Secrets, Jobs or pods")
  void rbacAllowsExactlyWhatTheCommandNeeds() throws IOException {
    List<JsonNode> docs = parse(template(""));
    assertThat(named(docs, "Role", "leasehold-remove-finalizers").path("rules").toString())
        .isEqualTo(
            YAML.readTree(
                    """
                    - apiGroups: [apps]
                      resources: [deployments]
                      resourceNames: [leasehold]
                      verbs: [patch]
                    - apiGroups: [coordination.k8s.io]
                      resources: [leases]
                      resourceNames: [leasehold-leader]
                      verbs: [get]
                    """)
                .toString());
    String states =
        YAML.readTree(
                """
                - apiGroups: [leasehold.io]
                  resources: [terraformstates]
                  verbs: [get, list, update]
                """)
            .toString();
    assertThat(
            named(docs, "ClusterRole", "leasehold-leasehold-system-remove-finalizers")
                .path("rules")
                .toString())
        .isEqualTo(states);
    assertThat(
            named(docs, "ClusterRoleBinding", "leasehold-leasehold-system-remove-finalizers")
                .at("/subjects/0/name")
                .asText())
        .isEqualTo("leasehold-remove-finalizers");

    // Watching some namespaces: the same, in those namespaces only, and the command limited to
    // them.
    List<JsonNode> some = parse(template("watchNamespaces: [team-a, team-b]\n"));
    assertThat(ofKind(some, "ClusterRole"))
        .noneMatch(r -> r.at("/metadata/name").asText().endsWith("remove-finalizers"));
    for (String ns : List.of("team-a", "team-b")) {
      JsonNode role =
          ofKind(some, "Role").stream()
              .filter(
                  r -> r.at("/metadata/name").asText().equals("leasehold-remove-finalizers-states"))
              .filter(r -> r.at("/metadata/namespace").asText().equals(ns))
              .findFirst()
              .orElseThrow();
      assertThat(role.path("rules").toString()).isEqualTo(states);
      assertThat(role.at("/metadata/annotations/rendered.leasehold.io~1hook").asText())
          .isEqualTo("pre-delete");
    }
    assertThat(
            strings(
                named(some, "Job", "leasehold-remove-finalizers")
                    .at("/spec/template/spec/containers/0/args")))
        .contains("--namespace=team-a,team-b");
  }

  @Test
  @DisplayName("uninstallHook.enabled=false renders no hook, no ServiceAccount and no RBAC for it")
  void optOut() throws IOException {
    List<JsonNode> docs = parse(template("uninstallHook: {enabled: false}\n"));
    assertThat(docs)
        .noneMatch(d -> d.at("/metadata/name").asText().contains("remove-finalizers"))
        .noneMatch(d -> d.at("/metadata/annotations/rendered.leasehold.io~1hook").isTextual());
  }

  private static List<String> strings(JsonNode array) {
    List<String> out = new ArrayList<>();
    array.forEach(n -> out.add(n.asText()));
    return out;
  }

  private static List<JsonNode> ofKind(List<JsonNode> docs, String kind) {
    return docs.stream().filter(d -> kind.equals(d.path("kind").asText())).toList();
  }

  private static JsonNode named(List<JsonNode> docs, String kind, String name) {
    List<JsonNode> found =
        ofKind(docs, kind).stream()
            .filter(d -> name.equals(d.at("/metadata/name").asText()))
            .toList();
    assertThat(found).as("rendered %s %s", kind, name).hasSize(1);
    return found.get(0);
  }

  /**
   * The chart rendered with its hooks. helm-java's template leaves hook objects out (as a release's
   * manifest does), so this renders a copy of the chart in which the key {@code helm.sh/hook} is
   * spelt {@value #HOOK}: the hook objects come out with everything else, their annotations
   * included.
   */
  private String template(String values) throws IOException {
    Path chart = tmp.resolve("chart-" + System.nanoTime());
    try (var files = Files.walk(CHART)) {
      for (Path from : (Iterable<Path>) files::iterator) {
        Path to = chart.resolve(CHART.relativize(from).toString());
        if (Files.isDirectory(from)) {
          Files.createDirectories(to);
        } else {
          String text = Files.readString(from, StandardCharsets.UTF_8);
          Files.writeString(to, text.replaceAll("helm\\.sh/hook(\"?:)", HOOK + "$1"));
        }
      }
    }
    Path file = Files.createTempFile(tmp, "values", ".yaml");
    Files.writeString(file, values, StandardCharsets.UTF_8);
    return new Helm(chart)
        .template()
        .withName("leasehold")
        .withNamespace(NAMESPACE)
        .withKubeVersion(HelmChartTest.KUBE_VERSION)
        .withValuesFile(file)
        .call();
  }

  private static List<JsonNode> parse(String manifest) throws IOException {
    List<JsonNode> docs = new ArrayList<>();
    try (var it = YAML.readerFor(JsonNode.class).<JsonNode>readValues(manifest)) {
      while (it.hasNext()) {
        JsonNode doc = it.next();
        if (doc != null && !doc.isNull() && !doc.isEmpty()) {
          docs.add(doc);
        }
      }
    }
    return docs;
  }
}
