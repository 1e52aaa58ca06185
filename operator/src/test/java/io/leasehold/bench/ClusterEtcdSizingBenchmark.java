package io.leasehold.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.leasehold.api.HistorySpec;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * etcd's own figure for {@link EtcdSizingBenchmark}: on the real control plane, the growth of
 * etcd's database while states of a few sizes are written with history, read from etcd's metrics
 * after a compaction to the latest revision and a defragmentation (what the database settles to
 * once the API server's periodic compaction has run), and its size in use just before (old
 * revisions included).
 */
final class ClusterEtcdSizingBenchmark implements Benchmark {

  private static final double MIB = 1024.0 * 1024.0;
  private static final ObjectMapper JSON = new ObjectMapper();

  @Override
  public String id() {
    return "cluster-etcd-size";
  }

  @Override
  public boolean needsCluster() {
    return true;
  }

  @Override
  public String title() {
    return "Real control plane: etcd database growth per state, by state size, with history";
  }

  @Override
  public String description(BenchSettings settings) {
    return ClusterSetup.describe(settings)
        + ": states generated as in the embedded `etcd-size` benchmark (1, 8 and 32 MiB of"
        + " realistic state JSON) are each written "
        + (HistorySpec.DEFAULT_KEEP + 2)
        + " times through the backend (LOCK, POST, UNLOCK over HTTPS with a runner's token), so"
        + " that history holds the default "
        + HistorySpec.DEFAULT_KEEP
        + " versions. Before and after each size, etcd is compacted to its latest revision and"
        + " defragmented through its gRPC gateway, and `etcd_mvcc_db_total_size_in_bytes` is read"
        + " from its `/metrics`: the difference is what the state costs once the API server's"
        + " compaction (every 5 minutes) has run. The size in use just before that compaction"
        + " (`etcd_mvcc_db_total_size_in_use_in_bytes`, old revisions still there) shows the peak"
        + " between compactions.";
  }

  @Override
  public List<Figure> run(BenchSettings settings) throws Exception {
    String etcd = "http://127.0.0.1:" + etcdPort(settings.cluster());
    HttpClient plain = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    List<Figure> figures = new ArrayList<>();
    try (ClusterSetup env = ClusterSetup.start(settings, "bench-etcd", 1)) {
      HttpClient http = env.http();
      String authorization = ClusterSetup.authorization(env.runnerToken());
      for (int size : EtcdSizingBenchmark.SIZES) {
        String label = (size >> 20) + " MiB";
        String name = "sized-" + (size >> 20) + "m";
        env.createStates(List.of(name));
        long before = settle(plain, etcd);
        EtcdSizingBenchmark.Generated generated =
            new EtcdSizingBenchmark.Generated(size, name.hashCode());
        String url = env.stateUrl(0, name);
        for (int serial = 1; serial <= HistorySpec.DEFAULT_KEEP + 2; serial++) {
          String id = "sizing-" + serial + "-" + System.nanoTime();
          String info =
              "{\"ID\":\""
                  + id
                  + "\",\"Operation\":\"OperationTypeApply\",\"Who\":\"sizing@bench\"}";
          send(http, "LOCK", url + "/lock", info, authorization, label);
          send(http, "POST", url + "?ID=" + id, generated.version(serial), authorization, label);
          send(http, "UNLOCK", url + "/lock", info, authorization, label);
        }
        // History is pruned as versions are written; give the last prune a moment.
        Thread.sleep(2000);
        double inUse = metric(plain, etcd, "etcd_mvcc_db_total_size_in_use_in_bytes");
        long after = settle(plain, etcd);
        String p = label + " state: ";
        figures.add(
            Figure.of(p + "etcd database growth, compacted", (after - before) / MIB, "MiB"));
        figures.add(
            Figure.of(p + "etcd in use before compaction, growth", (inUse - before) / MIB, "MiB"));
      }
    }
    return figures;
  }

  private static void send(
      HttpClient http, String method, String url, String body, String authorization, String label)
      throws Exception {
    HttpResponse<String> r =
        http.send(
            HttpRequest.newBuilder(URI.create(url))
                .timeout(Duration.ofMinutes(5))
                .header("Content-Type", "application/json")
                .header("Authorization", authorization)
                .method(method, HttpRequest.BodyPublishers.ofString(body))
                .build(),
            HttpResponse.BodyHandlers.ofString());
    if (r.statusCode() != 200) {
      throw new IllegalStateException(
          method + " of the " + label + " state answered " + r.statusCode() + ": " + r.body());
    }
  }

  /** Compacts etcd to its latest revision, defragments it, and returns its database size. */
  private static long settle(HttpClient http, String etcd) throws Exception {
    JsonNode range = post(http, etcd + "/v3/kv/range", "{\"key\":\"AA==\"}");
    long revision = range.at("/header/revision").asLong();
    post(http, etcd + "/v3/kv/compaction", "{\"revision\":" + revision + ",\"physical\":true}");
    post(http, etcd + "/v3/maintenance/defragment", "{}");
    return (long) metric(http, etcd, "etcd_mvcc_db_total_size_in_bytes");
  }

  private static JsonNode post(HttpClient http, String url, String body) throws Exception {
    HttpResponse<String> r =
        http.send(
            HttpRequest.newBuilder(URI.create(url))
                .timeout(Duration.ofMinutes(2))
                .POST(HttpRequest.BodyPublishers.ofString(body))
                .build(),
            HttpResponse.BodyHandlers.ofString());
    if (r.statusCode() != 200) {
      throw new IllegalStateException(url + " answered " + r.statusCode() + ": " + r.body());
    }
    return JSON.readTree(r.body());
  }

  private static double metric(HttpClient http, String etcd, String name) throws Exception {
    String text =
        http.send(
                HttpRequest.newBuilder(URI.create(etcd + "/metrics")).build(),
                HttpResponse.BodyHandlers.ofString())
            .body();
    Matcher m = Pattern.compile("(?m)^" + name + " (\\S+)$").matcher(text);
    if (!m.find()) {
      throw new IllegalStateException("etcd's /metrics has no " + name);
    }
    return Double.parseDouble(m.group(1));
  }

  /** ETCD_PORT from the cluster's run/env ({@code hack/cluster.sh up DIR}). */
  private static int etcdPort(Path cluster) throws Exception {
    for (String line : Files.readAllLines(cluster.resolve("run/env"))) {
      if (line.startsWith("ETCD_PORT=")) {
        return Integer.parseInt(line.substring("ETCD_PORT=".length()).trim());
      }
    }
    throw new IllegalStateException("no ETCD_PORT in " + cluster.resolve("run/env"));
  }
}
