package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * What the API server does to the built-in kinds leasehold and Terraform write, beyond metadata:
 * the defaults it fills in (a Secret's {@code type} and its {@code stringData} merged into {@code
 * data}; a Job's parallelism, completions, backoff limit, completion mode, suspend) and the rules
 * it checks (ConfigMap and Secret keys, immutable ConfigMaps and Secrets, a Job's immutable pod
 * template).
 */
final class BuiltInRules {

  // A ConfigMap or Secret key: alphanumerics, '-', '_' and '.', at most 253 characters.
  private static final String CONFIG_KEY_FORMAT = "[-._a-zA-Z0-9]+";
  private static final Pattern CONFIG_KEY = Pattern.compile(CONFIG_KEY_FORMAT);

  private BuiltInRules() {}

  /** Thrown for a body the API server cannot decode (a Secret value that is not base64). */
  static final class Undecodable extends IllegalArgumentException {
    Undecodable(String message) {
      super(message);
    }
  }

  /** Fills in the defaults of a built-in kind, as the API server does on every write. */
  static void defaults(String group, String plural, ObjectNode object) {
    if (group.isEmpty() && "secrets".equals(plural)) {
      if (!object.hasNonNull("type") || object.path("type").asText().isEmpty()) {
        object.put("type", "Opaque");
      }
      if (object.get("stringData") instanceof ObjectNode stringData) {
        ObjectNode data = object.withObjectProperty("data");
        stringData
            .fields()
            .forEachRemaining(
                e ->
                    data.put(
                        e.getKey(),
                        Base64.getEncoder()
                            .encodeToString(
                                e.getValue().asText().getBytes(StandardCharsets.UTF_8))));
        object.remove("stringData");
      }
      for (JsonNode value : object.path("data")) {
        try {
          Base64.getDecoder().decode(value.asText());
        } catch (IllegalArgumentException e) {
          throw new Undecodable(
              "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data: "
                  + e.getMessage());
        }
      }
    }
    if ("batch".equals(group)
        && "jobs".equals(plural)
        && object.get("spec") instanceof ObjectNode spec) {
      putIfAbsent(spec, "parallelism", 1);
      if (!spec.has("completions") && spec.path("parallelism").asInt(1) >= 0) {
        spec.put("completions", 1);
      }
      putIfAbsent(spec, "backoffLimit", 6);
      if (!spec.has("completionMode")) {
        spec.put("completionMode", "NonIndexed");
      }
      if (!spec.has("suspend")) {
        spec.put("suspend", false);
      }
      if (!spec.has("manualSelector")) {
        spec.put("manualSelector", false);
      }
      if (!spec.has("podReplacementPolicy")) {
        spec.put("podReplacementPolicy", "TerminatingOrFailed");
      }
    }
  }

  private static void putIfAbsent(ObjectNode node, String field, int value) {
    if (!node.has(field)) {
      node.put(field, value);
    }
  }

  /** What is wrong with a built-in object, as the API server lists it; {@code old} on update. */
  static List<Cause> check(String group, String plural, JsonNode object, JsonNode old) {
    List<Cause> causes = new ArrayList<>();
    boolean configMap = group.isEmpty() && "configmaps".equals(plural);
    boolean secret = group.isEmpty() && "secrets".equals(plural);
    if (configMap || secret) {
      checkKeys(object.path("data"), "data", causes);
      if (configMap) {
        checkKeys(object.path("binaryData"), "binaryData", causes);
        object
            .path("data")
            .fieldNames()
            .forEachRemaining(
                k -> {
                  if (object.path("binaryData").has(k)) {
                    causes.add(
                        Cause.invalid(
                            "data[" + k + "]", k, "duplicate of key present in binaryData"));
                  }
                });
      }
      if (old != null && old.path("immutable").asBoolean(false)) {
        for (String field : configMap ? List.of("data", "binaryData") : List.of("data")) {
          if (!old.path(field).equals(object.path(field))) {
            causes.add(Cause.forbidden(field, "field is immutable when `immutable` is set"));
          }
        }
      }
    }
    if ("batch".equals(group) && "jobs".equals(plural) && old != null) {
      JsonNode before = old.path("spec").path("template").path("spec");
      JsonNode after = object.path("spec").path("template").path("spec");
      if (!before.isMissingNode() && !before.equals(after)) {
        causes.add(Cause.invalid("spec.template.spec", "<the pod spec>", "field is immutable"));
      }
    }
    return causes;
  }

  private static void checkKeys(JsonNode map, String field, List<Cause> causes) {
    Iterator<Map.Entry<String, JsonNode>> entries = map.fields();
    while (entries.hasNext()) {
      String key = entries.next().getKey();
      if (key.length() > ObjectMetaRules.DNS1123_SUBDOMAIN_MAX
          || !CONFIG_KEY.matcher(key).matches()
          || ".".equals(key)
          || "..".equals(key)) {
        causes.add(
            Cause.invalid(
                field + "[" + key + "]",
                key,
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g."
                    + " 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '"
                    + CONFIG_KEY_FORMAT
                    + "')"));
      }
    }
  }
}
