package io.leasehold.bench;

import static io.leasehold.support.OperatorHarness.NAMESPACE;

import io.leasehold.api.TerraformState;
import io.leasehold.lock.LockInfo;
import io.leasehold.support.OperatorHarness;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * LOCK/UNLOCK cycles per second through the HTTP backend on the embedded API: one client on one
 * state, 16 clients queueing with ?wait= on one state, and 16 clients spread over 100 states.
 * Prints figures; asserts nothing about speed.
 *
 * <p>Run: {@code mvn -B -pl operator test -Dtest=LockThroughputBenchmark
 * -Dsurefire.failIfNoSpecifiedTests=false [-Dcycles=2000]}
 */
class LockThroughputBenchmark {

  @Test
  void lockCycles() throws Exception {
    int cycles = Integer.getInteger("cycles", 2000);
    try (OperatorHarness h = OperatorHarness.start()) {
      String base = h.startBackend(64L * 1024 * 1024);
      for (int i = 0; i < 100; i++) {
        TerraformState s = new TerraformState();
        s.getMetadata().setName("tp-" + (char) ('a' + i / 26) + (char) ('a' + i % 26));
        s.getMetadata().setNamespace(NAMESPACE);
        h.client().resource(s).create();
      }
      Thread.sleep(2000);
      run(base, "warm-up, 1 client, 1 state", 1, 1, cycles / 4);
      System.out.println();
      run(base, "1 client, 1 state", 1, 1, cycles);
      run(base, "16 clients, 1 state (?wait=)", 16, 1, cycles);
      run(base, "16 clients, 100 states", 16, 100, cycles);
      System.out.println();
    }
  }

  private static void run(String base, String label, int clients, int states, int cycles)
      throws Exception {
    HttpClient http = HttpClient.newHttpClient();
    AtomicInteger next = new AtomicInteger();
    ExecutorService pool = Executors.newFixedThreadPool(clients);
    long start = System.nanoTime();
    List<Future<?>> futures = new ArrayList<>();
    for (int c = 0; c < clients; c++) {
      int client = c;
      futures.add(
          pool.submit(
              () -> {
                int n;
                while ((n = next.getAndIncrement()) < cycles) {
                  int i = states == 1 ? 0 : (n * 7 + client) % states;
                  String url =
                      base
                          + NAMESPACE
                          + "/tp-"
                          + (char) ('a' + i / 26)
                          + (char) ('a' + i % 26)
                          + "/lock";
                  String info =
                      new LockInfo(
                              "c" + client + "-" + n,
                              "OperationTypeApply",
                              "",
                              "bench",
                              "1",
                              "",
                              "")
                          .toJson();
                  int locked = send(http, "LOCK", url + "?wait=60s", info);
                  if (locked != 200) {
                    throw new IllegalStateException("LOCK answered " + locked);
                  }
                  int unlocked = send(http, "UNLOCK", url, info);
                  if (unlocked != 200) {
                    throw new IllegalStateException("UNLOCK answered " + unlocked);
                  }
                }
                return null;
              }));
    }
    for (Future<?> f : futures) {
      f.get();
    }
    pool.shutdown();
    double seconds = (System.nanoTime() - start) / 1e9;
    System.out.printf(
        "  %-32s %6d cycles in %6.2f s: %7.1f LOCK/UNLOCK cycles/s%n",
        label, cycles, seconds, cycles / seconds);
  }

  private static int send(HttpClient http, String method, String url, String body) {
    try {
      return http.send(
              HttpRequest.newBuilder(URI.create(url))
                  .timeout(Duration.ofSeconds(120))
                  .method(method, HttpRequest.BodyPublishers.ofString(body))
                  .build(),
              HttpResponse.BodyHandlers.discarding())
          .statusCode();
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }
}
