package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.client.dsl.base.CustomResourceDefinitionContext;
import io.fabric8.kubernetes.client.server.mock.CustomResourceAware;
import io.fabric8.kubernetes.client.server.mock.KubernetesMixedDispatcher;
import io.fabric8.mockwebserver.ServerRequest;
import io.fabric8.mockwebserver.ServerResponse;
import io.fabric8.mockwebserver.http.Buffer;
import io.fabric8.mockwebserver.http.Dispatcher;
import io.fabric8.mockwebserver.http.MockResponse;
import io.fabric8.mockwebserver.http.RecordedRequest;
import io.fabric8.zjsonpatch.JsonPatch;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Optional;
import java.util.Queue;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Makes the CRUD mock behave like a real API server where clients rely on it: it fills {@code kind}
 * and {@code apiVersion} from the URL (client-go sends objects without them), and checks custom
 * resources against their CRD's schema and validation rules before storing them.
 */
final class ApiServerDispatcher extends Dispatcher implements CustomResourceAware {

  private static final Logger LOG = LoggerFactory.getLogger(ApiServerDispatcher.class);
  private static final String RULES_REVIEW =
      "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";

  private final KubernetesMixedDispatcher delegate;
  private final ObjectMapper mapper;
  private final Map<String, String> kindsByResource =
      new ConcurrentHashMap<>(ResourcePath.BUILT_IN);
  private final CustomResourceValidation validation;
  private final AdmissionPolicies policies;

  ApiServerDispatcher(
      Map<ServerRequest, Queue<ServerResponse>> responses,
      ObjectMapper mapper,
      CustomResourceValidation validation) {
    this.delegate = new KubernetesMixedDispatcher(responses);
    this.mapper = mapper;
    this.validation = validation;
    this.policies = new AdmissionPolicies(mapper, this::current);
  }

  @Override
  public MockResponse dispatch(RecordedRequest request) {
    try {
      // Admission policies stored in this API change or refuse a write before the rest.
      return policies.admit(request, this::admit);
    } catch (RuntimeException e) {
      // A handler that throws would leave the client waiting for an answer that never comes.
      LOG.error("embedded API failed on {} {}", request.getMethod(), request.getPath(), e);
      return status(500, "InternalError", "embedded API: " + e);
    }
  }

  private MockResponse admit(RecordedRequest request) {
    String method = request.getMethod();
    if ("POST".equals(method) && request.getPath().startsWith(RULES_REVIEW)) {
      return allowEverything(request);
    }
    Optional<ResourcePath> path = ResourcePath.parse(request.getPath());
    boolean hasBody = request.getBody() != null && request.getBody().size() > 0;
    if (path.isEmpty() || !hasBody) {
      return delegate.dispatch(request);
    }
    ResourcePath resource = path.get();
    if ("PATCH".equals(method)) {
      return admitPatch(request, resource);
    }
    if (!"POST".equals(method) && !"PUT".equals(method)) {
      return delegate.dispatch(request);
    }
    JsonNode body;
    try {
      body = mapper.readTree(request.getBody().getBytes());
    } catch (IOException e) {
      return status(400, "BadRequest", "request body is not JSON: " + e.getMessage());
    }
    if (!(body instanceof ObjectNode object)) {
      return delegate.dispatch(request);
    }
    fillTypeMeta(resource, object);
    if (resource.isCustomResourceDefinitions()) {
      rememberCrd(object);
      validation.register(object);
    }
    if (!resource.isSubresource()) {
      Optional<String> invalid =
          validation.validate(
              resource.group(),
              resource.plural(),
              object,
              () -> "PUT".equals(method) ? current(request.getPath()) : null,
              true);
      if (invalid.isPresent()) {
        return status(422, "Invalid", invalid.get());
      }
    }
    byte[] bytes;
    try {
      bytes = mapper.writeValueAsBytes(object);
    } catch (IOException e) {
      return status(500, "InternalError", e.getMessage());
    }
    return delegate.dispatch(
        new RecordedRequest(
            request.getHttpVersion(),
            request.method(),
            request.getPath(),
            request.getHeaders(),
            new Buffer(bytes)));
  }

