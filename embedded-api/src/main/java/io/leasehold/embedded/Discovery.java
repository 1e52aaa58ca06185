package io.leasehold.embedded;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.leasehold.embedded.ApiResources.GroupVersion;
import io.leasehold.embedded.ApiResources.Resource;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.Supplier;

/**
 * The API server's self-description that clients read before anything else: {@code /version} and
 * discovery ({@code /api}, {@code /apis}, one resource list per group-version), in the classic form
 * and, when the client asks for it, in the aggregated form ({@code apidiscovery.k8s.io/v2}) that
 * kubectl prefers.
 */
final class Discovery {

  /** The Kubernetes minor version whose API the embedded server follows. */
  static final String KUBERNETES_VERSION = "v1.32.0";

  static final String AGGREGATED_CONTENT_TYPE =
      "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

  private final ObjectMapper mapper;
  private final Supplier<ApiResources> resources;

  Discovery(ObjectMapper mapper, Supplier<ApiResources> resources) {
    this.mapper = mapper;
    this.resources = resources;
  }

  /** A discovery document, or empty when the path is not a discovery path. */
  record Document(int code, String contentType, ObjectNode body) {}

  Optional<Document> serve(String path, String accept) {
    if ("/version".equals(path)) {
      return Optional.of(json(version()));
    }
    if ("/api".equals(path)) {
      return Optional.of(wantsAggregated(accept) ? aggregated(true) : json(legacyVersions()));
    }
    if ("/apis".equals(path)) {
      return Optional.of(wantsAggregated(accept) ? aggregated(false) : json(groupList()));
    }
    String[] parts = path.split("/");
    if (parts.length == 3 && "api".equals(parts[1])) {
      return Optional.of(resourceList("", parts[2]));
    }
    if (parts.length == 3 && "apis".equals(parts[1])) {
      return Optional.of(group(parts[2]));
    }
    if (parts.length == 4 && "apis".equals(parts[1])) {
      return Optional.of(resourceList(parts[2], parts[3]));
    }
    return Optional.empty();
  }

  /** Whether a path is one that {@link #serve} answers. */
  static boolean isDiscoveryPath(String path) {
    if ("/version".equals(path) || "/api".equals(path) || "/apis".equals(path)) {
      return true;
    }
    String[] parts = path.split("/");
    return (parts.length == 3 && ("api".equals(parts[1]) || "apis".equals(parts[1])))
        || (parts.length == 4 && "apis".equals(parts[1]));
  }

  private static boolean wantsAggregated(String accept) {
    return accept != null
        && accept.contains("as=APIGroupDiscoveryList")
        && accept.contains("g=apidiscovery.k8s.io;v=v2;");
  }

  private Document json(ObjectNode body) {
    return new Document(200, "application/json", body);
  }

  private ObjectNode version() {
    ObjectNode v = mapper.createObjectNode();
    String[] numbers = KUBERNETES_VERSION.substring(1).split("\\.");
    v.put("major", numbers[0]);
    v.put("minor", numbers[1]);
    v.put("gitVersion", KUBERNETES_VERSION + "+leasehold-embedded");
    v.put("gitCommit", "");
    v.put("gitTreeState", "clean");
    v.put("buildDate", "1970-01-01T00:00:00Z");
    v.put("goVersion", "");
    v.put("compiler", "");
    v.put("platform", System.getProperty("os.name", "") + "/" + System.getProperty("os.arch", ""));
    return v;
  }

  private ObjectNode legacyVersions() {
    ObjectNode v = mapper.createObjectNode();
    v.put("kind", "APIVersions");
    v.putArray("versions").add("v1");
    ObjectNode address = v.putArray("serverAddressByClientCIDRs").addObject();
    address.put("clientCIDR", "0.0.0.0/0");
    address.put("serverAddress", "127.0.0.1");
    return v;
  }

  private Map<String, List<GroupVersion>> groups() {
    Map<String, List<GroupVersion>> groups = new LinkedHashMap<>();
    for (GroupVersion gv : resources.get().groupVersions()) {
      if (!gv.group().isEmpty()) {
        groups.computeIfAbsent(gv.group(), g -> new ArrayList<>()).add(gv);
      }
    }
    return groups;
  }

  private ObjectNode groupList() {
    ObjectNode list = mapper.createObjectNode();
    list.put("kind", "APIGroupList");
    list.put("apiVersion", "v1");
    ArrayNode items = list.putArray("groups");
    groups().forEach((name, versions) -> items.add(apiGroup(name, versions)));
    return list;
  }

