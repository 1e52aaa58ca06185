package io.leasehold.bench;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.fabric8.mockwebserver.http.RecordedRequest;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.OnChange;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RunnerJobFixtures;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * Handoff latency of the runner Job queue on the embedded API: from the moment a driver marks the
 * running Job Complete to the moment the next Job is seen unsuspended, and the API requests the
 * operator makes per handoff; with Jobs that end the moment they are admitted (the queue saturated)
 * and with Jobs that run for a while (each handoff finds the operator idle, as real runs do).
 */
final class JobHandoffBenchmark implements Benchmark {

  private static final int WARMUP = 20;

  @Override
  public String id() {
    return "handoff";
  }

  @Override
  public String title() {
    return "Runner Job queue handoff";
  }

  @Override
  public String description(BenchSettings settings) {
    return """
        %d + %d warm-up runner Jobs wait suspended on one state on the embedded API. A driver
        watches the Jobs and, once one is unsuspended, marks it Complete (a status patch, as the
        Job controller would); the latency is from just before that patch is sent to the moment
        the driver sees the next Job unsuspended. "Saturated" completes each Job the moment it is
        admitted, so a handoff can queue behind the previous one's status write and Events;
        "runs of %d ms" lets each Job run that long first, so every handoff starts on an idle
        operator, as with real runs that take seconds to hours. On the handoff path the operator
        makes one Lease update (the handover, conditional on its version) and one Job patch;
        the TerraformState status patch and the Events follow. What limits the figures: each
        request to the in-memory API costs about 4-6 ms on this machine and they are served one
        at a time, and the API, the operator and the driver share 2 cores.
        """
        .formatted(settings.handoffs(), WARMUP, settings.runMillis());
  }

  @Override
  public List<Figure> run(BenchSettings settings) throws Exception {
    List<Figure> figures = new ArrayList<>();
    measure(settings.handoffs(), 0).addTo(figures, "saturated");
    measure(settings.handoffs(), settings.runMillis())
        .addTo(figures, "runs of " + settings.runMillis() + " ms");
    return figures;
  }

  private record Measured(
      List<Double> latencies,
      double runsPerSecond,
      double requestsPerHandoff,
      double eventsPerHandoff) {
    void addTo(List<Figure> figures, String mode) {
      figures.add(
          Figure.target(
              mode + ": completion -> next admission, p50",
              Bench.percentile(latencies, 50),
              "ms",
              20));
      figures.add(
          Figure.of(
              mode + ": completion -> next admission, p90", Bench.percentile(latencies, 90), "ms"));
      figures.add(
          Figure.target(
              mode + ": completion -> next admission, p99",
              Bench.percentile(latencies, 99),
              "ms",
              100));
      figures.add(
          Figure.of(
              mode + ": completion -> next admission, max",
              latencies.get(latencies.size() - 1),
              "ms"));
      figures.add(Figure.of(mode + ": runs per second", runsPerSecond, "/s"));
      figures.add(Figure.of(mode + ": operator API requests per handoff", requestsPerHandoff, ""));
      figures.add(Figure.of(mode + ": of which Event writes", eventsPerHandoff, ""));
    }
  }

