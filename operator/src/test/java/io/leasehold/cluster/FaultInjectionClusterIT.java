package io.leasehold.cluster;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.ListOptionsBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.Watch;
import io.fabric8.kubernetes.client.Watcher;
import io.fabric8.kubernetes.client.WatcherException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import io.leasehold.api.TerraformState;
import io.leasehold.fault.FaultWorkload;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.support.RawLock;
import java.io.IOException;
import java.net.http.HttpClient;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import javax.net.ssl.SSLContext;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * The fault-injection run of {@link FaultWorkload} on a real control plane: two replicas of the
 * production jar (the chart's ServiceAccount and RBAC, HTTPS, TokenReview and SubjectAccessReview
 * for every client), sixteen clients each a ServiceAccount of its own, runner Jobs run by the real
 * Job controller on the fake node, while replicas are killed (SIGKILL), stopped (SIGTERM) and
 * paused (SIGSTOP), the leader often while a Job runs and at times paused longer than the lock's
 * lease, leadership flaps (another candidate takes the election Lease for moments), and the API
 * server is restarted mid-run. Every version of the lock Lease is followed by a watch that resumes
 * where it left off (the test cluster serves Lease watches from etcd, so a restart loses none).
 *
 * <p>Short by default (CI: {@code -Dleasehold.fault.ops}, default 2000). Long: {@code
 * -Dleasehold.fault.ops=10000}.
 */
class FaultInjectionClusterIT {

  private static final String STATE = "chaos";
  private static final String LINEAGE = "chaos-lineage";
  private static final int CLIENTS = 16;
  private static final int LEASE_SECONDS = 30;

  private final Map<String, String> tokens = new ConcurrentHashMap<>();
  private FaultWorkload work;
  private int ops;
  private ClusterOperator operatorForDiagnosis;

  @Test
  @DisplayName(
      "On a real control plane, with replicas killed, stopped and paused and the API server"
          + " restarted while clients and runner Jobs contend, the recorded history shows one"
          + " holder at a time, FIFO among live waiters, no grant to a gone waiter, no write under"
          + " another identity's lock, every acknowledged write kept in order")
  void historyHoldsUnderFaults() throws Exception {
    long seed = Long.getLong("leasehold.fault.seed", System.nanoTime());
    ops = Integer.getInteger("leasehold.fault.ops", 2000);
    RealCluster cluster = RealCluster.get();
    KubernetesClient admin = cluster.admin();
    String ns = cluster.newNamespace("chaos");
    ChartInstall chart = ChartInstall.apply(cluster, ns);
    ChartInstall.awaitCrd(admin);
    identities(cluster, ns);
    System.out.printf(
        "fault injection on the real cluster: seed %d, %d operations, %d clients, 2 replicas%n",
        seed, ops, CLIENTS);
    try (ClusterOperator operator = ClusterOperator.start(cluster, chart, ns, 2)) {
      operatorForDiagnosis = operator;
      SSLContext tls = ClusterHttp.trusting(operator.caPem(Duration.ofSeconds(60)));
      work = new FaultWorkload(environment(operator, admin, tls), ns, STATE, LINEAGE);
      Watch leaseWatch = recordLeaseVersions(admin, ns);

      TerraformState state = ClusterFixtures.state(ns, STATE);
      state.getSpec().getLock().setLeaseDurationSeconds(LEASE_SECONDS);
      state.getSpec().getHistory().setKeep(100);
      admin.resource(state).create();
      ClusterFixtures.awaitReady(admin, ns, STATE);

      Map<String, Boolean> jobRunning = new ConcurrentHashMap<>();
      Map<String, AtomicInteger> jobAdmissions = new ConcurrentHashMap<>();
      SharedIndexInformer<Job> jobWatch = work.watchJobs(admin, jobRunning, jobAdmissions);

      AtomicInteger remaining = new AtomicInteger(ops);
      AtomicBoolean done = new AtomicBoolean();
      ExecutorService pool = Executors.newFixedThreadPool(CLIENTS + 2);
      CountDownLatch clientsDone = work.startClients(pool, CLIENTS, seed, remaining);
      pool.submit(() -> runJobs(admin, ns, done, new Random(seed ^ 0x10b5)));
      Thread injector =
          new Thread(
              () -> injectFaults(new Random(seed ^ 0x5eed), cluster, operator, jobRunning, done));
      injector.start();

      assertThat(clientsDone.await(60, TimeUnit.MINUTES)).as("clients finished").isTrue();
      work.clientsEnded();
      done.set(true);
      injector.join(180_000);
      pool.shutdown();
      assertThat(pool.awaitTermination(2, TimeUnit.MINUTES)).isTrue();
      for (ClusterOperator.Replica r : operator.replicas()) {
        r.resume();
        if (!r.alive()) {
          r.restart();
        }
      }
      quiesce(admin, ns, jobRunning);
      work.check(jobAdmissions);
      jobWatch.close();
      leaseWatch.close();
    } finally {
      if (work != null) {
        work.report("fault injection on the real cluster", seed);
      }
      if (!Boolean.getBoolean("leasehold.cluster.keep")) {
        admin.namespaces().withName(ns).delete();
      }
    }
    assertThat(work.violations()).isEmpty();
    assertThat(work.acknowledgedWrites()).as("some writes were acknowledged").isPositive();
    assertThat(work.counts())
        .containsKeys("stolen-write-refused", "hung-up-waiting", "job-completed");
  }

