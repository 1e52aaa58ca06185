package io.leasehold.backend;

import java.nio.charset.StandardCharsets;
import java.util.Map;

/** An HTTP answer of the backend: status, content type, body and extra headers. */
public record Reply(int status, String contentType, byte[] body, Map<String, String> headers) {

  public static Reply json(int status, String json) {
    return new Reply(status, "application/json", json.getBytes(StandardCharsets.UTF_8), Map.of());
  }

  /** A plain-text error or note that says what happened and what to do. */
  public static Reply text(int status, String message) {
    return new Reply(
        status,
        "text/plain; charset=utf-8",
        (message + "\n").getBytes(StandardCharsets.UTF_8),
        Map.of());
  }

  public Reply withHeader(String name, String value) {
    var copy = new java.util.HashMap<>(headers);
    copy.put(name, value);
    return new Reply(status, contentType, body, Map.copyOf(copy));
  }

  public String bodyText() {
    return new String(body, StandardCharsets.UTF_8);
  }
}
