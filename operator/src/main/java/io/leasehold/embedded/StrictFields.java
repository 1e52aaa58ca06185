package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Set;

/**
 * {@code fieldValidation=Strict} for custom resources, which kubectl asks for on create, apply and
 * patch: a field the CRD's schema does not declare is refused, instead of being stored (a typo such
 * as {@code spec.histroy} would otherwise pass silently).
 */
final class StrictFields {

  private static final Set<String> TOP_LEVEL = Set.of("apiVersion", "kind", "metadata");

  private StrictFields() {}

  /** The dotted paths of the fields of {@code object} that {@code schema} does not declare. */
  static List<String> unknown(JsonNode schema, JsonNode object) {
    List<String> out = new ArrayList<>();
    walk(schema, object, "", out, true);
    return out;
  }

  /**
   * Drops the {@code null} values of fields the schema does not declare nullable, as an API server
   * prunes them before validation (the store writes {@code "status": null} on a patch of an object
   * that has no status yet).
   */
  static void dropNulls(JsonNode schema, JsonNode value) {
    if (schema == null || !(value instanceof com.fasterxml.jackson.databind.node.ObjectNode o)) {
      return;
    }
    JsonNode properties = schema.path("properties");
    List<String> drop = new ArrayList<>();
    o.fields()
        .forEachRemaining(
            e -> {
              JsonNode property = properties.path(e.getKey());
              if (e.getValue().isNull() && !property.path("nullable").asBoolean(false)) {
                drop.add(e.getKey());
              } else if (property.isObject()) {
                dropNulls(property, e.getValue());
              }
            });
    drop.forEach(o::remove);
  }

  private static void walk(
      JsonNode schema, JsonNode value, String path, List<String> out, boolean root) {
    if (schema == null || schema.isMissingNode() || value == null) {
      return;
    }
    if (schema.path("x-kubernetes-preserve-unknown-fields").asBoolean(false)) {
      return;
    }
    if (value.isObject()) {
      JsonNode properties = schema.path("properties");
      JsonNode additional = schema.path("additionalProperties");
      Iterator<String> names = value.fieldNames();
      while (names.hasNext()) {
        String name = names.next();
        String child = path.isEmpty() ? name : path + "." + name;
        if (root && TOP_LEVEL.contains(name)) {
          continue;
        }
        if (properties.has(name)) {
          walk(properties.get(name), value.get(name), child, out, false);
        } else if (additional.isObject()) {
          walk(additional, value.get(name), child, out, false);
        } else if (!additional.asBoolean(false)) {
          out.add(child);
        }
      }
    } else if (value.isArray() && schema.path("items").isObject()) {
      for (int i = 0; i < value.size(); i++) {
        walk(schema.get("items"), value.get(i), path + "[" + i + "]", out, false);
      }
    }
  }
}
