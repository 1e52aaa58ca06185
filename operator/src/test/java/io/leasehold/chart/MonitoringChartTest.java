package io.leasehold.chart;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.marcnuri.helm.Helm;
import io.leasehold.ops.ExportedMetrics;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The chart's observability pack: the PrometheusRule and the Grafana dashboard, both off by
 * default, built only from metrics the operator exports.
 */
class MonitoringChartTest {

  private static final Path ROOT =
      Path.of(System.getProperty("leasehold.projectRoot", "..")).toAbsolutePath().normalize();
  private static final Path CHART = ROOT.resolve("charts/leasehold");
  private static final String NAMESPACE = "leasehold-system";
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
  private static final ObjectMapper JSON = new ObjectMapper();

  /** A metric name in PromQL: leasehold's own and the Java Operator SDK's. */
  private static final Pattern METRIC =
      Pattern.compile("\\b((?:leasehold|operator_sdk|jvm|process)_[a-z0-9_]+)\\b");

  private static final Set<String> ALERTS =
      Set.of(
          "LeaseholdNoLeader",
          "LeaseholdReplicaHeartbeatMissing",
          "LeaseholdReconcileErrors",
          "LeaseholdWritesRefused",
          "LeaseholdLockHeldTooLong",
          "LeaseholdLockWaitsTimingOut",
          "LeaseholdRunnerJobsPilingUp",
          "LeaseholdRunnerQueueStuck",
          "LeaseholdBackendWaitersPilingUp",
          "LeaseholdCertificateExpiringSoon");

  @TempDir static Path tmp;

  private static String exposition;
  private static Set<String> exported;
  private static List<JsonNode> enabled;

  @BeforeAll
  static void render() throws IOException {
    exposition = ExportedMetrics.exposition();
    exported = ExportedMetrics.names(exposition);
    enabled =
        parse(template("prometheusRule: {enabled: true}\ngrafanaDashboard: {enabled: true}\n"));
  }

  @Test
  @DisplayName("The PrometheusRule and the dashboard ConfigMap are rendered only when enabled")
  void offByDefault() throws IOException {
    List<JsonNode> defaults = parse(template(""));
    assertThat(ofKind(defaults, "PrometheusRule")).isEmpty();
    assertThat(ofKind(defaults, "ConfigMap")).isEmpty();
    assertThat(ofKind(enabled, "PrometheusRule")).hasSize(1);
    JsonNode configMap = one(enabled, "ConfigMap");
    assertThat(configMap.at("/metadata/labels/grafana_dashboard").asText()).isEqualTo("1");
    assertThat(configMap.at("/metadata/namespace").asText()).isEqualTo(NAMESPACE);
  }

  @Test
  @DisplayName(
      "Every alert's expression names only metrics the operator exports, selects this release's"
          + " series, and has a severity, a summary and a runbook in docs/runbooks.md")
  void alertsUseExportedMetrics() throws IOException {
    Map<String, JsonNode> alerts = alerts();
    assertThat(alerts.keySet()).containsExactlyInAnyOrderElementsOf(ALERTS);
    String runbooks = Files.readString(ROOT.resolve("docs/runbooks.md"), StandardCharsets.UTF_8);
    for (var e : alerts.entrySet()) {
      String expr = e.getValue().path("expr").asText();
      Set<String> named = metrics(expr);
      assertThat(named).as("metrics in %s", e.getKey()).isNotEmpty();
      assertThat(exported)
          .as("metrics the operator exports, for %s", e.getKey())
          .containsAll(named);
      for (String metric : named) {
        assertThat(expr)
            .as("%s selects %s of this release", e.getKey(), metric)
            .containsPattern(
                Pattern.quote(metric) + "\\{namespace=\"" + NAMESPACE + "\", job=\"leasehold\"");
      }
      assertThat(e.getValue().at("/labels/severity").asText()).isIn("warning", "critical");
      assertThat(e.getValue().at("/annotations/summary").asText()).isNotBlank();
      String anchor = e.getKey().toLowerCase(Locale.ROOT);
      assertThat(e.getValue().at("/annotations/runbook_url").asText()).endsWith("#" + anchor);
      assertThat(runbooks).as("runbook of %s", e.getKey()).contains("## " + e.getKey() + "\n");
    }
  }

