package io.leasehold.queue;

import static io.leasehold.support.OperatorHarness.NAMESPACE;
import static io.leasehold.support.RunnerJobFixtures.create;
import static io.leasehold.support.RunnerJobFixtures.finish;
import static io.leasehold.support.RunnerJobFixtures.get;
import static io.leasehold.support.RunnerJobFixtures.running;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import io.leasehold.kube.OnChange;
import io.leasehold.state.StateNames;
import io.leasehold.support.OperatorHarness;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.IntStream;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class QueueResilienceTest {

  private static Lease lease(OperatorHarness h, String state) {
    return h.client()
        .leases()
        .inNamespace(NAMESPACE)
        .withName(new StateNames(NAMESPACE, state, "default").leaseName())
        .get();
  }

  @Test
  @DisplayName(
      "When the operator stops mid-run and starts again, then the running Job keeps the lock,"
          + " a Job that finished meanwhile has its lock passed on at start, and order is kept")
  void survivesOperatorRestart() throws Exception {
    try (OperatorHarness h = OperatorHarness.start()) {
      JobQueueTest.createState(h, "restart", 300);
      // Created in quick succession: their order is the line's, kept on the Lease across restarts.
      for (String n : List.of("restart-a", "restart-c", "restart-b")) {
        create(h.client(), n, "restart");
      }
      await().atMost(Duration.ofSeconds(20)).until(() -> running(get(h.client(), "restart-a")));

      // Restart while restart-a runs: it keeps the lock and nothing else is admitted.
      h.stopOperator();
      String holder = lease(h, "restart").getSpec().getHolderIdentity();
      h.startOperator();
      await()
          .during(Duration.ofMillis(1500))
          .atMost(Duration.ofSeconds(10))
          .until(
              () ->
                  holder.equals(lease(h, "restart").getSpec().getHolderIdentity())
                      && !running(get(h.client(), "restart-b"))
                      && !running(get(h.client(), "restart-c")));

      // restart-a finishes while the operator is away; at start the lock goes to restart-b.
      h.stopOperator();
      finish(h.client(), "restart-a", true);
      await()
          .during(Duration.ofMillis(300))
          .atMost(Duration.ofSeconds(5))
          .until(() -> holder.equals(lease(h, "restart").getSpec().getHolderIdentity()));
      h.startOperator();
      await().atMost(Duration.ofSeconds(20)).until(() -> running(get(h.client(), "restart-c")));
      assertThat(running(get(h.client(), "restart-b"))).isFalse();

      finish(h.client(), "restart-c", true);
      await().atMost(Duration.ofSeconds(20)).until(() -> running(get(h.client(), "restart-b")));
      finish(h.client(), "restart-b", true);
      await()
          .atMost(Duration.ofSeconds(20))
          .until(() -> lease(h, "restart").getSpec().getHolderIdentity() == null);
    }
  }

  @Test
  @DisplayName(
      "When the operator stopped after taking the lock for a Job but before unsuspending it, and"
          + " the lock was then force-unlocked, then that Job is not taken for a running one: it"
          + " and the Jobs behind it are admitted in their turn")
  void aJobNeverUnsuspendedDoesNotHoldUpTheLine() throws Exception {
    try (OperatorHarness h = OperatorHarness.apiOnly()) {
      StateNames names = new StateNames(NAMESPACE, "torn", "default");
      JobQueueTest.createState(h, "torn", 300);
      Job first = create(h.client(), "torn-a", "torn");
      create(h.client(), "torn-b", "torn");
      // As the operator left it: the Job recorded as admitted on the Lease (whose lock was then
      // broken by a force-unlock), the Job itself still suspended, no pod ever created.
      h.client()
          .resource(
              io.leasehold.lock.LeaseLock.withRunning(
                  io.leasehold.lock.LeaseLock.unlocked(names),
                  List.of(
                      new io.leasehold.lock.LeaseLock.RunningJob(
                          first.getMetadata().getUid(), "torn-a"))))
          .create();
      h.startOperator();
      await().atMost(Duration.ofSeconds(20)).until(() -> running(get(h.client(), "torn-a")));
      finish(h.client(), "torn-a", true);
      await().atMost(Duration.ofSeconds(20)).until(() -> running(get(h.client(), "torn-b")));
      finish(h.client(), "torn-b", true);
    }
  }

  @Test
  @DisplayName(
      "When the lock is free and clients of a replica that is gone stand before a queued Job, and"
          + " no other replica waits, then the leader passes them over one after another and"
          + " admits the Job")
  void clientsOfAGoneReplicaBeforeAJobArePassedOverByTheLeaderAlone() throws Exception {
    try (OperatorHarness h = OperatorHarness.apiOnly()) {
      StateNames names = new StateNames(NAMESPACE, "vanished", "default");
      JobQueueTest.createState(h, "vanished", 300);
      // Left by a replica that crashed while three clients waited on it: nothing will ever grant
      // them the lock, and only the leader is there to pass them over (the leader's own writes
      // bring it no watch event).
      java.time.Instant since = java.time.Instant.now();
      io.leasehold.lock.Line line = io.leasehold.lock.Line.EMPTY;
      for (int i = 0; i < 3; i++) {
        line =
            line.append(
                io.leasehold.lock.Ticket.client(
                    "crashed-" + i, "client-" + i, "digest-" + i, "replica-that-crashed", since));
      }
      h.client()
          .resource(
              io.leasehold.lock.LeaseLock.withLine(
                  io.leasehold.lock.LeaseLock.unlocked(names), line))
          .create();
      create(h.client(), "after-crash", "vanished");
      h.startOperator();
      // Each is passed over after the owner timeout (5 s) with the Lease unchanged.
      await().atMost(Duration.ofSeconds(60)).until(() -> running(get(h.client(), "after-crash")));
      assertThat(io.leasehold.lock.LeaseLock.line(lease(h, "vanished")).tickets())
          .allSatisfy(t -> assertThat(t.gone()).as("ticket %s", t.id()).isNotNull());
      finish(h.client(), "after-crash", true);
    }
  }

  @Test
  @DisplayName(
      "When many Jobs on one state are completed the moment each is admitted, then admissions"
          + " never overlap and every Job runs exactly once")
  void admissionsNeverOverlap() throws Exception {
    int jobs = 40;
    try (OperatorHarness h = OperatorHarness.start()) {
      JobQueueTest.createState(h, "busy", 300);
      Map<String, Boolean> runningNow = new ConcurrentHashMap<>();
      Map<String, AtomicInteger> admissions = new ConcurrentHashMap<>();
      List<String> violations = Collections.synchronizedList(new ArrayList<>());
      List<String> order = Collections.synchronizedList(new ArrayList<>());
      ExecutorService driver = Executors.newFixedThreadPool(4);
      SharedIndexInformer<Job> informer =
          h.client()
              .batch()
              .v1()
              .jobs()
              .inNamespace(NAMESPACE)
              .withLabel(RunnerJobs.STATE_LABEL, "busy")
              .inform(
                  OnChange.of(
                      (Job job) -> {
                        String name = job.getMetadata().getName();
                        boolean active = !RunnerJobs.suspended(job) && !RunnerJobs.finished(job);
                        Boolean was = runningNow.put(name, active);
                        if (active && !Boolean.TRUE.equals(was)) {
                          admissions
                              .computeIfAbsent(name, k -> new AtomicInteger())
                              .incrementAndGet();
                          order.add(name);
                          long concurrent = runningNow.values().stream().filter(b -> b).count();
                          if (concurrent > 1) {
                            violations.add(name + " admitted while " + runningNow);
                          }
                          // The test driver plays the runner: it ends as soon as it starts.
                          driver.submit(() -> finish(h.client(), name, true));
                        }
                      }));
      try {
        // Created concurrently, as pipelines would.
        ExecutorService creators = Executors.newFixedThreadPool(4);
        IntStream.range(0, jobs)
            .forEach(i -> creators.submit(() -> create(h.client(), "busy-" + i, "busy")));
        creators.shutdown();

        await()
            .atMost(Duration.ofSeconds(120))
            .until(
                () -> admissions.size() == jobs && runningNow.values().stream().noneMatch(b -> b));
        await()
            .atMost(Duration.ofSeconds(20))
            .until(() -> lease(h, "busy").getSpec().getHolderIdentity() == null);
      } finally {
        informer.close();
        driver.shutdownNow();
      }
      assertThat(violations).isEmpty();
      assertThat(admissions).hasSize(jobs);
      assertThat(admissions.values()).allSatisfy(c -> assertThat(c.get()).isEqualTo(1));
      for (int i = 0; i < jobs; i++) {
        assertThat(RunnerJobs.finished(get(h.client(), "busy-" + i))).isTrue();
      }
      System.out.printf("admission order of %d concurrent Jobs: %s%n", jobs, order);
    }
  }
}