  /**
   * A ServiceAccount per client, allowed to read, write, lock and unlock (the chart's runner
   * access); a reader; an admin that may also force-unlock.
   */
  private void identities(RealCluster cluster, String ns) {
    List<String> users = new ArrayList<>();
    for (int i = 0; i < CLIENTS; i++) {
      users.add("client-" + i);
    }
    users.add("reader");
    for (String user : users) {
      tokens.put(
          user,
          ClusterFixtures.grantState(cluster, ns, user, Duration.ofHours(3), "get", "update"));
    }
    tokens.put(
        FaultWorkload.ADMIN,
        ClusterFixtures.grantState(
            cluster,
            ns,
            FaultWorkload.ADMIN,
            Duration.ofHours(3),
            "get",
            "update",
            "force-unlock"));
  }

  private FaultWorkload.Environment environment(
      ClusterOperator operator, KubernetesClient admin, SSLContext tls) {
    return new FaultWorkload.Environment() {
      @Override
      public int replicas() {
        return operator.replicas().size();
      }

      @Override
      public String baseUrl(int replica) {
        return operator.replica(replica).backendUrl() + "/v1/states/";
      }

      @Override
      public String authorization(String user) {
        String token = tokens.get(user);
        if (token == null) {
          throw new IllegalArgumentException("no identity " + user);
        }
        return "Basic "
            + Base64.getEncoder()
                .encodeToString((user + ":" + token).getBytes(StandardCharsets.UTF_8));
      }

      @Override
      public HttpClient http() {
        return HttpClient.newBuilder()
            .sslContext(tls)
            .connectTimeout(Duration.ofSeconds(5))
            .version(HttpClient.Version.HTTP_1_1)
            .build();
      }

      @Override
      public RawLock rawLock(
          String base, String statePath, LockInfo info, String query, Map<String, String> headers)
          throws IOException {
        return RawLock.send(base, statePath, info, query, headers, tls);
      }

      @Override
      public KubernetesClient admin() {
        return admin;
      }
    };
  }

  /**
   * Every version of the lock Lease, as the API server stored them: a watch from before the state
   * exists, resumed by the client from the last version it saw whenever the connection breaks.
   */
  private Watch recordLeaseVersions(KubernetesClient admin, String ns) {
    String lease = work.names().leaseName();
    String from = admin.leases().inNamespace(ns).list().getMetadata().getResourceVersion();
    return admin
        .leases()
        .inNamespace(ns)
        .withField("metadata.name", lease)
        .watch(
            new ListOptionsBuilder().withResourceVersion(from).build(),
            new Watcher<Lease>() {
              @Override
              public void eventReceived(Action action, Lease l) {
                switch (action) {
                  case ADDED, MODIFIED -> work.leaseVersion(System.nanoTime(), l);
                  case DELETED -> work.violation("the lock Lease was deleted during the run");
                  default -> {}
                }
              }

              @Override
              public void onClose(WatcherException cause) {
                work.violation(
                    "the watch of the lock Lease ended ("
                        + cause.getMessage()
                        + "): versions may be missing, the history cannot be checked");
              }
            });
  }

