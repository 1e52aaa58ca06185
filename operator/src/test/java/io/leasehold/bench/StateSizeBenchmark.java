package io.leasehold.bench;

import static io.leasehold.support.OperatorHarness.NAMESPACE;

import io.leasehold.api.TerraformState;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.Terraform;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/**
 * Write and read latency by state size through leasehold's HTTP backend, next to stock terraform's
 * kubernetes backend ({@code state push} / {@code state pull}) on the same API, in one run; and the
 * heap the process (operator, backend and in-memory API together) needed above its baseline for the
 * largest size. Padding is random base64, the worst case for gzip.
 *
 * <p>Run: {@code mvn -B -pl operator test -Dtest=StateSizeBenchmark
 * -Dsurefire.failIfNoSpecifiedTests=false [-Dsizes=10240,1048576,16777216,67108864]}
 */
class StateSizeBenchmark {

  private static final int REPEATS = 3;

  @Test
  void stateSizes() throws Exception {
    String sizes = System.getProperty("sizes", "10240,1048576,16777216,67108864");
    boolean stock = Terraform.available();
    try (OperatorHarness h = OperatorHarness.start()) {
      String base = h.startBackend(512L * 1024 * 1024);
      Path kubeconfig = Files.createTempDirectory("size-kube").resolve("kubeconfig");
      h.api().writeKubeconfig(kubeconfig);
      HttpClient http = HttpClient.newHttpClient();
      System.out.println();
      System.out.println(
          "state size: median of " + REPEATS + " (write, read); padding is random base64");
      System.out.printf(
          "  %10s | %-28s | %-28s | %s%n",
          "raw bytes",
          "leasehold HTTP write / read",
          "kubernetes backend push / pull",
          "heap above baseline (peak)");
      for (String s : sizes.split(",")) {
        int size = Integer.parseInt(s.trim());
        String name = "s" + size + "b";
        create(h, name);
        create(h, name + "-k");
        String url = base + NAMESPACE + "/" + name;
        List<Double> writes = new ArrayList<>();
        List<Double> reads = new ArrayList<>();
        System.gc();
        Thread.sleep(500);
        long baseline = used();
        AtomicLong peak = new AtomicLong();
        AtomicBoolean sampling = new AtomicBoolean(true);
        Thread sampler =
            new Thread(
                () -> {
                  while (sampling.get()) {
                    peak.accumulateAndGet(used(), Math::max);
                    try {
                      Thread.sleep(5);
                    } catch (InterruptedException e) {
                      return;
                    }
                  }
                });
        sampler.start();
        for (int r = 1; r <= REPEATS; r++) {
          String body = state(r, size, r);
          long t0 = System.nanoTime();
          HttpResponse<String> post =
              http.send(
                  HttpRequest.newBuilder(URI.create(url))
                      .POST(HttpRequest.BodyPublishers.ofString(body))
                      .timeout(Duration.ofMinutes(5))
                      .build(),
                  HttpResponse.BodyHandlers.ofString());
          writes.add((System.nanoTime() - t0) / 1e6);
          if (post.statusCode() != 200) {
            throw new IllegalStateException("write failed: " + post.body());
          }
          t0 = System.nanoTime();
          HttpResponse<byte[]> get =
              http.send(
                  HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofMinutes(5)).build(),
                  HttpResponse.BodyHandlers.ofByteArray());
          reads.add((System.nanoTime() - t0) / 1e6);
          if (get.body().length != body.getBytes(StandardCharsets.UTF_8).length) {
            throw new IllegalStateException("read back " + get.body().length + " bytes");
          }
        }
        sampling.set(false);
        sampler.join();
        String stockFigures = "terraform not on the PATH";
        if (stock) {
          stockFigures = stock(kubeconfig, name + "-k", size);
        }
        System.out.printf(
            "  %10d | %10.0f ms / %8.0f ms   | %-30s | %6.0f MiB (%.1fx the state)%n",
            size,
            median(writes),
            median(reads),
            stockFigures,
            (peak.get() - baseline) / 1048576.0,
            (peak.get() - baseline) / (double) size);
      }
      System.out.println();
    }
  }

  private static String stock(Path kubeconfig, String name, int size) throws Exception {
    Path dir = Files.createTempDirectory("size-stock");
    Terraform tf = new Terraform(dir);
    tf.writeKubernetesBackendConfig(kubeconfig, name, "");
    tf.run("init").assertOk();
    List<Double> pushes = new ArrayList<>();
    List<Double> pulls = new ArrayList<>();
    for (int r = 1; r <= REPEATS; r++) {
      Path file = dir.resolve("push-" + r + ".tfstate");
      Files.writeString(file, state(r * 10L, size, r));
      long t0 = System.nanoTime();
      tf.run("state", "push", file.toString()).assertOk();
      pushes.add((System.nanoTime() - t0) / 1e6);
      t0 = System.nanoTime();
      Terraform.Result pulled = tf.run("state", "pull").assertOk();
      pulls.add((System.nanoTime() - t0) / 1e6);
      if (pulled.output().length() < size / 2) {
        throw new IllegalStateException("pulled only " + pulled.output().length() + " bytes");
      }
    }
    return String.format("%8.0f ms / %8.0f ms", median(pushes), median(pulls));
  }

  private static void create(OperatorHarness h, String name) {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    s.getSpec().getHistory().setKeep(1);
    h.client().resource(s).create();
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

  private static long used() {
    Runtime rt = Runtime.getRuntime();
    return rt.totalMemory() - rt.freeMemory();
  }

  private static double median(List<Double> values) {
    List<Double> sorted = new ArrayList<>(values);
    Collections.sort(sorted);
    return sorted.get(sorted.size() / 2);
  }
}
