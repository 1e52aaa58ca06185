package io.leasehold.bench;

import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import io.leasehold.api.TerraformState;
import io.leasehold.cluster.ClusterFixtures;
import io.leasehold.kube.OnChange;
import io.leasehold.queue.RunnerJobs;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

/**
 * The runner Job queue on a real control plane: Jobs run by the real Job controller, their pods
 * placed by the real scheduler on a kwok node that completes them; the operator (the production
 * jar, the chart's RBAC) hands the lock on when a Job ends. Times each handoff from the moment the
 * running Job's pod ends to the moment the next Job is unsuspended, split at the moment the Job
 * controller marks the Job Complete, and counts every component's requests to the API server per
 * handoff in the audit log, the operator's by verb and resource.
 */
final class ClusterJobHandoffBenchmark implements Benchmark {

  private static final int WARMUP = 3;
  private static final String STATE = "bench";

  @Override
  public String id() {
    return "cluster-handoff";
  }

  @Override
  public boolean needsCluster() {
    return true;
  }

  @Override
  public String title() {
    return "Real control plane: runner Job handoff through the Job controller";
  }

  @Override
  public String description(BenchSettings settings) {
    return """
        %s: %d + %d warm-up
        runner Jobs are created on one state before the state exists (the chart's mutating
        admission policy suspends them), so the line is full when it appears. Once the operator
        unsuspends a Job, the real Job controller creates its pod, the real scheduler places it
        on the kwok node, and kwok runs it for %d ms and ends it (exit 0); the Job controller
        then marks the Job Complete, and the operator releases the lock and admits the next.
        Each handoff is timed from the moment a watch of the pods sees the running Job's pod
        Succeeded to the moment a watch of the Jobs sees the next Job unsuspended, and split at
        the moment the Job is seen Complete: "pod ended -> Job Complete" is the Job
        controller's share, "Job Complete -> next unsuspended" the operator's. Requests are
        counted in the API server's audit log over each handoff's cycle, from one pod's end to
        the next one's (so a cycle holds one handoff and one run, the admitted pod's start
        included): the operator's (its ServiceAccount), by verb and resource, as the mean per
        handoff, and every component's. The operator's share is also timed as the API server
        received the writes: from the Job controller's status write marking the Job Complete to
        the operator's patch unsuspending the next. What limits the latency: the Job
        controller's batching of pod updates (it syncs a Job one second after one of its pods
        changes), not the operator; the API server, etcd, the controllers, kwok and the operator
        share this machine's cores.
        """
        .formatted(
            ClusterSetup.describe(settings),
            settings.clusterHandoffs(),
            WARMUP,
            settings.clusterRunMillis());
  }

  @Override
  public List<Figure> run(BenchSettings settings) throws Exception {
    int total = settings.clusterHandoffs() + WARMUP + 1;
    try (ClusterSetup env = ClusterSetup.start(settings, "bench-jobs", 1)) {
      KubernetesClient admin = env.admin();
      String ns = env.namespace();
      List<String> names = new ArrayList<>();
      for (int i = 0; i < total; i++) {
        String name = String.format("run-%04d", i);
        names.add(name);
        Job job = ClusterFixtures.runnerJob(ns, name, STATE, false);
        // kwok reads the delay as a Go duration ("1000ms"); a bare number falls back to 500 ms.
        job.getSpec()
            .getTemplate()
            .getMetadata()
            .getAnnotations()
            .put("leasehold.io/test-run-ms", settings.clusterRunMillis() + "ms");
        admin.resource(job).create();
      }
      Map<String, Mark> admitted = new ConcurrentHashMap<>();
      Map<String, Mark> complete = new ConcurrentHashMap<>();
      Map<String, Mark> podEnded = new ConcurrentHashMap<>();
      SharedIndexInformer<Job> jobs =
          admin
              .batch()
              .v1()
              .jobs()
              .inNamespace(ns)
              .withLabel(RunnerJobs.STATE_LABEL, STATE)
              .inform(
                  OnChange.of(
                      (Job job) -> {
                        Mark now = Mark.now();
                        String name = job.getMetadata().getName();
                        if (!RunnerJobs.suspended(job)) {
                          admitted.putIfAbsent(name, now);
                        }
                        if (RunnerJobs.finished(job)) {
                          complete.putIfAbsent(name, now);
                        }
                      }));
      SharedIndexInformer<Pod> pods =
          admin
              .pods()
              .inNamespace(ns)
              .withLabel("job-name")
              .inform(
                  OnChange.of(
                      (Pod pod) -> {
                        String phase = pod.getStatus() == null ? null : pod.getStatus().getPhase();
                        if ("Succeeded".equals(phase) || "Failed".equals(phase)) {
                          podEnded.putIfAbsent(
                              pod.getMetadata().getLabels().get("job-name"), Mark.now());
                        }
                      }));
      try {
        Thread.sleep(1000);
        env.audit().read();
        long start = System.nanoTime();
        TerraformState state = ClusterFixtures.state(ns, STATE);
        admin.resource(state).create();
        long deadline =
            start
                + TimeUnit.MILLISECONDS.toNanos(
                    Math.max(600_000, total * (settings.clusterRunMillis() + 20_000)));
        while (complete.size() < total) {
          if (System.nanoTime() > deadline) {
            throw new IllegalStateException(
                "only " + complete.size() + " of " + total + " Jobs completed in time");
          }
          Thread.sleep(100);
        }
        double elapsed = (System.nanoTime() - start) / 1e9;
        Thread.sleep(2000); // trailing status writes and Events land in the log
        List<AuditLog.Request> requests = env.audit().read();
        return figures(env, names, admitted, complete, podEnded, requests, total, elapsed);
      } finally {
        jobs.close();
        pods.close();
      }
    }
  }

