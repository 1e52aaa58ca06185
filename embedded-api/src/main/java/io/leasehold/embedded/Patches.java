package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The two merge patches of the Kubernetes API, as an API server applies them: JSON merge patch (RFC
 * 7386: a {@code null} removes the key) and strategic merge patch (the same for maps; lists of
 * objects merged by their key, such as containers by {@code name}; the {@code $patch}, {@code
 * $retainKeys}, {@code $deleteFromPrimitiveList} and {@code $setElementOrder} directives kubectl
 * sends).
 */
final class Patches {

  private static final JsonNodeFactory NODES = JsonNodeFactory.instance;

  /**
   * Merge keys of the lists of built-in types that a strategic merge patch merges rather than
   * replaces (their {@code patchMergeKey} in the Kubernetes API types). Lists not named here are
   * replaced, as they are for fields without a patch strategy.
   */
  private static final Map<String, String> MERGE_KEYS =
      Map.ofEntries(
          Map.entry("containers", "name"),
          Map.entry("initContainers", "name"),
          Map.entry("ephemeralContainers", "name"),
          Map.entry("volumes", "name"),
          Map.entry("env", "name"),
          Map.entry("volumeMounts", "mountPath"),
          Map.entry("volumeDevices", "devicePath"),
          Map.entry("imagePullSecrets", "name"),
          Map.entry("hostAliases", "ip"),
          Map.entry("topologySpreadConstraints", "topologyKey"),
          Map.entry("resourceClaims", "name"),
          Map.entry("schedulingGates", "name"),
          Map.entry("conditions", "type"),
          Map.entry("ownerReferences", "uid"),
          Map.entry("podIPs", "ip"),
          Map.entry("secrets", "name"));

  /** Lists of strings that a strategic merge patch merges as sets. */
  private static final Set<String> MERGED_PRIMITIVE_LISTS = Set.of("finalizers");

  private static final String DIRECTIVE = "$patch";
  private static final String RETAIN_KEYS = "$retainKeys";
  private static final String DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/";
  private static final String SET_ELEMENT_ORDER = "$setElementOrder/";

  private Patches() {}

  /** RFC 7386 JSON merge patch; returns the patched document ({@code target} may be changed). */
  static JsonNode mergePatch(JsonNode target, JsonNode patch) {
    if (!patch.isObject()) {
      return patch.deepCopy();
    }
    ObjectNode result = target instanceof ObjectNode o ? o : NODES.objectNode();
    patch
        .fields()
        .forEachRemaining(
            e -> {
              if (e.getValue().isNull()) {
                result.remove(e.getKey());
              } else {
                JsonNode existing = result.get(e.getKey());
                result.set(
                    e.getKey(),
                    mergePatch(existing == null ? NODES.nullNode() : existing, e.getValue()));
              }
            });
    return result;
  }

  /** A strategic merge patch applied to {@code target}; returns the patched document. */
  static JsonNode strategicMergePatch(JsonNode target, JsonNode patch) {
    if (!patch.isObject()) {
      return patch.deepCopy();
    }
    return mergeObject(target instanceof ObjectNode o ? o : NODES.objectNode(), (ObjectNode) patch);
  }

  private static JsonNode mergeObject(ObjectNode target, ObjectNode patch) {
    String directive = patch.path(DIRECTIVE).asText("");
    if ("delete".equals(directive)) {
      return null;
    }
    if ("replace".equals(directive)) {
      ObjectNode replacement = patch.deepCopy();
      stripDirectives(replacement);
      return replacement;
    }
    ObjectNode result = target;
    Iterator<Map.Entry<String, JsonNode>> fields = patch.fields();
    while (fields.hasNext()) {
      Map.Entry<String, JsonNode> field = fields.next();
      String key = field.getKey();
      JsonNode value = field.getValue();
      if (key.equals(DIRECTIVE) || key.equals(RETAIN_KEYS) || key.startsWith(SET_ELEMENT_ORDER)) {
        continue;
      }
      if (key.startsWith(DELETE_FROM_PRIMITIVE_LIST)) {
        String list = key.substring(DELETE_FROM_PRIMITIVE_LIST.length());
        if (result.get(list) instanceof ArrayNode existing && value.isArray()) {
          Set<JsonNode> remove = new HashSet<>();
          value.forEach(remove::add);
          ArrayNode kept = NODES.arrayNode();
          existing.forEach(
              v -> {
                if (!remove.contains(v)) {
                  kept.add(v);
                }
              });
          result.set(list, kept);
        }
        continue;
      }
      if (value.isNull()) {
        result.remove(key);
        continue;
      }
      JsonNode existing = result.get(key);
      if (value.isObject()) {
        JsonNode merged =
            mergeObject(
                existing instanceof ObjectNode o ? o : NODES.objectNode(), (ObjectNode) value);
        if (merged == null) {
          result.remove(key);
        } else {
          result.set(key, merged);
        }
      } else if (value.isArray()) {
        result.set(key, mergeList(key, existing, (ArrayNode) value));
      } else {
        result.set(key, value.deepCopy());
      }
    }
    JsonNode retain = patch.get(RETAIN_KEYS);
    if (retain != null && retain.isArray()) {
      Set<String> keep = new HashSet<>();
      retain.forEach(k -> keep.add(k.asText()));
      List<String> drop = new ArrayList<>();
      result.fieldNames().forEachRemaining(n -> drop.add(n));
      drop.stream().filter(n -> !keep.contains(n)).forEach(result::remove);
    }
    return result;
  }

