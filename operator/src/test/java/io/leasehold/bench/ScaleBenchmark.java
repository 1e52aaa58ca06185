package io.leasehold.bench;

import static io.leasehold.support.OperatorHarness.NAMESPACE;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.OnChange;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.support.OperatorHarness;
import io.leasehold.support.RunnerJobFixtures;
import java.lang.management.ManagementFactory;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Many states with queued runner Jobs on the embedded API: time until every state has admitted its
 * first Job, time to drain every queue (a driver completes each Job as soon as it runs), and heap
 * after GC (operator and in-memory API in one JVM). Prints figures only.
 *
 * <p>Run: {@code mvn -B -pl operator test -Dtest=ScaleBenchmark
 * -Dsurefire.failIfNoSpecifiedTests=false -Dstates=1000 -Djobs=5}
 */
class ScaleBenchmark {

  @Test
  void manyStates() throws Exception {
    int states = Integer.getInteger("states", 100);
    int jobs = Integer.getInteger("jobs", 5);
    try (OperatorHarness h = OperatorHarness.start()) {
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
      while (firstAdmitted.size() < states) {
        Thread.sleep(20);
      }
      double allFirst = (System.nanoTime() - start) / 1e9;
      while (finished.size() < states * jobs) {
        Thread.sleep(50);
      }
      double drained = (System.nanoTime() - start) / 1e9;
      watch.close();
      driver.shutdownNow();
      System.gc();
      Thread.sleep(500);
      System.gc();
      long heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
      System.out.println();
      System.out.printf(
          "scale: %d states x %d Jobs on the embedded API: states created in %.1f s; every state"
              + " admitted its first Job after %.1f s; all %d Jobs drained after %.1f s (%.1f"
              + " runs/s); heap after GC %.0f MiB (operator and in-memory API together)%n",
          states,
          jobs,
          created,
          allFirst,
          states * jobs,
          drained,
          states * jobs / drained,
          heap / 1048576.0);
      System.out.println();
    }
  }
}