  private ObjectNode apiGroup(String name, List<GroupVersion> versions) {
    ObjectNode group = mapper.createObjectNode();
    group.put("name", name);
    ArrayNode list = group.putArray("versions");
    for (GroupVersion gv : versions) {
      ObjectNode v = list.addObject();
      v.put("groupVersion", gv.groupVersion());
      v.put("version", gv.version());
    }
    group.set("preferredVersion", list.get(0).deepCopy());
    return group;
  }

  private Document group(String name) {
    List<GroupVersion> versions = groups().get(name);
    if (versions == null) {
      return notFound("the server could not find the requested resource");
    }
    ObjectNode group = apiGroup(name, versions);
    group.put("kind", "APIGroup");
    group.put("apiVersion", "v1");
    return json(group);
  }

  private Document resourceList(String group, String version) {
    Optional<GroupVersion> gv = resources.get().groupVersion(group, version);
    if (gv.isEmpty()) {
      return notFound("the server could not find the requested resource");
    }
    ObjectNode list = mapper.createObjectNode();
    list.put("kind", "APIResourceList");
    list.put("apiVersion", "v1");
    list.put("groupVersion", gv.get().groupVersion());
    ArrayNode items = list.putArray("resources");
    for (Resource r : gv.get().resources()) {
      ObjectNode item = items.addObject();
      item.put("name", r.plural());
      item.put("singularName", r.singular());
      item.put("namespaced", r.namespaced());
      item.put("kind", r.kind());
      strings(item.putArray("verbs"), r.verbs());
      if (!r.shortNames().isEmpty()) {
        strings(item.putArray("shortNames"), r.shortNames());
      }
      if (!r.categories().isEmpty()) {
        strings(item.putArray("categories"), r.categories());
      }
      for (String sub : r.subresources()) {
        ObjectNode subItem = items.addObject();
        subItem.put("name", r.plural() + "/" + sub);
        subItem.put("singularName", "");
        subItem.put("namespaced", r.namespaced());
        subItem.put("kind", "scale".equals(sub) ? "Scale" : r.kind());
        strings(subItem.putArray("verbs"), ApiResources.SUBRESOURCE_VERBS);
      }
    }
    return json(list);
  }

  private Document aggregated(boolean core) {
    ObjectNode list = mapper.createObjectNode();
    list.put("kind", "APIGroupDiscoveryList");
    list.put("apiVersion", "apidiscovery.k8s.io/v2");
    list.putObject("metadata");
    ArrayNode items = list.putArray("items");
    if (core) {
      resources
          .get()
          .groupVersion("", "v1")
          .ifPresent(gv -> items.add(groupDiscovery("", List.of(gv))));
    } else {
      groups().forEach((name, versions) -> items.add(groupDiscovery(name, versions)));
    }
    return new Document(200, AGGREGATED_CONTENT_TYPE, list);
  }

  private ObjectNode groupDiscovery(String name, List<GroupVersion> versions) {
    ObjectNode group = mapper.createObjectNode();
    ObjectNode metadata = group.putObject("metadata");
    if (!name.isEmpty()) {
      metadata.put("name", name);
    }
    ArrayNode versionList = group.putArray("versions");
    for (GroupVersion gv : versions) {
      ObjectNode v = versionList.addObject();
      v.put("version", gv.version());
      v.put("freshness", "Current");
      ArrayNode list = v.putArray("resources");
      for (Resource r : gv.resources()) {
        ObjectNode item = list.addObject();
        item.put("resource", r.plural());
        item.set("responseKind", responseKind(r.group(), r.version(), r.kind()));
        item.put("scope", r.namespaced() ? "Namespaced" : "Cluster");
        item.put("singularResource", r.singular());
        strings(item.putArray("verbs"), r.verbs());
        if (!r.shortNames().isEmpty()) {
          strings(item.putArray("shortNames"), r.shortNames());
        }
        if (!r.categories().isEmpty()) {
          strings(item.putArray("categories"), r.categories());
        }
        if (!r.subresources().isEmpty()) {
          ArrayNode subs = item.putArray("subresources");
          for (String sub : r.subresources()) {
            ObjectNode s = subs.addObject();
            s.put("subresource", sub);
            s.set(
                "responseKind",
                "scale".equals(sub)
                    ? responseKind("autoscaling", "v1", "Scale")
                    : responseKind(r.group(), r.version(), r.kind()));
            strings(s.putArray("verbs"), ApiResources.SUBRESOURCE_VERBS);
          }
        }
      }
    }
    return group;
  }

  private ObjectNode responseKind(String group, String version, String kind) {
    ObjectNode k = mapper.createObjectNode();
    k.put("group", group);
    k.put("version", version);
    k.put("kind", kind);
    return k;
  }

  private static void strings(ArrayNode array, List<String> values) {
    values.forEach(array::add);
  }

  private Document notFound(String message) {
    return new Document(
        404, "application/json", Statuses.failure(mapper, 404, "NotFound", message));
  }
}
