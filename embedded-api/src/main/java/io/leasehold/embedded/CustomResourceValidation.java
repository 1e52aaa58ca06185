package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.networknt.schema.Error;
import com.networknt.schema.Schema;
import com.networknt.schema.SchemaRegistry;
import com.networknt.schema.SpecificationVersion;
import dev.cel.bundle.Cel;
import dev.cel.bundle.CelFactory;
import dev.cel.common.CelAbstractSyntaxTree;
import dev.cel.common.CelValidationException;
import dev.cel.common.CelValidationResult;
import dev.cel.common.types.SimpleType;
import dev.cel.parser.CelStandardMacro;
import dev.cel.runtime.CelEvaluationException;
import dev.cel.runtime.CelRuntime;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Supplier;

/**
 * Admission for custom resources on the embedded API, as a real API server does it: schema defaults
 * are applied, then the object is checked against the CRD's OpenAPI schema and its CEL {@code
 * x-kubernetes-validations} rules. Errors read like the API server's.
 */
public final class CustomResourceValidation {

  private static final Cel CEL =
      CelFactory.standardCelBuilder()
          .setStandardMacros(CelStandardMacro.STANDARD_MACROS)
          .addVar("self", SimpleType.DYN)
          .addVar("oldSelf", SimpleType.DYN)
          .build();

  private final Map<String, Definition> definitions = new ConcurrentHashMap<>();
  private final Map<String, CelRuntime.Program> programs = new ConcurrentHashMap<>();
  private final SchemaRegistry registry =
      SchemaRegistry.withDefaultDialect(SpecificationVersion.DRAFT_4);

  private record Definition(String kind, String group, JsonNode openApiSchema, Schema schema) {}

  /** Whether a schema is known for this resource. */
  public boolean knows(String group, String plural) {
    return definitions.containsKey(group + "/" + plural);
  }

  /** Learns the schema of a CRD as it is created or updated. */
  public void register(JsonNode crd) {
    JsonNode spec = crd.path("spec");
    String group = spec.path("group").asText();
    String plural = spec.path("names").path("plural").asText();
    String kind = spec.path("names").path("kind").asText();
    for (JsonNode version : spec.path("versions")) {
      JsonNode openApi = version.path("schema").path("openAPIV3Schema");
      if (version.path("storage").asBoolean(false) && openApi.isObject()) {
        definitions.put(
            group + "/" + plural,
            new Definition(kind, group, openApi, registry.getSchema(jsonSchemaOf(openApi))));
      }
    }
  }

  /**
   * Applies defaults to {@code object} and validates it; returns the API server's error message
   * when the object is invalid.
   *
   * @param defaults whether to fill in schema defaults first (create and update)
   * @param old supplies the stored object on update (null when there is none), for transition rules
   *     that use {@code oldSelf}
   */
  public Optional<String> validate(
      String group, String plural, ObjectNode object, Supplier<JsonNode> old, boolean defaults) {
    List<Cause> causes = causes(group, plural, object, old, defaults);
    if (causes.isEmpty()) {
      return Optional.empty();
    }
    Definition definition = definitions.get(group + "/" + plural);
    List<String> texts = new ArrayList<>();
    causes.forEach(c -> texts.add(c.text()));
    String name = object.path("metadata").path("name").asText("");
    return Optional.of(
        definition.kind()
            + "."
            + definition.group()
            + " \""
            + name
            + "\" is invalid: "
            + (texts.size() == 1 ? texts.get(0) : "[" + String.join(", ", texts) + "]"));
  }

  /** Schema errors that stop the API server from evaluating the CEL rules (their cost). */
  private static final java.util.Set<String> BLOCKING =
      java.util.Set.of(
          "FieldValueTypeInvalid",
          "FieldValueNotSupported",
          "FieldValueTooLong",
          "FieldValueTooMany");

  static final String RULES_NOT_CHECKED =
      "Invalid value: null: some validation rules were not checked because the object was"
          + " invalid; correct the existing errors to complete validation";

