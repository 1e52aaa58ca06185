package io.leasehold.embedded;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.fabric8.mockwebserver.http.MockResponse;
import java.nio.charset.StandardCharsets;

/** Kubernetes {@code Status} answers, as clients parse them for their error messages. */
final class Statuses {

  private Statuses() {}

  static ObjectNode failure(ObjectMapper mapper, int code, String reason, String message) {
    ObjectNode status = mapper.createObjectNode();
    status.put("apiVersion", "v1");
    status.put("kind", "Status");
    status.putObject("metadata");
    status.put("status", "Failure");
    status.put("message", message);
    status.put("reason", reason);
    status.put("code", code);
    return status;
  }

  /** Why a write at a resourceVersion that is no longer the stored one is refused. */
  static final String MODIFIED =
      "the object has been modified; please apply your changes to the latest version and try"
          + " again";

  /**
   * 409 Conflict as the API server words it: {@code Operation cannot be fulfilled on RESOURCE
   * "name": why}.
   */
  static MockResponse conflict(ObjectMapper mapper, String resourceName, String name, String why) {
    return response(
        mapper,
        409,
        "Conflict",
        "Operation cannot be fulfilled on " + resourceName + " \"" + name + "\": " + why);
  }

  /** 409 AlreadyExists for a create of a name that is taken. */
  static MockResponse alreadyExists(ObjectMapper mapper, String resourceName, String name) {
    return response(
        mapper, 409, "AlreadyExists", resourceName + " \"" + name + "\" already exists");
  }

  /**
   * 422 Invalid for an object, as the API server words it: {@code Kind "name" is invalid: field:
   * message} (several in brackets), with each cause in {@code details.causes}.
   *
   * @param kind the kind as the message names it ({@code ConfigMap}, {@code
   *     TerraformState.leasehold.io})
   */
  static MockResponse invalid(
      ObjectMapper mapper,
      String kind,
      String group,
      String detailsKind,
      String name,
      java.util.List<Cause> causes) {
    java.util.List<String> texts = new java.util.ArrayList<>();
    causes.forEach(c -> texts.add(c.text()));
    String joined = texts.size() == 1 ? texts.get(0) : "[" + String.join(", ", texts) + "]";
    ObjectNode status =
        failure(mapper, 422, "Invalid", kind + " \"" + name + "\" is invalid: " + joined);
    ObjectNode details = status.putObject("details");
    details.put("name", name);
    details.put("group", group);
    details.put("kind", detailsKind);
    var array = details.putArray("causes");
    for (Cause c : causes) {
      ObjectNode cause = array.addObject();
      cause.put("reason", c.reason());
      cause.put("message", c.message());
      cause.put("field", c.field());
    }
    return json(422, status);
  }

  static MockResponse response(ObjectMapper mapper, int code, String reason, String message) {
    return json(code, failure(mapper, code, reason, message));
  }

  static MockResponse json(int code, ObjectNode body) {
    return json(code, "application/json", body);
  }

  static MockResponse json(int code, String contentType, ObjectNode body) {
    return new MockResponse()
        .setResponseCode(code)
        .setHeader("Content-Type", contentType)
        .setBody(body.toString().getBytes(StandardCharsets.UTF_8));
  }
}
