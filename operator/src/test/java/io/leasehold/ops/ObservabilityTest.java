package io.leasehold.ops;

import static io.leasehold.backend.BackendClientAccess.lockInfo;
import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.leasehold.api.TerraformState;
import io.leasehold.backend.BackendClientAccess;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RunnerJobFixtures;
import io.leasehold.support.TerraformStates;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class ObservabilityTest {

  private static HttpResponse<String> get(String url) throws Exception {
    return HttpClient.newHttpClient()
        .send(
            HttpRequest.newBuilder(URI.create(url)).build(), HttpResponse.BodyHandlers.ofString());
  }

  @Test
  @DisplayName(
      "After a scripted lock cycle and a Job handoff, /metrics reports lock waits and holds,"
          + " writes accepted and refused, the handoff and the SDK's controller metrics; health"
          + " and readiness answer")
  void metricsReportTheLockCycle() throws Exception {
    PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    try (OperatorHarness h = OperatorHarness.start(new LeaseholdMetrics(registry));
        ManagementServer management =
            ManagementServer.start(
                "127.0.0.1", 0, registry, h.operator()::health, h.operator()::readiness)) {
      String base = "http://127.0.0.1:" + management.port();
      var backend = new BackendClientAccess(h.startBackend(64L * 1024 * 1024));
      TerraformState s = new TerraformState();
      s.getMetadata().setName("observed");
      s.getMetadata().setNamespace(NAMESPACE);
      h.client().resource(s).create();
      String state = NAMESPACE + "/observed";

      assertThat(backend.lock(state, lockInfo("one", "a@b"), null)).isEqualTo(200);
      CompletableFuture<Integer> waiting =
          CompletableFuture.supplyAsync(
              () -> backend.lockQuietly(state, lockInfo("two", "c@d"), "?wait=20s"));
      Thread.sleep(200);
      assertThat(backend.post(state, "one", TerraformStates.stateJson(1, "lin-o", 1)))
          .isEqualTo(200);
      assertThat(backend.post(state, "one", TerraformStates.stateJson(1, "lin-other", 1)))
          .isEqualTo(409);
      assertThat(backend.unlock(state, lockInfo("one", "a@b"))).isEqualTo(200);
      assertThat(waiting.get()).isEqualTo(200);
      assertThat(backend.unlock(state, lockInfo("two", "c@d"))).isEqualTo(200);

      RunnerJobFixtures.create(h.client(), "observed-1", "observed");
      RunnerJobFixtures.create(h.client(), "observed-2", "observed");
      await()
          .atMost(Duration.ofSeconds(20))
          .until(() -> RunnerJobFixtures.running(RunnerJobFixtures.get(h.client(), "observed-1")));
      RunnerJobFixtures.finish(h.client(), "observed-1", true);
      await()
          .atMost(Duration.ofSeconds(20))
          .until(() -> RunnerJobFixtures.running(RunnerJobFixtures.get(h.client(), "observed-2")));

      String metrics = get(base + "/metrics").body();
      assertThat(metrics)
          .contains("leasehold_state_writes_total{reason=\"none\",result=\"accepted\"} 1.0")
          .contains("leasehold_state_writes_total{reason=\"lineage\",result=\"refused\"} 1.0")
          .contains("leasehold_lock_wait_seconds_count{outcome=\"acquired\"} 1")
          .contains("leasehold_lock_hold_seconds_count{holder=\"client\"} 2")
          .contains("leasehold_lock_hold_seconds_count{holder=\"job\"} 1")
          .contains("leasehold_queue_handoff_seconds_count 1")
          .contains("leasehold_state_size_bytes_count 1")
          .contains("operator_sdk_reconciliations_success_total")
          .contains("leasehold_leader 1.0")
          .contains("leasehold_replicas_alive 1.0");
      assertThat(metrics).doesNotContain("observed-1").doesNotContain("lin-o");
      // A handful of buckets per histogram: ten for the ?wait= LOCK that waited, plus +Inf.
      assertThat(
              metrics
                  .lines()
                  .filter(
                      l -> l.startsWith("leasehold_lock_wait_seconds_bucket{outcome=\"acquired\"")))
          .hasSize(11)
          .anyMatch(l -> l.contains("le=\"900.0\""));
      assertThat(
              metrics
                  .lines()
                  .filter(
                      l ->
                          l.startsWith(
                              "operator_sdk_controllers_execution_reconcile_seconds_bucket")))
          .hasSizeLessThan(12);
      HttpResponse<String> health = get(base + "/healthz");
      assertThat(health.statusCode()).isEqualTo(200);
      HttpResponse<String> ready = get(base + "/readyz");
      assertThat(ready.statusCode()).isEqualTo(200);
      assertThat(ready.body()).contains("informers synced");
      RunnerJobFixtures.finish(h.client(), "observed-2", true);
    }
  }
}
