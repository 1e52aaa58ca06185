package io.leasehold.bench;

import static io.leasehold.support.OperatorHarness.NAMESPACE;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateNames;
import io.leasehold.support.Binaries;
import io.leasehold.support.ChildOperator;
import io.leasehold.support.Terraform;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import java.util.Random;

/**
 * Write and read latency by state size through leasehold's HTTP backend, next to stock Terraform's
 * {@code kubernetes} backend ({@code state push} / {@code state pull}) on the same embedded API;
 * and the operator's peak live heap while it writes and reads each size, measured in a child JVM
 * that runs only the operator and its backend. Padding is random base64, the worst case for gzip.
 */
final class StateSizeBenchmark implements Benchmark {

  /**
   * The chart's defaults, read from the rendered chart: the child operator runs with the heap the
   * chart's memory limit gives (MaxRAMPercentage=75) and the chart's maxStateBytes, so what is
   * measured is what a default install can do.
   */
  private static final ChartMemory CHART = ChartMemory.read();

  static final String CHILD_XMX = CHART.heapMiB() + "m";

  private static final long MAX_STATE_BYTES = CHART.maxStateBytes();

  /** Peak live heap the largest allowed write(s) may reach, as a share of the heap. */
  private static final double TARGET_HEAP_SHARE = 80.0;

  private static final Duration REQUEST_TIMEOUT = Duration.ofMinutes(5);
  private static final double MIB = 1024.0 * 1024.0;

  @Override
  public String id() {
    return "size";
  }

  @Override
  public String title() {
    return "State size: write and read latency, and the operator's memory";
  }

  @Override
  public String description(BenchSettings settings) {
    return "For each state size ("
        + sizeLabels(settings)
        + "; the padding is random base64, which gzip shrinks least), leasehold's HTTP backend"
        + " writes a first version, then a second one over it (the measured write: every guard,"
        + " the history copy of the first version and the chunked Secrets), and serves it back"
        + " (the measured read, checked byte for byte). Stock Terraform's `kubernetes` backend"
        + " does the same with `terraform state push` (the second push is measured) and"
        + " `terraform state pull` on the same embedded API; the ratios are push/write and"
        + " pull/read, so above 1 means leasehold is faster. The operator and its backend run"
        + " in a child JVM of their own with `-Xmx"
        + CHILD_XMX
        + "` (the heap the Helm chart's default memory limit gives at MaxRAMPercentage=75, read"
        + " from the rendered chart) and the chart's `maxStateBytes` ("
        + label((int) MAX_STATE_BYTES)
        + ", which is always measured as the largest size), so the memory figures are"
        + " the operator's alone: its peak live heap (the largest"
        + " heap left after any garbage collection, from the child's GC log) during that size's"
        + " two writes and read, above its idle heap just before, in MiB and as a multiple of"
        + " the raw state; for the largest allowed write, and for two of them at once to two"
        + " states, the whole peak as a share of the heap (target at most "
        + TARGET_HEAP_SHARE
        + "%); and a write one byte over the limit must be refused with 413. Limits: the API server is the in-memory one of `run"
        + " --embedded` in the benchmark's own JVM, on loopback, so the latencies leave out a"
        + " real API server's storage and network; the operator's informer cache of the state"
        + " Secrets (their base64 data) counts in its heap, as it would in a cluster; the heap"
        + " left after a collection is an upper bound of what is live (G1's young and mixed"
        + " collections leave some garbage, and it counts an object of half a region or more,"
        + " such as a chunk's 1.4 MB base64 text, by whole 1 MiB regions), while a run with few"
        + " collections can under-state the peak between them; both sides share this machine's"
        + " cores. Where `terraform` is not on the PATH, `tofu` stands in for it (its"
        + " `kubernetes` backend writes one Secret however large the state).";
  }