  // ---- runner Jobs ----

  /**
   * Creates up to 30 runner Jobs (each pod held running by the fake node until this driver lets it
   * finish); lets running ones finish at random; now and then removes the label of a running Job,
   * which must keep its lock until it ends.
   */
  private void runJobs(KubernetesClient admin, String ns, AtomicBoolean done, Random random) {
    int n = 0;
    int most = Math.max(4, Math.min(30, ops / 60));
    Set<String> unlabelled = ConcurrentHashMap.newKeySet();
    try {
      // Jobs are fewer than clients' runs: the line is shared, and clients give up after their
      // ?wait= (1-5 s) when Jobs stand before them.
      while (!done.get()) {
        try {
          if (n < most && random.nextInt(30) == 0) {
            String created = String.format("chaos-job-%03d", n++);
            admin.resource(ClusterFixtures.runnerJob(ns, created, STATE, true)).create();
            work.jobCreated(created);
            work.count("job-created");
          }
          for (Job job : admin.batch().v1().jobs().inNamespace(ns).list().getItems()) {
            String name = job.getMetadata().getName();
            boolean mine =
                RunnerJobs.stateName(job).map(STATE::equals).orElse(false)
                    || unlabelled.contains(name);
            if (!mine || RunnerJobs.suspended(job) || RunnerJobs.finished(job)) {
              continue;
            }
            if (!unlabelled.contains(name) && random.nextInt(100) < 15) {
              admin
                  .batch()
                  .v1()
                  .jobs()
                  .inNamespace(ns)
                  .withName(name)
                  .patch(
                      PatchContext.of(PatchType.JSON_MERGE),
                      "{\"metadata\":{\"labels\":{\"" + RunnerJobs.STATE_LABEL + "\":null}}}");
              unlabelled.add(name);
              work.count("job-unlabelled-while-running");
              continue;
            }
            if (random.nextInt(2) == 0) {
              work.jobFinishing(name);
              for (Pod pod : ClusterFixtures.pods(admin, ns, name)) {
                ClusterFixtures.release(admin, pod);
                work.count("job-completed");
              }
            }
          }
        } catch (io.fabric8.kubernetes.client.KubernetesClientException e) {
          // The API server is being restarted: like any controller, try again in a moment.
          work.count("job-driver-request-failed");
        }
        Thread.sleep(300);
      }
    } catch (Exception e) {
      if (!done.get()) {
        work.violation("job driver crashed: " + e);
      }
    }
  }

  // ---- faults ----

  /** How long after a fault a free lock may idle: a new leader elected and at work. */
  private static final Duration SETTLED = Duration.ofSeconds(20);

  /** After a kill: the election Lease (15 s) and the replica's heartbeat (12 s) time out first. */
  private static final Duration SETTLED_AFTER_KILL = Duration.ofSeconds(25);

