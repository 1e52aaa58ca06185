package io.leasehold.lock;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The probe of another replica reads an address anyone who may write heartbeat Leases can choose:
 * it must never hang, fill memory, or go anywhere but the probe path.
 */
class HttpProberTest {

  private static final Duration TIMEOUT = Duration.ofSeconds(1);
  private HttpServer server;
  private final List<String> asked = new CopyOnWriteArrayList<>();
  private final AtomicLong sent = new AtomicLong();

  private String start(Answer answer) throws IOException {
    server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
    server.createContext(
        "/",
        exchange -> {
          asked.add(exchange.getRequestURI().toString());
          try {
            answer.send(exchange.getResponseBody(), exchange);
          } catch (IOException e) {
            // The prober hung up: what the test wants to see.
          } finally {
            exchange.close();
          }
        });
    server.setExecutor(java.util.concurrent.Executors.newCachedThreadPool());
    server.start();
    return "http://127.0.0.1:" + server.getAddress().getPort();
  }

  private interface Answer {
    void send(OutputStream out, com.sun.net.httpserver.HttpExchange exchange) throws IOException;
  }

  @AfterEach
  void stop() {
    if (server != null) {
      server.stop(0);
    }
  }

  @Test
  @DisplayName(
      "Whatever path and query the advertised address carries, only the probe path is asked, and"
          + " the run it names is read")
  void onlyTheProbePathIsAsked() throws Exception {
    String base =
        start(
            (out, exchange) -> {
              byte[] body = "replica-0#0011aabb\n".getBytes(StandardCharsets.UTF_8);
              exchange.sendResponseHeaders(200, body.length);
              out.write(body);
            });
    ReplicaLiveness.Probe found =
        HttpProber.create(TIMEOUT).probe(base + "/secret/latest/meta-data?x=1#frag");
    assertThat(found.run()).contains("replica-0#0011aabb");
    assertThat(asked).containsExactly(ReplicaLiveness.PROBE_PATH);
    assertThat(HttpProber.create(TIMEOUT).probe("file:///etc/passwd").run()).contains("");
  }

  @Test
  @DisplayName(
      "An endless answer is cut off after a few hundred bytes: the probe returns, nothing more is"
          + " read")
  void anEndlessAnswerIsCutOff() throws Exception {
    String base =
        start(
            (out, exchange) -> {
              exchange.sendResponseHeaders(200, 0);
              byte[] chunk = new byte[64 * 1024];
              java.util.Arrays.fill(chunk, (byte) 'x');
              for (int i = 0; i < 16 * 1024; i++) { // 1 GiB if all of it were read
                out.write(chunk);
                sent.addAndGet(chunk.length);
              }
            });
    ReplicaLiveness.Probe found =
        assertTimeoutPreemptively(
            Duration.ofSeconds(20), () -> HttpProber.create(TIMEOUT).probe(base));
    assertThat(found.run()).get().asString().hasSizeLessThanOrEqualTo(HttpProber.MAX_BODY);
    assertThat(sent.get()).as("bytes the server got out").isLessThan(256L * 1024 * 1024);
  }

  @Test
  @DisplayName(
      "An answer that trickles in (headers at once, then a byte a second) counts as no answer"
          + " once the timeout has passed, body included")
  void aTricklingAnswerTimesOut() throws Exception {
    String base =
        start(
            (out, exchange) -> {
              exchange.sendResponseHeaders(200, 0);
              out.flush();
              for (int i = 0; i < 60; i++) {
                out.write('x');
                out.flush();
                try {
                  Thread.sleep(1_000);
                } catch (InterruptedException e) {
                  return;
                }
              }
            });
    ReplicaLiveness.Probe found =
        assertTimeoutPreemptively(
            Duration.ofSeconds(15), () -> HttpProber.create(TIMEOUT).probe(base));
    assertThat(found.run()).isEmpty();
    assertThat(found.refused()).isFalse();
  }
}
