package io.leasehold.bench;

import io.leasehold.lock.LockInfo;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * LOCK/UNLOCK cycles per second through the HTTPS backend of the production jar on a real control
 * plane: one client on one state, 16 clients queueing with {@code ?wait=} on one state (with the
 * handoff latency between waiting clients), 16 clients over 100 states; and the operator's requests
 * to the API server per cycle, counted in the audit log.
 */
final class ClusterLockThroughputBenchmark implements Benchmark {

  private static final int CLIENTS = 16;
  private static final int STATES = 100;

  @Override
  public String id() {
    return "cluster-throughput";
  }

  @Override
  public boolean needsCluster() {
    return true;
  }

  @Override
  public String title() {
    return "Real control plane: lock throughput and ?wait= handoff";
  }

  @Override
  public String description(BenchSettings settings) {
    return """
        %s, serving the backend over HTTPS on 127.0.0.1: HTTPS clients run LOCK then UNLOCK in a loop (%d cycles
        per case, after %d to warm up), each with a token of its own of the chart's runner
        ServiceAccount (audience `leasehold`): one client on one state; %d clients on one state,
        queueing with `?wait=60s`; %d clients spread over %d states. In the one-state queueing
        case every lock is handed from one client to a waiting one, and the handoff is timed as
        a client sees it: from the moment the holder sends UNLOCK to the moment the next client
        has its LOCK answered 200. Each cycle writes the lock Lease twice (grant and release);
        the operator also patches the TerraformState status and records Events on lock changes,
        and checks each client's token and permission with a TokenReview and a
        SubjectAccessReview unless it has the answer cached. "Operator API requests per cycle"
        counts the operator's requests in the API server's audit log (its ServiceAccount, from
        the first cycle to a second after the last), leader election included. What limits the
        figures: each Lease write is an etcd write through the API server, and the API server,
        etcd, the controllers, the operator and the clients share this machine's cores.
        """
        .formatted(
            ClusterSetup.describe(settings),
            settings.lockCycles(),
            warmup(settings),
            CLIENTS,
            CLIENTS,
            STATES);
  }

  private static int warmup(BenchSettings settings) {
    return Math.max(1, settings.lockCycles() / 4);
  }

  static String stateName(int i) {
    return "tp-" + (char) ('a' + i / 26) + (char) ('a' + i % 26);
  }

  @Override
  public List<Figure> run(BenchSettings settings) throws Exception {
    int cycles = settings.lockCycles();
    List<Figure> figures = new ArrayList<>();
    try (ClusterSetup env = ClusterSetup.start(settings, "bench-tp", 1)) {
      List<String> names = new ArrayList<>();
      for (int i = 0; i < STATES; i++) {
        names.add(stateName(i));
      }
      env.createStates(names);
      List<String> tokens = new ArrayList<>();
      for (int c = 0; c < CLIENTS; c++) {
        tokens.add(env.runnerToken());
      }
      String base = env.operator().replica(0).backendUrl() + "/v1/states/" + env.namespace();
      HttpClient http = env.http();
      run(http, base, tokens, 1, 1, warmup(settings), new Timeline());

      Case one = measure(env, http, base, tokens, 1, 1, cycles, new Timeline());
      one.addTo(figures, "1 client, 1 state");
      Timeline queued = new Timeline();
      Case line = measure(env, http, base, tokens, CLIENTS, 1, cycles, queued);
      line.addTo(figures, CLIENTS + " clients, 1 state, ?wait=");
      List<Double> handoffs = queued.handoffsMs();
      figures.add(
          Figure.target(
              "?wait= handoff UNLOCK -> next LOCK, p50", Bench.percentile(handoffs, 50), "ms", 20));
      figures.add(
          Figure.target(
              "?wait= handoff UNLOCK -> next LOCK, p99",
              Bench.percentile(handoffs, 99),
              "ms",
              100));
      Case spread = measure(env, http, base, tokens, CLIENTS, STATES, cycles, new Timeline());
      spread.addTo(figures, CLIENTS + " clients, " + STATES + " states");
      return figures;
    }
  }

