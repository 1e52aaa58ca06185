package io.leasehold.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.leasehold.lock.LockInfo;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A replica told to stop (SIGTERM, as the kubelet sends it) reports not ready at once, keeps
 * serving through the shutdown delay, then refuses new requests with a 503 Terraform retries, lets
 * the requests in progress finish, and exits.
 */
class GracefulShutdownTest {

  private static final Path QUICKSTART =
      Path.of(
          System.getProperty("leasehold.projectRoot"), "examples/quickstart/terraformstate.yaml");

  private static HttpResponse<String> send(String method, String url, String body)
      throws Exception {
    // A client per request: a new connection each time, as a retrying Terraform would open.
    return HttpClient.newHttpClient()
        .send(
            HttpRequest.newBuilder(URI.create(url))
                .method(
                    method,
                    body == null
                        ? HttpRequest.BodyPublishers.noBody()
                        : HttpRequest.BodyPublishers.ofString(body))
                .timeout(Duration.ofSeconds(60))
                .build(),
            HttpResponse.BodyHandlers.ofString());
  }

  @Test
  @DisplayName(
      "On SIGTERM the replica is not ready at once, serves through the delay, then answers its"
          + " waiting LOCKs 503 (retry, your place is kept) and new requests 503 with Connection:"
          + " close, while a write in progress finishes; then the process exits")
  void drainsOnSigterm(@TempDir Path dir) throws Exception {
    String java = ProcessHandle.current().info().command().orElseThrow();
    Process child =
        new ProcessBuilder(
                List.of(
                    java,
                    "-cp",
                    System.getProperty("java.class.path"),
                    Main.class.getName(),
                    "run",
                    "--embedded",
                    "-f",
                    QUICKSTART.toString(),
                    "--shutdown-delay",
                    "2s",
                    "--drain-timeout",
                    "20s"))
            .redirectError(dir.resolve("stderr.log").toFile())
            .start();
    Map<String, String> urls = new ConcurrentHashMap<>();
    Thread reader =
        new Thread(
            () -> {
              try (BufferedReader out =
                  new BufferedReader(
                      new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))) {
                for (String line = out.readLine(); line != null; line = out.readLine()) {
                  int colon = line.indexOf(": ");
                  if (colon > 0) {
                    urls.put(line.substring(0, colon), line.substring(colon + 2).trim());
                  }
                }
              } catch (java.io.IOException e) {
                // The child ended.
              }
            });
    reader.setDaemon(true);
    reader.start();
    try {
      await().atMost(Duration.ofSeconds(90)).until(() -> urls.containsKey("metrics"));
      String state = urls.get("terraform-backend") + "default/quickstart";
      String readyz = urls.get("metrics").replace("/metrics", "/readyz");
      await()
          .atMost(Duration.ofSeconds(30))
          .until(() -> send("GET", readyz, null).statusCode() == 200);

      LockInfo holder =
          new LockInfo(
              "holder", "OperationTypeApply", "", "a@x", "1.11", "2026-01-01T00:00:00Z", "");
      assertThat(send("LOCK", state + "/lock", holder.toJson()).statusCode()).isEqualTo(200);
      LockInfo waiter =
          new LockInfo(
              "waiter", "OperationTypeApply", "", "b@x", "1.11", "2026-01-01T00:00:00Z", "");
      CompletableFuture<HttpResponse<String>> waiting =
          CompletableFuture.supplyAsync(
              () -> {
                try {
                  return send("LOCK", state + "/lock?wait=60s", waiter.toJson());
                } catch (Exception e) {
                  throw new IllegalStateException(e);
                }
              });
      // A write in progress: its body arrives slowly, half now, the rest after the SIGTERM.
      byte[] body =
          io.leasehold.support.TerraformStates.stateJson(1, "lin-drain", 1)
              .getBytes(StandardCharsets.UTF_8);
      URI uri = URI.create(state + "?ID=holder");
      try (java.net.Socket slow = new java.net.Socket(uri.getHost(), uri.getPort())) {
        java.io.OutputStream out = slow.getOutputStream();
        out.write(
            ("POST "
                    + uri.getRawPath()
                    + "?"
                    + uri.getRawQuery()
                    + " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    + "Content-Length: "
                    + body.length
                    + "\r\n\r\n")
                .getBytes(StandardCharsets.US_ASCII));
        out.write(body, 0, body.length / 2);
        out.flush();
        String metrics = urls.get("metrics");
        await()
            .atMost(Duration.ofSeconds(10))
            .until(
                () ->
                    send("GET", metrics, null)
                        .body()
                        .contains("leasehold_backend_requests_in_progress 2.0"));

        child.destroy(); // SIGTERM
        await()
            .atMost(Duration.ofSeconds(5))
            .until(() -> send("GET", readyz, null).statusCode() == 503);
        assertThat(send("GET", readyz, null).body()).contains("shutting down");
        assertThat(send("GET", state, null).statusCode())
            .as("a request within the delay is served as usual")
            .isIn(200, 404);
        assertThat(waiting).isNotDone();

        // After the delay the waiting LOCK is answered at once, so Terraform retries it on
        // another replica, where its place in line is kept.
        HttpResponse<String> waited = waiting.get(30, TimeUnit.SECONDS);
        assertThat(waited.statusCode()).as(waited.body()).isEqualTo(503);
        assertThat(waited.body()).contains("retry with the same lock ID").contains("place in line");
        // New requests are refused while the write in progress finishes.
        HttpResponse<String> refused = send("GET", state, null);
        assertThat(refused.statusCode()).isEqualTo(503);
        assertThat(refused.headers().firstValue("Connection")).hasValue("close");
        assertThat(refused.body()).contains("shutting down").contains("retry");

        out.write(body, body.length / 2, body.length - body.length / 2);
        out.flush();
        java.io.BufferedReader answer =
            new java.io.BufferedReader(
                new InputStreamReader(slow.getInputStream(), StandardCharsets.US_ASCII));
        assertThat(answer.readLine()).as("the write in progress finishes").contains(" 200 ");
      }
      assertThat(child.waitFor(30, TimeUnit.SECONDS)).as("the process exits").isTrue();
    } finally {
      child.destroyForcibly();
    }
  }
}
