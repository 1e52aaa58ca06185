package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.mockwebserver.dsl.HttpMethod;
import io.fabric8.mockwebserver.http.Buffer;
import io.fabric8.mockwebserver.http.MockResponse;
import io.fabric8.mockwebserver.http.RecordedRequest;
import io.fabric8.zjsonpatch.JsonPatch;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The admission policies stored in the embedded API, applied to what it stores as an API server
 * applies them: for a create or an update, the matching MutatingAdmissionPolicies change the
 * object, then the matching ValidatingAdmissionPolicies may refuse it, each through its bindings.
 * So the embedded API with leasehold's chart policies behaves like a cluster with the chart
 * installed.
 *
 * <p>The caller's identity ({@code request.userInfo}) is the one it impersonates ({@code
 * Impersonate-User}, {@code Impersonate-Group}), else {@code system:anonymous}: the embedded API
 * authenticates nobody. Not applied: DELETE and CONNECT, parameters ({@code paramKind}), {@code
 * authorizer}, reinvocation. An apply configuration is merged map by map, and a list in it replaces
 * the object's list (the API server merges lists that have keys).
 */
final class AdmissionPolicies {

  private static final Logger LOG = LoggerFactory.getLogger(AdmissionPolicies.class);
  static final String GROUP = "admissionregistration.k8s.io";
  private static final List<String> VERSIONS = List.of("v1", "v1beta1", "v1alpha1");
  private static final String ANONYMOUS = "system:anonymous";

  private final ObjectMapper mapper;
  private final Function<String, JsonNode> reader;
  private final PolicyExpressions cel = new PolicyExpressions();
  private volatile List<Pair> pairs;

  /**
   * @param reader reads an object or a list from the store by its API path; null when absent
   */
  AdmissionPolicies(ObjectMapper mapper, Function<String, JsonNode> reader) {
    this.mapper = mapper;
    this.reader = reader;
  }

  /** A policy with one of its bindings. */
  private record Pair(boolean mutating, JsonNode policy, JsonNode binding) {
    String policyName() {
      return policy.at("/metadata/name").asText();
    }

    String bindingName() {
      return binding.at("/metadata/name").asText();
    }

    String kind() {
      return mutating ? "MutatingAdmissionPolicy" : "ValidatingAdmissionPolicy";
    }
  }

  /** What a request writes, as admission sees it. */
  private record Attributes(
      String operation,
      String group,
      String version,
      String resource,
      String subresource,
      String namespace,
      String name,
      ObjectNode object,
      JsonNode oldObject,
      RecordedRequest request) {}

  /**
   * Admits {@code request} and hands it to {@code next} (the store) unless a policy refuses it; the
   * request reaching the store carries the mutated object.
   */
  MockResponse admit(RecordedRequest request, Function<RecordedRequest, MockResponse> next) {
    String method = request.getMethod();
    Optional<Target> target = Target.parse(request.getPath());
    if (target.isEmpty()) {
      return next.apply(request);
    }
    Target t = target.get();
    if (GROUP.equals(t.group()) && !"GET".equals(method)) {
      // Policies and bindings change: read them again at the next request.
      pairs = null;
      MockResponse response = next.apply(request);
      pairs = null;
      return response;
    }
    String operation =
        switch (method) {
          case "POST" -> t.name() == null || t.subresource() != null ? "CREATE" : null;
          case "PUT", "PATCH" -> t.name() == null ? null : "UPDATE";
          default -> null;
        };
    boolean hasBody = request.getBody() != null && request.getBody().size() > 0;
    if (operation == null || !hasBody) {
      return next.apply(request);
    }
    List<Pair> candidates =
        pairs().stream()
            .filter(p -> PolicyMatch.rules(p.policy(), p.binding(), t, operation))
            .toList();
    if (candidates.isEmpty()) {
      return next.apply(request);
    }
    Attributes attributes;
    try {
      attributes = attributes(request, t, operation);
    } catch (IllegalArgumentException e) {
      return status(400, "BadRequest", e.getMessage());
    }
    if (attributes == null) {
      return next.apply(request);
    }
    JsonNode namespaceObject = namespaceObject(t.namespace());
    List<Pair> matching =
        candidates.stream()
            .filter(
                p ->
                    PolicyMatch.selectors(
                        p.policy(),
                        p.binding(),
                        attributes.namespace() != null,
                        namespaceObject,
                        attributes.object(),
                        attributes.oldObject()))
            .toList();
    if (matching.isEmpty()) {
      return next.apply(request);
    }
    String before = attributes.object().toString();
    List<String> warnings = new ArrayList<>();
    for (Pair pair : matching) {
      if (pair.mutating()) {
        Optional<MockResponse> refused = mutate(pair, attributes, namespaceObject);
        if (refused.isPresent()) {
          return refused.get();
        }
      }
    }
    for (Pair pair : matching) {
      if (!pair.mutating()) {
        Optional<MockResponse> refused = validate(pair, attributes, namespaceObject, warnings);
        if (refused.isPresent()) {
          return refused.get();
        }
      }
    }
    RecordedRequest admitted = request;
    if (!before.equals(attributes.object().toString())) {
      admitted = rewrite(request, attributes.object());
    }
    MockResponse response = next.apply(admitted);
    warnings.forEach(w -> response.addHeader("Warning", "299 - \"" + w.replace("\"", "'") + "\""));
    return response;
  }