  private static JsonNode mergeList(String field, JsonNode existing, ArrayNode patch) {
    String mergeKey = MERGE_KEYS.get(field);
    if ("ports".equals(field)) {
      // Container ports merge by containerPort, Service ports by port.
      mergeKey = patch.size() > 0 && patch.get(0).has("containerPort") ? "containerPort" : "port";
    }
    boolean replaceAll = false;
    for (JsonNode item : patch) {
      if (item.isObject() && "replace".equals(item.path(DIRECTIVE).asText())) {
        replaceAll = true;
      }
    }
    if (replaceAll || !(existing instanceof ArrayNode current)) {
      ArrayNode copy = NODES.arrayNode();
      for (JsonNode item : patch) {
        if (item.isObject() && item.has(DIRECTIVE)) {
          if (!"delete".equals(item.path(DIRECTIVE).asText()) && item.size() > 1) {
            ObjectNode stripped = item.deepCopy();
            stripDirectives(stripped);
            copy.add(stripped);
          }
          continue;
        }
        JsonNode c = item.deepCopy();
        if (c instanceof ObjectNode o) {
          stripDirectives(o);
        }
        copy.add(c);
      }
      return copy;
    }
    if (MERGED_PRIMITIVE_LISTS.contains(field)) {
      ArrayNode result = current.deepCopy();
      Set<JsonNode> present = new HashSet<>();
      result.forEach(present::add);
      for (JsonNode item : patch) {
        if (item.isValueNode() && present.add(item)) {
          result.add(item);
        }
      }
      return result;
    }
    if (mergeKey == null) {
      return patch.deepCopy();
    }
    ArrayNode result = current.deepCopy();
    for (JsonNode item : patch) {
      if (!item.isObject() || !item.has(mergeKey)) {
        continue;
      }
      JsonNode key = item.get(mergeKey);
      int index = -1;
      for (int i = 0; i < result.size(); i++) {
        if (key.equals(result.get(i).get(mergeKey))) {
          index = i;
          break;
        }
      }
      String directive = item.path(DIRECTIVE).asText("");
      if ("delete".equals(directive)) {
        if (index >= 0) {
          result.remove(index);
        }
        continue;
      }
      if (index >= 0) {
        JsonNode merged = mergeObject((ObjectNode) result.get(index), (ObjectNode) item);
        result.set(index, merged);
      } else {
        ObjectNode added = item.deepCopy();
        stripDirectives(added);
        result.add(added);
      }
    }
    return result;
  }

  private static void stripDirectives(ObjectNode node) {
    List<String> drop = new ArrayList<>();
    node.fieldNames()
        .forEachRemaining(
            n -> {
              if (n.startsWith("$")) {
                drop.add(n);
              }
            });
    drop.forEach(node::remove);
    node.forEach(
        child -> {
          if (child instanceof ObjectNode o) {
            stripDirectives(o);
          } else if (child instanceof ArrayNode a) {
            a.forEach(
                e -> {
                  if (e instanceof ObjectNode eo) {
                    stripDirectives(eo);
                  }
                });
          }
        });
    List<String> nulls = new ArrayList<>();
    node.fields()
        .forEachRemaining(
            e -> {
              if (e.getValue().isNull()) {
                nulls.add(e.getKey());
              }
            });
    nulls.forEach(node::remove);
  }
}
