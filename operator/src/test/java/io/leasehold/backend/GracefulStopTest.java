package io.leasehold.backend;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.leasehold.api.TerraformState;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateStore;
import io.leasehold.state.StoredState;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.TerraformStates;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** Stopping the backend (SIGTERM in a pod) answers the requests it is in the middle of. */
class GracefulStopTest {

  private OperatorHarness harness;

  @AfterEach
  void stop() {
    harness.close();
  }

  @Test
  @DisplayName(
      "When the backend stops while a state upload is half sent, the upload is still stored and"
          + " answered 200; requests arriving meanwhile get 503 to retry elsewhere, and the stop"
          + " returns once the upload is answered")
  void stopFinishesRequestsInFlight() throws Exception {
    harness = OperatorHarness.start();
    String base = harness.startBackend(64L * 1024 * 1024);
    TerraformState state = new TerraformState();
    state.getMetadata().setName("draining");
    state.getMetadata().setNamespace(NAMESPACE);
    harness.client().resource(state).create();
    BackendClient client = new BackendClient(base);
    String address = NAMESPACE + "/draining";
    assertThat(client.lock(address, BackendClient.lockInfo("lock-1", "alice"), null).status())
        .isEqualTo(200);

    byte[] body =
        TerraformStates.stateJson(1, "lineage-drain", 50).getBytes(StandardCharsets.UTF_8);
    URI uri = URI.create(base + address + "?ID=lock-1");
    try (Socket socket = new Socket(uri.getHost(), uri.getPort())) {
      socket.setSoTimeout(60_000);
      OutputStream out = socket.getOutputStream();
      BufferedReader in =
          new BufferedReader(
              new InputStreamReader(socket.getInputStream(), StandardCharsets.ISO_8859_1));
      out.write(
          ("POST "
                  + uri.getRawPath()
                  + "?"
                  + uri.getRawQuery()
                  + " HTTP/1.1\r\nHost: "
                  + uri.getAuthority()
                  + "\r\nContent-Type: application/json\r\nContent-Length: "
                  + body.length
                  + "\r\nExpect: 100-continue\r\n\r\n")
              .getBytes(StandardCharsets.ISO_8859_1));
      out.flush();
      // 100 Continue: the backend is handling the upload, which is now in flight.
      assertThat(in.readLine()).startsWith("HTTP/1.1 100");
      assertThat(in.readLine()).isEmpty();
      int half = body.length / 2;
      out.write(body, 0, half);
      out.flush();

      CompletableFuture<Void> stopping = CompletableFuture.runAsync(harness::stopOperator);
      await()
          .atMost(Duration.ofSeconds(10))
          .untilAsserted(
              () -> {
                BackendClient.Response refused = client.get(address);
                assertThat(refused.status()).isEqualTo(503);
                assertThat(refused.body()).contains("shutting down");
                assertThat(refused.header("Connection")).isEqualTo("close");
              });
      assertThat(stopping).as("the stop waits for the upload in flight").isNotDone();

      out.write(body, half, body.length - half);
      out.flush();
      assertThat(in.readLine())
          .as("status line of the upload's answer")
          .isEqualTo("HTTP/1.1 200 OK");
      stopping.get(30, TimeUnit.SECONDS);
    }

    StateNames names = new StateNames(NAMESPACE, "draining", "default");
    byte[] stored =
        StoredState.decompress(
            names, new StateStore(harness.client(), names).read().orElseThrow().compressed());
    assertThat(new String(stored, StandardCharsets.UTF_8))
        .isEqualTo(new String(body, StandardCharsets.UTF_8));
  }
}
