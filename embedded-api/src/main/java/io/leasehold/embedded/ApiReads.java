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
import java.util.ArrayList;
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
    ApiRequest target = parsed.get();
    if (resources.get().find(target.group(), target.version(), target.plural()).isEmpty()) {
      return Optional.of(unknownResource(target));
    }
    return Optional.of(read(request, parsed.get()));
  }

  /**
   * The answer to any request for a resource the API does not serve: 404, with a Status in the
   * groups of built-in resources, and without one in other groups (those of CRDs, and unknown
   * ones), as the API server answers.
   */
  MockResponse unknownResource(ApiRequest target) {
    if (!ApiResources.BUILT_IN_GROUPS.contains(target.group())) {
      return new MockResponse()
          .setResponseCode(404)
          .setHeader("Content-Type", "text/plain; charset=utf-8")
          .setBody("404 page not found\n");
    }
    return Statuses.response(
        mapper, 404, "NotFound", "the server could not find the requested resource");
  }

  /** A list's selection: its label selector and its field selector, parsed and checked. */
  record Selection(LabelSelectorString labels, FieldSelector fields) {
    boolean matches(JsonNode object) {
      return labels.matches(object.path("metadata").path("labels")) && fields.matches(object);
    }

    boolean isEmpty() {
      return labels.isEmpty() && fields.isEmpty();
    }
  }

  /**
   * The label and field selectors of a request, as the API server reads them: a selector that does
   * not parse, or a field the resource cannot be selected by, is refused (400) rather than taken to
   * select everything.
   *
   * @throws IllegalArgumentException saying what is wrong
   */
  Selection selection(ApiRequest target) {
    LabelSelectorString labels = LabelSelectorString.parse(target.query().get("labelSelector"));
    FieldSelector fields = FieldSelector.parse(target.query().get("fieldSelector"));
    Optional<Resource> resource =
        resources.get().find(target.group(), target.version(), target.plural());
    if (resource.isPresent()) {
      fields.checkSupported(
          target.group(), target.plural(), target.version(), resource.get().crd());
    }
    return new Selection(labels, fields);
  }

  /** The request's path as the store is given it: selectors are applied here, not by the store. */
  static String storePath(String path) {
    return ApiRequest.withoutParameters(path, List.of("fieldSelector", "labelSelector"));
  }

  private MockResponse read(RecordedRequest request, ApiRequest target) {
    Selection selection;
    try {
      selection = selection(target);
    } catch (IllegalArgumentException e) {
      return Statuses.response(mapper, 400, "BadRequest", e.getMessage());
    }
    boolean table = Tables.wanted(request.getHeader("Accept"));
    MockResponse response =
        store.dispatch(
            new RecordedRequest(
                request.getHttpVersion(),
                request.method(),
                storePath(request.getPath()),
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
      boolean builtIn = resource.isPresent() && !resource.get().isCustom();
      List<JsonNode> kept = new ArrayList<>();
      List<JsonNode> sorted = new ArrayList<>();
      items.forEach(sorted::add);
      // The API server lists in the order of its keys: namespace, then name.
      sorted.sort(
          java.util.Comparator.comparing(
                  (JsonNode i) -> i.path("metadata").path("namespace").asText(""))
              .thenComparing(i -> i.path("metadata").path("name").asText("")));
      items.removeAll();
      items.addAll(sorted);
      for (JsonNode item : items) {
        if (selection.matches(item)) {
          if (builtIn && !table && item instanceof ObjectNode o) {
            // The items of a built-in kind's list carry no type: the list's kind says it.
            o.remove("apiVersion");
            o.remove("kind");
          }
          kept.add(item);
        }
      }
      String resourceVersion = list.path("metadata").path("resourceVersion").asText("");
      if (table && resource.isPresent()) {
        return tableResponse(resource.get(), kept, resourceVersion, target);
      }
      ArrayNode filtered = mapper.createArrayNode();
      kept.forEach(filtered::add);
      list.removeAll();
      list.put("apiVersion", target.apiVersion());
      list.put("kind", resource.map(r -> r.kind() + "List").orElse("List"));
      ObjectNode metadata = list.putObject("metadata");
      metadata.put("resourceVersion", resourceVersion);
      list.set("items", filtered);
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
    return Statuses.response(
        mapper, 404, "NotFound", target.resourceName() + " \"" + target.name() + "\" not found");
  }
}
