package io.leasehold.ops;

import static io.leasehold.backend.BackendClientAccess.lockInfo;
import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.leasehold.api.TerraformState;
import io.leasehold.backend.Access;
import io.leasehold.backend.BackendClientAccess;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.JobPods;
import io.leasehold.cli.Replica;
import io.leasehold.lock.LeaseLock;
import io.leasehold.state.StateNames;
import io.leasehold.support.Binaries;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RunnerJobFixtures;
import io.leasehold.support.TerraformStates;
import io.leasehold.tls.BackendTls;
import io.leasehold.tls.SelfSignedCa;
import io.leasehold.tls.TlsMaterial;
import io.leasehold.tls.TlsSource;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The chart's Grafana dashboard against a real Prometheus: the operator runs on the embedded API
 * with its management server, a {@code prometheus} process scrapes {@code /metrics} every second
 * (labelled as the chart's ServiceMonitor labels it: the release's namespace and the Service's name
 * as job), a short workload like the demo's runs (locks, a handoff in line, an accepted and a
 * refused write, a LOCK that gives up, a force-unlock, an expired lock taken over, a runner Job
 * handoff), and every query of the dashboard, asked of Prometheus's HTTP API, returns data.
 */
class DashboardScrapeTest {

  private static final Path ROOT =
      Path.of(System.getProperty("leasehold.projectRoot", "..")).toAbsolutePath().normalize();
  private static final Path DASHBOARD =
      ROOT.resolve("charts/leasehold/files/grafana-dashboard.json");
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final HttpClient HTTP =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

  /** The labels leasehold's own series may carry: none names a lock, run, client or state. */
  private static final Set<String> LABELS =
      Set.of("outcome", "holder", "result", "reason", "via", "le");

  @TempDir Path tmp;

