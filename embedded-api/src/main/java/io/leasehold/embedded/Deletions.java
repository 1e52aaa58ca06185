package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.mockwebserver.dsl.HttpMethod;
import io.fabric8.mockwebserver.http.Buffer;
import io.fabric8.mockwebserver.http.Dispatcher;
import io.fabric8.mockwebserver.http.Headers;
import io.fabric8.mockwebserver.http.MockResponse;
import io.fabric8.mockwebserver.http.RecordedRequest;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Function;

/**
 * Deletion as an API server does it: the {@code DeleteOptions} preconditions ({@code uid}, {@code
 * resourceVersion}) are checked against the stored object (409 when they differ, nothing deleted),
 * and the owner's dependents, the objects whose {@code ownerReferences} name it, are deleted with
 * it ({@code Background}, {@code Foreground}) or released ({@code Orphan}), as the garbage
 * collector would. Dependents are found through an index of the owner references seen on writes.
 */
final class Deletions {

  private final ObjectMapper mapper;
  private final Dispatcher store;
  private final Function<String, JsonNode> getter;
  private final Function<ApiRequest, MockResponse> notFound;

  /** Owner UID to the paths of objects that were written naming it as their owner. */
  private final Map<String, Set<String>> dependents = new ConcurrentHashMap<>();

  Deletions(
      ObjectMapper mapper,
      Dispatcher store,
      Function<String, JsonNode> getter,
      Function<ApiRequest, MockResponse> notFound) {
    this.mapper = mapper;
    this.store = store;
    this.getter = getter;
    this.notFound = notFound;
  }

  /** Notes the owners of an object about to be stored at {@code objectPath}. */
  void written(String objectPath, JsonNode object) {
    for (JsonNode owner : object.path("metadata").path("ownerReferences")) {
      String uid = owner.path("uid").asText("");
      if (!uid.isEmpty()) {
        dependents.computeIfAbsent(uid, u -> ConcurrentHashMap.newKeySet()).add(objectPath);
      }
    }
  }

  /** The selection of a collection request (label and field selectors), checked. */
  private Function<ApiRequest, ApiReads.Selection> selections = t -> null;

  void selections(Function<ApiRequest, ApiReads.Selection> selections) {
    this.selections = selections;
  }

  private static final List<String> POLICIES = List.of("Foreground", "Background", "Orphan");

  /** Why the DeleteOptions cannot be followed, as the API server refuses them; or null. */
  private MockResponse invalidOptions(ApiRequest target, JsonNode options) {
    String grace = target.query().get("gracePeriodSeconds");
    if (grace != null) {
      try {
        Long.parseLong(grace);
      } catch (NumberFormatException e) {
        return Statuses.response(
            mapper,
            400,
            "BadRequest",
            "gracePeriodSeconds: Invalid value: \"" + grace + "\": not an integer");
      }
    }
    JsonNode policy = options.get("propagationPolicy");
    if (policy == null || policy.isNull()) {
      return null;
    }
    if (!POLICIES.contains(policy.asText())) {
      return invalidOptions(
          Cause.notSupported(
              "propagationPolicy",
              policy.asText(),
              "\"Foreground\", \"Background\", \"Orphan\", \"nil\""));
    }
    JsonNode orphan = options.get("orphanDependents");
    if (orphan != null && !orphan.isNull()) {
      return invalidOptions(
          Cause.invalid(
              "propagationPolicy",
              policy.asText(),
              "orphanDependents and deletionPropagation cannot be both set"));
    }
    return null;
  }

  /** 422 for DeleteOptions that are not valid, as the API server words it. */
  private MockResponse invalidOptions(Cause cause) {
    return Statuses.invalid(
        mapper, "DeleteOptions.meta.k8s.io", "meta.k8s.io", "DeleteOptions", "", List.of(cause));
  }

  MockResponse delete(RecordedRequest request, ApiRequest target) {
    JsonNode options = options(request, target);
    boolean dryRun = "All".equals(target.query().get("dryRun"));
    for (JsonNode value : options.path("dryRun")) {
      dryRun |= "All".equals(value.asText());
    }
    MockResponse invalid = invalidOptions(target, options);
    if (invalid != null) {
      return invalid;
    }
    if (target.name() == null) {
      return deleteCollection(request, target, dryRun);
    }
    JsonNode preconditions = options.path("preconditions");
    JsonNode current = null;
    if (preconditions.isObject() && !preconditions.isEmpty()) {
      current = getter.apply(target.objectPath());
      if (current == null) {
        return notFound.apply(target);
      }
      String conflict = preconditionConflict(preconditions, current.path("metadata"));
      if (conflict != null) {
        return Statuses.conflict(mapper, target.resourceName(), target.name(), conflict);
      }
    }
    if (dryRun) {
      // A server-side dry run: checked, answered with the object, nothing deleted.
      JsonNode stored = current != null ? current : getter.apply(target.objectPath());
      return stored instanceof ObjectNode object
          ? Statuses.json(200, object)
          : notFound.apply(target);
    }
    String policy = options.path("propagationPolicy").asText("");
    if (options.path("orphanDependents").asBoolean(false)) {
      policy = "Orphan";
    }
    if (dependents.isEmpty()) {
      return deleted(store.dispatch(request), target);
    }
    if (current == null) {
      current = getter.apply(target.objectPath());
    }
    String uid = current == null ? "" : current.path("metadata").path("uid").asText("");
    if ("Foreground".equals(policy)) {
      cascade(uid, policy);
      return deleted(store.dispatch(request), target);
    }
    MockResponse response = store.dispatch(request);
    if (response.code() == 200 && getter.apply(target.objectPath()) == null) {
      cascade(uid, policy);
    }
    return deleted(response, target);
  }

