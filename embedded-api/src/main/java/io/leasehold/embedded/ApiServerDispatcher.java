package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.kubernetes.client.dsl.base.CustomResourceDefinitionContext;
import io.fabric8.kubernetes.client.server.mock.CustomResourceAware;
import io.fabric8.mockwebserver.ServerRequest;
import io.fabric8.mockwebserver.ServerResponse;
import io.fabric8.mockwebserver.http.Buffer;
import io.fabric8.mockwebserver.http.Dispatcher;
import io.fabric8.mockwebserver.http.MockResponse;
import io.fabric8.mockwebserver.http.RecordedRequest;
import io.fabric8.zjsonpatch.JsonDiff;
import io.fabric8.zjsonpatch.JsonPatch;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Queue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Makes the CRUD mock behave like a real API server where clients rely on it: it fills {@code kind}
 * and {@code apiVersion} from the URL (client-go sends objects without them), and checks custom
 * resources against their CRD's schema and validation rules before storing them. Reads (discovery,
 * OpenAPI, tables, field selectors) are answered by {@link ApiReads}, deletions by {@link
 * Deletions}, merge patches by {@link Patches}; writes are applied one at a time, so a patch is
 * applied to the version it was computed from.
 */
final class ApiServerDispatcher extends Dispatcher implements CustomResourceAware {

  private static final Logger LOG = LoggerFactory.getLogger(ApiServerDispatcher.class);
  private static final String RULES_REVIEW =
      "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
  private static final String ACCESS_REVIEW =
      "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
  private static final String PROTOBUF = "application/vnd.kubernetes.protobuf";
  private static final String CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

  /** The largest request body the API server reads: 3 MiB. */
  static final long MAX_BODY = 3L * 1024 * 1024;