  private void injectFaults(
      Random random,
      RealCluster cluster,
      ClusterOperator operator,
      Map<String, Boolean> jobRunning,
      AtomicBoolean done) {
    boolean outageDone = false;
    int apiRestarts = 0;
    try {
      Thread.sleep(2_000);
      while (!done.get()) {
        int roll = random.nextInt(100);
        ClusterOperator.Replica leader = leader(cluster, operator);
        boolean jobRuns = jobRunning.values().stream().anyMatch(b -> b);
        String during = jobRuns ? "-while-job-ran" : "";
        long from = System.nanoTime();
        if (roll < 20) {
          // A crash: no chance to hand anything on; clients waiting on it are dropped unanswered.
          leader.kill();
          Thread.sleep(200 + random.nextInt(1_000));
          leader.restart();
          work.fault("leader-killed" + during);
          work.disruption("leader-killed", from, SETTLED_AFTER_KILL);
        } else if (roll < 40) {
          // A rolling update.
          leader.terminate();
          Thread.sleep(200 + random.nextInt(1_000));
          leader.restart();
          work.fault("leader-terminated" + during);
          work.disruption("leader-terminated", from, SETTLED);
        } else if (roll < 55) {
          // A stall shorter than the election's renew deadline (10 s) and the lock's lease.
          ClusterOperator.Replica r = operator.replica(random.nextInt(2));
          r.pause();
          Thread.sleep(1_000 + random.nextInt(5_000));
          r.resume();
          work.fault("replica-paused");
          work.disruption("replica-paused", from, SETTLED);
        } else if (roll < 65) {
          // The leader stalls longer than the lock's lease, the election's and its heartbeat's;
          // whatever it had under way goes out when it resumes.
          leader.pause();
          Thread.sleep((LEASE_SECONDS + 2 + random.nextInt(8)) * 1_000L);
          leader.resume();
          work.fault("leader-stalled-past-lease" + during);
          work.disruption("leader-stalled", from, SETTLED_AFTER_KILL);
        } else if (roll < 73) {
          flapLeadership(random, cluster, operator);
          work.fault("leadership-flapping" + during);
          work.disruption("leadership-flapping", from, SETTLED);
        } else if (roll < 88 && apiRestarts < 3) {
          cluster.restartApiServer(Duration.ofSeconds(random.nextInt(3)));
          apiRestarts++;
          work.fault("api-server-restarted");
          work.disruption("api-server-restarted", from, SETTLED);
        } else if (!outageDone) {
          // Every replica away for longer than the lock's lease: a Job's lock lapses and is taken
          // over only once its Job has ended.
          for (ClusterOperator.Replica r : operator.replicas()) {
            r.kill();
          }
          Thread.sleep((LEASE_SECONDS + 5) * 1_000L);
          for (ClusterOperator.Replica r : operator.replicas()) {
            r.restart();
          }
          work.fault("outage-past-lease");
          work.disruption("outage", from, SETTLED_AFTER_KILL);
          outageDone = true;
        }
        // Now and then a calm stretch, in which a free lock must never idle while someone waits.
        Thread.sleep(random.nextInt(5) == 0 ? 40_000 : 3_000 + random.nextInt(5_000));
      }
    } catch (Throwable e) {
      work.violation("fault injector crashed: " + e);
    }
  }

  /**
   * Leadership lost and won back several times in quick succession: another candidate takes the
   * election Lease for a moment (as after a partition) and lets it go.
   */
  private static void flapLeadership(Random random, RealCluster cluster, ClusterOperator operator)
      throws InterruptedException {
    int flaps = 3 + random.nextInt(3);
    for (int flap = 0; flap < flaps; flap++) {
      long until = System.nanoTime() + Duration.ofMillis(500 + random.nextInt(1_500)).toNanos();
      while (System.nanoTime() < until) {
        editLeaderLease(cluster, operator, "intruder");
        Thread.sleep(200);
      }
      editLeaderLease(cluster, operator, null);
      long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
      while (System.nanoTime() < deadline && leader(cluster, operator) == operator.replica(0)) {
        // No replica named (the first stands in): wait for one to lead again.
        if (operator.leader().isPresent()) {
          break;
        }
        Thread.sleep(200);
      }
    }
  }

  private static void editLeaderLease(
      RealCluster cluster, ClusterOperator operator, String holder) {
    try {
      cluster
          .admin()
          .leases()
          .inNamespace(ChartInstall.NAMESPACE)
          .withName(operator.leaderLease())
          .edit(
              (Lease l) -> {
                java.time.ZonedDateTime now = java.time.ZonedDateTime.now(java.time.ZoneOffset.UTC);
                l.getSpec().setHolderIdentity(holder);
                l.getSpec().setAcquireTime(now);
                l.getSpec().setRenewTime(now);
                l.getSpec().setLeaseDurationSeconds(holder == null ? 1 : 5);
                return l;
              });
    } catch (RuntimeException e) {
      // A conflict with a candidate's write (or the API server restarting): the next try wins.
    }
  }