  /**
   * The request's namespace as admission sees it. The API server labels every namespace with its
   * name ({@code kubernetes.io/metadata.name}); the embedded API stores objects in namespaces that
   * were never created, which count as existing with that label only.
   */
  private JsonNode namespaceObject(String namespace) {
    if (namespace == null) {
      return NullNode.getInstance();
    }
    JsonNode stored = reader.apply("/api/v1/namespaces/" + namespace);
    ObjectNode object =
        stored instanceof ObjectNode o ? o.deepCopy() : JsonNodeFactory.instance.objectNode();
    ObjectNode metadata = object.withObjectProperty("metadata");
    metadata.put("name", namespace);
    metadata.withObjectProperty("labels").put("kubernetes.io/metadata.name", namespace);
    return object;
  }

  // ------------------------------------------------------------------------------------------
  // Policies and bindings

  private List<Pair> pairs() {
    List<Pair> current = pairs;
    if (current == null) {
      current = load();
      pairs = current;
    }
    return current;
  }

  private List<Pair> load() {
    List<Pair> loaded = new ArrayList<>();
    for (boolean mutating : List.of(true, false)) {
      String plural = mutating ? "mutatingadmissionpolicies" : "validatingadmissionpolicies";
      Map<String, JsonNode> policies = new HashMap<>();
      List<JsonNode> bindings = new ArrayList<>();
      for (String version : VERSIONS) {
        String base = "/apis/" + GROUP + "/" + version + "/" + plural;
        list(base).forEach(p -> policies.putIfAbsent(p.at("/metadata/name").asText(), p));
        bindings.addAll(list(base.replace("policies", "policybindings")));
      }
      for (JsonNode binding : bindings) {
        JsonNode policy = policies.get(binding.at("/spec/policyName").asText());
        if (policy != null) {
          loaded.add(new Pair(mutating, policy, binding));
        }
      }
    }
    // The API server orders them by name; mutations apply in that order.
    loaded.sort(Comparator.comparing(Pair::policyName).thenComparing(Pair::bindingName));
    return List.copyOf(loaded);
  }

  private List<JsonNode> list(String path) {
    JsonNode list = reader.apply(path);
    List<JsonNode> items = new ArrayList<>();
    if (list != null) {
      list.path("items").forEach(items::add);
    }
    return items;
  }

  // ------------------------------------------------------------------------------------------
  // Evaluation

  private Map<String, Object> vars(Pair pair, Attributes a, JsonNode namespaceObject)
      throws PolicyExpressions.ExpressionException {
    Map<String, Object> vars = new HashMap<>();
    vars.put("object", CustomResourceValidation.toCel(a.object()));
    vars.put("oldObject", CustomResourceValidation.toCel(a.oldObject()));
    vars.put("request", CustomResourceValidation.toCel(requestInfo(a)));
    vars.put("params", CustomResourceValidation.toCel(null));
    vars.put("namespaceObject", CustomResourceValidation.toCel(namespaceObject));
    Map<String, Object> variables = new HashMap<>();
    vars.put("variables", variables);
    for (JsonNode variable : pair.policy().at("/spec/variables")) {
      JsonNode value = cel.evaluate(variable.path("expression").asText(), vars);
      variables.put(variable.path("name").asText(), CustomResourceValidation.toCel(value));
    }
    return vars;
  }