  private static final ObjectMapper STRICT_JSON =
      new ObjectMapper()
          .enable(com.fasterxml.jackson.core.JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

  private final Store delegate;
  private final ObjectMapper mapper;
  private final Map<String, String> kindsByResource =
      new ConcurrentHashMap<>(ResourcePath.BUILT_IN);
  private final CustomResourceValidation validation;
  private final AdmissionPolicies policies;
  private final ApiReads reads;
  private final Deletions deletions;
  private final Tombstones tombstones = new Tombstones();
  private final ReentrantLock writes = new ReentrantLock();

  // Discovery's view of the CRDs, valid while no CRD has been written or deleted since.
  private record Served(long crdWrites, ApiResources resources) {}

  private final AtomicLong crdWrites = new AtomicLong();
  private volatile Served served;

  ApiServerDispatcher(
      Map<ServerRequest, Queue<ServerResponse>> responses,
      ObjectMapper mapper,
      CustomResourceValidation validation) {
    this.delegate = new Store(responses, mapper);
    this.mapper = mapper;
    this.validation = validation;
    this.policies = new AdmissionPolicies(mapper, this::current);
    this.reads = new ApiReads(mapper, delegate, this::resources);
    this.deletions = new Deletions(mapper, delegate, this::current, reads::notFound);
    this.deletions.selections(reads::selection);
  }

  /** What the API serves now: the built-in resources and those of the stored CRDs. */
  ApiResources resources() {
    long generation = crdWrites.get();
    Served known = served;
    if (known != null && known.crdWrites() == generation) {
      return known.resources();
    }
    JsonNode crds = current(CRD_PATH);
    List<JsonNode> items = new ArrayList<>();
    if (crds != null) {
      crds.path("items").forEach(items::add);
    }
    ApiResources resources = ApiResources.of(items);
    served = new Served(generation, resources);
    return resources;
  }

  /** The schema of a custom resource's version, or null. */
  private JsonNode schemaOf(ApiRequest target) {
    return resources()
        .find(target.group(), target.version(), target.plural())
        .filter(ApiResources.Resource::isCustom)
        .map(
            r -> {
              for (JsonNode v : r.crd().path("spec").path("versions")) {
                if (v.path("name").asText().equals(target.version())) {
                  return v.path("schema").path("openAPIV3Schema");
                }
              }
              return null;
            })
        .orElse(null);
  }

  /** How reads are answered, for the HTTP watch streams. */
  ApiReads reads() {
    return reads;
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
    if ("POST".equals(method) && request.getPath().startsWith(ACCESS_REVIEW)) {
      return allowAccess(request);
    }
    Optional<ApiRequest> target = ApiRequest.parse(request.getPath());
    if (target.isPresent()) {
      ApiRequest t = target.get();
      Optional<ApiResources.Resource> described =
          resources().find(t.group(), t.version(), t.plural());
      if (described.isEmpty()) {
        return reads.unknownResource(t);
      }
      if (described.get().isReview()) {
        return review(request, t, described.get());
      }
    }
    if (target.isPresent() && target.get().subresource() != null) {
      String sub = target.get().subresource();
      if ("log".equals(sub) || "exec".equals(sub) || "attach".equals(sub)) {
        return status(
            400, "BadRequest", "the embedded API runs no containers: pods have no " + sub);
      }
      ApiRequest t = target.get();
      Optional<ApiResources.Resource> resource =
          resources().find(t.group(), t.version(), t.plural());
      boolean served =
          resource.map(r -> r.subresources().contains(sub)).orElse("status".equals(sub));
      if (!served) {
        // A resource has only the subresources it declares (batch/v1 Jobs have no scale); the
        // store would read the path as a query for every object.
        return status(404, "NotFound", "the server could not find the requested resource");
      }
    }
    if (target.isPresent()
        && "POST".equals(method)
        && target.get().name() != null
        && target.get().subresource() == null) {
      return status(
          405,
          "MethodNotAllowed",
          "the server does not allow this method on the requested resource");
    }
    if (request.getBody() != null && request.getBody().size() > MAX_BODY) {
      return status(
          413,
          "RequestEntityTooLarge",
          "Request entity too large: limit is " + MAX_BODY + " bytes");
    }
    if ("GET".equals(method)) {
      return reads.serve(request).orElseGet(() -> delegate.dispatch(request));
    }
    writes.lock();
    try {
      MockResponse response = admitWrite(request);
      if (!storedListeners.isEmpty() && response.code() / 100 == 2) {
        tell(request, response);
      }
      return response;
    } finally {
      writes.unlock();
    }
  }

  private final List<java.util.function.Consumer<StoredWrite>> storedListeners =
      new java.util.concurrent.CopyOnWriteArrayList<>();

  /** Tells {@code listener} of every write stored, in the order they were stored. */
  void onStored(java.util.function.Consumer<StoredWrite> listener) {
    storedListeners.add(listener);
  }

  private void tell(RecordedRequest request, MockResponse response) {
    if (request.getPath().contains("dryRun=")
        || response.getBody() == null
        || response.getBody().size() == 0) {
      return;
    }
    JsonNode object;
    try {
      object = mapper.readTree(response.getBody().getBytes());
    } catch (IOException e) {
      return;
    }
    StoredWrite write = new StoredWrite(request.getMethod(), request.getPath(), object);
    storedListeners.forEach(l -> l.accept(write));
  }

  private MockResponse admitWrite(RecordedRequest request) {
    String method = request.getMethod();
    Optional<ApiRequest> target = ApiRequest.parse(request.getPath());
    if (target.isPresent() && "customresourcedefinitions".equals(target.get().plural())) {
      try {
        return admitResourceWrite(request, target);
      } finally {
        crdWrites.incrementAndGet();
      }
    }
    return admitResourceWrite(request, target);
  }

  private MockResponse admitResourceWrite(RecordedRequest request, Optional<ApiRequest> target) {
    String method = request.getMethod();
    String dryRunValue = target.map(t -> t.query().get("dryRun")).orElse(null);
    if (dryRunValue != null && !dryRunValue.isEmpty() && !"All".equals(dryRunValue)) {
      return Statuses.invalid(
          mapper,
          "CreateOptions.meta.k8s.io",
          "meta.k8s.io",
          "CreateOptions",
          "",
          List.of(Cause.notSupported("dryRun", dryRunValue, "\"All\"")));
    }
    boolean dryRun = "All".equals(dryRunValue);
    String contentType = Optional.ofNullable(request.getHeader("Content-Type")).orElse("");
    if (contentType.startsWith(PROTOBUF) && !"DELETE".equals(method)) {
      return status(
          415,
          "UnsupportedMediaType",
          "the embedded API reads JSON bodies, not protobuf (kubectl create configmap, secret,"
              + " job --from and the like send protobuf): write the object as YAML instead, for"
              + " example kubectl create configmap NAME --from-literal=k=v --dry-run=client -o"
              + " yaml | kubectl create -f -");
    }
    if ("DELETE".equals(method) && target.isPresent()) {
      MockResponse response = deletions.delete(request, target.get());
      if (response.code() == 200 && target.get().name() != null) {
        tombstones.deleted(target.get().objectPath());
      }
      return response;
    }
    Optional<ResourcePath> path = ResourcePath.parse(request.getPath());
    boolean hasBody = request.getBody() != null && request.getBody().size() > 0;
    if (path.isEmpty() || !hasBody) {
      return named(delegate.dispatch(request), target);
    }
    ResourcePath resource = path.get();
    ApiRequest t = target.get();
    String validationMode = t.query().get("fieldValidation");
    if (validationMode != null
        && !List.of("Ignore", "Warn", "Strict", "").contains(validationMode)) {
      return Statuses.invalid(
          mapper,
          kindOf(t),
          t.group(),
          kindsByResource.getOrDefault(t.group() + "/" + t.plural(), t.plural()),
          "",
          List.of(
              Cause.notSupported(
                  "fieldValidation", validationMode, "\"Ignore\", \"Warn\", \"Strict\"")));
    }
    if ("PATCH".equals(method)) {
      return deletedByWrite(named(admitPatch(request, resource, t, dryRun), target), t, null);
    }
    if (!"POST".equals(method) && !"PUT".equals(method)) {
      return delegate.dispatch(request);
    }
    boolean strict = "Strict".equals(validationMode);
    JsonNode body;
    try {
      body = (strict ? STRICT_JSON : mapper).readTree(request.getBody().getBytes());
    } catch (IOException e) {
      return status(
          400,
          "BadRequest",
          (strict ? "strict decoding error: " : "request body is not JSON: ") + e.getMessage());
    }
    if (!(body instanceof ObjectNode object)) {
      return status(400, "BadRequest", "the request body is not an object: " + body);
    }
    fillTypeMeta(resource, object);
    Optional<MockResponse> mismatch = typeAndPlace(t, object, method);
    if (mismatch.isPresent()) {
      return mismatch.get();
    }
    if ("POST".equals(method) && t.namespace() != null && !"namespaces".equals(t.plural())) {
      if (!exists("/api/v1/namespaces/" + t.namespace())) {
        return status(404, "NotFound", "namespaces \"" + t.namespace() + "\" not found");
      }
    }
    Optional<MockResponse> stale = staleSubresourceUpdate(method, resource, target, object);
    if (stale.isPresent()) {
      return stale.get();
    }
    JsonNode storedBefore = "PUT".equals(method) ? current(t.objectPath()) : null;
    boolean versionGiven = !object.path("metadata").path("resourceVersion").asText("").isEmpty();
    if ("PUT".equals(method) && isStatus(target)) {
      if (storedBefore instanceof ObjectNode storedObject) {
        statusOnly(storedObject, object);
      }
    }
    if ("POST".equals(method) && !resource.isSubresource() && needsName(object)) {
      Optional<MockResponse> refused =
          GeneratedNames.assign(object, target.get(), this::current, mapper);
      if (refused.isPresent()) {
        return refused.get();
      }
    }
    if (resource.isCustomResourceDefinitions()) {
      rememberCrd(object);
      validation.register(object);
    }
    List<String> warnings = new ArrayList<>();
    Optional<MockResponse> unknown = unknownFields(t, object, validationMode, false, warnings);
    if (unknown.isPresent()) {
      return unknown.get();
    }
    List<Cause> causes = new ArrayList<>();
    Optional<MockResponse> undecodable =
        objectRules(t, resource.isSubresource(), object, storedBefore, causes);
    if (undecodable.isPresent()) {
      return undecodable.get();
    }
    if ("PUT".equals(method) && schemaOf(t) != null && !versionGiven) {
      // A custom resource, and its status, is updated only at the version the client read.
      causes.add(
          Cause.invalid("metadata.resourceVersion", "0x0", "must be specified for an update"));
    }
    StrictFields.dropNulls(schemaOf(t), object);
    if (validation.knows(resource.group(), resource.plural())) {
      causes.addAll(
          validation.causes(
              resource.group(),
              resource.plural(),
              object,
              () -> "PUT".equals(method) ? current(t.objectPath()) : null,
              !resource.isSubresource(),
              causes));
    }
    if (!causes.isEmpty()) {
      return invalid(t, object, causes);
    }
    if (dryRun) {
      return warned(dryRunWrite(method, target.get(), object), warnings);
    }
    if (!resource.isSubresource()) {
      String name = object.path("metadata").path("name").asText("");
      if (!name.isEmpty()) {
        deletions.written(
            t.name() == null ? t.collectionPath() + "/" + name : t.objectPath(), object);
      }
    }
    byte[] bytes;
    try {
      bytes = mapper.writeValueAsBytes(object);
    } catch (IOException e) {
      return status(500, "InternalError", e.getMessage());
    }
    return warned(
        deletedByWrite(
            named(
                delegate.dispatch(
                    new RecordedRequest(
                        request.getHttpVersion(),
                        request.method(),
                        storePath(request, target),
                        request.getHeaders(),
                        new Buffer(bytes))),
                target),
            target.get(),
            object.path("metadata").path("name").asText("")),
        warnings);
  }

  /**
   * Holds a written object to the rules of every object (its metadata) and of its built-in kind,
   * after filling in the kind's defaults, and, for an update, to what may not change since {@code
   * stored}; adds what is wrong to {@code causes}. A subresource write is held to the update rules
   * only.
   *
   * @return a 400 for a value the kind cannot decode, else empty
   */
  private Optional<MockResponse> objectRules(
      ApiRequest t, boolean subresource, ObjectNode object, JsonNode stored, List<Cause> causes) {
    if (!subresource) {
      try {
        BuiltInRules.defaults(t.group(), t.plural(), object);
      } catch (BuiltInRules.Undecodable e) {
        return Optional.of(status(400, "BadRequest", e.getMessage()));
      }
      causes.addAll(ObjectMetaRules.check(t.group(), t.plural(), object));
      causes.addAll(BuiltInRules.check(t.group(), t.plural(), object, stored));
    }
    if (stored != null) {
      causes.addAll(ObjectMetaRules.checkUpdate(stored, object));
    }
    return Optional.empty();
  }

  /**
   * The kind as Status messages name it: {@code ConfigMap}, {@code TerraformState.leasehold.io}.
   */
  private String kindOf(ApiRequest t) {
    String kind = kindsByResource.getOrDefault(t.group() + "/" + t.plural(), t.plural());
    return t.group().isEmpty() ? kind : kind + "." + t.group();
  }

  private MockResponse invalid(ApiRequest t, JsonNode object, List<Cause> causes) {
    String name = object.path("metadata").path("name").asText(t.name() == null ? "" : t.name());
    return Statuses.invalid(
        mapper,
        kindOf(t),
        t.group(),
        kindsByResource.getOrDefault(t.group() + "/" + t.plural(), t.plural()),
        name,
        causes);
  }

  /** A response with the API server's Warning headers (unknown fields that were dropped). */
  private static MockResponse warned(MockResponse response, List<String> warnings) {
    if (response.code() / 100 == 2) {
      for (String w : warnings) {
        response.addHeader("Warning", "299 - \"" + w.replace("\"", "\\\"") + "\"");
      }
    }
    return response;
  }

  /**
   * The object's type must be the URL's, and its name and namespace, when it gives them, the URL's
   * (400, as the API server answers).
   */
  private Optional<MockResponse> typeAndPlace(ApiRequest t, ObjectNode object, String method) {
    String apiVersion = object.path("apiVersion").asText("");
    String expected = kindsByResource.get(t.group() + "/" + t.plural());
    String kind = object.path("kind").asText("");
    String namespace = object.path("metadata").path("namespace").asText("");
    String name = object.path("metadata").path("name").asText("");
    String problem = null;
    if (!apiVersion.equals(t.apiVersion())) {
      problem =
          "the API version in the data ("
              + apiVersion
              + ") does not match the expected API version ("
              + t.apiVersion()
              + ")";
    } else if (expected != null && !expected.equals(kind) && t.subresource() == null) {
      problem =
          "the kind in the data (" + kind + ") does not match the expected kind (" + expected + ")";
    } else if (t.namespace() != null && !namespace.isEmpty() && !namespace.equals(t.namespace())) {
      problem =
          "the namespace of the provided object does not match the namespace sent on the request";
    } else if (t.name() != null && !name.isEmpty() && !name.equals(t.name())) {
      problem =
          "the name of the object ("
              + name
              + ") does not match the name on the URL ("
              + t.name()
              + ")";
    }
    return Optional.ofNullable(problem).map(p -> status(400, "BadRequest", p));
  }

  /**
   * Fields the resource's schema does not declare: dropped, as the API server prunes them, with a
   * warning (the default, {@code fieldValidation=Warn}) or silently ({@code Ignore}); refused with
   * {@code Strict}: 400 for a create or update, 422 naming the patch for a patch.
   */
  private Optional<MockResponse> unknownFields(
      ApiRequest t, ObjectNode object, String mode, boolean patch, List<String> warnings) {
    JsonNode schema = schemaOf(t);
    // The admission policy kinds are newer than the object model here: their fields are kept.
    boolean builtIn =
        ResourcePath.BUILT_IN.containsKey(t.group() + "/" + t.plural())
            && !AdmissionPolicies.GROUP.equals(t.group());
    List<String> unknown;
    if (schema != null) {
      unknown = StrictFields.unknown(schema, object);
    } else if (builtIn) {
      try {
        unknown = StrictFields.unknownInBuiltIn(mapper, object);
      } catch (IllegalArgumentException e) {
        return Optional.of(undecodable(t, e.getMessage()));
      }
    } else {
      return Optional.empty();
    }
    if (unknown.isEmpty()) {
      return Optional.empty();
    }
    List<String> quoted = new ArrayList<>();
    unknown.forEach(u -> quoted.add("unknown field \"" + u + "\""));
    if ("Strict".equals(mode)) {
      if (patch) {
        return Optional.of(
            invalid(
                t,
                object,
                List.of(
                    Cause.invalid(
                        "patch", "", "strict decoding error: " + String.join(", ", quoted)))));
      }
      return Optional.of(undecodable(t, "strict decoding error: " + String.join(", ", quoted)));
    }
    StrictFields.remove(object, unknown);
    if (!"Ignore".equals(mode)) {
      warnings.addAll(quoted);
    }
    return Optional.empty();
  }

  /** 400 for a body the resource's kind cannot be decoded from, as the API server words it. */
  private MockResponse undecodable(ApiRequest t, String why) {
    String kind = kindsByResource.getOrDefault(t.group() + "/" + t.plural(), "object");
    return status(
        400,
        "BadRequest",
        kind + " in version \"" + t.version() + "\" cannot be handled as a " + kind + ": " + why);
  }

  /**
   * A write the store answered with an empty body deleted the object (its last finalizer removed
   * while it was being deleted); any other successful write means the object exists.
   *
   * @param name the written object's name, for a create (whose path names no object)
   */
  private MockResponse deletedByWrite(MockResponse response, ApiRequest target, String name) {
    if (target.subresource() != null || response.code() / 100 != 2) {
      return response;
    }
    String path =
        target.name() != null
            ? target.objectPath()
            : name == null || name.isEmpty() ? null : target.collectionPath() + "/" + name;
    if (path == null) {
      return response;
    }
    if (response.getBody() == null || response.getBody().size() == 0) {
      tombstones.deleted(path);
    } else {
      tombstones.written(path);
    }
    return response;
  }

  /** Whether the object at {@code objectPath} was deleted lately (and not created since). */
  boolean deletedLately(String objectPath) {
    return tombstones.deletedLately(objectPath);
  }

  /**
   * A server-side dry run ({@code dryRun=All}, {@code kubectl --dry-run=server}): the request went
   * through every check a write goes through; the answer is the object as it would be stored, and
   * nothing is stored.
   */
  private MockResponse dryRunWrite(String method, ApiRequest target, ObjectNode object) {
    String name = object.path("metadata").path("name").asText("");
    String path =
        target.name() == null ? target.collectionPath() + "/" + name : target.objectPath();
    JsonNode stored = current(path);
    if ("POST".equals(method) && target.subresource() == null && stored != null) {
      return Statuses.alreadyExists(mapper, target.resourceName(), name);
    }
    if (!"POST".equals(method) && stored == null) {
      return reads.notFound(target);
    }
    if (target.namespace() != null && object.get("metadata") instanceof ObjectNode metadata) {
      metadata.put("namespace", target.namespace());
    }
    return Statuses.json("POST".equals(method) ? 201 : 200, object);
  }

  private static boolean needsName(ObjectNode object) {
    return object.path("metadata").path("name").asText("").isEmpty()
        && !object.path("metadata").path("generateName").asText("").isEmpty();
  }

  /**
   * The store's refusals as an API server words them: a 404 names the missing object, a 409 says
   * whether the name is taken or the object changed (the store calls every refusal "Invalid", which
   * kubectl would print as a validation error).
   */
  private MockResponse named(MockResponse response, Optional<ApiRequest> target) {
    if (target.isEmpty()) {
      return response;
    }
    ApiRequest t = target.get();
    if (response.code() == 404
        && t.name() != null
        && (response.getBody() == null || response.getBody().size() == 0)) {
      return reads.notFound(t);
    }
    if (response.code() == 409 && response.getBody() != null) {
      JsonNode body;
      try {
        body = mapper.readTree(response.getBody().getBytes());
      } catch (IOException e) {
        return response;
      }
      if (!"Invalid".equals(body.path("reason").asText())) {
        return response;
      }
      String message = body.path("message").asText("");
      if (message.endsWith("already exists")) {
        String name = message.replaceFirst("^[^']*'", "").replaceFirst("' already exists$", "");
        return Statuses.alreadyExists(mapper, t.resourceName(), name);
      }
      return Statuses.conflict(
          mapper, t.resourceName(), t.name() == null ? "" : t.name(), Statuses.MODIFIED);
    }
    return response;
  }

  /**
   * Applies a patch here, with the API server's semantics (JSON patch; JSON merge patch, where a
   * {@code null} removes a key; strategic merge patch, where lists of objects merge by key), checks
   * the object it produces as an update is checked (type, name, unknown fields, metadata, the CRD's
   * schema and rules), and has the store apply the difference as a JSON Patch, so the store's own
   * rules (status subresource, resourceVersion, generation) still hold.
   */
  private MockResponse admitPatch(
      RecordedRequest request, ResourcePath resource, ApiRequest target, boolean dryRun) {
    String contentType = Optional.ofNullable(request.getHeader("Content-Type")).orElse("");
    boolean custom = !ResourcePath.BUILT_IN.containsKey(resource.groupResource());
    if (contentType.contains("apply-patch")) {
      return status(
          415,
          "UnsupportedMediaType",
          "server-side apply is not supported by the embedded API: use kubectl apply without"
              + " --server-side");
    }
    boolean strategic = contentType.contains("strategic-merge-patch");
    boolean merge = !strategic && contentType.contains("merge-patch");
    if (strategic && custom) {
      return status(
          415,
          "UnsupportedMediaType",
          "the body of the request was in an unknown format - accepted media types include:"
              + " application/json-patch+json, application/merge-patch+json (strategic merge"
              + " patch is not supported for custom resources: use --type=merge)");
    }
    if (!strategic && !merge && !contentType.contains("json-patch")) {
      return status(
          415,
          "UnsupportedMediaType",
          "the embedded API supports JSON Patch, JSON merge patch and strategic merge patch, not "
              + contentType);
    }
    boolean status = isStatus(Optional.of(target));
    JsonNode current = current(target.objectPath());
    if (current == null) {
      return reads.notFound(target);
    }
    JsonNode patch;
    try {
      patch = mapper.readTree(request.getBody().getBytes());
    } catch (IOException e) {
      return status(400, "BadRequest", "the patch is not JSON: " + e.getMessage());
    }
    if (!strategic && !merge && !patch.isArray()) {
      return status(
          400,
          "BadRequest",
          "json: cannot unmarshal object into Go value of type jsonpatch.Patch: a JSON patch is a"
              + " list of operations");
    }
    JsonNode patched;
    try {
      patched = apply(patch, current, strategic, merge);
    } catch (RuntimeException e) {
      return status(422, "Invalid", "the patch cannot be applied: " + e.getMessage());
    }
    if (!(patched instanceof ObjectNode object)) {
      return status(422, "Invalid", "the patch does not produce an object");
    }
    if (!object.path("kind").equals(current.path("kind"))
        || !object.path("apiVersion").equals(current.path("apiVersion"))) {
      return invalid(
          target,
          current,
          List.of(
              Cause.invalid(
                  "patch", patch.toString(), "the patch may not change the object's kind")));
    }
    Optional<MockResponse> mismatch = typeAndPlace(target, object, "PATCH");
    if (mismatch.isPresent()) {
      return mismatch.get();
    }
    if (status && current instanceof ObjectNode stored) {
      statusOnly(stored, object);
    }
    if (object.get("metadata") instanceof ObjectNode metadata) {
      // An API server does not keep empty label and annotation maps (kubectl label KEY-).
      for (String map : List.of("labels", "annotations")) {
        if (metadata.path(map).isObject() && metadata.path(map).isEmpty()) {
          metadata.remove(map);
        }
      }
    }
    List<String> warnings = new ArrayList<>();
    Optional<MockResponse> unknown =
        unknownFields(target, object, target.query().get("fieldValidation"), true, warnings);
    if (unknown.isPresent()) {
      return unknown.get();
    }
    List<Cause> causes = new ArrayList<>();
    Optional<MockResponse> undecodable =
        objectRules(target, resource.isSubresource(), object, current, causes);
    if (undecodable.isPresent()) {
      return undecodable.get();
    }
    StrictFields.dropNulls(schemaOf(target), object);
    if (validation.knows(resource.group(), resource.plural())) {
      // The patched object is defaulted as the API server decodes it: a field removed by the
      // patch comes back with its default before the rules (immutability included) are checked.
      causes.addAll(
          validation.causes(
              resource.group(), resource.plural(), object, () -> current, true, causes));
    }
    if (!causes.isEmpty()) {
      return invalid(target, object, causes);
    }
    if (dryRun) {
      return warned(Statuses.json(200, object), warnings);
    }
    if (!resource.isSubresource()) {
      deletions.written(target.objectPath(), object);
    }
    JsonNode difference = JsonDiff.asJson(current, object);
    MockResponse response =
        delegate.dispatch(
            new RecordedRequest(
                request.getHttpVersion(),
                request.method(),
                storePath(request, Optional.of(target)),
                request
                    .getHeaders()
                    .newBuilder()
                    .removeAll("Content-Type")
                    .add("Content-Type", "application/json-patch+json")
                    .build(),
                new Buffer(difference.toString().getBytes(StandardCharsets.UTF_8))));
    if (response.code() == 202) {
      // The store answers a patch with 202 Accepted; the API server with 200.
      response.setResponseCode(200);
    }
    if (resource.isCustomResourceDefinitions() && response.code() / 100 == 2) {
      // A CRD patched (kubectl apply of a changed CRD): its kind and schema as now stored.
      rememberCrd(object);
      validation.register(object);
    }
    return warned(response, warnings);
  }

  /** JSON patch as the API server applies it: a replace of a missing key adds it. */
  private static final java.util.EnumSet<io.fabric8.zjsonpatch.CompatibilityFlags> JSON_PATCH =
      java.util.EnumSet.of(
          io.fabric8.zjsonpatch.CompatibilityFlags.ALLOW_MISSING_TARGET_OBJECT_ON_REPLACE,
          io.fabric8.zjsonpatch.CompatibilityFlags.FORBID_REMOVE_MISSING_OBJECT);

  /** The object {@code patch} makes of {@code current} (which is left as it is). */
  static JsonNode apply(JsonNode patch, JsonNode current, boolean strategic, boolean merge) {
    if (strategic) {
      return Patches.strategicMergePatch(current.deepCopy(), patch);
    }
    if (merge) {
      return Patches.mergePatch(current.deepCopy(), patch);
    }
    return JsonPatch.apply(patch, current.deepCopy(), JSON_PATCH);
  }

  /**
   * A review (TokenReview, SubjectAccessReview) is answered, never stored: by a test's expectation
   * when there is one, else as an API server that authenticates nobody and allows everything would
   * answer it: no token is valid, every access is allowed.
   */
  private MockResponse review(
      RecordedRequest request, ApiRequest t, ApiResources.Resource resource) {
    if (t.name() != null) {
      return status(404, "NotFound", "the server could not find the requested resource");
    }
    if (!"POST".equals(request.getMethod())) {
      return status(
          405,
          "MethodNotAllowed",
          "the server does not allow this method on the requested resource");
    }
    Optional<MockResponse> expected = delegate.expected(request);
    if (expected.isPresent()) {
      return expected.get();
    }
    JsonNode body;
    try {
      body = mapper.readTree(request.getBody().getBytes());
    } catch (IOException e) {
      body = null;
    }
    if (!(body instanceof ObjectNode review)) {
      return status(
          400,
          "BadRequest",
          "the object provided is unrecognized (must be of type " + resource.kind() + ")");
    }
    ObjectNode answer = mapper.createObjectNode();
    if ("TokenReview".equals(resource.kind())) {
      if (review.path("spec").path("token").asText("").isEmpty()) {
        return status(400, "BadRequest", "token is required for TokenReview in authentication");
      }
      answer.putObject("user");
      answer.put("error", "the embedded API authenticates nobody: no token is valid");
    } else {
      JsonNode spec = review.path("spec");
      if (spec.path("user").asText("").isEmpty() && spec.path("groups").isEmpty()) {
        return invalid(
            t,
            review,
            List.of(
                Cause.invalid("spec.user", "", "at least one of user or group must be specified")));
      }
      answer.put("allowed", true);
      answer.put("reason", "the embedded API authenticates nobody and allows every request");
    }
    review.set("status", answer);
    review.put("apiVersion", t.apiVersion());
    review.put("kind", resource.kind());
    return Statuses.json(201, review);
  }

  /**
   * The embedded API authenticates nobody and allows everything; it says so to clients that ask
   * what they may do (the Java Operator SDK asks before leader election).
   */
  /** {@code kubectl auth can-i}: yes, to everything, and why. */
  private MockResponse allowAccess(RecordedRequest request) {
    // kubectl sends this review as protobuf; the answer does not depend on what it asks.
    ObjectNode review = mapper.createObjectNode();
    try {
      if (mapper.readTree(request.getBody().getBytes()) instanceof ObjectNode asked) {
        review = asked;
      }
    } catch (IOException e) {
      review.putObject("spec");
    }
    ObjectNode status = review.putObject("status");
    status.put("allowed", true);
    status.put("reason", "the embedded API authenticates nobody and allows every request");
    review.put("apiVersion", "authorization.k8s.io/v1");
    review.put("kind", "SelfSubjectAccessReview");
    return Statuses.json(201, review);
  }

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

  /**
   * Hands a write to the store as it is, none of the API's checks made (watchers hear of it as of
   * any write): for tests that need an object no API server would hold.
   */
  MockResponse storeUnchecked(RecordedRequest request) {
    writes.lock();
    try {
      return delegate.dispatch(request);
    } finally {
      writes.unlock();
    }
  }

  /** Whether an object is stored at {@code objectPath}. */
  boolean exists(String objectPath) {
    return current(objectPath) != null;
  }

  /**
   * The path a write is handed to the store at: a status write without its query, which would make
   * the store take it for a write of the whole object.
   */
  private static String storePath(RecordedRequest request, Optional<ApiRequest> target) {
    String path = request.getPath();
    int query = path.indexOf('?');
    return isStatus(target) && query >= 0 ? path.substring(0, query) : path;
  }

  private static boolean isStatus(Optional<ApiRequest> target) {
    return target.isPresent() && "status".equals(target.get().subresource());
  }

  /**
   * A write to the status subresource changes the status only, as an API server stores it:
   * everything else of {@code written} (spec, metadata) is replaced by the stored object's, but for
   * the resourceVersion it was written at. The store alone would take the whole object when the
   * path carries a query ({@code ?fieldManager=}, as kubectl sends).
   */
  private static void statusOnly(ObjectNode stored, ObjectNode written) {
    JsonNode status = written.get("status");
    String version = written.path("metadata").path("resourceVersion").asText("");
    written.removeAll();
    written.setAll(stored.deepCopy());
    if (status == null) {
      written.remove("status");
    } else {
      written.set("status", status);
    }
    if (!version.isEmpty() && written.get("metadata") instanceof ObjectNode metadata) {
      metadata.put("resourceVersion", version);
    }
  }

  /**
   * A PUT of a subresource ({@code /status}) carrying a resourceVersion that is no longer the
   * stored one is refused with 409, as an API server refuses it (the store alone would let the
   * stale write win).
   */
  private Optional<MockResponse> staleSubresourceUpdate(
      String method, ResourcePath resource, Optional<ApiRequest> target, ObjectNode object) {
    if (!"PUT".equals(method) || !resource.isSubresource() || target.isEmpty()) {
      return Optional.empty();
    }
    String version = object.path("metadata").path("resourceVersion").asText("");
    if (version.isEmpty()) {
      return Optional.empty();
    }
    JsonNode stored = current(target.get().objectPath());
    if (stored == null
        || version.equals(stored.path("metadata").path("resourceVersion").asText(""))) {
      return Optional.empty();
    }
    return Optional.of(
        Statuses.conflict(
            mapper,
            target.get().resourceName(),
            stored.path("metadata").path("name").asText(""),
            Statuses.MODIFIED));
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
    return Statuses.response(mapper, code, reason, message);
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
