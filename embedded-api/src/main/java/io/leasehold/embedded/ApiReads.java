package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.mockwebserver.http.Dispatcher;
import io.fabric8.mockwebserver.http.MockResponse;
import io.fabric8.mockwebserver.http.RecordedRequest;
import io.leasehold.embedded.ApiResources.Resource;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.function.Supplier;

/**
 * Reads as an API server answers them: {@code /version}, discovery and OpenAPI; lists typed as
 * {@code <Kind>List} and filtered by any field selector; {@code Table}s for {@code kubectl get}; a
 * {@code Status} naming the object when it is not found.
 */
final class ApiReads {

  private static final java.util.Set<String> HEALTH =
      java.util.Set.of("/healthz", "/livez", "/readyz");

  /** How the store begins every list it answers. */
  private static final byte[] STORE_LIST_PREFIX =
      "{\"apiVersion\":\"v1\",\"kind\":\"List\", \"items\": [".getBytes(StandardCharsets.UTF_8);

  private final ObjectMapper mapper;
  private final Dispatcher store;
  private final Discovery discovery;
  private final OpenApiDocuments openApi;
  private final Tables tables;
  private final Supplier<ApiResources> resources;

  ApiReads(ObjectMapper mapper, Dispatcher store, Supplier<ApiResources> resources) {
    this.mapper = mapper;
    this.store = store;
    this.resources = resources;
    this.discovery = new Discovery(mapper, resources);
    this.openApi = new OpenApiDocuments(mapper, resources);
    this.tables = new Tables(mapper);
  }

  Tables tables() {
    return tables;
  }

  /** The answer to a GET that is not a watch, or empty when the store answers it as it is. */
  Optional<MockResponse> serve(RecordedRequest request) {
    String rawPath = request.getPath();
    int q = rawPath.indexOf('?');
    String path = q < 0 ? rawPath : rawPath.substring(0, q);
    if (Discovery.isDiscoveryPath(path)) {
      Optional<Discovery.Document> doc = discovery.serve(path, request.getHeader("Accept"));
      if (doc.isPresent()) {
        return Optional.of(
            Statuses.json(doc.get().code(), doc.get().contentType(), doc.get().body()));
      }
    }
    if (OpenApiDocuments.isOpenApiPath(path)) {
      return openApi.serve(path).map(d -> Statuses.json(d.code(), d.body()));
    }
    if (HEALTH.contains(path)) {
      return Optional.of(
          new MockResponse()
              .setResponseCode(200)
              .setHeader("Content-Type", "text/plain; charset=utf-8")
              .setBody("ok"));
    }
    Optional<ApiRequest> parsed = ApiRequest.parse(rawPath);
    if (parsed.isEmpty()) {
      // The store would answer any other path with every object it holds.
      return Optional.of(
          Statuses.response(
              mapper, 404, "NotFound", "the server could not find the requested resource"));
    }
    if (parsed.get().isWatch()) {
      return Optional.empty();
    }
    return Optional.of(read(request, parsed.get()));
  }

  private MockResponse read(RecordedRequest request, ApiRequest target) {
    FieldSelector selector;
    try {
      selector = FieldSelector.parse(target.query().get("fieldSelector"));
    } catch (IllegalArgumentException e) {
      return Statuses.response(mapper, 400, "BadRequest", e.getMessage());
    }
    boolean table = Tables.wanted(request.getHeader("Accept"));
    String storePath = ApiRequest.withoutParameters(request.getPath(), List.of("fieldSelector"));
    MockResponse response =
        store.dispatch(
            new RecordedRequest(
                request.getHttpVersion(),
                request.method(),
                storePath,
                request.getHeaders(),
                request.getBody()));
    if (response.code() == 404 && target.name() != null && isEmpty(response)) {
      return notFound(target);
    }
    if (response.code() != 200) {
      return response;
    }
    Optional<Resource> resource =
        resources.get().find(target.group(), target.version(), target.plural());
    if (!target.isCollection() && !table) {
      return response;
    }
    if (target.isCollection() && !table && selector.isEmpty() && resource.isPresent()) {
      Optional<MockResponse> typed = typedList(response, target, resource.get());
      if (typed.isPresent()) {
        return typed.get();
      }
    }
    JsonNode body;
    try {
      body = mapper.readTree(response.getBody().getBytes());
    } catch (IOException e) {
      return response;
    }
    if (target.isCollection()) {
      if (!(body instanceof ObjectNode list) || !(list.get("items") instanceof ArrayNode items)) {
        return response;
      }
      List<JsonNode> kept = new ArrayList<>();
      for (JsonNode item : items) {
        if (selector.matches(item)) {
          kept.add(item);
        }
      }
      String resourceVersion = list.path("metadata").path("resourceVersion").asText("");
      if (table && resource.isPresent()) {
        return tableResponse(resource.get(), kept, resourceVersion, target);
      }
      ArrayNode filtered = mapper.createArrayNode();
      kept.forEach(filtered::add);
      list.set("items", filtered);
      list.put("apiVersion", target.apiVersion());
      resource.ifPresent(r -> list.put("kind", r.kind() + "List"));
      ObjectNode metadata = mapper.createObjectNode();
      metadata.put("resourceVersion", resourceVersion);
      list.set("metadata", metadata);
      return Statuses.json(200, list);
    }
    if (resource.isEmpty()) {
      return response;
    }
    return tableResponse(
        resource.get(),
        List.of(body),
        body.path("metadata").path("resourceVersion").asText(""),
        target);
  }

  /**
   * The store's list typed as {@code <Kind>List} without parsing it: a list of large Secrets (state
   * chunks) is copied, not decoded and encoded again.
   */
  private static Optional<MockResponse> typedList(
      MockResponse response, ApiRequest target, Resource resource) {
    byte[] body = response.getBody().getBytes();
    if (body.length < STORE_LIST_PREFIX.length
        || !Arrays.equals(
            body, 0, STORE_LIST_PREFIX.length, STORE_LIST_PREFIX, 0, STORE_LIST_PREFIX.length)) {
      return Optional.empty();
    }
    byte[] prefix =
        ("{\"apiVersion\":\""
                + target.apiVersion()
                + "\",\"kind\":\""
                + resource.kind()
                + "List\", \"items\": [")
            .getBytes(StandardCharsets.UTF_8);
    byte[] typed = new byte[prefix.length + body.length - STORE_LIST_PREFIX.length];
    System.arraycopy(prefix, 0, typed, 0, prefix.length);
    System.arraycopy(
        body,
        STORE_LIST_PREFIX.length,
        typed,
        prefix.length,
        body.length - STORE_LIST_PREFIX.length);
    return Optional.of(
        new MockResponse()
            .setResponseCode(200)
            .setHeader("Content-Type", "application/json")
            .setBody(typed));
  }

  private MockResponse tableResponse(
      Resource resource, List<JsonNode> items, String resourceVersion, ApiRequest target) {
    ObjectNode table =
        tables.table(resource, items, resourceVersion, target.query().get("includeObject"), true);
    return Statuses.json(200, Tables.CONTENT_TYPE, table);
  }

  private static boolean isEmpty(MockResponse response) {
    return response.getBody() == null || response.getBody().size() == 0;
  }

  /** A 404 that names what was not found, as {@code kubectl} prints it. */
  MockResponse notFound(ApiRequest target) {
    String what =
        target.group().isEmpty() ? target.plural() : target.plural() + "." + target.group();
    return Statuses.response(
        mapper, 404, "NotFound", what + " \"" + target.name() + "\" not found");
  }
}
