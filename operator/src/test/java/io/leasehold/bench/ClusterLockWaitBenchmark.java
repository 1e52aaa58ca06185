package io.leasehold.bench;

import io.leasehold.cluster.StockTerraform;
import io.leasehold.support.Binaries;
import io.leasehold.support.Terraform;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The applies of {@link LockWaitBenchmark} on a real control plane: K {@code terraform apply} runs
 * started at once on one state through leasehold's HTTPS backend with {@code ?wait=}, against the
 * same K runs one after another, against stock Terraform's {@code kubernetes} backend on the same
 * API server with {@code -lock-timeout}, and against leasehold's backend with {@code -lock-timeout}
 * alone. Lock times come from a watch of the lock Lease, the same instrument for every side.
 */
final class ClusterLockWaitBenchmark implements Benchmark {

  /**
   * Replaced by every run ({@code triggers_replace} differs), so each runs its 0.15 s create-time
   * {@code local-exec} while it holds the lock; a changed {@code input} alone would be updated in
   * place, running no provisioner.
   */
  private static final String BODY =
      """
      resource "terraform_data" "work" {
        triggers_replace = "%s-%d"
        provisioner "local-exec" {
          command = "sleep 0.15"
        }
      }
      """;

  @Override
  public String id() {
    return "cluster-wait";
  }

  @Override
  public boolean needsCluster() {
    return true;
  }

  @Override
  public String title() {
    return "Real control plane: queued applies on one state, real terraform";
  }

  @Override
  public String description(BenchSettings settings) {
    return """
        %s, serving the backend over HTTPS on 127.0.0.1: %d `terraform apply` runs are started at the same
        moment on one state; each replaces one `terraform_data` (its `triggers_replace` differs
        from run to run) whose creation runs a 0.15 s `local-exec`, so every run holds the lock
        at least that long, and each authenticates with a token of the chart's runner ServiceAccount (audience `leasehold`),
        checked by the operator with a TokenReview and a SubjectAccessReview. Side A is stock
        Terraform's `kubernetes` backend on the same API server (a ServiceAccount of its own
        allowed Secrets and Leases) with `-lock-timeout=10m`; its lock is a read-then-update of
        the Lease, so racing runs can fail with a Lease update conflict instead of waiting: those
        are re-run at once, as a pipeline would later, and counted (a re-run at once tries the
        lock sooner than the retry it replaces would). Side A' is leasehold's backend with
        Terraform's own `-lock-timeout` retry (backoff of 1, 2, 4, 8, 16 s), for the record. Side
        B is leasehold's backend with `?wait=10m`: the server queues the LOCK requests in FIFO
        order and answers the next one the moment the holder unlocks. B is compared with the
        same runs started one after another, each once the previous one has finished (target:
        the concurrent runs take at most 1.0x that time), and with the time the runs held the
        lock (target 1.5x). Every side's lock times come from a watch of the lock Lease (served
        from etcd, every version): "lock held" is the summed time a lock ID was the Lease's
        holder, the gap is from the Lease version that freed it to the one naming the next
        holder. What limits B: each run's own terraform start-up, TLS handshakes, plan and state
        writes; the API server, etcd, the controllers, the operator and terraform share this
        machine's cores.
        """
        .formatted(ClusterSetup.describe(settings), settings.applies());
  }

  @Override
  public List<Figure> run(BenchSettings settings) throws Exception {
    Binaries.terraform();
    int k = settings.applies();
    try (ClusterSetup env = ClusterSetup.start(settings, "bench-wait", 1)) {
      Path kubeconfig = env.stockKubeconfig();
      env.createStates(List.of("stock", "backoff", "wait", "sequential"));
      Result stock = stockSide(env, kubeconfig, "stock", k);
      Result backoff = httpSide(env, "backoff", k, null, true);
      Result wait = httpSide(env, "wait", k, "10m", true);
      Result sequential = httpSide(env, "sequential", k, "10m", false);

      List<Figure> figures = new ArrayList<>();
      stock.addTo(figures, "A stock kubernetes backend, -lock-timeout", false);
      figures.add(
          Figure.of(
              "A: applies failed on a Lease update conflict and re-run", stock.conflicts(), ""));
      backoff.addTo(figures, "A' leasehold HTTPS backend, -lock-timeout", false);
      wait.addTo(figures, "B leasehold HTTPS backend, ?wait=", true);
      figures.add(
          Figure.of(
              "B: the same runs one after another: wall time", sequential.wallSeconds(), "s"));
      figures.add(
          Figure.target(
              "B: wall time / the same runs one after another",
              wait.wallSeconds() / sequential.wallSeconds(),
              "x",
              1.0));
      figures.add(
          Figure.target(
              "B: wall time / summed lock-hold time",
              wait.wallSeconds() / wait.heldSeconds(),
              "x",
              1.5));
      figures.add(Figure.of("wall time A / B", stock.wallSeconds() / wait.wallSeconds(), "x"));
      figures.add(Figure.of("wall time A' / B", backoff.wallSeconds() / wait.wallSeconds(), "x"));
      figures.add(
          Figure.target(
              "wall time A' (leasehold, no ?wait=) / A (stock kubernetes backend)",
              backoff.wallSeconds() / stock.wallSeconds(),
              "x",
              1.0));
      return figures;
    }
  }