  /** A moment as the benchmark saw it: monotonic for latencies, wall-clock for the audit log. */
  private record Mark(long nanos, Instant at) {
    static Mark now() {
      return new Mark(System.nanoTime(), Instant.now());
    }
  }

  private static List<Figure> figures(
      ClusterSetup env,
      List<String> names,
      Map<String, Mark> admitted,
      Map<String, Mark> complete,
      Map<String, Mark> podEnded,
      List<AuditLog.Request> requests,
      int total,
      double elapsed) {
    List<Double> handoff = new ArrayList<>();
    List<Double> jobController = new ArrayList<>();
    List<Double> operator = new ArrayList<>();
    List<Double> operatorAtServer = new ArrayList<>();
    List<Double> operatorRequests = new ArrayList<>();
    List<Double> handoffCaused = new ArrayList<>();
    List<Double> allRequests = new ArrayList<>();
    Map<String, Integer> byKind = new TreeMap<>();
    Map<String, Integer> byComponent = new TreeMap<>();
    int windows = 0;
    for (int i = WARMUP; i + 1 < total; i++) {
      Mark ended = podEnded.get(names.get(i));
      Mark done = complete.get(names.get(i));
      Mark next = admitted.get(names.get(i + 1));
      if (ended == null || done == null || next == null) {
        System.out.printf(
            "note: handoff %s -> %s not measured (pod ended %s, Job complete %s, next admitted"
                + " %s)%n",
            names.get(i), names.get(i + 1), ended != null, done != null, next != null);
        continue;
      }
      handoff.add((next.nanos() - ended.nanos()) / 1e6);
      jobController.add((done.nanos() - ended.nanos()) / 1e6);
      operator.add((next.nanos() - done.nanos()) / 1e6);
      atServer(env, requests, names.get(i), names.get(i + 1)).ifPresent(operatorAtServer::add);
      Mark following = podEnded.get(names.get(i + 1));
      if (following == null) {
        continue;
      }
      windows++;
      int mine = 0;
      int caused = 0;
      int all = 0;
      for (AuditLog.Request r : requests) {
        if (r.received().isBefore(ended.at()) || !r.received().isBefore(following.at())) {
          continue;
        }
        all++;
        byComponent.merge(component(env, r.user()), 1, Integer::sum);
        if (r.user().equals(env.operatorUser())) {
          mine++;
          String kind = r.kindIn(env.namespace());
          byKind.merge(kind, 1, Integer::sum);
          // The operator's own Leases (leader election, heartbeats) are renewed on a clock,
          // whatever the handoffs do; everything else is the handoff's.
          if (!kind.contains("leases (in ")) {
            caused++;
          }
        }
      }
      operatorRequests.add((double) mine);
      handoffCaused.add((double) caused);
      allRequests.add((double) all);
    }
    handoff.sort(Double::compare);
    jobController.sort(Double::compare);
    operator.sort(Double::compare);
    operatorAtServer.sort(Double::compare);
    operatorRequests.sort(Double::compare);
    handoffCaused.sort(Double::compare);
    allRequests.sort(Double::compare);

    List<Figure> figures = new ArrayList<>();
    figures.add(Figure.of("handoffs measured", handoff.size(), ""));
    figures.add(
        Figure.of("pod ended -> next Job unsuspended, p50", Bench.percentile(handoff, 50), "ms"));
    figures.add(
        Figure.of("pod ended -> next Job unsuspended, p90", Bench.percentile(handoff, 90), "ms"));
    figures.add(
        Figure.of("pod ended -> next Job unsuspended, max", handoff.get(handoff.size() - 1), "ms"));
    figures.add(
        Figure.of(
            "of which pod ended -> Job Complete (Job controller), p50",
            Bench.percentile(jobController, 50),
            "ms"));
    figures.add(
        Figure.target(
            "of which Job Complete -> next Job unsuspended (operator), p50",
            Bench.percentile(operator, 50),
            "ms",
            20));
    figures.add(
        Figure.target(
            "of which Job Complete -> next Job unsuspended (operator), p99",
            Bench.percentile(operator, 99),
            "ms",
            100));
    if (!operatorAtServer.isEmpty()) {
      figures.add(
          Figure.of(
              "of which Job Complete -> next Job unsuspended, as the API server received the"
                  + " writes, p50",
              Bench.percentile(operatorAtServer, 50),
              "ms"));
    }
    figures.add(Figure.of("runs per second", total / elapsed, "/s"));
    figures.add(
        Figure.of("operator API requests per handoff, median", Bench.median(operatorRequests), ""));
    figures.add(
        Figure.of(
            "operator API requests per handoff, most",
            operatorRequests.get(operatorRequests.size() - 1),
            ""));
    figures.add(
        Figure.target(
            "operator API requests per handoff caused by it (not the leader election's and"
                + " heartbeats' renewals), median",
            Bench.median(handoffCaused),
            "",
            3));
    int w = windows;
    byKind.forEach(
        (kind, n) -> figures.add(Figure.of("operator, per handoff: " + kind, n / (double) w, "")));
    figures.add(
        Figure.of(
            "API requests per handoff, every component, median", Bench.median(allRequests), ""));
    byComponent.forEach(
        (c, n) -> figures.add(Figure.of("every component, per handoff: " + c, n / (double) w, "")));
    System.out.printf(
        "operator requests over %d handoffs by kind: %s; by component: %s%n",
        windows, byKind, byComponent);
    return figures;
  }