  /** Whether all matchConditions hold; an error in one is the caller's to handle. */
  private boolean conditionsHold(Pair pair, Map<String, Object> vars)
      throws PolicyExpressions.ExpressionException {
    for (JsonNode condition : pair.policy().at("/spec/matchConditions")) {
      if (!cel.test(condition.path("expression").asText(), vars)) {
        return false;
      }
    }
    return true;
  }

  private Optional<MockResponse> mutate(Pair pair, Attributes a, JsonNode namespaceObject) {
    try {
      Map<String, Object> vars = vars(pair, a, namespaceObject);
      if (!conditionsHold(pair, vars)) {
        return Optional.empty();
      }
      for (JsonNode mutation : pair.policy().at("/spec/mutations")) {
        String type = mutation.path("patchType").asText();
        if ("ApplyConfiguration".equals(type)) {
          JsonNode applied =
              cel.evaluate(mutation.at("/applyConfiguration/expression").asText(), vars);
          merge(a.object(), applied);
        } else if ("JSONPatch".equals(type)) {
          JsonNode patch = cel.evaluate(mutation.at("/jsonPatch/expression").asText(), vars);
          JsonNode patched = JsonPatch.apply(patch, a.object().deepCopy());
          replaceContent(a.object(), patched);
        } else {
          throw new PolicyExpressions.ExpressionException(
              type, "is not a patchType (ApplyConfiguration or JSONPatch)", null);
        }
        vars.put("object", CustomResourceValidation.toCel(a.object()));
      }
      return Optional.empty();
    } catch (PolicyExpressions.ExpressionException | RuntimeException e) {
      return failure(pair, a, e.getMessage());
    }
  }

  private Optional<MockResponse> validate(
      Pair pair, Attributes a, JsonNode namespaceObject, List<String> warnings) {
    List<String> actions = new ArrayList<>();
    pair.binding().at("/spec/validationActions").forEach(v -> actions.add(v.asText()));
    Map<String, Object> vars;
    try {
      vars = vars(pair, a, namespaceObject);
      if (!conditionsHold(pair, vars)) {
        return Optional.empty();
      }
    } catch (PolicyExpressions.ExpressionException e) {
      return failure(pair, a, e.getMessage());
    }
    for (JsonNode validation : pair.policy().at("/spec/validations")) {
      String expression = validation.path("expression").asText();
      String message;
      String reason = validation.path("reason").asText("Invalid");
      try {
        if (cel.test(expression, vars)) {
          continue;
        }
        message = message(validation, expression, vars);
      } catch (PolicyExpressions.ExpressionException e) {
        if ("Ignore".equals(pair.policy().at("/spec/failurePolicy").asText("Fail"))) {
          continue;
        }
        message = e.getMessage();
      }
      String denied =
          pair.kind()
              + " '"
              + pair.policyName()
              + "' with binding '"
              + pair.bindingName()
              + "' denied request: "
              + message;
      if (actions.contains("Warn")) {
        warnings.add(denied);
      }
      if (actions.contains("Audit")) {
        LOG.info("admission audit: {} {}", describe(a), denied);
      }
      if (actions.contains("Deny")) {
        return Optional.of(refuse(a, reason, denied));
      }
    }
    return Optional.empty();
  }

  private String message(JsonNode validation, String expression, Map<String, Object> vars) {
    String messageExpression = validation.path("messageExpression").asText("");
    if (!messageExpression.isEmpty()) {
      try {
        JsonNode text = cel.evaluate(messageExpression, vars);
        if (text.isTextual() && !text.asText().isBlank()) {
          return text.asText();
        }
      } catch (PolicyExpressions.ExpressionException e) {
        // The static message, or the failed expression, stands in.
      }
    }
    String message = validation.path("message").asText("");
    return message.isEmpty() ? "failed expression: " + expression.strip() : message.strip();
  }

