package io.leasehold.bench;

import static io.leasehold.support.OperatorHarness.NAMESPACE;

import io.leasehold.api.TerraformState;
import io.leasehold.bench.LockCycles.Timeline;
import io.leasehold.support.OperatorHarness;
import java.net.http.HttpClient;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * LOCK/UNLOCK cycles per second through the HTTP backend on the embedded API: one client on one
 * state, 16 clients queueing with {@code ?wait=} on one state (which also gives the handoff latency
 * between waiting clients), and 16 clients spread over 100 states.
 */
final class LockThroughputBenchmark implements Benchmark {

  @Override
  public String id() {
    return "throughput";
  }

  @Override
  public String title() {
    return "Lock throughput and ?wait= handoff";
  }

  @Override
  public String description(BenchSettings settings) {
    return """
        HTTP clients run LOCK then UNLOCK in a loop (%d cycles per case) against the backend on
        the embedded API: one client on one state; 16 clients on one state, queueing with
        `?wait=60s`; 16 clients spread over 100 states. In the 16-clients-one-state case every
        lock is handed from one client to a waiting one, and the handoff is timed as a client
        sees it: from the moment the holder sends UNLOCK to the moment the next client has its
        LOCK answered 200. Each cycle writes the Lease twice; the operator also patches the
        TerraformState status and records Events on lock changes, all on the same in-memory API,
        which is what limits the figures. The last case runs two replicas, each serving the
        backend, with the 16 clients split between them (client c always on replica c mod 2):
        the line is kept on the Lease, and a handoff from a holder on one replica to a waiter on
        the other goes through the Lease watch of the second; those cross-replica handoffs are
        timed apart.
        """
        .formatted(settings.lockCycles());
  }

  @Override
  public List<Figure> run(BenchSettings settings) throws Exception {
    int cycles = settings.lockCycles();
    List<Figure> figures = new ArrayList<>();
    try (OperatorHarness h = OperatorHarness.start()) {
      String base = h.startBackend(64L * 1024 * 1024);
      for (int i = 0; i < 100; i++) {
        TerraformState s = new TerraformState();
        s.getMetadata().setName(LockCycles.stateName(i));
        s.getMetadata().setNamespace(NAMESPACE);
        h.client().resource(s).create();
      }
      Thread.sleep(2000);
      run(base, 1, 1, Math.max(1, cycles / 4), new Timeline());
      figures.add(
          Figure.of("1 client, 1 state: cycles/s", run(base, 1, 1, cycles, new Timeline()), "/s"));
      Timeline queued = new Timeline();
      figures.add(
          Figure.of(
              "16 clients, 1 state, ?wait=: cycles/s", run(base, 16, 1, cycles, queued), "/s"));
      figures.addAll(
          LockCycles.handoffFigures("?wait= handoff UNLOCK -> next LOCK", queued.handoffsMs()));
      figures.add(
          Figure.of(
              "16 clients, 100 states: cycles/s",
              run(base, 16, 100, cycles, new Timeline()),
              "/s"));
    }
    figures.addAll(twoReplicas(cycles));
    return figures;
  }

  /** 16 clients on one state split over two replicas: cycles/s and cross-replica handoffs. */
  private static List<Figure> twoReplicas(int cycles) throws Exception {
    try (io.leasehold.embedded.EmbeddedKubernetes api =
            io.leasehold.embedded.EmbeddedKubernetes.start(0);
        io.fabric8.kubernetes.client.KubernetesClient user = api.newClient()) {
      List<io.fabric8.kubernetes.client.KubernetesClient> clients = new ArrayList<>();
      List<io.leasehold.cli.Replica> replicas = new ArrayList<>();
      try {
        for (int i = 0; i < 2; i++) {
          io.fabric8.kubernetes.client.KubernetesClient c = api.newClient();
          clients.add(c);
          replicas.add(
              io.leasehold.cli.Replica.start(
                  c,
                  new io.leasehold.operator.LeaseholdOperator.Options(
                      java.util.Set.of(), java.util.Optional.of(NAMESPACE), "bench-replica-" + i),
                  new io.leasehold.cli.Replica.Backend(
                      io.leasehold.backend.Access.NONE,
                      io.leasehold.backend.JobPods.NONE,
                      new io.leasehold.backend.HttpBackend.Config(
                          "127.0.0.1", 0, Duration.ofMinutes(10)),
                      64L * 1024 * 1024)));
        }
        TerraformState s = new TerraformState();
        s.getMetadata().setName(LockCycles.stateName(0));
        s.getMetadata().setNamespace(NAMESPACE);
        user.resource(s).create();
        org.awaitility.Awaitility.await()
            .atMost(Duration.ofSeconds(60))
            .until(
                () ->
                    user.leases()
                            .inNamespace(NAMESPACE)
                            .withName("lock-tfstate-default-" + LockCycles.stateName(0))
                            .get()
                        != null);
        List<String> bases = replicas.stream().map(io.leasehold.cli.Replica::url).toList();
        run(bases, 16, Math.max(1, cycles / 4), new Timeline());
        Timeline timeline = new Timeline();
        double rate = run(bases, 16, cycles, timeline);
        List<Double> cross = timeline.crossReplicaHandoffsMs();
        List<Figure> figures = new ArrayList<>();
        figures.add(Figure.of("2 replicas, 16 clients, 1 state, ?wait=: cycles/s", rate, "/s"));
        figures.add(Figure.of("2 replicas: handoffs measured across replicas", cross.size(), ""));
        figures.addAll(
            LockCycles.handoffFigures("2 replicas: ?wait= handoff across replicas", cross));
        return figures;
      } finally {
        replicas.forEach(io.leasehold.cli.Replica::close);
        clients.forEach(io.fabric8.kubernetes.client.KubernetesClient::close);
      }
    }
  }

  /** Clients on one state split over replicas: client c uses {@code bases[c mod n]}. */
  private static double run(List<String> bases, int clients, int cycles, Timeline timeline)
      throws Exception {
    return run(bases, clients, 1, cycles, timeline);
  }

  private static double run(String base, int clients, int states, int cycles, Timeline timeline)
      throws Exception {
    return run(List.of(base), clients, states, cycles, timeline);
  }

  /** Runs {@code cycles} LOCK/UNLOCK cycles; returns cycles per second. */
  private static double run(
      List<String> bases, int clients, int states, int cycles, Timeline timeline) throws Exception {
    List<String> namespaces = bases.stream().map(b -> b + NAMESPACE + "/").toList();
    return LockCycles.run(
        HttpClient.newHttpClient(), namespaces, List.of(), clients, states, cycles, timeline);
  }
}