  private static Measured measure(int handoffs, long runMillis) throws Exception {
    int warmup = WARMUP;
    int total = handoffs + warmup + 1;
    try (OperatorHarness h = OperatorHarness.start()) {
      // All Jobs wait before the state exists, so the queue is full when timing starts.
      for (int i = 0; i < total; i++) {
        h.client()
            .resource(RunnerJobFixtures.runner(String.format("bench-%04d", i), "bench", true))
            .create();
      }
      Map<String, Long> admittedAt = new ConcurrentHashMap<>();
      Map<String, Long> finishedAt = new ConcurrentHashMap<>();
      List<String> order = new ArrayList<>();
      ExecutorService driver = Executors.newSingleThreadExecutor();
      SharedIndexInformer<Job> informer =
          h.client()
              .batch()
              .v1()
              .jobs()
              .inNamespace(NAMESPACE)
              .withLabel(RunnerJobs.STATE_LABEL, "bench")
              .inform(
                  OnChange.of(
                      (Job job) -> {
                        String name = job.getMetadata().getName();
                        if (!RunnerJobs.suspended(job)
                            && !RunnerJobs.finished(job)
                            && admittedAt.putIfAbsent(name, System.nanoTime()) == null) {
                          synchronized (order) {
                            order.add(name);
                          }
                          driver.submit(
                              () -> {
                                sleep(runMillis);
                                complete(h, job, finishedAt);
                              });
                        }
                      }));
      KubernetesMockServer server = h.api().mockServer();
      drain(server);
      long start = System.nanoTime();
      TerraformState state = new TerraformState();
      state.getMetadata().setName("bench");
      state.getMetadata().setNamespace(NAMESPACE);
      h.client().resource(state).create();
      await()
          .atMost(Duration.ofMinutes(10))
          .pollInterval(Duration.ofMillis(50))
          .until(() -> finishedAt.size() == total);
      long elapsed = System.nanoTime() - start;
      Thread.sleep(1000); // lets trailing Events and status writes land before counting
      Map<String, Integer> requests = classify(drain(server));
      informer.close();
      driver.shutdown();
      driver.awaitTermination(10, TimeUnit.SECONDS);

      List<Double> latencies = new ArrayList<>();
      synchronized (order) {
        for (int i = warmup + 1; i < order.size(); i++) {
          long finished = finishedAt.get(order.get(i - 1));
          latencies.add((admittedAt.get(order.get(i)) - finished) / 1e6);
        }
      }
      latencies.sort(Double::compare);
      int allHandoffs = total - 1;
      int driverRequests = requests.getOrDefault("PATCH job status (test driver)", 0);
      int operatorRequests =
          requests.values().stream().mapToInt(Integer::intValue).sum()
              - driverRequests
              - requests.getOrDefault("test client", 0);
      return new Measured(
          latencies,
          total / (elapsed / 1e9),
          operatorRequests / (double) allHandoffs,
          requests.getOrDefault("POST event", 0) / (double) allHandoffs);
    }
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private static void complete(OperatorHarness h, Job job, Map<String, Long> finishedAt) {
    String now = Instant.now().toString();
    finishedAt.put(job.getMetadata().getName(), System.nanoTime());
    h.client()
        .batch()
        .v1()
        .jobs()
        .inNamespace(NAMESPACE)
        .resource(job)
        .subresource("status")
        .patch(
            PatchContext.of(PatchType.JSON_MERGE),
            "{\"status\":{\"succeeded\":1,\"completionTime\":\""
                + now
                + "\",\"conditions\":[{\"type\":\"Complete\",\"status\":\"True\","
                + "\"lastTransitionTime\":\""
                + now
                + "\"}]}}");
  }

  private static List<RecordedRequest> drain(KubernetesMockServer server)
      throws InterruptedException {
    List<RecordedRequest> all = new ArrayList<>();
    RecordedRequest r;
    while ((r = server.takeRequest(10, TimeUnit.MILLISECONDS)) != null) {
      all.add(r);
    }
    return all;
  }

  private static Map<String, Integer> classify(List<RecordedRequest> requests) {
    Map<String, Integer> counts = new TreeMap<>();
    for (RecordedRequest r : requests) {
      String path = r.getPath();
      String method = r.getMethod();
      String key;
      if (path.contains("/jobs/") && path.endsWith("/status")) {
        key = "PATCH job status (test driver)";
      } else if (path.contains("/terraformstates") && "POST".equals(method)) {
        key = "test client";
      } else if (path.contains("/leases/")) {
        key = method + " lease";
      } else if (path.contains("/jobs/")) {
        key = method + " job";
      } else if (path.contains("/terraformstates/") && path.contains("/status")) {
        key = method + " terraformstate status";
      } else if (path.contains("/events")) {
        key = method + " event";
      } else {
        key = method + " " + path.replaceAll("\\?.*", "").replaceAll("/[^/]*$", "/*");
      }
      counts.merge(key, 1, Integer::sum);
    }
    return counts;
  }
}