  /** The replica the election Lease names, or the first when none leads. */
  private static ClusterOperator.Replica leader(RealCluster cluster, ClusterOperator operator)
      throws InterruptedException {
    for (int attempt = 1; ; attempt++) {
      try {
        return operator.leader().filter(ClusterOperator.Replica::alive).orElse(operator.replica(0));
      } catch (io.fabric8.kubernetes.client.KubernetesClientException e) {
        // The API server is still coming back from a restart: ask again in a moment.
        if (attempt == 60) {
          throw e;
        }
        Thread.sleep(1_000);
      }
    }
  }

  /** Every Job ends, a lock left by a vanished client is broken, then the final state is read. */
  private void quiesce(KubernetesClient admin, String ns, Map<String, Boolean> jobRunning) {
    try {
      awaitQuiet(admin, ns, jobRunning);
    } catch (org.awaitility.core.ConditionTimeoutException e) {
      StringBuilder why = new StringBuilder("the run did not come to rest:");
      Lease l = admin.leases().inNamespace(ns).withName(work.names().leaseName()).get();
      why.append("\n  lock holder ")
          .append(l == null ? "(no Lease)" : l.getSpec().getHolderIdentity());
      if (l != null) {
        why.append("\n  line ").append(LeaseLock.line(l).tickets());
      }
      TerraformState tfs =
          admin.resources(TerraformState.class).inNamespace(ns).withName(STATE).get();
      why.append("\n  status ").append(tfs == null ? null : tfs.getStatus());
      for (Job job : admin.batch().v1().jobs().inNamespace(ns).list().getItems()) {
        why.append("\n  Job ")
            .append(job.getMetadata().getName())
            .append(" suspended=")
            .append(job.getSpec().getSuspend())
            .append(" finished=")
            .append(RunnerJobs.finished(job))
            .append(" admitted=")
            .append(RunnerJobs.admitted(job))
            .append(" pods=")
            .append(
                ClusterFixtures.pods(admin, ns, job.getMetadata().getName()).stream()
                    .map(p -> p.getStatus().getPhase())
                    .toList());
      }
      why.append("\n  running as the test saw them: ").append(jobRunning);
      for (ClusterOperator.Replica r : operatorForDiagnosis.replicas()) {
        why.append("\n  thread dump of ").append(r.podName()).append(": ").append(r.threadDump());
      }
      throw new AssertionError(why.toString(), e);
    }
  }

  private void awaitQuiet(KubernetesClient admin, String ns, Map<String, Boolean> jobRunning) {
    Awaitility.await()
        .atMost(Duration.ofMinutes(5))
        .pollInterval(Duration.ofMillis(500))
        .ignoreExceptions()
        .until(
            () -> {
              Lease l = admin.leases().inNamespace(ns).withName(work.names().leaseName()).get();
              String held = l == null ? null : l.getSpec().getHolderIdentity();
              if (held != null && !held.startsWith(LeaseLock.JOB_PREFIX)) {
                work.forceUnlock(work.http(), work.stateUrl(0));
              }
              for (Pod pod :
                  admin
                      .pods()
                      .inNamespace(ns)
                      .withLabel("batch.kubernetes.io/job-name")
                      .list()
                      .getItems()) {
                if (pod.getMetadata().getAnnotations().containsKey(ClusterFixtures.HOLD)) {
                  String job = pod.getMetadata().getLabels().get("batch.kubernetes.io/job-name");
                  if (job != null) {
                    work.jobFinishing(job);
                  }
                  ClusterFixtures.release(admin, pod);
                }
              }
              return jobRunning.values().stream().noneMatch(b -> b)
                  && admin.batch().v1().jobs().inNamespace(ns).list().getItems().stream()
                      .allMatch(RunnerJobs::finished);
            });
  }
}
