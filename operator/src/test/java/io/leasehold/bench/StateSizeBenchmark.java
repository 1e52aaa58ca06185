package io.leasehold.bench;

import static io.leasehold.support.OperatorHarness.NAMESPACE;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.leasehold.api.TerraformState;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.state.StateHistory;
import io.leasehold.state.StateNames;
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
   * The child operator's heap limit: the heap the Helm chart's default memory limit gives (512Mi at
   * MaxRAMPercentage=75). The largest size must pass within it.
   */
  static final String CHILD_XMX = "384m";

  private static final long MAX_STATE_BYTES = 512L * 1024 * 1024;
  private static final Duration REQUEST_TIMEOUT = Duration.ofMinutes(5);
  private static final double MIB = 1024.0 * 1024.0;
  private static final double TARGET_MULTIPLE = 3.0;

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
        + sizes(settings)
        + "; the padding is random base64, which gzip shrinks least), leasehold's HTTP backend"
        + " writes a first version, then a second one over it (the measured write: every guard,"
        + " the history copy of the first version and the chunked Secrets), and serves it back"
        + " (the measured read, checked byte for byte). Stock Terraform's `kubernetes` backend"
        + " does the same with `terraform state push` (the second push is measured) and"
        + " `terraform state pull` on the same embedded API; the ratios are push/write and"
        + " pull/read, so above 1 means leasehold is faster. The operator and its backend run"
        + " in a child JVM of their own with `-Xmx"
        + CHILD_XMX
        + "` (the heap of the Helm chart's default 512Mi memory limit), so the memory figures are"
        + " the operator's alone: its peak live heap (the largest"
        + " heap left after any garbage collection, from the child's GC log) during that size's"
        + " two writes and read, above its idle heap just before, in MiB and as a multiple of"
        + " the raw state (target at most "
        + TARGET_MULTIPLE
        + "x for the largest size). Limits: the API server is the in-memory one of `run"
        + " --embedded` in the benchmark's own JVM, on loopback, so the latencies leave out a"
        + " real API server's storage and network; the operator's informer cache of the state"
        + " Secrets (their base64 data) counts in its heap, as it would in a cluster; the heap"
        + " left after a collection is an upper bound of what is live (G1's young and mixed"
        + " collections leave some garbage, and it counts an object of half a region or more,"
        + " such as a chunk's 1.4 MB base64 text, by whole 1 MiB regions), while a run with few"
        + " collections can under-state the peak between them; both sides share this machine's"
        + " cores. Stock figures are left out, saying why, when `terraform` is"
        + " not on the PATH.";
  }

  @Override
  public List<Figure> run(BenchSettings settings) throws Exception {
    List<Integer> sizes = settings.stateSizes();
    if (sizes == null || sizes.isEmpty()) {
      throw new IllegalArgumentException("no state sizes to measure");
    }
    int largest = sizes.stream().mapToInt(Integer::intValue).max().getAsInt();
    boolean stock = Terraform.available();
    if (!stock) {
      System.out.println(
          "size: terraform is not on the PATH, so there are no stock kubernetes backend figures");
    }
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
        figures.add(
            size == largest
                ? Figure.target(multipleName, multiple, "x", TARGET_MULTIPLE)
                : Figure.of(multipleName, multiple, "x"));
        removeState(client, name);

        if (stock) {
          double[] pushPull = stock(kubeconfig, name + "-k", size);
          figures.add(Figure.of("stock kubernetes backend push " + label, pushPull[0], "ms"));
          figures.add(Figure.of("stock kubernetes backend pull " + label, pushPull[1], "ms"));
          figures.add(Figure.of("push/write " + label, pushPull[0] / writeMs, "x"));
          figures.add(Figure.of("pull/read " + label, pushPull[1] / readMs, "x"));
          removeState(client, name + "-k");
        }
      }
    }
    return figures;
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

  private static String sizes(BenchSettings settings) {
    return String.join(
        ", ", settings.stateSizes().stream().map(StateSizeBenchmark::label).toList());
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
