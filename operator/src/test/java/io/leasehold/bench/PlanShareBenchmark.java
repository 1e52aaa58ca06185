package io.leasehold.bench;

import static io.leasehold.support.OperatorHarness.NAMESPACE;

import io.leasehold.api.QueueSpec;
import io.leasehold.api.TerraformState;
import io.leasehold.support.Binaries;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.Terraform;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Plans share the lock: 8 {@code terraform plan} runs and 1 {@code terraform apply} started at the
 * same moment on one state, side by side in one run with plans sharing the lock (the default) and
 * with plans holding it alone ({@code maxParallelPlans: 1}), against one plan and one apply run
 * back to back.
 */
final class PlanShareBenchmark implements Benchmark {

  private static final int PLANS = 8;

  @Override
  public String id() {
    return "plans";
  }

  @Override
  public String title() {
    return "Plans beside each other, real terraform";
  }

  @Override
  public String description(BenchSettings settings) {
    return """
        %d `terraform plan` runs and one `terraform apply` are started at the same moment on one
        state through leasehold's HTTP backend (`?wait=10m`); each run's configuration has one
        `terraform_data` whose input the apply changes. Side S: plans share the lock
        (`spec.queue.maxParallelPlans: %d`); side X: plans hold it alone (`maxParallelPlans: 1`),
        as every lock did before. Both are compared with one plan and then one apply run back to
        back (target for S: at most 1.3x). All %d runs are separate terraform processes on the
        same machine, so on few cores their own start-up competes for CPU whatever the lock does:
        X / S shows what sharing the lock saves.
        """
        .formatted(PLANS, PLANS, PLANS + 1);
  }

  @Override
  public List<Figure> run(BenchSettings settings) throws Exception {
    Binaries.terraform();
    try (OperatorHarness h = OperatorHarness.start()) {
      String url = h.startBackend(64L * 1024 * 1024);
      double single = side(h, url, "one-each", 1, 1, QueueSpec.DEFAULT_MAX_PARALLEL_PLANS, false);
      double shared = side(h, url, "shared", PLANS, 1, PLANS, true);
      double alone = side(h, url, "alone", PLANS, 1, 1, true);
      List<Figure> figures = new ArrayList<>();
      figures.add(Figure.of("one plan, then one apply: wall time", single, "s"));
      figures.add(
          Figure.of("S " + PLANS + " plans + 1 apply at once, shared: wall time", shared, "s"));
      figures.add(
          Figure.of("X " + PLANS + " plans + 1 apply at once, alone: wall time", alone, "s"));
      figures.add(Figure.target("S / one plan then one apply", shared / single, "x", 1.3));
      figures.add(Figure.of("X / one plan then one apply", alone / single, "x"));
      figures.add(Figure.of("X / S", alone / shared, "x"));
      return figures;
    }
  }

  /**
   * Runs {@code plans} plans and {@code applies} applies on a fresh state: all at once, or one
   * after another (plans first); returns the wall time in seconds.
   */
  private static double side(
      OperatorHarness h,
      String base,
      String name,
      int plans,
      int applies,
      int maxParallelPlans,
      boolean atOnce)
      throws Exception {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    QueueSpec queue = new QueueSpec();
    queue.setMaxParallelPlans(maxParallelPlans);
    s.getSpec().setQueue(queue);
    h.client().resource(s).create();
    String url = base + NAMESPACE + "/" + name;
    List<String[]> commands = new ArrayList<>();
    List<Terraform> runs = new ArrayList<>();
    for (int i = 0; i < plans + applies; i++) {
      Terraform tf = new Terraform(Files.createTempDirectory("bench-" + name));
      tf.writeConfig(
          Terraform.httpBackend(url, "10m")
              + """
              resource "terraform_data" "work" {
                input = "%s"
              }
              """
                  .formatted(name));
      tf.run("init").assertOk();
      runs.add(tf);
      commands.add(
          i < plans
              ? new String[] {"plan", "-lock-timeout=10m"}
              : new String[] {"apply", "-auto-approve", "-lock-timeout=10m"});
    }
    long start = System.nanoTime();
    if (atOnce) {
      List<Process> processes = new ArrayList<>();
      for (int i = 0; i < runs.size(); i++) {
        processes.add(runs.get(i).start(commands.get(i)));
      }
      for (Process p : processes) {
        finish(p);
      }
    } else {
      for (int i = 0; i < runs.size(); i++) {
        finish(runs.get(i).start(commands.get(i)));
      }
    }
    return (System.nanoTime() - start) / 1e9;
  }

  private static void finish(Process p) throws Exception {
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(15, TimeUnit.MINUTES) || p.exitValue() != 0) {
      throw new IllegalStateException("a terraform run failed:\n" + out);
    }
  }
}