  @Override
  public List<Figure> run(BenchSettings settings) throws Exception {
    List<Integer> sizes = sizes(settings);
    int largest = (int) MAX_STATE_BYTES;
    Binaries.terraform();
    List<Figure> figures = new ArrayList<>();
    HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(30)).build();
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient client = api.newClient();
        ChildOperator child = ChildOperator.start(api, CHILD_XMX, MAX_STATE_BYTES)) {
      Path kubeconfig = Files.createTempDirectory("size-kube").resolve("kubeconfig");
      api.writeKubeconfig(kubeconfig);
      for (int size : sizes) {
        String label = label(size);
        String name = "s" + size + "b";
        create(client, name);
        String url = child.url() + NAMESPACE + "/" + name;

        long baseline = settledHeap(child);
        child.markGcLog();
        post(http, url, state(1, size, 1), child, "first write of " + label);
        byte[] body = state(2, size, 2).getBytes(StandardCharsets.UTF_8);
        long t0 = System.nanoTime();
        post(http, url, new String(body, StandardCharsets.UTF_8), child, "write of " + label);
        double writeMs = (System.nanoTime() - t0) / 1e6;
        t0 = System.nanoTime();
        byte[] read = get(http, url, child, "read of " + label);
        double readMs = (System.nanoTime() - t0) / 1e6;
        if (!Arrays.equals(read, body)) {
          throw new IllegalStateException(
              "read of "
                  + label
                  + " returned "
                  + read.length
                  + " bytes that differ from the "
                  + body.length
                  + " bytes written");
        }
        long peak = child.peakHeapAfterGc().orElse(0L);
        peak = Math.max(peak, child.heapAfterGc());
        double aboveMib = Math.max(0, peak - baseline) / MIB;
        double multiple = Math.max(0, peak - baseline) / (double) size;
        if (size == largest) {
          figures.add(
              Figure.target(
                  "operator peak live heap, largest allowed write ("
                      + label(size)
                      + "), share of the heap (-Xmx"
                      + CHILD_XMX
                      + ")",
                  100.0 * peak / (CHART.heapMiB() * MIB),
                  "%",
                  TARGET_HEAP_SHARE));
        }

        figures.add(Figure.of("leasehold write " + label, writeMs, "ms"));
        figures.add(Figure.of("leasehold read " + label, readMs, "ms"));
        figures.add(
            Figure.of("leasehold write throughput " + label, mibPerS(size, writeMs), "MiB/s"));
        figures.add(
            Figure.of("leasehold read throughput " + label, mibPerS(size, readMs), "MiB/s"));
        String heapName =
            "operator peak live heap above idle " + label + " (-Xmx" + CHILD_XMX + ")";
        figures.add(Figure.of(heapName, aboveMib, "MiB"));
        String multipleName =
            "operator peak live heap / state " + label + " (-Xmx" + CHILD_XMX + ")";
        figures.add(Figure.of(multipleName, multiple, "x"));
        removeState(client, name);

        double[] pushPull = stock(kubeconfig, name + "-k", size);
        figures.add(Figure.of("stock kubernetes backend push " + label, pushPull[0], "ms"));
        figures.add(Figure.of("stock kubernetes backend pull " + label, pushPull[1], "ms"));
        figures.add(Figure.of("push/write " + label, pushPull[0] / writeMs, "x"));
        figures.add(Figure.of("pull/read " + label, pushPull[1] / readMs, "x"));
        removeState(client, name + "-k");
      }
      figures.addAll(concurrentLargest(http, client, child));
      refusedOverLimit(http, client, child);
    }
    return figures;
  }

  /** The sizes asked for, up to the chart's limit, and the limit itself: the largest allowed. */
  private static List<Integer> sizes(BenchSettings settings) {
    if (settings.stateSizes() == null || settings.stateSizes().isEmpty()) {
      throw new IllegalArgumentException("no state sizes to measure");
    }
    List<Integer> sizes = new ArrayList<>();
    settings.stateSizes().stream().filter(s -> s < MAX_STATE_BYTES).forEach(sizes::add);
    sizes.add((int) MAX_STATE_BYTES);
    return sizes;
  }

  /**
   * Two writes of the largest allowed size to two states at the same moment: the operator's peak
   * live heap as a share of its heap. (A write takes a worker and its body is read as it arrives,
   * so concurrent large writes add up.)
   */
  private static List<Figure> concurrentLargest(
      HttpClient http, KubernetesClient client, ChildOperator child) throws Exception {
    List<String> names = List.of("big-a", "big-b");
    for (String n : names) {
      create(client, n);
      post(
          http,
          child.url() + NAMESPACE + "/" + n,
          exactState(1, (int) MAX_STATE_BYTES, 21),
          child,
          "first write of " + n);
    }
    settledHeap(child);
    child.markGcLog();
    List<java.util.concurrent.CompletableFuture<Void>> writes = new ArrayList<>();
    long t0 = System.nanoTime();
    for (int i = 0; i < names.size(); i++) {
      String n = names.get(i);
      String body = exactState(2, (int) MAX_STATE_BYTES, 31 + i);
      writes.add(
          java.util.concurrent.CompletableFuture.runAsync(
              () -> {
                try {
                  post(
                      http,
                      child.url() + NAMESPACE + "/" + n,
                      body,
                      child,
                      "concurrent write of " + n);
                } catch (Exception e) {
                  throw new IllegalStateException(e);
                }
              }));
    }
    for (var w : writes) {
      w.get(10, java.util.concurrent.TimeUnit.MINUTES);
    }
    double ms = (System.nanoTime() - t0) / 1e6;
    long peak = Math.max(child.peakHeapAfterGc().orElse(0L), child.heapAfterGc());
    for (String n : names) {
      removeState(client, n);
    }
    String what = "two largest allowed writes (" + label((int) MAX_STATE_BYTES) + ") at once";
    return List.of(
        Figure.of("leasehold " + what, ms, "ms"),
        Figure.target(
            "operator peak live heap, " + what + ", share of the heap (-Xmx" + CHILD_XMX + ")",
            100.0 * peak / (CHART.heapMiB() * MIB),
            "%",
            TARGET_HEAP_SHARE));
  }

  /** One byte over the limit is refused (413) and the operator is still up. */
  private static void refusedOverLimit(
      HttpClient http, KubernetesClient client, ChildOperator child) throws Exception {
    create(client, "over");
    HttpResponse<String> r =
        http.send(
            HttpRequest.newBuilder(URI.create(child.url() + NAMESPACE + "/over"))
                .POST(
                    HttpRequest.BodyPublishers.ofString(
                        exactState(1, (int) MAX_STATE_BYTES + 1, 41)))
                .timeout(REQUEST_TIMEOUT)
                .build(),
            HttpResponse.BodyHandlers.ofString());
    if (r.statusCode() != 413) {
      throw new IllegalStateException(
          "a state one byte over the limit answered " + r.statusCode() + ", not 413");
    }
    child.checkAlive("refusing a state over the limit");
    removeState(client, "over");
  }

  /**
   * The chart's default memory limit and maxStateBytes, from the Deployment it renders.
   *
   * @param heapMiB the heap that limit gives the JVM (MaxRAMPercentage=75)
   */
  record ChartMemory(long heapMiB, long maxStateBytes) {
    static ChartMemory read() {
      try {
        String manifest =
            new com.marcnuri.helm.Helm(
                    Path.of(System.getProperty("leasehold.projectRoot", "."), "charts/leasehold"))
                .template()
                .withName("leasehold")
                .withNamespace("leasehold-system")
                .withKubeVersion("v1.31.0")
                .call();
        var yaml =
            new com.fasterxml.jackson.databind.ObjectMapper(
                new com.fasterxml.jackson.dataformat.yaml.YAMLFactory());
        try (var docs =
            yaml.readerFor(com.fasterxml.jackson.databind.JsonNode.class)
                .<com.fasterxml.jackson.databind.JsonNode>readValues(manifest)) {
          while (docs.hasNext()) {
            var doc = docs.next();
            if (doc == null || !"Deployment".equals(doc.path("kind").asText())) {
              continue;
            }
            var container = doc.at("/spec/template/spec/containers/0");
            String limit = container.at("/resources/limits/memory").asText();
            if (!limit.endsWith("Mi")) {
              throw new IllegalStateException(
                  "the chart's memory limit " + limit + " is not in Mi");
            }
            long max = -1;
            for (var arg : container.path("args")) {
              if (arg.asText().startsWith("--max-state-bytes=")) {
                max = Long.parseLong(arg.asText().substring("--max-state-bytes=".length()));
              }
            }
            String options = "";
            for (var env : container.path("env")) {
              if (env.path("name").asText().equals("JAVA_TOOL_OPTIONS")) {
                options = env.path("value").asText();
              }
            }
            if (!options.contains("-XX:MaxRAMPercentage=75")) {
              throw new IllegalStateException("the chart's JVM options changed: " + options);
            }
            long limitMiB = Long.parseLong(limit.substring(0, limit.length() - 2));
            return new ChartMemory(limitMiB * 3 / 4, max);
          }
        }
        throw new IllegalStateException("the chart renders no Deployment");
      } catch (java.io.IOException e) {
        throw new IllegalStateException("cannot render the chart", e);
      }
    }
  }

  /** The child's heap after GC, once it stops falling (the informer has seen earlier deletes). */
  private static long settledHeap(ChildOperator child) throws InterruptedException {
    long last = child.heapAfterGc();
    for (int i = 0; i < 10; i++) {
      Thread.sleep(300);
      long now = child.heapAfterGc();
      if (Math.abs(now - last) < 2 * 1024 * 1024) {
        return Math.min(now, last);
      }
      last = now;
    }
    return last;
  }

  private static void post(
      HttpClient http, String url, String body, ChildOperator child, String what)
      throws IOException, InterruptedException {
    HttpResponse<String> response;
    try {
      response =
          http.send(
              HttpRequest.newBuilder(URI.create(url))
                  .POST(HttpRequest.BodyPublishers.ofString(body))
                  .timeout(REQUEST_TIMEOUT)
                  .build(),
              HttpResponse.BodyHandlers.ofString());
    } catch (IOException e) {
      child.checkExitedAfterFailure(what);
      throw new IOException(what + " failed: " + e.getMessage(), e);
    }
    if (response.statusCode() != 200) {
      child.checkExitedAfterFailure(what);
      throw new IllegalStateException(
          what + " answered " + response.statusCode() + ": " + response.body());
    }
  }

  private static byte[] get(HttpClient http, String url, ChildOperator child, String what)
      throws IOException, InterruptedException {
    HttpResponse<byte[]> response;
    try {
      response =
          http.send(
              HttpRequest.newBuilder(URI.create(url)).timeout(REQUEST_TIMEOUT).build(),
              HttpResponse.BodyHandlers.ofByteArray());
    } catch (IOException e) {
      child.checkExitedAfterFailure(what);
      throw new IOException(what + " failed: " + e.getMessage(), e);
    }
    if (response.statusCode() != 200) {
      child.checkExitedAfterFailure(what);
      throw new IllegalStateException(
          what
              + " answered "
              + response.statusCode()
              + ": "
              + new String(response.body(), StandardCharsets.UTF_8));
    }
    return response.body();
  }

  /** Median-free single measurement of stock push (of a second version) and pull, in ms. */
  private static double[] stock(Path kubeconfig, String name, int size) throws Exception {
    // Terraform's push moves the serial on by itself: versions 10 and 20 leave it room.
    Path dir = Files.createTempDirectory("size-stock");
    Terraform tf = new Terraform(dir);
    tf.writeKubernetesBackendConfig(kubeconfig, name, "");
    tf.run("init").assertOk();
    Path first = dir.resolve("first.tfstate");
    Files.writeString(first, state(10, size, 11));
    tf.run("state", "push", first.toString()).assertOk();
    Path second = dir.resolve("second.tfstate");
    Files.writeString(second, state(20, size, 12));
    long t0 = System.nanoTime();
    tf.run("state", "push", second.toString()).assertOk();
    double push = (System.nanoTime() - t0) / 1e6;
    t0 = System.nanoTime();
    Terraform.Result pulled = tf.run("state", "pull").assertOk();
    double pull = (System.nanoTime() - t0) / 1e6;
    if (pulled.output().length() < size / 2) {
      throw new IllegalStateException(
          "terraform state pull of " + label(size) + " gave only " + pulled.output().length());
    }
    Files.delete(first);
    Files.delete(second);
    return new double[] {push, pull};
  }

  private static void create(KubernetesClient client, String name) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    s.getSpec().getHistory().setKeep(1);
    client.resource(s).create();
  }

  /** Removes a measured state's objects, so that later sizes start from an idle operator. */
  private static void removeState(KubernetesClient client, String name) {
    client.resources(TerraformState.class).inNamespace(NAMESPACE).withName(name).delete();
    client.secrets().inNamespace(NAMESPACE).withLabel(StateNames.LABEL_SUFFIX, name).delete();
    client
        .secrets()
        .inNamespace(NAMESPACE)
        .withLabel(StateNames.LABEL_STATE, name)
        .withLabel(StateHistory.HISTORY_LABEL, "true")
        .delete();
    client.leases().inNamespace(NAMESPACE).withLabel(StateNames.LABEL_SUFFIX, name).delete();
  }

  private static double mibPerS(int size, double ms) {
    return size / MIB / (ms / 1000.0);
  }

  private static String sizeLabels(BenchSettings settings) {
    return String.join(", ", sizes(settings).stream().map(StateSizeBenchmark::label).toList());
  }

  static String label(int size) {
    if (size >= 1024 * 1024 && size % (1024 * 1024) == 0) {
      return size / (1024 * 1024) + " MiB";
    }
    if (size >= 1024 && size % 1024 == 0) {
      return size / 1024 + " KiB";
    }
    return size + " B";
  }

  /** A state of exactly {@code bytes} bytes (random base64 padding). */
  private static String exactState(long serial, int bytes, long seed) {
    String empty =
        state(serial, 401, seed).replaceAll("\"value\":\"[A-Za-z0-9+/=]*\"", "\"value\":\"\"");
    int room = bytes - empty.getBytes(StandardCharsets.UTF_8).length;
    String padding =
        Base64.getEncoder().encodeToString(randomBytes(room * 3 / 4 + 3, seed)).substring(0, room);
    return empty.replace("\"value\":\"\"", "\"value\":\"" + padding + "\"");
  }

  private static byte[] randomBytes(int n, long seed) {
    byte[] b = new byte[Math.max(0, n)];
    new Random(seed).nextBytes(b);
    return b;
  }

  /** A state of about {@code size} bytes. */
  private static String state(long serial, int size, long seed) {
    byte[] noise = new byte[Math.max(1, (size - 400) * 3 / 4)];
    new Random(seed).nextBytes(noise);
    String padding = Base64.getEncoder().encodeToString(noise);
    return "{\"version\":4,\"terraform_version\":\"1.11.4\",\"serial\":"
        + serial
        + ",\"lineage\":\"size-bench\",\"outputs\":{},\"resources\":[{\"mode\":\"managed\",\"type\":\"terraform_data\",\"name\":\"blob\",\"provider\":\"provider[\\\"terraform.io/builtin/terraform\\\"]\",\"instances\":[{\"schema_version\":0,\"attributes\":{\"id\":\"x\",\"input\":{\"value\":\""
        + padding
        + "\",\"type\":\"string\"}}}]}],\"check_results\":null}";
  }
}
