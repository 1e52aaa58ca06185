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
import org.junit.jupiter.api.Test;

/**
 * Handoff latency of the runner Job queue on the embedded API: from the moment a test driver marks
 * the running Job Complete to the moment the next Job is seen unsuspended, and the API requests the
 * operator makes per handoff. Prints figures; asserts nothing about speed.
 *
 * <p>Run: {@code mvn -B -pl operator test -Dtest=JobHandoffBenchmark
 * -Dsurefire.failIfNoSpecifiedTests=false [-Dhandoffs=200]}
 */
class JobHandoffBenchmark {

  @Test
  void handoffLatency() throws Exception {
    int handoffs = Integer.getInteger("handoffs", 200);
    int warmup = 20;
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
                          driver.submit(() -> complete(h, job, finishedAt));
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
      int measured = latencies.size();
      int allHandoffs = total - 1;
      System.out.println();
      System.out.printf(
          "job handoff on the embedded API (%s, %d cores): %d handoffs measured after %d warm-up%n",
          Instant.now(), Runtime.getRuntime().availableProcessors(), measured, warmup);
      System.out.printf(
          "  latency completion -> next admission: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f"
              + " ms%n",
          pct(latencies, 50), pct(latencies, 90), pct(latencies, 99), latencies.get(measured - 1));
      System.out.printf("  throughput: %.1f runs/s over %d runs%n", total / (elapsed / 1e9), total);
      int driverRequests = requests.getOrDefault("PATCH job status (test driver)", 0);
      int operatorRequests =
          requests.values().stream().mapToInt(Integer::intValue).sum()
              - driverRequests
              - requests.getOrDefault("test client", 0);
      System.out.printf(
          "  operator API requests per handoff: %.2f (all %d requests over %d handoffs)%n",
          operatorRequests / (double) allHandoffs, operatorRequests, allHandoffs);
      requests.forEach(
          (k, v) ->
              System.out.printf(
                  "    %-40s %6d  (%.2f per handoff)%n", k, v, v / (double) allHandoffs));
      System.out.println();
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

  private static double pct(List<Double> sorted, int p) {
    int index = (int) Math.ceil(p / 100.0 * sorted.size()) - 1;
    return sorted.get(Math.max(0, Math.min(sorted.size() - 1, index)));
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
