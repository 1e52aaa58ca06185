package io.leasehold.bench;

import static io.leasehold.support.OperatorHarness.NAMESPACE;

import io.leasehold.api.TerraformState;
import io.leasehold.backend.Access;
import io.leasehold.backend.JobPods;
import io.leasehold.kube.OnChange;
import io.leasehold.support.Binaries;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.Terraform;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * K applies started at once on one state, side by side in one run: (A) stock Terraform's {@code
 * kubernetes} backend with {@code -lock-timeout}, (A') leasehold's HTTP backend with Terraform's
 * own {@code -lock-timeout} retry, and (B) leasehold's HTTP backend with the server-side FIFO wait
 * {@code ?wait=}. Measures wall time, the gap from one run's unlock to the next run's lock, and the
 * time the runs held the lock.
 */
final class LockWaitBenchmark implements Benchmark {

  private record Event(long nanos, String who, String what) {}

  @Override
  public String id() {
    return "wait";
  }

  @Override
  public String title() {
    return "Queued applies on one state, real terraform";
  }

  @Override
  public String description(BenchSettings settings) {
    return """
        %d `terraform apply` runs are started at the same moment on one state; each applies one
        `terraform_data` with a 0.15 s `local-exec`. Side A is stock Terraform's `kubernetes`
        backend on the same API with `-lock-timeout=10m`; its lock is a read-then-update of the
        Lease, so racing runs can fail with a Lease update conflict instead of waiting: the
        benchmark re-runs those, as a pipeline would, and counts them. Side A' is leasehold's HTTP
        backend with Terraform's own `-lock-timeout` retry (backoff of 1, 2, 4, 8, 16 s) and no
        `?wait=`, served as the command line serves it: a LOCK on a held lock waits in line up to
        `--held-lock-wait` (10 s) before its 423 (target: A' at most 1.0x A). Side B
        is leasehold's HTTP backend with `?wait=10m` on the lock address: the server queues the
        LOCK requests in FIFO order and answers the next one the moment the holder unlocks. The
        gap is from one run's unlock to the next run's lock (A from a Lease watch, A' and B from
        the backend's own audit hook). "Lock held" is the summed time runs held the lock; B's wall
        time over it is how close to back-to-back the queue runs (target 1.5x). What limits B:
        each run's own terraform start-up, plan and state writes, not the handoff. Side C runs
        two replicas, each serving the backend, the runs split between them (run i on replica
        i mod 2), with a short server-side wait and Terraform's retry: `?wait=20s` and
        `-lock-timeout=10m`, so Ctrl-C works within 20 s; each run keeps its place in the line
        (kept on the Lease) by its lock ID across its retries. C is compared with the same runs
        started one after another, each waiting for the previous to finish (target: the
        concurrent runs take at most 1.0x that time).
        """
        .formatted(settings.applies());
  }

  @Override
  public List<Figure> run(BenchSettings settings) throws Exception {
    Binaries.terraform();
    int k = settings.applies();
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
                          what)),
              // As the command line serves it: a LOCK without ?wait= waits a little.
              new io.leasehold.backend.HttpBackend.Config(
                      "127.0.0.1", 0, java.time.Duration.ofMinutes(10))
                  .withHeldLockWait(
                      io.leasehold.backend.HttpBackend.Config.DEFAULT_HELD_LOCK_WAIT));
      Path kubeconfig = Files.createTempDirectory("bench-kube").resolve("kubeconfig");
      h.api().writeKubeconfig(kubeconfig);
      Result stock = stockSide(h, kubeconfig, "stock", k);
      Result a = side(h, url, "backoff", k, null, events);
      Result b = side(h, url, "wait", k, "10m", events);
      Result[] c = twoReplicas(k);
      List<Figure> figures = new ArrayList<>();
      stock.addTo(figures, "A stock kubernetes backend, -lock-timeout");
      figures.add(
          Figure.of(
              "A: applies failed on a Lease update conflict and re-run", stock.conflicts(), ""));
      a.addTo(figures, "A' leasehold HTTP backend, -lock-timeout");
      b.addTo(figures, "B leasehold HTTP backend, ?wait=");
      figures.add(Figure.of("wall time A / B", stock.wallSeconds() / b.wallSeconds(), "x"));
      figures.add(Figure.of("wall time A' / B", a.wallSeconds() / b.wallSeconds(), "x"));
      figures.add(
          Figure.target(
              "wall time A' (leasehold, no ?wait=) / A (stock kubernetes backend)",
              a.wallSeconds() / stock.wallSeconds(),
              "x",
              1.0));
      figures.add(
          Figure.target(
              "B: wall time / summed lock-hold time", b.wallSeconds() / b.heldSeconds(), "x", 1.5));
      c[0].addTo(figures, "C 2 replicas, ?wait=20s and -lock-timeout");
      figures.add(
          Figure.of("C: the same runs one after another: wall time", c[1].wallSeconds(), "s"));
      figures.add(
          Figure.target(
              "C: wall time / the same runs one after another",
              c[0].wallSeconds() / c[1].wallSeconds(),
              "x",
              1.0));
      figures.add(Figure.of("wall time A / C", stock.wallSeconds() / c[0].wallSeconds(), "x"));
      return figures;
    }
  }

  private record Result(
      double wallSeconds, List<Double> gapsMs, double heldSeconds, int conflicts) {
    void addTo(List<Figure> figures, String side) {
      List<Double> sorted = gapsMs.stream().sorted().toList();
      boolean b = side.startsWith("B") || side.startsWith("C");
      figures.add(Figure.of(side + ": wall time", wallSeconds, "s"));
      if (!side.startsWith("A ")) {
        // Side A's lock times come from a Lease watch, which can merge quick changes: its gaps
        // are approximate and its hold time is not summed.
        figures.add(Figure.of(side + ": lock held (summed)", heldSeconds, "s"));
      }
      double p50 = sorted.isEmpty() ? 0 : sorted.get((sorted.size() - 1) / 2);
      double max = sorted.isEmpty() ? 0 : sorted.get(sorted.size() - 1);
      figures.add(
          b
              ? Figure.target(side + ": unlock -> next lock, p50", p50, "ms", 20)
              : Figure.of(side + ": unlock -> next lock, p50", p50, "ms"));
      figures.add(
          b
              ? Figure.target(side + ": unlock -> next lock, max", max, "ms", 100)
              : Figure.of(side + ": unlock -> next lock, max", max, "ms"));
    }
  }

  /** Stock terraform with its kubernetes backend; lock and unlock times from a Lease watch. */
  private static Result stockSide(OperatorHarness h, Path kubeconfig, String name, int k)
      throws Exception {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    h.client().resource(s).create();
    List<long[]> transitions = Collections.synchronizedList(new ArrayList<>());
    var watch =
        h.client()
            .leases()
            .inNamespace(NAMESPACE)
            .withField("metadata.name", "lock-tfstate-default-" + name)
            .inform(
                OnChange.of(
                    (io.fabric8.kubernetes.api.model.coordination.v1.Lease l) -> {
                      boolean held = l.getSpec() != null && l.getSpec().getHolderIdentity() != null;
                      transitions.add(new long[] {System.nanoTime(), held ? 1 : 0});
                    }));
    List<Terraform> runs = new ArrayList<>();
    for (int i = 0; i < k; i++) {
      Terraform tf = new Terraform(Files.createTempDirectory("bench-" + name));
      tf.writeKubernetesBackendConfig(
          kubeconfig,
          name,
          """
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
    transitions.clear();
    long start = System.nanoTime();
    List<Process> processes = new ArrayList<>();
    for (Terraform tf : runs) {
      processes.add(tf.start("apply", "-auto-approve", "-lock-timeout=10m"));
    }
    int conflicts = 0;
    for (int i = 0; i < processes.size(); i++) {
      Process p = processes.get(i);
      String out =
          new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
      p.waitFor(15, TimeUnit.MINUTES);
      while (p.exitValue() != 0) {
        // The kubernetes backend's lock is a read-then-update of the Lease: two lockers racing
        // get a conflict, which terraform reports as an error instead of retrying. A pipeline
        // would re-run the apply; so does the benchmark.
        if (!out.contains("the object has been modified") && !out.contains("already exists")) {
          throw new IllegalStateException("an apply failed:\n" + out);
        }
        conflicts++;
        p = runs.get(i).start("apply", "-auto-approve", "-lock-timeout=10m");
        out =
            new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        p.waitFor(15, TimeUnit.MINUTES);
      }
    }
    double wall = (System.nanoTime() - start) / 1e9;
    watch.close();
    List<Double> gaps = new ArrayList<>();
    double held = 0;
    Long lastUnlock = null;
    Long locked = null;
    synchronized (transitions) {
      for (long[] t : transitions) {
        if (t[1] == 1 && locked == null) {
          if (lastUnlock != null) {
            gaps.add((t[0] - lastUnlock) / 1e6);
          }
          locked = t[0];
        } else if (t[1] == 0 && locked != null) {
          held += (t[0] - locked) / 1e9;
          lastUnlock = t[0];
          locked = null;
        }
      }
    }
    return new Result(wall, gaps, held, conflicts);
  }

  /**
   * Side C: two replicas over one API, run i on replica i mod 2, {@code ?wait=20s} with Terraform's
   * {@code -lock-timeout}; the runs at once, then the same runs one after another.
   */
  private static Result[] twoReplicas(int k) throws Exception {
    List<Event> events = Collections.synchronizedList(new ArrayList<>());
    try (io.leasehold.embedded.EmbeddedKubernetes api =
            io.leasehold.embedded.EmbeddedKubernetes.start(0);
        io.fabric8.kubernetes.client.KubernetesClient user = api.newClient()) {
      List<io.fabric8.kubernetes.client.KubernetesClient> clients = new ArrayList<>();
      List<io.leasehold.cli.Replica> replicas = new ArrayList<>();
      try {
        for (int i = 0; i < 2; i++) {
          io.fabric8.kubernetes.client.KubernetesClient client = api.newClient();
          clients.add(client);
          replicas.add(
              io.leasehold.cli.Replica.start(
                  client,
                  new io.leasehold.operator.LeaseholdOperator.Options(
                      java.util.Set.of(), java.util.Optional.of(NAMESPACE), "bench-" + i),
                  new io.leasehold.cli.Replica.Backend(
                      Access.NONE,
                      JobPods.NONE,
                      new io.leasehold.backend.HttpBackend.Config(
                              "127.0.0.1", 0, java.time.Duration.ofMinutes(10))
                          .withHeldLockWait(
                              io.leasehold.backend.HttpBackend.Config.DEFAULT_HELD_LOCK_WAIT),
                      64L * 1024 * 1024,
                      (target, who, what) ->
                          events.add(
                              new Event(
                                  System.nanoTime(),
                                  target.names().name()
                                      + "/"
                                      + who.user().replace(" (unauthenticated)", ""),
                                  what)))));
        }
        Result concurrent = spread(user, replicas, "spread", k, true, events);
        Result sequential = spread(user, replicas, "sequential", k, false, events);
        return new Result[] {concurrent, sequential};
      } finally {
        replicas.forEach(io.leasehold.cli.Replica::close);
        clients.forEach(io.fabric8.kubernetes.client.KubernetesClient::close);
      }
    }
  }

  private static Result spread(
      io.fabric8.kubernetes.client.KubernetesClient user,
      List<io.leasehold.cli.Replica> replicas,
      String name,
      int k,
      boolean atOnce,
      List<Event> events)
      throws Exception {
    TerraformState s = new TerraformState();
    s.getMetadata().setName(name);
    s.getMetadata().setNamespace(NAMESPACE);
    user.resource(s).create();
    List<Terraform> runs = new ArrayList<>();
    for (int i = 0; i < k; i++) {
      Terraform tf = new Terraform(Files.createTempDirectory("bench-" + name));
      String url = replicas.get(i % replicas.size()).url() + NAMESPACE + "/" + name;
      tf.writeConfig(
          Terraform.httpBackend(url, "20s")
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
    if (atOnce) {
      List<Process> processes = new ArrayList<>();
      for (Terraform tf : runs) {
        processes.add(tf.start("apply", "-auto-approve", "-lock-timeout=10m"));
      }
      for (Process p : processes) {
        p.getInputStream().readAllBytes();
        p.waitFor(15, TimeUnit.MINUTES);
        if (p.exitValue() != 0) {
          throw new IllegalStateException("an apply failed");
        }
      }
    } else {
      for (Terraform tf : runs) {
        tf.run("apply", "-auto-approve", "-lock-timeout=10m").assertOk();
      }
    }
    double wall = (System.nanoTime() - start) / 1e9;
    return result(events, from, name, wall);
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
    return result(events, from, name, wall);
  }

  /** Gaps and lock-hold time of the runs on state {@code name}, from the audit events. */
  private static Result result(List<Event> events, int from, String name, double wall) {
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
    mine.sort(java.util.Comparator.comparingLong(Event::nanos));
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
    return new Result(wall, gaps, held, 0);
  }
}