  /** An expression that cannot be evaluated: failurePolicy Fail refuses, Ignore lets it pass. */
  private Optional<MockResponse> failure(Pair pair, Attributes a, String problem) {
    if ("Ignore".equals(pair.policy().at("/spec/failurePolicy").asText("Fail"))) {
      LOG.warn("{} '{}' ignored after an error: {}", pair.kind(), pair.policyName(), problem);
      return Optional.empty();
    }
    return Optional.of(
        refuse(
            a,
            "InternalError",
            pair.kind()
                + " '"
                + pair.policyName()
                + "' with binding '"
                + pair.bindingName()
                + "' failed: "
                + problem));
  }

  private JsonNode requestInfo(Attributes a) {
    ObjectNode request = mapper.createObjectNode();
    request.put("uid", UUID.randomUUID().toString());
    ObjectNode kind = request.putObject("kind");
    kind.put("group", a.group());
    kind.put("version", a.version());
    kind.put("kind", a.object().path("kind").asText(""));
    ObjectNode resource = request.putObject("resource");
    resource.put("group", a.group());
    resource.put("version", a.version());
    resource.put("resource", a.resource());
    request.set("requestKind", kind.deepCopy());
    request.set("requestResource", resource.deepCopy());
    if (a.subresource() != null) {
      request.put("subResource", a.subresource());
    }
    String name = a.name() != null ? a.name() : a.object().at("/metadata/name").asText("");
    request.put("name", name);
    if (a.namespace() != null) {
      request.put("namespace", a.namespace());
    }
    request.put("operation", a.operation());
    ObjectNode user = request.putObject("userInfo");
    String impersonated = a.request().getHeader("Impersonate-User");
    List<String> groups = a.request().getHeaders().headers("Impersonate-Group");
    user.put("username", impersonated == null || impersonated.isBlank() ? ANONYMOUS : impersonated);
    var userGroups = user.putArray("groups");
    if (impersonated == null || impersonated.isBlank()) {
      userGroups.add("system:unauthenticated");
    } else {
      groups.forEach(userGroups::add);
      userGroups.add("system:authenticated");
    }
    request.put("dryRun", false);
    return request;
  }

  private static String describe(Attributes a) {
    return a.operation() + " " + a.resource() + " " + a.namespace() + "/" + a.name();
  }

  // ------------------------------------------------------------------------------------------
  // Objects

  /** The object and the stored object a request would write, or null to leave it to the store. */
  private Attributes attributes(RecordedRequest request, Target t, String operation) {
    JsonNode body;
    try {
      body = mapper.readTree(request.getBody().getBytes());
    } catch (IOException e) {
      throw new IllegalArgumentException("request body is not JSON: " + e.getMessage(), e);
    }
    JsonNode old = null;
    ObjectNode object;
    if ("CREATE".equals(operation)) {
      if (!(body instanceof ObjectNode created)) {
        return null;
      }
      object = created;
    } else {
      old = reader.apply(t.path());
      if (old == null) {
        return null;
      }
      if ("PUT".equals(request.getMethod())) {
        if (!(body instanceof ObjectNode replaced)) {
          return null;
        }
        object = replaced;
      } else {
        JsonNode patched = patched(request, old, body);
        if (!(patched instanceof ObjectNode p)) {
          return null;
        }
        object = p;
      }
    }
    if (t.namespace() != null && !object.at("/metadata/namespace").isTextual()) {
      JsonNode metadata = object.path("metadata");
      if (metadata instanceof ObjectNode m) {
        m.put("namespace", t.namespace());
      }
    }
    return new Attributes(
        operation,
        t.group(),
        t.version(),
        t.resource(),
        t.subresource(),
        t.namespace(),
        t.name(),
        object,
        old,
        request);
  }

  /**
   * What a patch makes of the stored object, computed as the store will compute it (strategic merge
   * patch directives included), so that the policies judge the object that would be stored.
   */
  private static JsonNode patched(RecordedRequest request, JsonNode old, JsonNode patch) {
    String contentType = Optional.ofNullable(request.getHeader("Content-Type")).orElse("");
    try {
      boolean strategic = contentType.contains("strategic-merge-patch");
      boolean merge = !strategic && contentType.contains("merge-patch");
      if (strategic || merge || contentType.contains("json-patch")) {
        return ApiServerDispatcher.apply(patch, old, strategic, merge);
      }
    } catch (RuntimeException e) {
      // The store answers the bad patch itself.
      return null;
    }
    return null;
  }