  @Test
  @DisplayName(
      "LeaseholdLockHeldTooLong counts holds past a bucket boundary the hold histogram exports,"
          + " and a threshold that is no boundary is refused")
  void lockHeldThresholdIsABucket() throws IOException {
    String expr = alerts().get("LeaseholdLockHeldTooLong").path("expr").asText();
    Matcher le = Pattern.compile("le=\"([^\"]+)\"").matcher(expr);
    assertThat(le.find()).isTrue();
    assertThat(exposition)
        .contains("leasehold_lock_hold_seconds_bucket{holder=\"job\",le=\"" + le.group(1) + "\"}");
    assertThat(le.group(1)).isEqualTo("3600.0");

    String other =
        alertsOf(parse(template("prometheusRule: {enabled: true, lockHeldSeconds: 900}\n")))
            .get("LeaseholdLockHeldTooLong")
            .path("expr")
            .asText();
    assertThat(other).contains("le=\"900.0\"");
    assertThat(exposition).contains("le=\"900.0\"");
    assertThatThrownBy(() -> template("prometheusRule: {enabled: true, lockHeldSeconds: 1000}\n"))
        .hasMessageContaining("lockHeldSeconds");
  }

  @Test
  @DisplayName(
      "Every query of the Grafana dashboard names only metrics the operator exports, and the"
          + " ConfigMap carries the dashboard file as it is")
  void dashboardUsesExportedMetrics() throws IOException {
    String file =
        Files.readString(CHART.resolve("files/grafana-dashboard.json"), StandardCharsets.UTF_8);
    JsonNode dashboard = JSON.readTree(file);
    JsonNode inConfigMap =
        JSON.readTree(one(enabled, "ConfigMap").at("/data/leasehold.json").asText());
    assertThat(inConfigMap).isEqualTo(dashboard);

    List<String> queries = new ArrayList<>();
    for (JsonNode panel : dashboard.path("panels")) {
      for (JsonNode target : panel.path("targets")) {
        queries.add(target.path("expr").asText());
      }
    }
    assertThat(queries).hasSizeGreaterThan(10);
    Set<String> named = new TreeSet<>();
    for (String query : queries) {
      assertThat(metrics(query)).as("metrics in %s", query).isNotEmpty();
      named.addAll(metrics(query));
    }
    assertThat(exported).containsAll(named);
    assertThat(named)
        .as("the dashboard shows leadership, liveness, waits, holds, handoffs, queue and writes")
        .contains(
            "leasehold_leader",
            "leasehold_replicas_alive",
            "leasehold_lock_wait_seconds_bucket",
            "leasehold_lock_hold_seconds_bucket",
            "leasehold_queue_handoff_seconds_bucket",
            "leasehold_queue_jobs",
            "leasehold_state_writes_total",
            "leasehold_tls_certificate_not_after_seconds");
  }

  @Test
  @DisplayName("Each histogram the operator exports has a handful of buckets, not Micrometer's 69")
  void fewBuckets() {
    Matcher m = Pattern.compile("(?m)^(\\w+)_bucket\\{([^}]*?),?le=\"[^\"]+\"").matcher(exposition);
    Map<String, Integer> buckets = new LinkedHashMap<>();
    while (m.find()) {
      buckets.merge(m.group(1) + "{" + m.group(2) + "}", 1, Integer::sum);
    }
    assertThat(buckets.keySet())
        .anyMatch(k -> k.startsWith("leasehold_lock_wait_seconds"))
        .anyMatch(k -> k.startsWith("leasehold_lock_hold_seconds"))
        .anyMatch(k -> k.startsWith("leasehold_queue_handoff_seconds"))
        .anyMatch(k -> k.startsWith("operator_sdk_controllers_execution_reconcile_seconds"));
    assertThat(buckets).allSatisfy((series, n) -> assertThat(n).as(series).isBetween(5, 12));
  }

  private static Map<String, JsonNode> alerts() {
    return alertsOf(enabled);
  }

  private static Map<String, JsonNode> alertsOf(List<JsonNode> docs) {
    Map<String, JsonNode> alerts = new LinkedHashMap<>();
    for (JsonNode group : one(docs, "PrometheusRule").at("/spec/groups")) {
      for (JsonNode rule : group.path("rules")) {
        alerts.put(rule.path("alert").asText(), rule);
      }
    }
    return alerts;
  }

  private static Set<String> metrics(String promql) {
    Set<String> names = new TreeSet<>();
    Matcher m = METRIC.matcher(promql);
    while (m.find()) {
      names.add(m.group(1));
    }
    return names;
  }

  private static List<JsonNode> ofKind(List<JsonNode> docs, String kind) {
    return docs.stream().filter(d -> kind.equals(d.path("kind").asText())).toList();
  }

  private static JsonNode one(List<JsonNode> docs, String kind) {
    List<JsonNode> found = ofKind(docs, kind);
    assertThat(found).as("rendered %s objects", kind).hasSize(1);
    return found.get(0);
  }

  private static String template(String values) throws IOException {
    Path file = Files.createTempFile(tmp, "values", ".yaml");
    Files.writeString(file, values, StandardCharsets.UTF_8);
    return new Helm(CHART)
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
