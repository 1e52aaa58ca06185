package io.leasehold.embedded;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.marcnuri.helm.Helm;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * One CRD everywhere: the one generated from the Java model, the copy committed under crds/, the
 * chart's copy and the CRD the chart renders (which Helm installs and upgrades with the release).
 */
class CrdDriftTest {

  private static final String REFRESH =
      "mvn -B -Prefresh-crds -DskipTests process-classes -pl operator -am";
  private static final Path ROOT = Path.of(System.getProperty("leasehold.projectRoot"));
  private static final Path CHART = ROOT.resolve("charts/leasehold");
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

  private static Path committed() {
    return ROOT.resolve("crds")
        .resolve(Path.of(System.getProperty("leasehold.generatedCrd")).getFileName());
  }

  @Test
  @DisplayName(
      "kubectl explain has something to say for every field: the resource, spec, status and each"
          + " field and list item in the generated CRD carry a description")
  void everyFieldIsDescribed() throws Exception {
    JsonNode crd = YAML.readTree(Path.of(System.getProperty("leasehold.generatedCrd")).toFile());
    List<String> undescribed = new ArrayList<>();
    for (JsonNode version : crd.at("/spec/versions")) {
      undescribed(version.at("/schema/openAPIV3Schema"), "tfstate", undescribed);
    }
    assertThat(undescribed).as("fields without a description").isEmpty();
    JsonNode root = crd.at("/spec/versions/0/schema/openAPIV3Schema");
    assertThat(root.path("description").asText()).contains("Terraform state");
    assertThat(root.at("/properties/spec/description").asText()).contains("workspace");
  }

  private static void undescribed(JsonNode schema, String path, List<String> found) {
    if (schema.path("description").asText().isBlank()) {
      found.add(path);
    }
    schema
        .path("properties")
        .fields()
        .forEachRemaining(f -> undescribed(f.getValue(), path + "." + f.getKey(), found));
    if (schema.has("items")) {
      undescribed(schema.path("items"), path + "[]", found);
    }
  }

  @Test
  @DisplayName("The CRD committed under crds/ is exactly the one generated from the Java model")
  void committedCrdMatchesGenerated() throws Exception {
    Path generated = Path.of(System.getProperty("leasehold.generatedCrd"));
    Path committed = committed();
    assertThat(generated).as("generated CRD (run the build through process-classes)").exists();
    assertThat(committed).as("%s is missing; create it with: %s", committed, REFRESH).exists();
    assertThat(Files.readString(committed, StandardCharsets.UTF_8))
        .as(
            "%s differs from the CRD generated from the Java model; refresh it with: %s",
            committed, REFRESH)
        .isEqualTo(Files.readString(generated, StandardCharsets.UTF_8));
  }

  @Test
  @DisplayName(
      "The chart's copy of the CRD is byte for byte crds/, and the chart has no crds/ directory"
          + " (Helm would install that once and never upgrade it)")
  void chartCopyMatchesCommitted() throws Exception {
    Path inChart = CHART.resolve("files").resolve(committed().getFileName());
    assertThat(inChart).as("%s is missing; create it with: %s", inChart, REFRESH).exists();
    assertThat(Files.mismatch(inChart, committed()))
        .as(
            "%s differs from %s (first differing byte); refresh it with: %s",
            inChart, committed(), REFRESH)
        .isEqualTo(-1L);
    assertThat(CHART.resolve("crds")).doesNotExist();
  }

  @Test
  @DisplayName(
      "The CRD the chart renders is crds/ object for object, plus the release's labels and the"
          + " keep annotation; crds.keep=false drops the annotation, crds.enabled=false the CRD")
  void renderedCrdMatchesCommitted(@TempDir Path tmp) throws Exception {
    JsonNode expected = YAML.readTree(committed().toFile());
    JsonNode rendered = renderedCrd(tmp, "");
    assertThat(rendered.at("/metadata/annotations/helm.sh~1resource-policy").asText())
        .isEqualTo("keep");
    assertThat(rendered.at("/metadata/labels/app.kubernetes.io~1managed-by").asText())
        .isEqualTo("Helm");
    ObjectNode stripped = rendered.deepCopy();
    ((ObjectNode) stripped.get("metadata")).remove(List.of("labels", "annotations"));
    // YAML has one number type: 100 and 100.0 (as the generator writes a maximum) are equal.
    java.util.Comparator<JsonNode> sameValue =
        (a, b) ->
            a.isNumber() && b.isNumber()
                ? a.decimalValue().compareTo(b.decimalValue())
                : a.equals(b) ? 0 : 1;
    assertThat(stripped.equals(sameValue, expected))
        .as("the rendered CRD (labels and annotations aside) equals %s", committed())
        .isTrue();

    assertThat(
            renderedCrd(tmp, "crds: {keep: false}\n").at("/metadata/annotations").isMissingNode())
        .isTrue();
    assertThat(crds(tmp, "crds: {enabled: false}\n")).isEmpty();
  }

  private static JsonNode renderedCrd(Path tmp, String values) throws Exception {
    List<JsonNode> crds = crds(tmp, values);
    assertThat(crds).hasSize(1);
    return crds.get(0);
  }

  private static List<JsonNode> crds(Path tmp, String values) throws Exception {
    Path file = Files.createTempFile(tmp, "values", ".yaml");
    Files.writeString(file, values);
    String manifest =
        new Helm(CHART)
            .template()
            .withName("leasehold")
            .withNamespace("leasehold-system")
            .withKubeVersion("v1.31.0")
            .withValuesFile(file)
            .call();
    List<JsonNode> found = new ArrayList<>();
    try (var docs = YAML.readerFor(JsonNode.class).<JsonNode>readValues(manifest)) {
      while (docs.hasNext()) {
        JsonNode doc = docs.next();
        if (doc != null && "CustomResourceDefinition".equals(doc.path("kind").asText())) {
          found.add(doc);
        }
      }
    }
    return found;
  }
}
