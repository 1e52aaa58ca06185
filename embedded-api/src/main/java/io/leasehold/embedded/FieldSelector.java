package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;

/**
 * A {@code fieldSelector} ({@code involvedObject.name=x,type!=Normal}), matched against any field
 * of an object by its dotted path. The in-memory store understands only {@code metadata.name} and
 * {@code metadata.namespace}; {@code kubectl describe} selects Events by {@code involvedObject.*}.
 */
record FieldSelector(List<Requirement> requirements) {

  record Requirement(String field, String value, boolean equal) {}

  static FieldSelector parse(String selector) {
    List<Requirement> requirements = new ArrayList<>();
    if (selector == null || selector.isBlank()) {
      return new FieldSelector(requirements);
    }
    for (String term : selector.split(",")) {
      String t = term.trim();
      if (t.isEmpty()) {
        continue;
      }
      int ne = t.indexOf("!=");
      int eqeq = t.indexOf("==");
      int eq = t.indexOf('=');
      if (ne > 0) {
        requirements.add(new Requirement(t.substring(0, ne).trim(), t.substring(ne + 2), false));
      } else if (eqeq > 0) {
        requirements.add(new Requirement(t.substring(0, eqeq).trim(), t.substring(eqeq + 2), true));
      } else if (eq > 0) {
        requirements.add(new Requirement(t.substring(0, eq).trim(), t.substring(eq + 1), true));
      } else {
        throw new IllegalArgumentException(
            "invalid field selector \"" + selector + "\": \"" + t + "\" has no = or !=");
      }
    }
    return new FieldSelector(requirements);
  }

  boolean isEmpty() {
    return requirements.isEmpty();
  }

  boolean matches(JsonNode object) {
    for (Requirement r : requirements) {
      JsonNode value = object;
      for (String part : r.field().split("\\.")) {
        value = value.path(part);
      }
      String actual = value.isValueNode() ? value.asText() : "";
      if (actual.equals(r.value()) != r.equal()) {
        return false;
      }
    }
    return true;
  }
}
