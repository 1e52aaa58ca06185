package io.leasehold.bench;

import io.leasehold.bench.LockCycles.Timeline;
import java.net.http.HttpClient;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;

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

  @Override
  public List<Figure> run(BenchSettings settings) throws Exception {
    int cycles = settings.lockCycles();
    List<Figure> figures = new ArrayList<>();
    try (ClusterSetup env = ClusterSetup.start(settings, "bench-tp", 1)) {
      List<String> names = new ArrayList<>();
      for (int i = 0; i < STATES; i++) {
        names.add(LockCycles.stateName(i));
      }
      env.createStates(names);
      List<String> authorizations = new ArrayList<>();
      for (int c = 0; c < CLIENTS; c++) {
        authorizations.add(ClusterSetup.authorization(env.runnerToken()));
      }
      // One HTTPS client for every case: the warm-up opens its connections.
      HttpClient http = env.http();
      List<String> namespaceUrl = List.of(env.stateUrl(0, ""));
      Cycles cycle =
          (clients, states, n, timeline) ->
              LockCycles.run(http, namespaceUrl, authorizations, clients, states, n, timeline);
      cycle.run(1, 1, warmup(settings), new Timeline());

      Case one = measure(env, cycles, () -> cycle.run(1, 1, cycles, new Timeline()));
      one.addTo(figures, "1 client, 1 state");
      Timeline queued = new Timeline();
      Case line = measure(env, cycles, () -> cycle.run(CLIENTS, 1, cycles, queued));
      line.addTo(figures, CLIENTS + " clients, 1 state, ?wait=");
      figures.addAll(
          LockCycles.handoffFigures("?wait= handoff UNLOCK -> next LOCK", queued.handoffsMs()));
      Case spread = measure(env, cycles, () -> cycle.run(CLIENTS, STATES, cycles, new Timeline()));
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

  /** LOCK/UNLOCK cycles of clients over states; returns cycles per second. */
  private interface Cycles {
    double run(int clients, int states, int cycles, Timeline timeline) throws Exception;
  }

  /** Runs the cycles and counts the operator's requests meanwhile, in the audit log. */
  private static Case measure(ClusterSetup env, int cycles, Callable<Double> run) throws Exception {
    Thread.sleep(1000); // the previous case's trailing status writes and Events land first
    env.audit().read();
    double rate = run.call();
    Thread.sleep(1000);
    Map<String, Integer> requests = new TreeMap<>();
    for (AuditLog.Request r : env.audit().read()) {
      if (r.user().equals(env.operatorUser())) {
        requests.merge(r.kindIn(env.namespace()), 1, Integer::sum);
      }
    }
    return new Case(rate, cycles, requests);
  }
}
