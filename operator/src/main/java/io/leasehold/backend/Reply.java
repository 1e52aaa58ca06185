package io.leasehold.backend;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;

/**
 * An HTTP answer of the backend: status, content type, body and extra headers. A large body (a
 * state) is not held: {@code stream} opens it when it is sent, and {@code body} is then empty.
 */
public record Reply(
    int status, String contentType, byte[] body, Map<String, String> headers, Streamed stream) {

  /** A body read from a stream as it is sent, of a length known in advance. */
  public interface Streamed {
    long length();

    InputStream open() throws IOException;
  }

  public Reply(int status, String contentType, byte[] body, Map<String, String> headers) {
    this(status, contentType, body, headers, null);
  }

  /** A reply whose body is streamed from {@code body} when it is sent. */
  public static Reply streamed(
      int status, String contentType, Streamed body, Map<String, String> headers) {
    return new Reply(status, contentType, new byte[0], headers, body);
  }

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
    return new Reply(status, contentType, body, Map.copyOf(copy), stream);
  }

  public String bodyText() {
    return new String(body, StandardCharsets.UTF_8);
  }
}
