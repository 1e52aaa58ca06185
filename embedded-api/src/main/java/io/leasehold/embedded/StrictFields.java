package io.leasehold.embedded;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.BeanDescription;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.introspect.BeanPropertyDefinition;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.KubernetesResource;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * {@code fieldValidation=Strict} for custom resources, which kubectl asks for on create, apply and
 * patch: a field the CRD's schema does not declare is refused, instead of being stored (a typo such
 * as {@code spec.histroy} would otherwise pass silently).
 */
final class StrictFields {

  private static final Set<String> TOP_LEVEL = Set.of("apiVersion", "kind", "metadata");

  /** The fields of ObjectMeta. */
  private static final Set<String> OBJECT_META =
      Set.of(
          "name",
          "generateName",
          "namespace",
          "selfLink",
          "uid",
          "resourceVersion",
          "generation",
          "creationTimestamp",
          "deletionTimestamp",
          "deletionGracePeriodSeconds",
          "labels",
          "annotations",
          "ownerReferences",
          "finalizers",
          "managedFields");

  private StrictFields() {}

  /**
   * The dotted paths of the fields of a built-in object that its Kubernetes type does not declare
   * (empty for a kind the model does not know).
   */
  static List<String> unknownInBuiltIn(ObjectMapper mapper, JsonNode object) {
    Object typed;
    try {
      typed = mapper.treeToValue(object, KubernetesResource.class);
    } catch (com.fasterxml.jackson.databind.exc.MismatchedInputException e) {
      // A value of the wrong type ("data": [1, 2] for a map) does not decode.
      throw new IllegalArgumentException(
          "json: cannot unmarshal "
              + e.getOriginalMessage().replaceAll("\\R.*", "")
              + " at "
              + e.getPathReference(),
          e);
    } catch (JsonProcessingException | IllegalArgumentException e) {
      return List.of();
    }
    if (typed == null || typed instanceof GenericKubernetesResource) {
      return List.of();
    }
    List<String> out = new ArrayList<>();
    walkModel(mapper, typed, object, "", out);
    return out;
  }

  private static void walkModel(
      ObjectMapper mapper, Object model, JsonNode json, String path, List<String> out) {
    if (model == null || json == null) {
      return;
    }
    if (json.isArray() && model instanceof List<?> list) {
      for (int i = 0; i < Math.min(list.size(), json.size()); i++) {
        walkModel(mapper, list.get(i), json.get(i), path + "[" + i + "]", out);
      }
      return;
    }
    if (!json.isObject() || !(model instanceof KubernetesResource)) {
      return;
    }
    Map<String, Object> unknown = additionalProperties(model);
    BeanDescription bean =
        mapper.getSerializationConfig().introspect(mapper.constructType(model.getClass()));
    Map<String, BeanPropertyDefinition> properties = new HashMap<>();
    for (BeanPropertyDefinition p : bean.findProperties()) {
      properties.put(p.getName(), p);
    }
    Iterator<Map.Entry<String, JsonNode>> fields = json.fields();
    while (fields.hasNext()) {
      Map.Entry<String, JsonNode> field = fields.next();
      String child = path.isEmpty() ? field.getKey() : path + "." + field.getKey();
      if (unknown.containsKey(field.getKey())) {
        out.add(child);
        continue;
      }
      BeanPropertyDefinition property = properties.get(field.getKey());
      if (property != null && property.getAccessor() != null) {
        Object value;
        try {
          value = property.getAccessor().getValue(model);
        } catch (RuntimeException e) {
          continue;
        }
        walkModel(mapper, value, field.getValue(), child, out);
      }
    }
  }

  @SuppressWarnings("unchecked")
  private static Map<String, Object> additionalProperties(Object model) {
    try {
      Object value = model.getClass().getMethod("getAdditionalProperties").invoke(model);
      return value instanceof Map<?, ?> map ? (Map<String, Object>) map : Map.of();
    } catch (ReflectiveOperationException e) {
      return Map.of();
    }
  }

  /**
   * Removes the fields at {@code paths} (as {@link #unknown} and {@link #unknownInBuiltIn} name
   * them: dotted, with {@code [i]} for list items) from {@code object}.
   */
  static void remove(JsonNode object, List<String> paths) {
    for (String path : paths) {
      JsonNode node = object;
      String[] parts = path.split("\\.");
      for (int i = 0; i < parts.length && node != null; i++) {
        String part = parts[i];
        List<Integer> indexes = new ArrayList<>();
        int bracket = part.indexOf('[');
        String key = bracket < 0 ? part : part.substring(0, bracket);
        if (bracket >= 0) {
          for (String idx : part.substring(bracket + 1, part.length() - 1).split("\\]\\[")) {
            indexes.add(Integer.parseInt(idx));
          }
        }
        boolean last = i == parts.length - 1;
        if (last && indexes.isEmpty()) {
          if (node instanceof com.fasterxml.jackson.databind.node.ObjectNode o) {
            o.remove(key);
          }
          break;
        }
        node = node.get(key);
        for (int idx : indexes) {
          node = node == null ? null : node.get(idx);
        }
      }
    }
  }

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
        if (root && "metadata".equals(name)) {
          // metadata is an ObjectMeta, whatever the CRD's schema says of it.
          value
              .get(name)
              .fieldNames()
              .forEachRemaining(
                  f -> {
                    if (!OBJECT_META.contains(f)) {
                      out.add("metadata." + f);
                    }
                  });
          continue;
        }
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