  /** The request the store receives: the admitted object, as a full create or update. */
  private RecordedRequest rewrite(RecordedRequest request, ObjectNode object) {
    byte[] bytes;
    try {
      bytes = mapper.writeValueAsBytes(object);
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
    HttpMethod method = "PATCH".equals(request.getMethod()) ? HttpMethod.PUT : request.method();
    return new RecordedRequest(
        request.getHttpVersion(),
        method,
        request.getPath(),
        request
            .getHeaders()
            .newBuilder()
            .set("Content-Type", "application/json")
            .removeAll("Content-Length")
            .build(),
        new Buffer(bytes));
  }

  /** Merges an apply configuration into {@code target}: maps field by field, other values whole. */
  static void merge(ObjectNode target, JsonNode applied) {
    if (!applied.isObject()) {
      throw new IllegalArgumentException(
          "an apply configuration must be an object, not " + applied);
    }
    Iterator<Map.Entry<String, JsonNode>> fields = applied.fields();
    while (fields.hasNext()) {
      Map.Entry<String, JsonNode> field = fields.next();
      JsonNode existing = target.get(field.getKey());
      if (field.getValue().isObject() && existing instanceof ObjectNode existingObject) {
        merge(existingObject, field.getValue());
      } else {
        target.set(field.getKey(), field.getValue().deepCopy());
      }
    }
  }

  private static void replaceContent(ObjectNode target, JsonNode replacement) {
    if (!(replacement instanceof ObjectNode r)) {
      throw new IllegalArgumentException("a JSON patch must leave an object, not " + replacement);
    }
    target.removeAll();
    target.setAll(r);
  }

  private MockResponse refuse(Attributes a, String reason, String message) {
    int code =
        switch (reason) {
          case "Unauthorized" -> 401;
          case "Forbidden" -> 403;
          case "RequestEntityTooLarge" -> 413;
          case "InternalError" -> 500;
          default -> 422;
        };
    String name = a.name() != null ? a.name() : a.object().at("/metadata/name").asText("");
    String resource = a.group().isEmpty() ? a.resource() : a.resource() + "." + a.group();
    ObjectNode status = mapper.createObjectNode();
    status.put("apiVersion", "v1");
    status.put("kind", "Status");
    status.put("status", "Failure");
    status.put("message", resource + " \"" + name + "\" is forbidden: " + message);
    status.put("reason", reason);
    ObjectNode details = status.putObject("details");
    details.put("name", name);
    details.put("group", a.group());
    details.put("kind", a.resource());
    details.putArray("causes").addObject().put("message", message);
    status.put("code", code);
    return new MockResponse()
        .setResponseCode(code)
        .setHeader("Content-Type", "application/json")
        .setBody(status.toString().getBytes(StandardCharsets.UTF_8));
  }

  private MockResponse status(int code, String reason, String message) {
    ObjectNode status = JsonNodeFactory.instance.objectNode();
    status.put("apiVersion", "v1");
    status.put("kind", "Status");
    status.put("status", "Failure");
    status.put("message", message);
    status.put("reason", reason);
    status.put("code", code);
    return new MockResponse()
        .setResponseCode(code)
        .setHeader("Content-Type", "application/json")
        .setBody(status.toString().getBytes(StandardCharsets.UTF_8));
  }

  /** A resource URL: {@code /api/v1/...} or {@code /apis/GROUP/VERSION/...}. */
  record Target(
      String group,
      String version,
      String namespace,
      String resource,
      String name,
      String subresource,
      String path) {

    static Optional<Target> parse(String rawPath) {
      int query = rawPath.indexOf('?');
      String path = query >= 0 ? rawPath.substring(0, query) : rawPath;
      return ApiRequest.parse(rawPath)
          .map(
              r ->
                  new Target(
                      r.group(),
                      r.version(),
                      // A namespace itself is not in a namespace.
                      "namespaces".equals(r.plural()) && r.name() != null ? null : r.namespace(),
                      r.plural(),
                      r.name(),
                      r.subresource(),
                      path));
    }
  }
}
