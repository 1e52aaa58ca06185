package io.leasehold.bench;

import io.leasehold.lock.LockInfo;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * HTTP clients running LOCK (with {@code ?wait=60s}) then UNLOCK in a loop against the backend, for
 * the lock-throughput benchmarks on the embedded API and on a real control plane.
 */
final class LockCycles {

  private LockCycles() {}

  /** The name of state {@code i} of a lock-throughput benchmark: tp-aa, tp-ab, ... */
  static String stateName(int i) {
    return "tp-" + (char) ('a' + i / 26) + (char) ('a' + i % 26);
  }

  /** An apply's LockInfo with lock ID {@code id}, as JSON. */
  static String lockInfo(String id) {
    return new LockInfo(id, "OperationTypeApply", "", "bench", "1", "", "").toJson();
  }

  /**
   * The p50 and p99 of handoffs (ms) named {@code name}, with the targets of every lock handoff: at
   * most 20 and 100 ms.
   */
  static List<Figure> handoffFigures(String name, List<Double> handoffsMs) {
    return List.of(
        Figure.target(name + ", p50", Bench.percentile(handoffsMs, 50), "ms", 20),
        Figure.target(name + ", p99", Bench.percentile(handoffsMs, 99), "ms", 100));
  }

  /**
   * Runs {@code cycles} LOCK/UNLOCK cycles, shared by {@code clients} clients over {@code states}
   * states; returns cycles per second. Client c uses {@code namespaceUrls[c mod n]} (the backend
   * URL of the states' namespace on a replica, ending in {@code /}) and, when there are any, the
   * Authorization header {@code authorizations[c mod n]}.
   */
  static double run(
      HttpClient http,
      List<String> namespaceUrls,
      List<String> authorizations,
      int clients,
      int states,
      int cycles,
      Timeline timeline)
      throws Exception {
    AtomicInteger next = new AtomicInteger();
    ExecutorService pool = Executors.newFixedThreadPool(clients);
    try {
      long start = System.nanoTime();
      List<Future<?>> futures = new ArrayList<>();
      for (int c = 0; c < clients; c++) {
        int client = c;
        int replica = client % namespaceUrls.size();
        String base = namespaceUrls.get(replica);
        String authorization =
            authorizations.isEmpty() ? null : authorizations.get(client % authorizations.size());
        futures.add(
            pool.submit(
                () -> {
                  int n;
                  while ((n = next.getAndIncrement()) < cycles) {
                    int i = states == 1 ? 0 : (n * 7 + client) % states;
                    String url = base + stateName(i) + "/lock";
                    // Unique across runs: the server knows a returning waiter by its lock ID.
                    String info = lockInfo("c" + client + "-" + n + "-" + System.nanoTime());
                    int locked = send(http, "LOCK", url + "?wait=60s", info, authorization);
                    if (locked != 200) {
                      throw new IllegalStateException("LOCK answered " + locked);
                    }
                    timeline.lockGranted(replica);
                    timeline.unlockSent(replica);
                    int unlocked = send(http, "UNLOCK", url, info, authorization);
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
      return cycles / ((System.nanoTime() - start) / 1e9);
    } finally {
      pool.shutdownNow();
    }
  }

  private static int send(
      HttpClient http, String method, String url, String body, String authorization) {
    HttpRequest.Builder request =
        HttpRequest.newBuilder(URI.create(url))
            .timeout(Duration.ofSeconds(120))
            .header("Content-Type", "application/json")
            .method(method, HttpRequest.BodyPublishers.ofString(body));
    if (authorization != null) {
      request.header("Authorization", authorization);
    }
    try {
      return http.send(request.build(), HttpResponse.BodyHandlers.discarding()).statusCode();
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  /** When clients sent UNLOCK and got LOCK granted, to time the handoffs between them. */
  static final class Timeline {
    private final List<long[]> marks = Collections.synchronizedList(new ArrayList<>());

    void unlockSent(int replica) {
      marks.add(new long[] {System.nanoTime(), 0, replica});
    }

    void lockGranted(int replica) {
      marks.add(new long[] {System.nanoTime(), 1, replica});
    }

    /** For each granted LOCK after the first: time since the latest UNLOCK sent before it. */
    List<Double> handoffsMs() {
      return handoffsMs(false);
    }

    /** As {@link #handoffsMs()}, only where the UNLOCK and the next grant were on two replicas. */
    List<Double> crossReplicaHandoffsMs() {
      return handoffsMs(true);
    }

    private List<Double> handoffsMs(boolean acrossReplicasOnly) {
      List<long[]> sorted;
      synchronized (marks) {
        sorted = new ArrayList<>(marks);
      }
      sorted.sort(Comparator.comparingLong(m -> m[0]));
      List<Double> gaps = new ArrayList<>();
      long[] lastUnlock = null;
      for (long[] m : sorted) {
        if (m[1] == 0) {
          lastUnlock = m;
        } else if (lastUnlock != null) {
          if (!acrossReplicasOnly || lastUnlock[2] != m[2]) {
            gaps.add((m[0] - lastUnlock[0]) / 1e6);
          }
          lastUnlock = null;
        }
      }
      gaps.sort(Double::compare);
      return gaps;
    }
  }
}
