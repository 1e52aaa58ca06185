package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Iterator;
import java.util.Map;

/** A Kubernetes label selector ({@code matchLabels}, {@code matchExpressions}) against labels. */
final class LabelSelector {

  private LabelSelector() {}

  /** Whether {@code labels} (an object, or missing for none) satisfy {@code selector}. */
  static boolean matches(JsonNode selector, JsonNode labels) {
    if (selector == null || !selector.isObject()) {
      return true;
    }
    Iterator<Map.Entry<String, JsonNode>> required = selector.path("matchLabels").fields();
    while (required.hasNext()) {
      Map.Entry<String, JsonNode> label = required.next();
      if (!label.getValue().asText().equals(value(labels, label.getKey()))) {
        return false;
      }
    }
    for (JsonNode expression : selector.path("matchExpressions")) {
      String value = value(labels, expression.path("key").asText());
      boolean in = false;
      for (JsonNode v : expression.path("values")) {
        in |= v.asText().equals(value);
      }
      boolean holds =
          switch (expression.path("operator").asText()) {
            case "In" -> value != null && in;
            case "NotIn" -> value == null || !in;
            case "Exists" -> value != null;
            case "DoesNotExist" -> value == null;
            default -> false;
          };
      if (!holds) {
        return false;
      }
    }
    return true;
  }

  private static String value(JsonNode labels, String key) {
    JsonNode value = labels == null ? null : labels.get(key);
    return value == null || value.isNull() ? null : value.asText();
  }
}
