package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A {@code fieldSelector} ({@code involvedObject.name=x,type!=Normal}), matched against any field
 * of an object by its dotted path. The in-memory store understands only {@code metadata.name} and
 * {@code metadata.namespace}; {@code kubectl describe} selects Events by {@code involvedObject.*}.
 * A field the resource cannot be selected by is refused ({@link #checkSupported}).
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
      if (t.matches(".*\\s(in|notin)\\s.*") || t.startsWith("!")) {
        throw new IllegalArgumentException(
            "invalid field selector \""
                + selector
                + "\": \""
                + t
                + "\": field selectors take =, == and != only");
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

  private static final Set<String> EVERY_KIND = Set.of("metadata.name", "metadata.namespace");

  /**
   * The fields beyond name and namespace that a kind can be selected by, as the API server declares
   * them for each built-in resource (its "field label conversion").
   */
  private static final Map<String, Set<String>> SELECTABLE =
      Map.of(
          "/secrets",
          Set.of("type"),
          "/events",
          Set.of(
              "involvedObject.kind",
              "involvedObject.namespace",
              "involvedObject.name",
              "involvedObject.uid",
              "involvedObject.apiVersion",
              "involvedObject.resourceVersion",
              "involvedObject.fieldPath",
              "reason",
              "reportingComponent",
              "source",
              "type"),
          "events.k8s.io/events",
          Set.of(
              "regarding.kind",
              "regarding.namespace",
              "regarding.name",
              "regarding.uid",
              "regarding.apiVersion",
              "regarding.resourceVersion",
              "regarding.fieldPath",
              "reason",
              "reportingController",
              "type"),
          "batch/jobs",
          Set.of("status.successful"),
          "/pods",
          Set.of(
              "spec.nodeName",
              "spec.restartPolicy",
              "spec.schedulerName",
              "spec.serviceAccountName",
              "spec.hostNetwork",
              "status.phase",
              "status.podIP",
              "status.podIPs",
              "status.nominatedNodeName"),
          "/namespaces",
          Set.of("status.phase"));

  /**
   * Refuses a field the resource cannot be selected by, as the API server does (it would otherwise
   * select everything): name and namespace, the fields a built-in resource declares, and a custom
   * resource's {@code selectableFields}.
   *
   * @param crd the CRD of a custom resource, else null
   */
  void checkSupported(String group, String plural, String version, JsonNode crd) {
    Set<String> allowed = new java.util.HashSet<>(EVERY_KIND);
    allowed.addAll(SELECTABLE.getOrDefault(group + "/" + plural, Set.of()));
    if (crd != null) {
      for (JsonNode v : crd.path("spec").path("versions")) {
        if (v.path("name").asText().equals(version)) {
          for (JsonNode f : v.path("selectableFields")) {
            allowed.add(f.path("jsonPath").asText().replaceFirst("^\\.", ""));
          }
        }
      }
    }
    for (Requirement r : requirements) {
      if (!allowed.contains(r.field())) {
        throw new IllegalArgumentException(
            "field label not supported: "
                + r.field()
                + " (the fields "
                + plural
                + " can be selected by: "
                + String.join(", ", new java.util.TreeSet<>(allowed))
                + ")");
      }
    }
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