  /**
   * From the Job controller's last status write of Job {@code ended} (the one marking it Complete)
   * to the operator's patch unsuspending Job {@code next}, by the times the API server received
   * them.
   */
  private static java.util.Optional<Double> atServer(
      ClusterSetup env, List<AuditLog.Request> requests, String ended, String next) {
    AuditLog.Request unsuspend = null;
    for (AuditLog.Request r : requests) {
      if (r.user().equals(env.operatorUser())
          && "patch".equals(r.verb())
          && "jobs".equals(r.resource())
          && r.subresource() == null
          && next.equals(r.name())
          && env.namespace().equals(r.namespace())) {
        unsuspend = r;
        break;
      }
    }
    if (unsuspend == null) {
      return java.util.Optional.empty();
    }
    AuditLog.Request complete = null;
    for (AuditLog.Request r : requests) {
      if (r.user().equals(JOB_CONTROLLER)
          && "jobs".equals(r.resource())
          && "status".equals(r.subresource())
          && ended.equals(r.name())
          && env.namespace().equals(r.namespace())
          && r.received().isBefore(unsuspend.received())) {
        complete = r;
      }
    }
    return complete == null
        ? java.util.Optional.empty()
        : java.util.Optional.of(
            java.time.Duration.between(complete.received(), unsuspend.received()).toNanos() / 1e6);
  }

  private static final String JOB_CONTROLLER = "system:serviceaccount:kube-system:job-controller";

  /** Who made a request, by component: the operator, the Job controller, kwok, ... */
  private static String component(ClusterSetup env, String user) {
    if (user.equals(env.operatorUser())) {
      return "the operator";
    }
    if (user.startsWith("system:serviceaccount:kube-system:")) {
      return user.substring("system:serviceaccount:kube-system:".length());
    }
    if (user.startsWith("system:serviceaccount:")) {
      return "other ServiceAccounts";
    }
    if (user.equals("kubernetes-admin")) {
      return "kubernetes-admin (this benchmark's watches)";
    }
    return user;
  }
}
