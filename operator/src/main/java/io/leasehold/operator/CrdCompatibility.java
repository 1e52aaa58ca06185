package io.leasehold.operator;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.leasehold.api.TerraformState;
import io.leasehold.ops.ManagementServer;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * Compares the TerraformState CRD installed in the cluster with the one this operator was built
 * with. A CRD that is missing, or does not serve the version the operator reads, stops it from
 * working: the operator then waits, not ready, and says why, instead of exiting and restarting. A
 * CRD that serves the version but lacks fields this operator writes is older: the API server drops
 * those fields, so the operator runs and says so.
 */
public final class CrdCompatibility {

  public static final String CRD_NAME = TerraformState.PLURAL + "." + TerraformState.GROUP;
  private static final String BUNDLED = "META-INF/fabric8/" + CRD_NAME + "-v1.yml";

  /**
   * What was found.
   *
   * @param usable whether the operator can run at all (the CRD serves its version)
   * @param missing schema fields this operator writes that the installed CRD lacks
   * @param message what a person reads, with how to fix it; empty when all is well
   */
  public record Verdict(boolean usable, List<String> missing, String message) {
    public boolean current() {
      return usable && missing.isEmpty();
    }
  }

  private static final String FIX =
      "upgrade the CRD: helm upgrade with crds.enabled=true (the default), or kubectl apply -f"
          + " crds/ from this release";

  private CrdCompatibility() {}

  public static Verdict check(KubernetesClient client) {
    CustomResourceDefinition crd;
    try {
      crd = client.apiextensions().v1().customResourceDefinitions().withName(CRD_NAME).get();
    } catch (KubernetesClientException e) {
      return new Verdict(
          false,
          List.of(),
          "cannot read the CustomResourceDefinition " + CRD_NAME + ": " + e.getMessage());
    }
    return compare(crd == null ? null : new ObjectMapper().valueToTree(crd), bundled());
  }

  /** Compares an installed CRD (as JSON, null when absent) with the one this operator needs. */
  static Verdict compare(JsonNode installed, JsonNode needed) {
    if (installed == null) {
      return new Verdict(
          false,
          List.of(),
          "the CustomResourceDefinition " + CRD_NAME + " is not installed: " + FIX);
    }
    JsonNode version = null;
    for (JsonNode v : installed.at("/spec/versions")) {
      if (TerraformState.VERSION.equals(v.path("name").asText())) {
        version = v;
      }
    }
    if (version == null || !version.path("served").asBoolean(false)) {
      return new Verdict(
          false,
          List.of(),
          "the CustomResourceDefinition "
              + CRD_NAME
              + " does not serve "
              + TerraformState.VERSION
              + ", which this operator reads: "
              + FIX);
    }
    JsonNode neededSchema = null;
    for (JsonNode v : needed.at("/spec/versions")) {
      if (TerraformState.VERSION.equals(v.path("name").asText())) {
        neededSchema = v.at("/schema/openAPIV3Schema");
      }
    }
    TreeSet<String> missing = new TreeSet<>();
    if (neededSchema != null) {
      missingFields("", neededSchema, version.at("/schema/openAPIV3Schema"), missing);
    }
    if (missing.isEmpty()) {
      return new Verdict(true, List.of(), "");
    }
    List<String> fields = new ArrayList<>(missing);
    return new Verdict(
        true,
        fields,
        "the CustomResourceDefinition "
            + CRD_NAME
            + " is older than this operator: it lacks "
            + String.join(", ", fields.size() > 8 ? fields.subList(0, 8) : fields)
            + (fields.size() > 8 ? " and " + (fields.size() - 8) + " more" : "")
            + ", which the API server drops from what the operator writes; "
            + FIX);
  }

  private static void missingFields(
      String path, JsonNode needed, JsonNode installed, TreeSet<String> missing) {
    if (installed.path("x-kubernetes-preserve-unknown-fields").asBoolean(false)) {
      return;
    }
    for (Iterator<Map.Entry<String, JsonNode>> it = needed.path("properties").fields();
        it.hasNext(); ) {
      Map.Entry<String, JsonNode> field = it.next();
      String p = path.isEmpty() ? field.getKey() : path + "." + field.getKey();
      JsonNode there = installed.path("properties").path(field.getKey());
      if (there.isMissingNode()) {
        missing.add(p);
      } else {
        missingFields(p, field.getValue(), there, missing);
      }
    }
    if (needed.has("items") && installed.has("items")) {
      missingFields(path + "[]", needed.get("items"), installed.get("items"), missing);
    }
  }

  /** The CRD this operator was built with. */
  static JsonNode bundled() {
    try (InputStream in = CrdCompatibility.class.getClassLoader().getResourceAsStream(BUNDLED)) {
      if (in == null) {
        throw new IllegalStateException(BUNDLED + " is missing from the operator's classpath");
      }
      return new ObjectMapper(new YAMLFactory()).readTree(in);
    } catch (IOException e) {
      throw new IllegalStateException("cannot read " + BUNDLED, e);
    }
  }

  /** The verdict as a readiness check: not ready while unusable. */
  public static ManagementServer.Check asCheck(Verdict verdict) {
    return new ManagementServer.Check(verdict.usable(), verdict.message());
  }
}