  /** Cycles per second and the operator's API requests per cycle, by kind. */
  private record Case(double cyclesPerSecond, int cycles, Map<String, Integer> requests) {
    void addTo(List<Figure> figures, String name) {
      figures.add(Figure.of(name + ": cycles/s", cyclesPerSecond, "/s"));
      int total = requests.values().stream().mapToInt(Integer::intValue).sum();
      figures.add(
          Figure.of(name + ": operator API requests per cycle", total / (double) cycles, ""));
      int reviews =
          requests.entrySet().stream()
              .filter(e -> e.getKey().contains("tokenreviews") || e.getKey().contains("accessrev"))
              .mapToInt(Map.Entry::getValue)
              .sum();
      figures.add(
          Figure.of(
              name + ": of which TokenReviews and SubjectAccessReviews",
              reviews / (double) cycles,
              ""));
      System.out.printf("%s: operator requests by kind (%d cycles): %s%n", name, cycles, requests);
    }
  }

  private static Case measure(
      ClusterSetup env,
      HttpClient http,
      String base,
      List<String> tokens,
      int clients,
      int states,
      int cycles,
      Timeline timeline)
      throws Exception {
    Thread.sleep(1000); // the previous case's trailing status writes and Events land first
    env.audit().read();
    double rate = run(http, base, tokens, clients, states, cycles, timeline);
    Thread.sleep(1000);
    Map<String, Integer> requests = new TreeMap<>();
    for (AuditLog.Request r : env.audit().read()) {
      if (r.user().equals(env.operatorUser())) {
        requests.merge(r.kindIn(env.namespace()), 1, Integer::sum);
      }
    }
    return new Case(rate, cycles, requests);
  }

  /** When clients sent UNLOCK and got LOCK granted, to time the handoffs between them. */
  static final class Timeline {
    private final List<long[]> marks = Collections.synchronizedList(new ArrayList<>());

    void unlockSent() {
      marks.add(new long[] {System.nanoTime(), 0});
    }

    void lockGranted() {
      marks.add(new long[] {System.nanoTime(), 1});
    }

    /** For each granted LOCK after the first: time since the latest UNLOCK sent before it. */
    List<Double> handoffsMs() {
      List<long[]> sorted;
      synchronized (marks) {
        sorted = new ArrayList<>(marks);
      }
      sorted.sort(java.util.Comparator.comparingLong(m -> m[0]));
      List<Double> gaps = new ArrayList<>();
      Long lastUnlock = null;
      for (long[] m : sorted) {
        if (m[1] == 0) {
          lastUnlock = m[0];
        } else if (lastUnlock != null) {
          gaps.add((m[0] - lastUnlock) / 1e6);
          lastUnlock = null;
        }
      }
      gaps.sort(Double::compare);
      return gaps;
    }
  }

  /** Runs {@code cycles} LOCK/UNLOCK cycles; returns cycles per second. */
  private static double run(
      HttpClient http,
      String base,
      List<String> tokens,
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
        String authorization = ClusterSetup.authorization(tokens.get(client));
        futures.add(
            pool.submit(
                () -> {
                  int n;
                  while ((n = next.getAndIncrement()) < cycles) {
                    int i = states == 1 ? 0 : (n * 7 + client) % states;
                    String url = base + "/" + stateName(i) + "/lock";
                    String info =
                        new LockInfo(
                                "c" + client + "-" + n + "-" + System.nanoTime(),
                                "OperationTypeApply",
                                "",
                                "bench",
                                "1",
                                "",
                                "")
                            .toJson();
                    int locked = send(http, "LOCK", url + "?wait=60s", info, authorization);
                    if (locked != 200) {
                      throw new IllegalStateException("LOCK answered " + locked);
                    }
                    timeline.lockGranted();
                    timeline.unlockSent();
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
    try {
      return http.send(
              HttpRequest.newBuilder(URI.create(url))
                  .timeout(Duration.ofSeconds(120))
                  .header("Authorization", authorization)
                  .header("Content-Type", "application/json")
                  .method(method, HttpRequest.BodyPublishers.ofString(body))
                  .build(),
              HttpResponse.BodyHandlers.discarding())
          .statusCode();
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }
}
