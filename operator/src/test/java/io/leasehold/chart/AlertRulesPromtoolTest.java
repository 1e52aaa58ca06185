package io.leasehold.chart;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.marcnuri.helm.Helm;
import io.leasehold.support.Binaries;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The chart's alert rules, as the chart renders them, pass their unit tests under Prometheus's own
 * rule engine: {@code promtool test rules} with {@code
 * src/test/resources/prometheus/alerts.test.yaml} (series over time in, alerts expected out). Each
 * alert has a case where it fires and one where it does not. promtool is Debian's {@code
 * prometheus} package, which {@code hack/tools.sh} installs; without it the test fails, saying so.
 */
class AlertRulesPromtoolTest {

  private static final Path ROOT =
      Path.of(System.getProperty("leasehold.projectRoot", "..")).toAbsolutePath().normalize();
  private static final Path CHART = ROOT.resolve("charts/leasehold");
  static final Path TESTS = ROOT.resolve("operator/src/test/resources/prometheus/alerts.test.yaml");
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

  @TempDir static Path tmp;
  private static JsonNode rules;

  @BeforeAll
  static void render() throws IOException {
    rules = renderedRules(tmp);
  }

  /**
   * The rule groups of the PrometheusRule the chart renders (release {@code leasehold} in {@code
   * leasehold-system}, default thresholds), written as a Prometheus rules file {@code rules.yaml}
   * in {@code dir}.
   */
  static JsonNode renderedRules(Path dir) throws IOException {
    Path values = Files.createTempFile(dir, "values", ".yaml");
    Files.writeString(values, "prometheusRule: {enabled: true}\n", StandardCharsets.UTF_8);
    String manifest =
        new Helm(CHART)
            .template()
            .withName("leasehold")
            .withNamespace("leasehold-system")
            .withKubeVersion(HelmChartTest.KUBE_VERSION)
            .withValuesFile(values)
            .call();
    JsonNode groups = null;
    try (var it = YAML.readerFor(JsonNode.class).<JsonNode>readValues(manifest)) {
      while (it.hasNext()) {
        JsonNode doc = it.next();
        if (doc != null && "PrometheusRule".equals(doc.path("kind").asText())) {
          groups = doc.at("/spec/groups");
        }
      }
    }
    assertThat(groups).as("the PrometheusRule's groups").isNotNull();
    ObjectNode file = YAML.createObjectNode();
    file.set("groups", groups);
    YAML.writeValue(dir.resolve("rules.yaml").toFile(), file);
    return groups;
  }

  @Test
  @DisplayName(
      "promtool checks the rendered rules and their unit tests pass: each alert fires on the series"
          + " it is written for, with its labels and annotations, and stays quiet otherwise")
  void promtoolTestRules() throws Exception {
    Binaries.Found promtool = Binaries.promtool();
    Files.copy(TESTS, tmp.resolve("alerts.test.yaml"));
    run(tmp, promtool.path().toString(), "check", "rules", "rules.yaml");
    String out = run(tmp, promtool.path().toString(), "test", "rules", "alerts.test.yaml");
    assertThat(out).contains("SUCCESS");
  }

  @Test
  @DisplayName(
      "The unit tests have, for every alert of the chart, a case where it fires and one where it does not")
  void everyAlertFiresAndStaysQuiet() throws IOException {
    Set<String> alerts = new TreeSet<>();
    for (JsonNode group : rules) {
      for (JsonNode rule : group.path("rules")) {
        alerts.add(rule.path("alert").asText());
      }
    }
    assertThat(alerts).hasSizeGreaterThan(5);
    JsonNode tests = YAML.readTree(TESTS.toFile());
    assertThat(tests.path("rule_files").get(0).asText()).isEqualTo("rules.yaml");
    Set<String> fired = new TreeSet<>();
    Set<String> quiet = new TreeSet<>();
    for (JsonNode test : tests.path("tests")) {
      for (JsonNode check : test.path("alert_rule_test")) {
        String alert = check.path("alertname").asText();
        if (check.path("exp_alerts").isEmpty()) {
          quiet.add(alert);
        } else {
          fired.add(alert);
        }
      }
    }
    assertThat(fired).as("alerts with a firing case").containsAll(alerts);
    assertThat(quiet).as("alerts with a case where they do not fire").containsAll(alerts);
  }

  private static String run(Path dir, String... command) throws Exception {
    Process p =
        new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true).start();
    p.getOutputStream().close();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(120, TimeUnit.SECONDS)).as("%s ended", List.of(command)).isTrue();
    assertThat(p.exitValue())
        .as("exit status of %s, which printed:%n%s", List.of(command), out)
        .isZero();
    return out;
  }
}
