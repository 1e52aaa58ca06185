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