  /**
   * A delete of a collection: each object the selectors select is deleted as if on its own
   * (finalizers, dependents); the answer lists them. A dry run deletes nothing.
   */
  private MockResponse deleteCollection(
      RecordedRequest request, ApiRequest target, boolean dryRun) {
    ApiReads.Selection selection;
    try {
      selection = selections.apply(target);
    } catch (IllegalArgumentException e) {
      return Statuses.response(mapper, 400, "BadRequest", e.getMessage());
    }
    JsonNode list = getter.apply(target.collectionPath());
    ArrayNode deleted = mapper.createArrayNode();
    for (JsonNode item : list == null ? mapper.createArrayNode() : list.path("items")) {
      if (selection != null && !selection.matches(item)) {
        continue;
      }
      String name = item.path("metadata").path("name").asText();
      String path = target.collectionPath() + "/" + name;
      if (!dryRun) {
        int query = request.getPath().indexOf('?');
        String withQuery = query < 0 ? path : path + request.getPath().substring(query);
        ApiRequest one = ApiRequest.parse(path).orElseThrow();
        MockResponse answer =
            delete(
                new RecordedRequest(
                    request.getHttpVersion(),
                    request.method(),
                    withQuery,
                    request.getHeaders(),
                    request.getBody()),
                one);
        if (answer.code() / 100 != 2) {
          return answer;
        }
      }
      deleted.add(item);
    }
    ObjectNode answer = mapper.createObjectNode();
    answer.put("apiVersion", target.apiVersion());
    answer.put("kind", "List");
    answer.putObject("metadata");
    answer.set("items", deleted);
    return Statuses.json(200, answer);
  }

  private MockResponse deleted(MockResponse response, ApiRequest target) {
    if (response.code() == 404 && (response.getBody() == null || response.getBody().size() == 0)) {
      return notFound.apply(target);
    }
    return response;
  }

  private static String preconditionConflict(JsonNode preconditions, JsonNode metadata) {
    String uid = preconditions.path("uid").asText("");
    if (!uid.isEmpty() && !uid.equals(metadata.path("uid").asText())) {
      return "Precondition failed: UID in precondition: "
          + uid
          + ", UID in object meta: "
          + metadata.path("uid").asText();
    }
    String version = preconditions.path("resourceVersion").asText("");
    if (!version.isEmpty() && !version.equals(metadata.path("resourceVersion").asText())) {
      return "Precondition failed: ResourceVersion in precondition: "
          + version
          + ", ResourceVersion in object meta: "
          + metadata.path("resourceVersion").asText();
    }
    return null;
  }

  private JsonNode options(RecordedRequest request, ApiRequest target) {
    ObjectNode options = mapper.createObjectNode();
    if (request.getBody() != null && request.getBody().size() > 0) {
      try {
        JsonNode body = mapper.readTree(request.getBody().getBytes());
        if (body instanceof ObjectNode o) {
          options = o;
        }
      } catch (IOException e) {
        // The store ignores a body it cannot read; so do preconditions.
      }
    }
    String fromQuery = target.query().get("propagationPolicy");
    if (fromQuery != null && !options.has("propagationPolicy")) {
      options.put("propagationPolicy", fromQuery);
    }
    return options;
  }

  private void cascade(String ownerUid, String policy) {
    if (ownerUid.isEmpty()) {
      return;
    }
    Set<String> paths = dependents.remove(ownerUid);
    if (paths == null) {
      return;
    }
    for (String path : paths) {
      JsonNode dependent = getter.apply(path);
      if (dependent == null || !references(dependent, ownerUid)) {
        continue;
      }
      if ("Orphan".equals(policy)) {
        release(path, dependent, ownerUid);
      } else {
        String uid = dependent.path("metadata").path("uid").asText("");
        if ("Foreground".equals(policy)) {
          cascade(uid, policy);
        }
        store.dispatch(request(HttpMethod.DELETE, path, null));
        if (!"Foreground".equals(policy) && getter.apply(path) == null) {
          cascade(uid, policy);
        }
      }
    }
  }

  private static boolean references(JsonNode dependent, String ownerUid) {
    for (JsonNode owner : dependent.path("metadata").path("ownerReferences")) {
      if (ownerUid.equals(owner.path("uid").asText())) {
        return true;
      }
    }
    return false;
  }

  private void release(String path, JsonNode dependent, String ownerUid) {
    ArrayNode kept = mapper.createArrayNode();
    for (JsonNode owner : dependent.path("metadata").path("ownerReferences")) {
      if (!ownerUid.equals(owner.path("uid").asText())) {
        kept.add(owner);
      }
    }
    List<ObjectNode> ops = new ArrayList<>();
    ObjectNode replace = mapper.createObjectNode();
    if (kept.isEmpty()) {
      replace.put("op", "remove");
    } else {
      replace.put("op", "replace");
      replace.set("value", kept);
    }
    replace.put("path", "/metadata/ownerReferences");
    ops.add(replace);
    store.dispatch(request(HttpMethod.PATCH, path, mapper.valueToTree(ops).toString()));
  }

  private static RecordedRequest request(HttpMethod method, String path, String body) {
    Headers.Builder headers = Headers.builder();
    if (body != null) {
      headers.add("Content-Type", "application/json-patch+json");
    }
    return new RecordedRequest(
        "HTTP/1.1",
        method,
        path,
        headers.build(),
        body == null ? new Buffer() : new Buffer(body.getBytes(StandardCharsets.UTF_8)));
  }
}
