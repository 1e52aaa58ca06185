package io.leasehold.embedded;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.leasehold.embedded.ApiResources.GroupVersion;
import io.leasehold.embedded.ApiResources.Resource;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Optional;
import java.util.function.Supplier;

/**
 * OpenAPI v3, one document per group-version, as kubectl reads it: the PATCH operation of every
 * resource names its group-version-kind and the {@code fieldValidation} parameter, so {@code
 * kubectl create} and {@code apply} leave validation to the server ({@code
 * ?fieldValidation=Strict}); custom resources carry their CRD's schema (for {@code kubectl
 * explain}), built-in ones a minimal schema. OpenAPI v2 is not served: it exists only as protobuf
 * for kubectl, whose clients fall back without it.
 */
final class OpenApiDocuments {

  static final String PREFIX = "/openapi/v3";
  private static final String OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

  private final ObjectMapper mapper;
  private final Supplier<ApiResources> resources;

  OpenApiDocuments(ObjectMapper mapper, Supplier<ApiResources> resources) {
    this.mapper = mapper;
    this.resources = resources;
  }

  static boolean isOpenApiPath(String path) {
    return path.equals("/openapi/v2") || path.equals(PREFIX) || path.startsWith(PREFIX + "/");
  }

  /** The answer to an OpenAPI path: code and body. */
  record Document(int code, ObjectNode body) {}

  Optional<Document> serve(String path) {
    if (path.equals("/openapi/v2")) {
      return Optional.of(
          new Document(
              404,
              Statuses.failure(
                  mapper,
                  404,
                  "NotFound",
                  "the embedded API serves OpenAPI v3 only (/openapi/v3)")));
    }
    ApiResources all = resources.get();
    if (path.equals(PREFIX) || path.equals(PREFIX + "/")) {
      ObjectNode index = mapper.createObjectNode();
      ObjectNode paths = index.putObject("paths");
      for (GroupVersion gv : all.groupVersions()) {
        String key = key(gv);
        paths
            .putObject(key)
            .put("serverRelativeURL", PREFIX + "/" + key + "?hash=" + hash(document(gv)));
      }
      return Optional.of(new Document(200, index));
    }
    String key = path.substring(PREFIX.length() + 1);
    for (GroupVersion gv : all.groupVersions()) {
      if (key(gv).equals(key)) {
        return Optional.of(new Document(200, document(gv)));
      }
    }
    return Optional.of(
        new Document(
            404, Statuses.failure(mapper, 404, "NotFound", "no OpenAPI document for " + key)));
  }

  private static String key(GroupVersion gv) {
    return gv.group().isEmpty() ? "api/" + gv.version() : "apis/" + gv.group() + "/" + gv.version();
  }

