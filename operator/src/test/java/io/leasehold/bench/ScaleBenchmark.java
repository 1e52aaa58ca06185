package io.leasehold.bench;

import static io.leasehold.support.OperatorHarness.NAMESPACE;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.OnChange;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.support.ChildOperator;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RunnerJobFixtures;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * Many states with queued runner Jobs on the embedded API: time until every state has admitted its
 * first Job, time to drain every queue, and heap after GC, at each state count given, so the growth
 * shows.
 */
final class ScaleBenchmark implements Benchmark {

  /** The operator's heap limit: the target is to serve 1,000 states and 5,000 Jobs within it. */
  static final String OPERATOR_HEAP = "256m";

  @Override
  public String id() {
    return "scale";
  }

  @Override
  public String title() {
    return "Scale: many states with queued Jobs";
  }

  @Override
  public String description(BenchSettings settings) {
    return """
        For each count N in %s: N x %d runner Jobs are created suspended first, then the N
        TerraformStates, so every queue is full when its state appears. A driver completes each
        Job as soon as it is admitted. "First admissions" is the time from the first state's
        creation until every state has admitted its first Job (it includes creating the states,
        given beside it); "drained" until all Jobs are complete. The operator runs in a JVM of
        its own with `-Xmx%s`, against the in-memory API in the harness JVM, so its heap is its
        own: "peak live heap" is the largest heap left after any collection during the run (from
        the operator's GC log), "heap after GC" is measured after two full GCs once the queues
        are drained. What limits the figures: the in-memory API matches every request against
        every stored object, so each request gets slower as the store grows (the 5,000 Jobs
        are stored before the states are created).
        """
        .formatted(settings.states(), settings.jobsPerState(), OPERATOR_HEAP);
  }

  @Override
  public List<Figure> run(BenchSettings settings) throws Exception {
    List<Figure> figures = new ArrayList<>();
    double[] first = null;
    double[] last = null;
    for (int states : settings.states()) {
      double[] m = measure(states, settings.jobsPerState());
      boolean largest = states == settings.states().get(settings.states().size() - 1);
      String p = states + " states: ";
      figures.add(Figure.of(p + "creating the states", m[0], "s"));
      figures.add(Figure.of(p + "first admissions (every state)", m[1], "s"));
      figures.add(Figure.of(p + "all Jobs drained", m[2], "s"));
      figures.add(Figure.of(p + "runs per second", states * settings.jobsPerState() / m[2], "/s"));
      figures.add(Figure.of(p + "operator heap after GC, drained", m[3], "MiB"));
      figures.add(
          largest
              ? Figure.target(p + "operator peak live heap", m[4], "MiB", 256)
              : Figure.of(p + "operator peak live heap", m[4], "MiB"));
      if (first == null) {
        first = m;
      }
      last = m;
    }
    if (settings.states().size() > 1) {
      String g =
          settings.states().get(settings.states().size() - 1)
              + " vs "
              + settings.states().get(0)
              + " states: ";
      figures.add(Figure.of(g + "first admissions grew", last[1] / first[1], "x"));
      figures.add(Figure.of(g + "drain time grew", last[2] / first[2], "x"));
      figures.add(Figure.of(g + "operator peak live heap grew", last[4] / first[4], "x"));
    }
    return figures;
  }

  /**
   * Returns creation seconds, first-admission seconds, drain seconds, operator heap after GC MiB,
   * operator peak live heap MiB.
   */
  private static double[] measure(int states, int jobs) throws Exception {
    try (OperatorHarness h = OperatorHarness.apiOnly();
        ChildOperator operator = ChildOperator.start(h.api(), OPERATOR_HEAP, 1024 * 1024)) {
      // Jobs first, states after: every queue is full when the first state appears.
      ExecutorService creators = Executors.newFixedThreadPool(8);
      for (int s = 0; s < states; s++) {
        String state = "scale-" + Integer.toString(s, 36) + "x";
        for (int j = 0; j < jobs; j++) {
          String name = state + "-job-" + j;
          creators.submit(() -> RunnerJobFixtures.create(h.client(), name, state));
        }
      }
      creators.shutdown();
      creators.awaitTermination(30, TimeUnit.MINUTES);
      Map<String, Boolean> firstAdmitted = new ConcurrentHashMap<>();
      Set<String> finished = ConcurrentHashMap.newKeySet();
      ExecutorService driver = Executors.newFixedThreadPool(4);
      SharedIndexInformer<Job> watch =
          h.client()
              .batch()
              .v1()
              .jobs()
              .inNamespace(NAMESPACE)
              .inform(
                  OnChange.of(
                      (Job j) -> {
                        if (RunnerJobs.finished(j)) {
                          finished.add(j.getMetadata().getName());
                        } else if (!RunnerJobs.suspended(j)) {
                          RunnerJobs.stateName(j)
                              .ifPresent(s -> firstAdmitted.putIfAbsent(s, true));
                          driver.submit(
                              () ->
                                  RunnerJobFixtures.finish(
                                      h.client(), j.getMetadata().getName(), true));
                        }
                      }));
      long start = System.nanoTime();
      for (int s = 0; s < states; s++) {
        TerraformState state = new TerraformState();
        state.getMetadata().setName("scale-" + Integer.toString(s, 36) + "x");
        state.getMetadata().setNamespace(NAMESPACE);
        h.client().resource(state).create();
      }
      double created = (System.nanoTime() - start) / 1e9;
      long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.MINUTES.toNanos(30);
      while (firstAdmitted.size() < states) {
        waitFor(operator, deadline, "admitting the first Jobs");
        Thread.sleep(20);
      }
      double allFirst = (System.nanoTime() - start) / 1e9;
      while (finished.size() < states * jobs) {
        waitFor(operator, deadline, "draining the queues");
        Thread.sleep(50);
      }
      double drained = (System.nanoTime() - start) / 1e9;
      watch.close();
      driver.shutdownNow();
      double heap = operator.heapAfterGc() / 1048576.0;
      double peak = operator.peakHeapAfterGc().orElseThrow() / 1048576.0;
      return new double[] {created, allFirst, drained, heap, peak};
    }
  }

  private static void waitFor(ChildOperator operator, long deadline, String doing) {
    operator.checkAlive(doing);
    if (System.nanoTime() > deadline) {
      throw new IllegalStateException("gave up after 30 minutes " + doing);
    }
  }
}