  @Test
  @DisplayName(
      "A real Prometheus scraping the operator through a demo-like run finds data for every query"
          + " of the chart's Grafana dashboard, in series labelled by outcome, never by lock ID,"
          + " run or client")
  void everyDashboardQueryHasData() throws Exception {
    Binaries.Found prometheus = Binaries.prometheus();
    PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    try (OperatorHarness h = OperatorHarness.start(new LeaseholdMetrics(registry));
        ManagementServer management =
            ManagementServer.start(
                "127.0.0.1", 0, registry, h.operator()::health, h.operator()::readiness)) {
      int port = freePort();
      String api = "http://127.0.0.1:" + port;
      Process server = startPrometheus(prometheus, management.port(), port);
      try {
        Instant started = Instant.now();
        await("the first scrape of the operator")
            .atMost(Duration.ofSeconds(20))
            .pollInterval(Duration.ofMillis(250))
            .until(() -> !values(api, "up{job=\"leasehold\"} == 1").isEmpty());

        workload(h);
        // The backend also served over HTTPS: its certificate's expiry is a panel and an alert.
        SelfSignedCa ca = SelfSignedCa.create("scrape test CA");
        TlsMaterial serving = ca.issue(List.of("localhost", "127.0.0.1"));
        HttpBackend https =
            Replica.serve(
                h.operator(),
                new Replica.Backend(
                    Access.NONE,
                    JobPods.NONE,
                    new HttpBackend.Config("127.0.0.1", 0, Duration.ofMinutes(1))
                        .withTls(
                            BackendTls.load(
                                TlsSource.files(
                                    Files.writeString(
                                        tmp.resolve("tls.crt"), serving.certificateChain()),
                                    Files.writeString(tmp.resolve("tls.key"), serving.privateKey()),
                                    Optional.empty()),
                                BackendTls.ClientAuthentication.NONE,
                                Duration.ofMinutes(1))),
                    1 << 20));

        List<String> queries = dashboardQueries();
        // Each query over a window that covers the whole run, once Prometheus scraped the end.
        long window = Duration.between(started, Instant.now()).toSeconds() + 10;
        await("every dashboard query has data")
            .atMost(Duration.ofSeconds(20))
            .pollInterval(Duration.ofMillis(500))
            .untilAsserted(
                () -> {
                  Map<String, String> missing = new LinkedHashMap<>();
                  for (String query : queries) {
                    String q = instantiate(query, window);
                    List<Double> values = values(api, q);
                    if (values.isEmpty()) {
                      missing.put(q, "no series");
                    } else if (values.stream().anyMatch(v -> v.isNaN())) {
                      missing.put(q, "NaN " + values);
                    }
                  }
                  assertThat(missing).as("dashboard queries without data").isEmpty();
                });

        // The figures behind the panels are those of the run (counted, not merely present).
        assertThat(values(api, sum("leasehold_locks_forced_total", "via=\"annotation\"")))
            .containsExactly(1.0);
        assertThat(values(api, sum("leasehold_locks_expired_total", ""))).containsExactly(1.0);
        assertThat(
                values(
                    api,
                    sum("leasehold_state_writes_total", "result=\"refused\", reason=\"lineage\"")))
            .containsExactly(1.0);
        assertThat(values(api, sum("leasehold_lock_wait_seconds_count", "outcome=\"timeout\"")))
            .containsExactly(1.0);
        assertThat(values(api, sum("leasehold_queue_handoff_seconds_count", "")))
            .containsExactly(1.0);
        assertThat(values(api, "min(leasehold_tls_certificate_not_after_seconds - time()) / 86400"))
            .as("days the serving certificate has left")
            .singleElement()
            .satisfies(
                days ->
                    assertThat(days)
                        .isBetween(
                            SelfSignedCa.LEAF_VALIDITY.toDays() - 2.0,
                            (double) SelfSignedCa.LEAF_VALIDITY.toDays()));
        https.close();

        // No label per lock ID, run or client: only these, on every leasehold series scraped.
        JsonNode series =
            get(api + "/api/v1/series?match[]=" + encode("{__name__=~\"leasehold_.+\"}"))
                .path("data");
        assertThat(series).hasSizeGreaterThan(10);
        Set<String> labels = new TreeSet<>();
        for (JsonNode s : series) {
          s.fieldNames().forEachRemaining(labels::add);
        }
        labels.removeAll(Set.of("__name__", "instance", "job", "namespace"));
        assertThat(labels).as("labels of leasehold's series").isSubsetOf(LABELS);
        // A handful of buckets per histogram, and per label combination.
        for (String histogram :
            List.of(
                "leasehold_lock_wait_seconds_bucket",
                "leasehold_lock_hold_seconds_bucket",
                "leasehold_queue_handoff_seconds_bucket",
                "operator_sdk_controllers_execution_reconcile_seconds_bucket")) {
          JsonNode buckets =
              get(api + "/api/v1/query?query=" + encode("count without (le) (" + histogram + ")"))
                  .at("/data/result");
          assertThat(buckets).as("series of %s", histogram).isNotEmpty();
          for (JsonNode b : buckets) {
            assertThat(b.at("/value/1").asDouble())
                .as("buckets of %s %s", histogram, b.path("metric"))
                .isBetween(5.0, 12.0);
          }
        }
      } finally {
        server.destroy();
        if (!server.waitFor(10, TimeUnit.SECONDS)) {
          server.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
      }
    }
  }

  /**
   * Locks with a client waiting in line, an accepted write and a refused one (another lineage), a
   * {@code ?wait=} LOCK that gives up, a force-unlock by annotation, an expired lock taken over,
   * and one runner Job handing over to the next.
   */
  private static void workload(OperatorHarness h) throws Exception {
    var backend = new BackendClientAccess(h.startBackend(64L * 1024 * 1024));
    TerraformState s = new TerraformState();
    s.getMetadata().setName("observed");
    s.getMetadata().setNamespace(NAMESPACE);
    h.client().resource(s).create();
    String state = NAMESPACE + "/observed";
    StateNames names = new StateNames(NAMESPACE, "observed", "default");
    await().atMost(Duration.ofSeconds(20)).until(() -> lease(h, names) != null);

    assertThat(backend.lock(state, lockInfo("one", "a@b"), null)).isEqualTo(200);
    CompletableFuture<Integer> waiting =
        CompletableFuture.supplyAsync(
            () -> backend.lockQuietly(state, lockInfo("two", "c@d"), "?wait=20s"));
    assertThat(backend.lockQuietly(state, lockInfo("gives-up", "e@f"), "?wait=1s")).isEqualTo(423);
    assertThat(backend.post(state, "one", TerraformStates.stateJson(1, "lin-o", 1))).isEqualTo(200);
    assertThat(backend.post(state, "one", TerraformStates.stateJson(1, "lin-other", 1)))
        .isEqualTo(409);
    assertThat(backend.unlock(state, lockInfo("one", "a@b"))).isEqualTo(200);
    assertThat(waiting.get(20, TimeUnit.SECONDS)).isEqualTo(200);

    // "two" is gone: an operator force-unlocks it with the annotation.
    h.client()
        .resources(TerraformState.class)
        .inNamespace(NAMESPACE)
        .withName("observed")
        .patch(
            PatchContext.of(PatchType.JSON_MERGE),
            "{\"metadata\":{\"annotations\":{\"leasehold.io/force-unlock\":\"two\"}}}");
    await().atMost(Duration.ofSeconds(20)).until(() -> h.status("observed").getLock() == null);

    // A lock leasehold renewed for a runner that stopped renewing a minute ago is taken over.
    h.client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName(names.leaseName())
        .edit(
            l ->
                LeaseLock.heldFor(
                    l,
                    TerraformStates.terraformLock("renewed-1", "ci@runner"),
                    5,
                    Instant.now().minusSeconds(60)));
    assertThat(backend.lock(state, lockInfo("taker", "g@h"), null)).isEqualTo(200);
    assertThat(backend.unlock(state, lockInfo("taker", "g@h"))).isEqualTo(200);

    RunnerJobFixtures.create(h.client(), "observed-1", "observed");
    RunnerJobFixtures.create(h.client(), "observed-2", "observed");
    await()
        .atMost(Duration.ofSeconds(20))
        .until(() -> RunnerJobFixtures.running(RunnerJobFixtures.get(h.client(), "observed-1")));
    RunnerJobFixtures.finish(h.client(), "observed-1", true);
    await()
        .atMost(Duration.ofSeconds(20))
        .until(() -> RunnerJobFixtures.running(RunnerJobFixtures.get(h.client(), "observed-2")));
    RunnerJobFixtures.finish(h.client(), "observed-2", true);
  }

  private static io.fabric8.kubernetes.api.model.coordination.v1.Lease lease(
      OperatorHarness h, StateNames names) {
    return h.client().leases().inNamespace(NAMESPACE).withName(names.leaseName()).get();
  }

  /** Every target's expression in the dashboard's panels. */
  private static List<String> dashboardQueries() throws IOException {
    JsonNode dashboard = JSON.readTree(DASHBOARD.toFile());
    List<String> queries = new ArrayList<>();
    for (JsonNode panel : dashboard.path("panels")) {
      for (JsonNode target : panel.path("targets")) {
        queries.add(target.path("expr").asText());
      }
    }
    assertThat(queries).hasSizeGreaterThan(10);
    return queries;
  }

  /** A dashboard query as Grafana sends it, for this release and a window covering the run. */
  private static String instantiate(String query, long windowSeconds) {
    return query
        .replace("$namespace", "leasehold-system")
        .replace("$job", "leasehold")
        .replace("$__rate_interval", windowSeconds + "s");
  }

  private static String sum(String metric, String matchers) {
    String sel = "namespace=\"leasehold-system\", job=\"leasehold\"";
    return "sum(" + metric + "{" + sel + (matchers.isEmpty() ? "" : ", " + matchers) + "})";
  }

  private Process startPrometheus(Binaries.Found prometheus, int target, int port)
      throws IOException {
    Path config = tmp.resolve("prometheus.yml");
    Files.writeString(
        config,
        """
        global:
          scrape_interval: 1s
          scrape_timeout: 1s
        scrape_configs:
          # As the chart's ServiceMonitor has it: job is the Service's name, namespace the release's.
          - job_name: leasehold
            static_configs:
              - targets: ['127.0.0.1:%d']
                labels:
                  namespace: leasehold-system
        """
            .formatted(target),
        StandardCharsets.UTF_8);
    Path log = tmp.resolve("prometheus.log");
    return new ProcessBuilder(
            prometheus.path().toString(),
            "--config.file=" + config,
            "--storage.tsdb.path=" + tmp.resolve("data"),
            "--web.listen-address=127.0.0.1:" + port)
        .redirectErrorStream(true)
        .redirectOutput(log.toFile())
        .start();
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  /** The values of an instant query's answer (a vector), none when it answers nothing. */
  private static List<Double> values(String api, String query) throws Exception {
    JsonNode answer = get(api + "/api/v1/query?query=" + encode(query));
    assertThat(answer.path("status").asText())
        .as("Prometheus on %s: %s", query, answer)
        .isEqualTo("success");
    List<Double> values = new ArrayList<>();
    for (JsonNode r : answer.at("/data/result")) {
      values.add(Double.parseDouble(r.at("/value/1").asText()));
    }
    return values;
  }

  private static JsonNode get(String url) throws Exception {
    HttpResponse<String> r =
        HTTP.send(
            HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).build(),
            HttpResponse.BodyHandlers.ofString());
    return JSON.readTree(r.body());
  }

  private static String encode(String s) {
    return URLEncoder.encode(s, StandardCharsets.UTF_8);
  }
}