  private record Result(
      double wallSeconds, HolderTimeline.Summary holders, int conflicts, int applies) {

    double heldSeconds() {
      return holders.heldSeconds();
    }

    void addTo(List<Figure> figures, String side, boolean targets) {
      List<Double> gaps = holders.gapsMs();
      figures.add(Figure.of(side + ": wall time", wallSeconds, "s"));
      figures.add(Figure.of(side + ": lock held (summed)", holders.heldSeconds(), "s"));
      double p50 = gaps.isEmpty() ? 0 : Bench.percentile(gaps, 50);
      double max = gaps.isEmpty() ? 0 : gaps.get(gaps.size() - 1);
      figures.add(
          targets
              ? Figure.target(side + ": unlock -> next lock, p50", p50, "ms", 20)
              : Figure.of(side + ": unlock -> next lock, p50", p50, "ms"));
      figures.add(
          targets
              ? Figure.target(side + ": unlock -> next lock, max", max, "ms", 100)
              : Figure.of(side + ": unlock -> next lock, max", max, "ms"));
      if (holders.holders() < applies) {
        System.out.printf(
            "note: %s: the Lease watch saw %d holders for %d applies%n",
            side, holders.holders(), applies);
      }
    }
  }

  /** Stock terraform with its kubernetes backend, a ServiceAccount's kubeconfig. */
  private static Result stockSide(ClusterSetup env, Path kubeconfig, String name, int k)
      throws Exception {
    List<Terraform> runs = new ArrayList<>();
    for (int i = 0; i < k; i++) {
      Terraform tf = new Terraform(Files.createTempDirectory("bench-" + name));
      tf.writeConfig(
          StockTerraform.backend(kubeconfig, env.namespace(), name) + BODY.formatted(name, i));
      tf.run("init", "-input=false").assertOk();
      runs.add(tf);
    }
    try (HolderTimeline timeline = timeline(env, name)) {
      long start = System.nanoTime();
      List<Process> processes = new ArrayList<>();
      for (Terraform tf : runs) {
        processes.add(tf.start("apply", "-auto-approve", "-lock-timeout=10m"));
      }
      int conflicts = 0;
      for (int i = 0; i < processes.size(); i++) {
        Process p = processes.get(i);
        String out = finish(p);
        while (p.exitValue() != 0) {
          // The kubernetes backend's lock is a read-then-update of the Lease: two lockers racing
          // get a conflict, which terraform reports as an error instead of retrying. A pipeline
          // would re-run the apply; so does the benchmark.
          if (!out.contains("the object has been modified") && !out.contains("already exists")) {
            throw new IllegalStateException("an apply failed:\n" + out);
          }
          conflicts++;
          p = runs.get(i).start("apply", "-auto-approve", "-lock-timeout=10m");
          out = finish(p);
        }
      }
      double wall = (System.nanoTime() - start) / 1e9;
      Thread.sleep(500); // the last release reaches the watch
      return new Result(wall, timeline.since(start), conflicts, k);
    }
  }

  /**
   * Leasehold's backend: the runs at once ({@code ?wait=} when {@code wait} is set, else
   * Terraform's {@code -lock-timeout}), or one after another.
   */
  private static Result httpSide(ClusterSetup env, String name, int k, String wait, boolean atOnce)
      throws Exception {
    List<Terraform> runs = new ArrayList<>();
    for (int i = 0; i < k; i++) {
      runs.add(env.httpTerraform(name, wait, BODY.formatted(name, i)));
    }
    try (HolderTimeline timeline = timeline(env, name)) {
      long start = System.nanoTime();
      if (atOnce) {
        List<Process> processes = new ArrayList<>();
        for (Terraform tf : runs) {
          processes.add(
              wait == null
                  ? tf.start("apply", "-auto-approve", "-lock-timeout=10m")
                  : tf.start("apply", "-auto-approve"));
        }
        for (Process p : processes) {
          String out = finish(p);
          if (p.exitValue() != 0) {
            throw new IllegalStateException("an apply failed:\n" + out);
          }
        }
      } else {
        for (Terraform tf : runs) {
          tf.run("apply", "-auto-approve").assertOk();
        }
      }
      double wall = (System.nanoTime() - start) / 1e9;
      Thread.sleep(500);
      return new Result(wall, timeline.since(start), 0, k);
    }
  }

  private static HolderTimeline timeline(ClusterSetup env, String state) throws Exception {
    HolderTimeline timeline =
        new HolderTimeline(env.admin(), env.namespace(), "lock-tfstate-default-" + state);
    Thread.sleep(500); // the watch is open before the runs start
    return timeline;
  }

  private static String finish(Process p) throws Exception {
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(15, TimeUnit.MINUTES)) {
      p.destroyForcibly();
      throw new IllegalStateException("an apply did not finish in 15 minutes:\n" + out);
    }
    return out;
  }
}
