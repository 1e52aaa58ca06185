package io.leasehold.bench;

import static io.leasehold.support.OperatorHarness.NAMESPACE;

import io.leasehold.api.TerraformState;
import io.leasehold.backend.Access;
import io.leasehold.backend.JobPods;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.Terraform;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * K applies started at once on one state through the HTTP backend, side by side in one run: (A)
 * Terraform's own retry with {@code -lock-timeout} (1, 2, 4, 8, 16 s backoff) and (B) the
 * server-side FIFO wait with {@code ?wait=} on the lock address. Prints wall time, the gap from one
 * run's UNLOCK to the next run's granted LOCK, and the time the runs held the lock.
 *
 * <p>Run: {@code mvn -B -pl operator test -Dtest=LockWaitBenchmark
 * -Dsurefire.failIfNoSpecifiedTests=false [-Dapplies=8]}
 */
class LockWaitBenchmark {

  private record Event(long nanos, String who, String what) {}

  @Test
  void waitVersusBackoff() throws Exception {
    Assumptions.assumeTrue(Terraform.available(), "terraform is not on the PATH");
    int k = Integer.getInteger("applies", 8);
    List<Event> events = Collections.synchronizedList(new ArrayList<>());
    try (OperatorHarness h = OperatorHarness.start()) {
      String url =
          h.startBackend(
              Access.NONE,
              JobPods.NONE,
              64L * 1024 * 1024,
              (target, who, what) ->
                  events.add(
                      new Event(
                          System.nanoTime(),
                          target.names().name()
                              + "/"
                              + who.user().replace(" (unauthenticated)", ""),
                          what)));
      Result a = side(h, url, "backoff", k, null, events);
      Result b = side(h, url, "wait", k, "10m", events);
      System.out.println();
      System.out.printf(
          "%d concurrent applies (0.15 s of work each) on one state, HTTP backend:%n", k);
      print("A: -lock-timeout=10m (terraform's backoff)", a);
      print("B: lock_address ?wait=10m (server FIFO)   ", b);
      System.out.printf(
          "  wall time A/B: %.1fx; B's wall time / B's summed lock-hold time: %.2fx%n",
          a.wallSeconds / b.wallSeconds, b.wallSeconds / b.heldSeconds);
      System.out.println();
    }
  }

  private record Result(double wallSeconds, List<Double> gapsMs, double heldSeconds) {}

  private static void print(String label, Result r) {
    List<Double> gaps = new ArrayList<>(r.gapsMs());
    Collections.sort(gaps);
    double p50 = gaps.isEmpty() ? 0 : gaps.get(gaps.size() / 2);
    double max = gaps.isEmpty() ? 0 : gaps.get(gaps.size() - 1);
    System.out.printf(
        "  %s wall %6.2f s | unlock->next lock gap p50 %7.1f ms, max %7.1f ms | lock held %5.2f s%n",
        label, r.wallSeconds(), p50, max, r.heldSeconds());
  }

  private static Result side(
      OperatorHarness h, String base, String name, int k, String wait, List<Event> events)
      throws Exception {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    h.client().resource(s).create();
    String url = base + NAMESPACE + "/" + name;
    List<Terraform> runs = new ArrayList<>();
    for (int i = 0; i < k; i++) {
      Path dir = Files.createTempDirectory("bench-" + name);
      Terraform tf = new Terraform(dir);
      tf.writeConfig(
          Terraform.httpBackend(url, wait)
              + """
              resource "terraform_data" "work" {
                input = "%s-%d"
                provisioner "local-exec" {
                  command = "sleep 0.15"
                }
              }
              """
                  .formatted(name, i));
      tf.run("init").assertOk();
      runs.add(tf);
    }
    int from = events.size();
    long start = System.nanoTime();
    List<Process> processes = new ArrayList<>();
    for (Terraform tf : runs) {
      processes.add(
          wait == null
              ? tf.start("apply", "-auto-approve", "-lock-timeout=10m")
              : tf.start("apply", "-auto-approve"));
    }
    for (Process p : processes) {
      p.getInputStream().readAllBytes();
      p.waitFor(15, TimeUnit.MINUTES);
      if (p.exitValue() != 0) {
        throw new IllegalStateException("an apply failed");
      }
    }
    double wall = (System.nanoTime() - start) / 1e9;
    List<Event> mine = new ArrayList<>();
    synchronized (events) {
      for (Event e : events.subList(from, events.size())) {
        if (e.who().startsWith(name + "/")) {
          mine.add(e);
        }
      }
    }
    List<Double> gaps = new ArrayList<>();
    double held = 0;
    Long lastUnlock = null;
    Long granted = null;
    for (Event e : mine) {
      if (e.what().startsWith("LOCK granted")) {
        if (lastUnlock != null) {
          gaps.add((e.nanos() - lastUnlock) / 1e6);
        }
        granted = e.nanos();
      } else if (e.what().startsWith("UNLOCK")) {
        lastUnlock = e.nanos();
        if (granted != null) {
          held += (e.nanos() - granted) / 1e9;
          granted = null;
        }
      }
    }
    return new Result(wall, gaps, held);
  }
}
