package io.leasehold.backend;

import io.leasehold.lock.LockInfo;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;

/** Speaks Terraform's http backend protocol the way Terraform does, for tests. */
final class BackendClient {

  private final HttpClient http =
      HttpClient.newBuilder()
          .version(HttpClient.Version.HTTP_1_1)
          .connectTimeout(Duration.ofSeconds(10))
          .build();
  private final String base;

  BackendClient(String base) {
    this.base = base;
  }

  record Response(int status, String body, Map<String, java.util.List<String>> headers) {
    String header(String name) {
      return headers.entrySet().stream()
          .filter(e -> e.getKey().equalsIgnoreCase(name))
          .map(e -> e.getValue().get(0))
          .findFirst()
          .orElse(null);
    }
  }

  Response send(String method, String path, String body, Map<String, String> headers)
      throws IOException, InterruptedException {
    return sendBytes(
        method, path, body == null ? null : body.getBytes(StandardCharsets.UTF_8), headers);
  }

  Response sendBytes(String method, String path, byte[] body, Map<String, String> headers)
      throws IOException, InterruptedException {
    HttpRequest.Builder b =
        HttpRequest.newBuilder(URI.create(base + path))
            .timeout(Duration.ofSeconds(60))
            .method(
                method,
                body == null
                    ? HttpRequest.BodyPublishers.noBody()
                    : HttpRequest.BodyPublishers.ofByteArray(body));
    headers.forEach(b::header);
    if (body != null && headers.keySet().stream().noneMatch("Content-Type"::equalsIgnoreCase)) {
      b.header("Content-Type", "application/json");
    }
    HttpResponse<String> r = http.send(b.build(), HttpResponse.BodyHandlers.ofString());
    return new Response(r.statusCode(), r.body(), r.headers().map());
  }

  Response get(String state) throws IOException, InterruptedException {
    return send("GET", state, null, Map.of());
  }

  Response post(String state, String lockId, String json) throws IOException, InterruptedException {
    String query = lockId == null ? "" : "?ID=" + lockId;
    return send("POST", state + query, json, Map.of());
  }

  Response lock(String state, LockInfo info, String query)
      throws IOException, InterruptedException {
    return send("LOCK", state + "/lock" + (query == null ? "" : query), info.toJson(), Map.of());
  }

  Response unlock(String state, LockInfo info) throws IOException, InterruptedException {
    return send("UNLOCK", state + "/lock", info == null ? null : info.toJson(), Map.of());
  }

  /**
   * A raw exchange on a connection of its own: what came back within {@code wait}, and whether the
   * server closed the connection.
   */
  record Raw(int status, String text, boolean closed) {
    /** How many responses came back on the connection. */
    int responses() {
      return text.split("HTTP/1\\.1 ", -1).length - 1;
    }
  }

  Raw raw(byte[] request, Duration wait) throws IOException {
    URI uri = URI.create(base);
    try (java.net.Socket socket = new java.net.Socket(uri.getHost(), uri.getPort())) {
      socket.getOutputStream().write(request);
      socket.getOutputStream().flush();
      socket.setSoTimeout((int) wait.toMillis());
      java.io.ByteArrayOutputStream got = new java.io.ByteArrayOutputStream();
      boolean closed = false;
      byte[] buffer = new byte[8192];
      try {
        for (int n; (n = socket.getInputStream().read(buffer)) >= 0; ) {
          got.write(buffer, 0, n);
        }
        closed = true;
      } catch (java.net.SocketTimeoutException e) {
        // Still open.
      } catch (java.net.SocketException e) {
        closed = true;
      }
      String text = got.toString(StandardCharsets.ISO_8859_1);
      int status = text.startsWith("HTTP/1.1 ") ? Integer.parseInt(text.substring(9, 12)) : -1;
      return new Raw(status, text, closed);
    }
  }

  static LockInfo lockInfo(String id, String who) {
    return new LockInfo(id, "OperationTypeApply", "", who, "1.11.4", "2026-11-26T12:00:00Z", "");
  }
}