  /**
   * Applies defaults to {@code object} and validates it; returns what is wrong, cause by cause
   * (empty when it is valid), as the API server lists them in a Status.
   *
   * @param metadataCauses what is wrong with the object's metadata, checked before: an error that
   *     blocks the CEL rules there blocks them here too
   */
  List<Cause> causes(
      String group,
      String plural,
      ObjectNode object,
      Supplier<JsonNode> old,
      boolean defaults,
      List<Cause> metadataCauses) {
    Definition definition = definitions.get(group + "/" + plural);
    if (definition == null) {
      return List.of();
    }
    if (defaults) {
      applyDefaults(definition.openApiSchema(), object);
    }
    List<Cause> causes = new ArrayList<>();
    for (Error error : definition.schema().validate(object)) {
      String location =
          error.getInstanceLocation().toString().replaceFirst("^[$/]\\.?", "").replace('/', '.');
      String keyword = String.valueOf(error.getKeyword());
      String reason =
          switch (keyword) {
            case "type" -> "FieldValueTypeInvalid";
            case "enum" -> "FieldValueNotSupported";
            case "maxLength", "maxProperties" -> "FieldValueTooLong";
            case "maxItems" -> "FieldValueTooMany";
            case "required" -> "FieldValueRequired";
            default -> "FieldValueInvalid";
          };
      causes.add(new Cause(location, reason, "Invalid value: " + error.getMessage()));
    }
    boolean blocked = false;
    for (Cause c : causes) {
      blocked |= BLOCKING.contains(c.reason());
    }
    for (Cause c : metadataCauses) {
      blocked |= BLOCKING.contains(c.reason());
    }
    if (blocked) {
      causes.add(new Cause("<nil>", "FieldValueInvalid", RULES_NOT_CHECKED));
      return causes;
    }
    List<String> problems = new ArrayList<>();
    JsonNode oldObject = old.get();
    checkRules(definition.openApiSchema(), object, oldObject, "", problems, causes);
    return causes;
  }

  /** As {@link #causes(String, String, ObjectNode, Supplier, boolean, List)}, metadata valid. */
  List<Cause> causes(
      String group, String plural, ObjectNode object, Supplier<JsonNode> old, boolean defaults) {
    return causes(group, plural, object, old, defaults, List.of());
  }

  /** The kind of a resource whose schema is known, as messages name it ({@code Kind.group}). */
  String kindOf(String group, String plural) {
    Definition definition = definitions.get(group + "/" + plural);
    return definition == null ? null : definition.kind();
  }

  private void checkRules(
      JsonNode schema,
      JsonNode value,
      JsonNode oldValue,
      String path,
      List<String> problems,
      List<Cause> causes) {
    if (value == null || value.isMissingNode() || value.isNull()) {
      return;
    }
    for (JsonNode rule : schema.path("x-kubernetes-validations")) {
      String expression = rule.path("rule").asText();
      boolean transition = expression.contains("oldSelf");
      if (transition && (oldValue == null || oldValue.isMissingNode())) {
        continue;
      }
      Map<String, Object> vars = new HashMap<>();
      vars.put("self", toCel(value));
      if (transition) {
        vars.put("oldSelf", toCel(oldValue));
      }
      Object result;
      String failure = null;
      try {
        result = CelBudget.evaluate(program(expression), vars);
      } catch (CelEvaluationException | CelBudget.Exceeded e) {
        result = Boolean.FALSE;
        if (e instanceof CelBudget.Exceeded) {
          failure = e.getMessage();
        }
      }
      if (!Boolean.TRUE.equals(result)) {
        String message =
            failure != null ? failure : rule.path("message").asText("failed rule: " + expression);
        // A rule of the object itself is reported for the field <nil>, as the API server does.
        String where = path.isEmpty() ? "<nil>" : path;
        problems.add(where + ": Invalid value: \"object\": " + message);
        causes.add(
            new Cause(
                where,
                "FieldValueInvalid",
                path.isEmpty()
                    ? "Invalid value: " + message
                    : "Invalid value: " + Cause.quote(scalar(value)) + ": " + message));
      }
    }
    JsonNode properties = schema.path("properties");
    if (properties.isObject() && value.isObject()) {
      Iterator<Map.Entry<String, JsonNode>> fields = properties.fields();
      while (fields.hasNext()) {
        Map.Entry<String, JsonNode> field = fields.next();
        JsonNode child = value.get(field.getKey());
        JsonNode oldChild = oldValue == null ? null : oldValue.get(field.getKey());
        String childPath = path.isEmpty() ? field.getKey() : path + "." + field.getKey();
        checkRules(field.getValue(), child, oldChild, childPath, problems, causes);
      }
    }
    JsonNode items = schema.path("items");
    if (items.isObject() && value.isArray()) {
      for (int i = 0; i < value.size(); i++) {
        checkRules(items, value.get(i), null, path + "[" + i + "]", problems, causes);
      }
    }
  }