  /**
   * Checks what a patch of a custom resource would produce; the patch itself is then applied by the
   * CRUD store, so its semantics stay the store's.
   */
  private MockResponse admitPatch(RecordedRequest request, ResourcePath resource) {
    if (resource.isSubresource() || !validation.knows(resource.group(), resource.plural())) {
      return delegate.dispatch(request);
    }
    JsonNode current = current(request.getPath());
    if (current == null) {
      return delegate.dispatch(request);
    }
    JsonNode patched;
    try {
      JsonNode patch = mapper.readTree(request.getBody().getBytes());
      String contentType = Optional.ofNullable(request.getHeader("Content-Type")).orElse("");
      if (contentType.contains("json-patch")) {
        patched = JsonPatch.apply(patch, current.deepCopy());
      } else if (contentType.contains("merge-patch")) {
        patched = mergePatch(current.deepCopy(), patch);
      } else {
        return status(
            415,
            "UnsupportedMediaType",
            "the embedded API supports JSON Patch and JSON merge patch, not " + contentType);
      }
    } catch (IOException | RuntimeException e) {
      return status(422, "Invalid", "patch cannot be applied: " + e.getMessage());
    }
    if (patched instanceof ObjectNode object) {
      Optional<String> invalid =
          validation.validate(resource.group(), resource.plural(), object, () -> current, false);
      if (invalid.isPresent()) {
        return status(422, "Invalid", invalid.get());
      }
    }
    return delegate.dispatch(request);
  }

  /**
   * The embedded API authenticates nobody and allows everything; it says so to clients that ask
   * what they may do (the Java Operator SDK asks before leader election).
   */
  private MockResponse allowEverything(RecordedRequest request) {
    ObjectNode review;
    try {
      review = (ObjectNode) mapper.readTree(request.getBody().getBytes());
    } catch (IOException | ClassCastException e) {
      return status(400, "BadRequest", "not a SelfSubjectRulesReview");
    }
    ObjectNode rule = mapper.createObjectNode();
    rule.putArray("verbs").add("*");
    rule.putArray("apiGroups").add("*");
    rule.putArray("resources").add("*");
    ObjectNode status = review.putObject("status");
    status.putArray("resourceRules").add(rule);
    status.putArray("nonResourceRules");
    status.put("incomplete", false);
    review.put("apiVersion", "authorization.k8s.io/v1");
    review.put("kind", "SelfSubjectRulesReview");
    return new MockResponse()
        .setResponseCode(201)
        .setHeader("Content-Type", "application/json")
        .setBody(review.toString().getBytes(StandardCharsets.UTF_8));
  }

  /** RFC 7386 JSON merge patch. */
  static JsonNode mergePatch(JsonNode target, JsonNode patch) {
    if (!patch.isObject()) {
      return patch.deepCopy();
    }
    ObjectNode result = target instanceof ObjectNode o ? o : JsonNodeFactory.instance.objectNode();
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
                    mergePatch(existing == null ? NullNode.getInstance() : existing, e.getValue()));
              }
            });
    return result;
  }

  private JsonNode current(String path) {
    MockResponse response =
        delegate.dispatch(
            new RecordedRequest(
                "HTTP/1.1",
                io.fabric8.mockwebserver.dsl.HttpMethod.GET,
                path,
                io.fabric8.mockwebserver.http.Headers.builder().build(),
                new Buffer()));
    if (response.code() != 200) {
      return null;
    }
    try {
      return mapper.readTree(response.getBody().getBytes());
    } catch (IOException e) {
      return null;
    }
  }

  private void fillTypeMeta(ResourcePath resource, ObjectNode object) {
    if (!object.hasNonNull("apiVersion")) {
      object.put("apiVersion", resource.apiVersion());
    }
    if (!object.hasNonNull("kind")) {
      String kind = kindsByResource.get(resource.groupResource());
      if (kind != null) {
        object.put("kind", kind);
      }
    }
  }

  private void rememberCrd(ObjectNode crd) {
    JsonNode spec = crd.path("spec");
    String group = spec.path("group").asText("");
    String plural = spec.path("names").path("plural").asText("");
    String kind = spec.path("names").path("kind").asText("");
    if (!plural.isEmpty() && !kind.isEmpty()) {
      kindsByResource.put(group + "/" + plural, kind);
    }
  }

  private MockResponse status(int code, String reason, String message) {
    ObjectNode status = mapper.createObjectNode();
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

  @Override
  public void expectCustomResource(CustomResourceDefinitionContext rdc) {
    kindsByResource.put(rdc.getGroup() + "/" + rdc.getPlural(), rdc.getKind());
    delegate.expectCustomResource(rdc);
  }

  @Override
  public void shutdown() {
    delegate.shutdown();
  }
}
