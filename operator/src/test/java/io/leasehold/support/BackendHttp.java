package io.leasehold.support;

import io.leasehold.lock.LockInfo;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;

/** Terraform's http backend protocol as Terraform speaks it, with status and body, for tests. */
public final class BackendHttp {

  /** A reply: its status and body. */
  public record Answer(int status, String body) {}

  private final HttpClient http =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
  private final String base;
  private final String user;

  /**
   * @param base the backend's state base URL, ending in {@code /v1/states/}
   */
  public BackendHttp(String base) {
    this(base, null);
  }

  private BackendHttp(String base, String user) {
    this.base = base;
    this.user = user;
  }

  /** The same backend, as Basic-auth user {@code name}. */
  public BackendHttp as(String name) {
    return new BackendHttp(base, name);
  }

  public Answer send(String method, String path, String body) {
    HttpRequest.Builder b =
        HttpRequest.newBuilder(URI.create(base + path))
            .timeout(Duration.ofSeconds(60))
            .method(
                method,
                body == null
                    ? HttpRequest.BodyPublishers.noBody()
                    : HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8));
    if (body != null) {
      b.header("Content-Type", "application/json");
    }
    if (user != null) {
      b.header(
          "Authorization",
          "Basic "
              + Base64.getEncoder()
                  .encodeToString((user + ":token").getBytes(StandardCharsets.UTF_8)));
    }
    try {
      HttpResponse<String> r = http.send(b.build(), HttpResponse.BodyHandlers.ofString());
      return new Answer(r.statusCode(), r.body());
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  public Answer get(String state) {
    return send("GET", state, null);
  }

  public Answer post(String state, String lockId, String json) {
    return send("POST", state + (lockId == null ? "" : "?ID=" + lockId), json);
  }

  public Answer lock(String state, LockInfo info, String query) {
    return send("LOCK", state + "/lock" + (query == null ? "" : query), info.toJson());
  }

  public Answer unlock(String state, LockInfo info) {
    return send("UNLOCK", state + "/lock", info.toJson());
  }

  /** LockInfo as Terraform sends it on an apply. */
  public static LockInfo lockInfo(String id, String who) {
    return new LockInfo(id, "OperationTypeApply", "", who, "1.11.4", "2026-11-26T12:00:00Z", "");
  }
}