  private static Object scalar(JsonNode value) {
    if (value.isTextual()) {
      return value.asText();
    }
    return value.isValueNode() ? value.toString() : "object";
  }

  private CelRuntime.Program program(String expression) {
    return programs.computeIfAbsent(
        expression,
        e -> {
          CelValidationResult compiled = CEL.compile(e);
          try {
            CelAbstractSyntaxTree ast = compiled.getAst();
            return CEL.createProgram(ast);
          } catch (CelValidationException | CelEvaluationException ex) {
            throw new IllegalArgumentException(
                "validation rule does not compile: " + e + ": " + ex.getMessage(), ex);
          }
        });
  }

  /** Fills in schema defaults the way the API server does for objects that omit fields. */
  static void applyDefaults(JsonNode schema, JsonNode value) {
    JsonNode properties = schema.path("properties");
    if (value instanceof ObjectNode object && properties.isObject()) {
      Iterator<Map.Entry<String, JsonNode>> fields = properties.fields();
      while (fields.hasNext()) {
        Map.Entry<String, JsonNode> field = fields.next();
        JsonNode defaultValue = field.getValue().get("default");
        if (!object.has(field.getKey()) && defaultValue != null) {
          object.set(field.getKey(), defaultValue.deepCopy());
        }
        if (object.has(field.getKey())) {
          applyDefaults(field.getValue(), object.get(field.getKey()));
        }
      }
    }
    JsonNode items = schema.path("items");
    if (value instanceof ArrayNode array && items.isObject()) {
      array.forEach(element -> applyDefaults(items, element));
    }
  }

  /** The OpenAPI schema as a JSON Schema: Kubernetes extensions dropped. */
  private static JsonNode jsonSchemaOf(JsonNode openApi) {
    JsonNode copy = openApi.deepCopy();
    strip(copy);
    return copy;
  }

  private static void strip(JsonNode node) {
    if (node instanceof ObjectNode object) {
      object.remove(
          List.of(
              "x-kubernetes-validations",
              "x-kubernetes-preserve-unknown-fields",
              "x-kubernetes-int-or-string",
              "x-kubernetes-embedded-resource",
              "x-kubernetes-list-type",
              "x-kubernetes-list-map-keys",
              "x-kubernetes-map-type",
              "nullable",
              "default"));
      object.forEach(CustomResourceValidation::strip);
    } else if (node instanceof ArrayNode array) {
      array.forEach(CustomResourceValidation::strip);
    }
  }

  /** A JSON value as CEL sees it: maps, lists, strings, longs, doubles, booleans, null. */
  public static Object toCel(JsonNode node) {
    if (node == null || node.isNull() || node.isMissingNode()) {
      return dev.cel.common.values.NullValue.NULL_VALUE;
    }
    if (node.isObject()) {
      Map<String, Object> map = new LinkedHashMap<>();
      node.fields().forEachRemaining(e -> map.put(e.getKey(), toCel(e.getValue())));
      return map;
    }
    if (node.isArray()) {
      List<Object> list = new ArrayList<>();
      node.forEach(e -> list.add(toCel(e)));
      return list;
    }
    if (node.isBoolean()) {
      return node.booleanValue();
    }
    if (node.isIntegralNumber()) {
      return node.longValue();
    }
    if (node.isNumber()) {
      return node.doubleValue();
    }
    return node.asText();
  }
}
