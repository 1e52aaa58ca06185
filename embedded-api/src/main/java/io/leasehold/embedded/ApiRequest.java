package io.leasehold.embedded;

import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A request for a resource, taken apart: {@code /api/v1/namespaces/NS/PLURAL/NAME/SUB} or {@code
 * /apis/GROUP/VERSION/...}, with its query parameters decoded.
 */
record ApiRequest(
    String group,
    String version,
    String namespace,
    String plural,
    String name,
    String subresource,
    Map<String, String> query) {

  /** The subresources of a namespace: {@code /api/v1/namespaces/NAME/status}. */
  private static final java.util.Set<String> NAMESPACE_SUBRESOURCES =
      java.util.Set.of("status", "finalize");

  static Optional<ApiRequest> parse(String rawPath) {
    String path = rawPath;
    String queryString = "";
    int q = path.indexOf('?');
    if (q >= 0) {
      queryString = path.substring(q + 1);
      path = path.substring(0, q);
    }
    String[] parts = path.split("/");
    int i;
    String group;
    String version;
    if (parts.length >= 4 && "api".equals(parts[1])) {
      group = "";
      version = parts[2];
      i = 3;
    } else if (parts.length >= 5 && "apis".equals(parts[1])) {
      group = parts[2];
      version = parts[3];
      i = 4;
    } else {
      return Optional.empty();
    }
    String namespace = null;
    if (group.isEmpty()
        && "namespaces".equals(parts[i])
        && parts.length == i + 3
        && NAMESPACE_SUBRESOURCES.contains(parts[i + 2])) {
      // A namespace's own subresource, not a collection in it.
      return Optional.of(
          new ApiRequest(
              group, version, null, parts[i], parts[i + 1], parts[i + 2], query(queryString)));
    }
    if ("namespaces".equals(parts[i]) && parts.length >= i + 3) {
      namespace = parts[i + 1];
      i += 2;
    }
    String plural = parts[i];
    String name = parts.length > i + 1 ? parts[i + 1] : null;
    String subresource = parts.length > i + 2 ? parts[i + 2] : null;
    return Optional.of(
        new ApiRequest(group, version, namespace, plural, name, subresource, query(queryString)));
  }

  static Map<String, String> query(String queryString) {
    Map<String, String> params = new LinkedHashMap<>();
    if (queryString == null || queryString.isEmpty()) {
      return params;
    }
    for (String pair : queryString.split("&")) {
      if (pair.isEmpty()) {
        continue;
      }
      int eq = pair.indexOf('=');
      String key = eq < 0 ? pair : pair.substring(0, eq);
      String value = eq < 0 ? "" : pair.substring(eq + 1);
      params.put(decode(key), decode(value));
    }
    return params;
  }

  private static String decode(String s) {
    try {
      return URLDecoder.decode(s, StandardCharsets.UTF_8);
    } catch (IllegalArgumentException e) {
      return s;
    }
  }

  /** The path without the given query parameters (the rest kept as sent). */
  static String withoutParameters(String rawPath, List<String> names) {
    int q = rawPath.indexOf('?');
    if (q < 0) {
      return rawPath;
    }
    List<String> kept = new ArrayList<>();
    for (String pair : rawPath.substring(q + 1).split("&")) {
      int eq = pair.indexOf('=');
      String key = decode(eq < 0 ? pair : pair.substring(0, eq));
      if (!pair.isEmpty() && !names.contains(key)) {
        kept.add(pair);
      }
    }
    return rawPath.substring(0, q) + (kept.isEmpty() ? "" : "?" + String.join("&", kept));
  }

  boolean isCollection() {
    return name == null;
  }

  boolean isWatch() {
    return "true".equals(query.get("watch")) || "1".equals(query.get("watch"));
  }

  String apiVersion() {
    return group.isEmpty() ? version : group + "/" + version;
  }

  /** The resource as Status messages name it: {@code configmaps}, {@code jobs.batch}. */
  String resourceName() {
    return group.isEmpty() ? plural : plural + "." + group;
  }

  /** The path of the collection this request is in (namespaced when the request is). */
  String collectionPath() {
    String base = group.isEmpty() ? "/api/" + version : "/apis/" + group + "/" + version;
    return base + (namespace == null ? "" : "/namespaces/" + namespace) + "/" + plural;
  }

  String objectPath() {
    return collectionPath() + "/" + name;
  }
}
