package io.leasehold.api;

import com.fasterxml.jackson.annotation.JsonClassDescription;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Build step run after Fabric8's CRD generator, which takes descriptions from
 * {@code @JsonPropertyDescription} on properties only: gives {@code kubectl explain} a description
 * of the resource itself (from {@link TerraformState}'s {@code @JsonClassDescription}), of list
 * items whose class says what they are, and of the fields of the Kubernetes conditions, whose class
 * leasehold does not own. A description already generated is never replaced.
 */
final class CrdDescriptions {

  private static final Map<String, String> CONDITION_FIELDS = new LinkedHashMap<>();

  static {
    CONDITION_FIELDS.put("type", "Ready, Locked or Degraded.");
    CONDITION_FIELDS.put("status", "True, False or Unknown.");
    CONDITION_FIELDS.put(
        "reason",
        "Why the condition is as it is, in CamelCase (docs/api.md in the source lists them).");
    CONDITION_FIELDS.put("message", "What a person needs to know about it.");
    CONDITION_FIELDS.put("lastTransitionTime", "When the status last changed.");
    CONDITION_FIELDS.put("observedGeneration", "The metadata.generation the condition describes.");
  }

  private CrdDescriptions() {}

  /** Fills the missing descriptions in every version's schema of {@code crd}. */
  static void fill(JsonNode crd) {
    for (JsonNode version : crd.path("spec").path("versions")) {
      JsonNode root = version.path("schema").path("openAPIV3Schema");
      describe(root, of(TerraformState.class));
      JsonNode status = root.path("properties").path("status").path("properties");
      describe(status.path("queue").path("items"), of(QueueEntry.class));
      describe(
          status.path("plans").path("items"),
          "A plan that holds the lock, as Terraform described it in its LockInfo.");
      describe(
          status.path("unserializedRunners").path("items"),
          "Name of a runner Job created without spec.suspend: true.");
      JsonNode condition = status.path("conditions").path("items");
      describe(condition, "A condition of this TerraformState (as Kubernetes' metav1.Condition).");
      CONDITION_FIELDS.forEach(
          (field, text) -> describe(condition.path("properties").path(field), text));
    }
  }

  private static String of(Class<?> type) {
    JsonClassDescription d = type.getAnnotation(JsonClassDescription.class);
    if (d == null || d.value().isBlank()) {
      throw new IllegalStateException(type.getName() + " has no @JsonClassDescription");
    }
    return d.value();
  }

  private static void describe(JsonNode schema, String text) {
    if (schema instanceof ObjectNode node && !node.hasNonNull("description")) {
      // The description first, as the generator writes it.
      Map<String, JsonNode> rest = new LinkedHashMap<>();
      node.fields().forEachRemaining(e -> rest.put(e.getKey(), e.getValue()));
      node.removeAll();
      node.put("description", text);
      rest.forEach(node::set);
    }
  }
}