  private static String hash(ObjectNode document) {
    try {
      byte[] digest =
          MessageDigest.getInstance("SHA-512")
              .digest(document.toString().getBytes(StandardCharsets.UTF_8));
      return HexFormat.of().formatHex(digest, 0, 32).toUpperCase(java.util.Locale.ROOT);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  ObjectNode document(GroupVersion gv) {
    ObjectNode doc = mapper.createObjectNode();
    doc.put("openapi", "3.0.0");
    ObjectNode info = doc.putObject("info");
    info.put("title", "Kubernetes (leasehold embedded API)");
    info.put("version", Discovery.KUBERNETES_VERSION);
    ObjectNode paths = doc.putObject("paths");
    ObjectNode schemas = doc.putObject("components").putObject("schemas");
    schemas.set(OBJECT_META, objectMeta());
    for (Resource r : gv.resources()) {
      if (!r.verbs().contains("patch")) {
        continue;
      }
      String schemaName = schemaName(r);
      schemas.set(schemaName, schema(r));
      String base = gv.group().isEmpty() ? "/api/" + gv.version() : "/apis/" + gv.groupVersion();
      String collection = base + (r.namespaced() ? "/namespaces/{namespace}/" : "/") + r.plural();
      ObjectNode item = paths.putObject(collection + "/{name}");
      item.set("get", operation(r, "get", schemaName, false));
      item.set("put", operation(r, "put", schemaName, true));
      item.set("patch", operation(r, "patch", schemaName, true));
      item.set("delete", operation(r, "delete", schemaName, false));
      ObjectNode list = paths.putObject(collection);
      list.set("get", operation(r, "list", schemaName, false));
      list.set("post", operation(r, "post", schemaName, true));
      for (String sub : r.subresources()) {
        if ("status".equals(sub)) {
          ObjectNode status = paths.putObject(collection + "/{name}/status");
          status.set("get", operation(r, "get", schemaName, false));
          status.set("put", operation(r, "put", schemaName, true));
          status.set("patch", operation(r, "patch", schemaName, true));
        }
      }
    }
    return doc;
  }

  private static String schemaName(Resource r) {
    if (r.isCustom()) {
      String[] reversed = r.group().split("\\.");
      StringBuilder b = new StringBuilder();
      for (int i = reversed.length - 1; i >= 0; i--) {
        b.append(reversed[i]).append('.');
      }
      return b + r.version() + "." + r.kind();
    }
    String group = r.group().isEmpty() ? "core" : r.group().split("\\.")[0];
    return "io.k8s.api." + group + "." + r.version() + "." + r.kind();
  }

  private ObjectNode operation(Resource r, String verb, String schemaName, boolean body) {
    ObjectNode op = mapper.createObjectNode();
    op.put("operationId", verb + r.kind());
    op.put("x-kubernetes-action", verb);
    ObjectNode gvk = op.putObject("x-kubernetes-group-version-kind");
    gvk.put("group", r.group());
    gvk.put("version", r.version());
    gvk.put("kind", r.kind());
    ArrayNode parameters = op.putArray("parameters");
    if (body) {
      for (String name : new String[] {"dryRun", "fieldManager", "fieldValidation"}) {
        ObjectNode p = parameters.addObject();
        p.put("name", name);
        p.put("in", "query");
        p.putObject("schema").put("type", "string").put("uniqueItems", true);
      }
      ObjectNode content = op.putObject("requestBody").putObject("content");
      String[] types =
          "patch".equals(verb)
              ? new String[] {"application/json-patch+json", "application/merge-patch+json"}
              : new String[] {"application/json", "application/yaml"};
      for (String type : types) {
        content
            .putObject(type)
            .putObject("schema")
            .put("$ref", "#/components/schemas/" + schemaName);
      }
    }
    ObjectNode ok = op.putObject("responses").putObject("200");
    ok.put("description", "OK");
    ok.putObject("content")
        .putObject("application/json")
        .putObject("schema")
        .put("$ref", "#/components/schemas/" + schemaName);
    return op;
  }

  private ObjectNode schema(Resource r) {
    ObjectNode schema;
    JsonNode crdSchema = r.isCustom() ? crdSchema(r) : null;
    if (crdSchema != null && crdSchema.isObject()) {
      schema = (ObjectNode) crdSchema.deepCopy();
    } else {
      schema = mapper.createObjectNode();
      schema.put("type", "object");
      schema.put(
          "description", r.kind() + ": only the fields common to every object are described here.");
      ObjectNode properties = schema.putObject("properties");
      for (String field : new String[] {"spec", "status", "data", "stringData"}) {
        properties
            .putObject(field)
            .put("type", "object")
            .put("x-kubernetes-preserve-unknown-fields", true);
      }
      schema.put("x-kubernetes-preserve-unknown-fields", true);
    }
    ObjectNode properties =
        schema.has("properties")
            ? (ObjectNode) schema.get("properties")
            : schema.putObject("properties");
    properties
        .putObject("apiVersion")
        .put("type", "string")
        .put("description", "APIVersion defines the versioned schema of this object.");
    properties
        .putObject("kind")
        .put("type", "string")
        .put("description", "Kind is a string value representing the REST resource.");
    properties
        .putObject("metadata")
        .put("description", "Standard object's metadata.")
        .putArray("allOf")
        .addObject()
        .put("$ref", "#/components/schemas/" + OBJECT_META);
    ObjectNode gvk = schema.putArray("x-kubernetes-group-version-kind").addObject();
    gvk.put("group", r.group());
    gvk.put("version", r.version());
    gvk.put("kind", r.kind());
    return schema;
  }

  private static JsonNode crdSchema(Resource r) {
    for (JsonNode v : r.crd().path("spec").path("versions")) {
      if (v.path("name").asText().equals(r.version())) {
        return v.path("schema").path("openAPIV3Schema");
      }
    }
    return null;
  }

  private ObjectNode objectMeta() {
    ObjectNode meta = mapper.createObjectNode();
    meta.put("type", "object");
    meta.put("description", "Standard object metadata.");
    ObjectNode p = meta.putObject("properties");
    for (String field :
        new String[] {
          "name",
          "generateName",
          "namespace",
          "uid",
          "resourceVersion",
          "creationTimestamp",
          "deletionTimestamp"
        }) {
      p.putObject(field).put("type", "string");
    }
    p.putObject("generation").put("type", "integer").put("format", "int64");
    p.putObject("deletionGracePeriodSeconds").put("type", "integer").put("format", "int64");
    for (String field : new String[] {"labels", "annotations"}) {
      p.putObject(field)
          .put("type", "object")
          .putObject("additionalProperties")
          .put("type", "string");
    }
    p.putObject("finalizers").put("type", "array").putObject("items").put("type", "string");
    for (String field : new String[] {"ownerReferences", "managedFields"}) {
      p.putObject(field)
          .put("type", "array")
          .putObject("items")
          .put("type", "object")
          .put("x-kubernetes-preserve-unknown-fields", true);
    }
    return meta;
  }
}
