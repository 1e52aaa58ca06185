package io.leasehold.fault;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.fabric8.kubernetes.client.utils.Serialization;
import io.leasehold.api.TerraformState;
import io.leasehold.backend.Access;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.JobPods;
import io.leasehold.backend.ReplyException;
import io.leasehold.backend.Requester;
import io.leasehold.cli.Replica;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.kube.TolerantSerialization;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.operator.Leadership;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.state.StateNames;
import io.leasehold.support.RawLock;
import io.leasehold.support.RunnerJobFixtures;
import java.net.http.HttpClient;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReferenceArray;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Two replicas, each serving the backend, with many concurrent clients spread over both and runner
 * Jobs, while faults are injected: API errors (500, 409); the leader stopped gracefully and killed
 * (its API calls cut, its waiting clients dropped unanswered), often while a Job runs; the leader
 * stalled (every API call held back, then let go) longer than the lock's lease, the election's and
 * at times a heartbeat's; leadership flapping; any replica killed with clients waiting on it; an
 * outage of every replica longer than the lease; clients that hang up while they wait, vanish
 * holding the lock, force-unlock it, write under someone else's lock ID, send LockInfos near and
 * over their bounds, or share one lock ID between two requests; running Jobs that lose their label.
 * A checker then reads the recorded history ({@link FaultWorkload#check} lists every rule):
 *
 * <ul>
 *   <li>never two holders without a release between them, never two Jobs running;
 *   <li>every acknowledged write kept and in order; none accepted from a broken lock, nor under a
 *       lock ID of another identity;
 *   <li>the lock never granted to a waiter its replica had marked as gone, and never held for long
 *       by a client that hung up without an answer;
 *   <li>order: the lock never goes to one in line while a Job or a connected client stands before
 *       it;
 *   <li>the stored state and every kept version decode;
 *   <li>a Job's lock never taken over while it runs; at most one believes it holds the lock;
 *       LockInfos stored exactly or refused 400; the Lease always writable; no free lock idle while
 *       someone waits, once faults settle; dead replicas' places dropped.
 * </ul>
 *
 * <p>Short by default (CI). Long: {@code mvn -B -pl operator -am test -Dtest=FaultInjectionTest
 * -Dsurefire.failIfNoSpecifiedTests=false -Dleasehold.fault.ops=10000}. Rerun a run's choices with
 * {@code -Dleasehold.fault.seed=SEED} (thread timing still varies).
 */
class FaultInjectionTest {

  private static final String NS = "default";
  private static final String STATE = "chaos";
  private static final String LINEAGE = "chaos-lineage";
  private static final int CLIENTS = 16;
  private static final String ADMIN = FaultWorkload.ADMIN;
  private static final ObjectMapper JSON = new ObjectMapper();

  /** What the run checks with its guards on, and with one guard off on purpose. */
  enum Guards {
    ON,
    /** Every requester is the same identity: a lock ID alone lets anyone write under it. */
    NO_OWNERSHIP
  }

  private final AtomicReferenceArray<String> urls = new AtomicReferenceArray<>(2);
  private final AtomicReferenceArray<ApiGate> gates = new AtomicReferenceArray<>(2);
  private final Map<String, Boolean> jobRunning = new ConcurrentHashMap<>();
  private FaultWorkload work;

  /** Closes killed replicas in the background: their every API call fails. */
  private ExecutorService morgue;

  private void count(String what) {
    work.count(what);
  }

  private void fault(String what) {
    work.fault(what);
  }

  @Test
  @DisplayName(
      "With two replicas under concurrent clients, Jobs and injected faults, the recorded history"
          + " shows one holder at a time, FIFO among live waiters, no grant to a gone waiter, no"
          + " write under another identity's lock, every acknowledged write kept in order")
  void historyHoldsUnderFaults() throws Exception {
    long seed = Long.getLong("leasehold.fault.seed", System.nanoTime());
    int ops = Integer.getInteger("leasehold.fault.ops", 500);
    run(Guards.ON, seed, ops);
    assertThat(work.violations()).isEmpty();
    assertThat(work.acknowledgedWrites()).as("some writes were acknowledged").isPositive();
    assertThat(work.counts()).containsKeys("stolen-write-refused", "hung-up-waiting");
  }

  @Test
  @DisplayName(
      "With the ownership guard off on purpose (everyone the same identity), the checker reports"
          + " writes accepted under another client's lock")
  void checkerCatchesABrokenGuard() throws Exception {
    long seed = Long.getLong("leasehold.fault.seed", System.nanoTime());
    run(Guards.NO_OWNERSHIP, seed, 300);
    assertThat(work.violations())
        .anyMatch(v -> v.contains("under lock") && v.contains("of client"));
  }

  private void run(Guards guards, long seed, int ops) throws Exception {
    System.out.printf(
        "fault injection (%s): seed %d, %d operations, %d clients, 2 replicas%n",
        guards, seed, ops, CLIENTS);
    jobRunning.clear();
    morgue = Executors.newCachedThreadPool();
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient test = api.newClient()) {
      work = new FaultWorkload(embedded(test), NS, STATE, LINEAGE);
      StateNames names = work.names();
      TerraformState state = new TerraformState();
      state.getMetadata().setName(STATE);
      state.getMetadata().setNamespace(NS);
      state.getSpec().getLock().setLeaseDurationSeconds(5);
      state.getSpec().getHistory().setKeep(100);
      test.resource(state).create();

      List<KubernetesClient> clients = Collections.synchronizedList(new ArrayList<>());
      AtomicReferenceArray<Replica> replicas = new AtomicReferenceArray<>(2);
      for (int i = 0; i < 2; i++) {
        startReplica(api, clients, replicas, i, guards);
      }
      recordLeaseVersions(api, names);
      Map<String, AtomicInteger> jobAdmissions = new ConcurrentHashMap<>();
      SharedIndexInformer<Job> jobWatch = work.watchJobs(test, jobRunning, jobAdmissions);

      AtomicInteger remaining = new AtomicInteger(ops);
      AtomicBoolean done = new AtomicBoolean();
      ExecutorService pool = Executors.newFixedThreadPool(CLIENTS + 2);
      CountDownLatch clientsDone = work.startClients(pool, CLIENTS, seed, remaining);
      pool.submit(() -> runJobs(test, done, new Random(seed ^ 0x10b5)));
      Random faultRandom = new Random(seed ^ 0x5eed);
      Thread injector =
          new Thread(
              () ->
                  injectFaults(
                      faultRandom,
                      api,
                      api.mockServer(),
                      test,
                      names,
                      clients,
                      replicas,
                      guards,
                      done));
      injector.start();

      assertThat(clientsDone.await(60, TimeUnit.MINUTES)).as("clients finished").isTrue();
      work.clientsEnded();
      done.set(true);
      injector.join(60_000);
      pool.shutdown();
      assertThat(pool.awaitTermination(2, TimeUnit.MINUTES)).isTrue();
      if (guards == Guards.NO_OWNERSHIP) {
        // However few locks the random run got (a busy machine), the broken guard is put to the
        // test at least once: a write under another client's lock, with the faults stopped.
        // Jobs admitted after the Job driver stopped would hold the lock for good: they are let
        // finish meanwhile.
        AtomicBoolean attempted = new AtomicBoolean();
        Thread finisher =
            new Thread(
                () -> {
                  while (!attempted.get()) {
                    try {
                      for (Job job : test.batch().v1().jobs().inNamespace(NS).list().getItems()) {
                        if (RunnerJobFixtures.running(job)) {
                          work.jobFinishing(job.getMetadata().getName());
                          RunnerJobFixtures.finish(test, job.getMetadata().getName(), true);
                        }
                      }
                      Thread.sleep(200);
                    } catch (InterruptedException e) {
                      return;
                    } catch (RuntimeException e) {
                      // A conflict with the operator's write: the next round finishes it.
                    }
                  }
                });
        finisher.start();
        try {
          work.writeUnderAnothersLock(Duration.ofSeconds(60));
        } finally {
          attempted.set(true);
          finisher.join(10_000);
        }
      }

      // Quiesce: both replicas up, every Job admitted runs to its end, the final state is read.
      org.awaitility.Awaitility.await()
          .atMost(Duration.ofSeconds(120))
          .pollInterval(Duration.ofMillis(200))
          .until(
              () -> {
                // A client that vanished holding the lock would block the Jobs for good: the
                // admin breaks such a lock, as an operator on call would.
                Lease l = test.leases().inNamespace(NS).withName(names.leaseName()).get();
                String held = l == null ? null : l.getSpec().getHolderIdentity();
                if (held != null && !held.startsWith(LeaseLock.JOB_PREFIX)) {
                  work.forceUnlock(HttpClient.newHttpClient(), work.stateUrl(0));
                }
                for (Job job : test.batch().v1().jobs().inNamespace(NS).list().getItems()) {
                  if (RunnerJobFixtures.running(job)) {
                    work.jobFinishing(job.getMetadata().getName());
                    RunnerJobFixtures.finish(test, job.getMetadata().getName(), true);
                  }
                }
                return jobRunning.values().stream().noneMatch(b -> b)
                    && test.batch().v1().jobs().inNamespace(NS).list().getItems().stream()
                        .allMatch(RunnerJobs::finished);
              });
      work.check(jobAdmissions);
      jobWatch.close();
      for (int i = 0; i < 2; i++) {
        Replica r = replicas.get(i);
        if (r != null) {
          r.close();
        }
      }
      morgue.shutdown();
      if (!morgue.awaitTermination(2, TimeUnit.MINUTES)) {
        work.violation("a killed replica did not finish closing within 2 minutes");
      }
      clients.forEach(KubernetesClient::close);
    }
    work.report("fault injection (" + guards + ")", seed);
  }

  /** The embedded API and the replicas of this JVM; identities by Basic-auth user name. */
  private FaultWorkload.Environment embedded(KubernetesClient test) {
    return new FaultWorkload.Environment() {
      @Override
      public int replicas() {
        return 2;
      }

      @Override
      public String baseUrl(int replica) {
        return urls.get(replica);
      }

      @Override
      public String authorization(String user) {
        return auth(user);
      }

      @Override
      public HttpClient http() {
        return HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
      }

      @Override
      public RawLock rawLock(
          String base, String statePath, LockInfo info, String query, Map<String, String> headers)
          throws java.io.IOException {
        return RawLock.send(base, statePath, info, query, headers);
      }

      @Override
      public KubernetesClient admin() {
        return test;
      }
    };
  }

  private void startReplica(
      EmbeddedKubernetes api,
      List<KubernetesClient> clients,
      AtomicReferenceArray<Replica> replicas,
      int i,
      Guards guards) {
    ApiGate gate = new ApiGate("fault-replica-" + i, work::leaseWriteRefused);
    Config config = api.clientConfig();
    config.setImpersonateUsername(EmbeddedKubernetes.OPERATOR_USER);
    KubernetesClient client =
        new KubernetesClientBuilder()
            .withConfig(config)
            .withKubernetesSerialization(new TolerantSerialization())
            .withHttpClientBuilderConsumer(b -> b.addOrReplaceInterceptor("fault-gate", gate))
            .build();
    clients.add(client);
    gates.set(i, gate);
    Replica replica =
        Replica.start(
            client,
            new LeaseholdOperator.Options(Set.of(), Optional.of(NS), "fault-replica-" + i)
                .withElection(
                    new Leadership.Timing(
                        Duration.ofSeconds(3), Duration.ofSeconds(2), Duration.ofMillis(300)))
                .withLocks(new LockService.Settings(Duration.ofSeconds(10))),
            new Replica.Backend(
                access(guards),
                JobPods.NONE,
                new HttpBackend.Config("127.0.0.1", 0, Duration.ofSeconds(30)),
                16L * 1024 * 1024));
    replicas.set(i, replica);
    urls.set(i, replica.url());
  }

  /**
   * Each client is its own identity (its Basic-auth user name, taken on trust here); only the admin
   * may force-unlock. With the ownership guard off, everyone is the same identity.
   */
  private static Access access(Guards guards) {
    return new Access() {
      @Override
      public Requester authenticate(String authorization) {
        String user = "anonymous";
        if (authorization != null && authorization.startsWith("Basic ")) {
          String decoded =
              new String(
                  Base64.getDecoder().decode(authorization.substring(6)), StandardCharsets.UTF_8);
          user = decoded.substring(0, decoded.indexOf(':'));
        }
        if (guards == Guards.NO_OWNERSHIP && !user.equals(ADMIN)) {
          user = "everyone";
        }
        return new Requester(user, null, List.of(), Map.of());
      }

      @Override
      public void authorize(Requester who, Verb verb, String namespace, String name) {
        if (verb == Verb.FORCE_UNLOCK && !who.user().equals(ADMIN)) {
          throw ReplyException.text(403, who.user() + " may not force-unlock");
        }
      }
    };
  }

  private static String auth(String user) {
    return "Basic "
        + Base64.getEncoder().encodeToString((user + ":x").getBytes(StandardCharsets.UTF_8));
  }

  // ---- runner Jobs ----

  private void runJobs(KubernetesClient test, AtomicBoolean done, Random random) {
    int n = 0;
    Set<String> unlabelled = ConcurrentHashMap.newKeySet();
    try {
      while (!done.get()) {
        if (n < 30 && random.nextInt(4) == 0) {
          String name = String.format("chaos-job-%03d", n++);
          RunnerJobFixtures.create(test, name, STATE);
          work.jobCreated(name);
          count("job-created");
        }
        for (Job job : test.batch().v1().jobs().inNamespace(NS).list().getItems()) {
          String name = job.getMetadata().getName();
          boolean mine =
              RunnerJobs.stateName(job).map(STATE::equals).orElse(false)
                  || unlabelled.contains(name);
          if (!mine || !RunnerJobFixtures.running(job)) {
            continue;
          }
          if (!unlabelled.contains(name) && random.nextInt(100) < 20) {
            // Someone removes the label of a running Job: it must keep the lock until it ends.
            test.batch()
                .v1()
                .jobs()
                .inNamespace(NS)
                .withName(name)
                .patch(
                    PatchContext.of(PatchType.JSON),
                    "[{\"op\":\"remove\",\"path\":\"/metadata/labels/"
                        + RunnerJobs.STATE_LABEL.replace("/", "~1")
                        + "\"}]");
            unlabelled.add(name);
            count("job-unlabelled-while-running");
            continue;
          }
          work.jobFinishing(name);
          RunnerJobFixtures.finish(test, name, true);
          count("job-completed");
        }
        Thread.sleep(150);
      }
      // Let every Job still running end.
      for (Job job : test.batch().v1().jobs().inNamespace(NS).list().getItems()) {
        if (RunnerJobFixtures.running(job)) {
          work.jobFinishing(job.getMetadata().getName());
          RunnerJobFixtures.finish(test, job.getMetadata().getName(), true);
        }
      }
    } catch (Exception e) {
      if (!done.get()) {
        work.violation("job driver crashed: " + e);
      }
    }
  }

  // ---- faults ----

  private void injectFaults(
      Random random,
      EmbeddedKubernetes api,
      KubernetesMockServer server,
      KubernetesClient test,
      StateNames names,
      List<KubernetesClient> clients,
      AtomicReferenceArray<Replica> replicas,
      Guards guards,
      AtomicBoolean done) {
    String leasePath =
        "/apis/coordination.k8s.io/v1/namespaces/" + NS + "/leases/" + names.leaseName();
    String secretPath = "/api/v1/namespaces/" + NS + "/secrets/" + names.secretName();
    boolean outageDone = false;
    long nextDisruption = System.nanoTime() + Duration.ofSeconds(2).toNanos();
    try {
      Thread.sleep(500);
      while (!done.get()) {
        int roll = random.nextInt(100);
        if (roll < 30) {
          server
              .expect()
              .put()
              .withPath(leasePath)
              .andReturn(500, "{\"kind\":\"Status\",\"code\":500,\"message\":\"injected\"}")
              .once();
          fault("api-500-lease-update");
        } else if (roll < 55) {
          server
              .expect()
              .put()
              .withPath(secretPath)
              .andReturn(
                  409,
                  "{\"kind\":\"Status\",\"code\":409,\"reason\":\"Conflict\",\"message\":\"injected\"}")
              .once();
          fault("api-409-state-update");
        } else if (roll < 70) {
          server
              .expect()
              .get()
              .withPath(secretPath)
              .andReturn(500, "{\"kind\":\"Status\",\"code\":500,\"message\":\"injected\"}")
              .once();
          fault("api-500-state-read");
        }
        if (System.nanoTime() >= nextDisruption) {
          if (!outageDone && random.nextInt(12) == 0) {
            // Every replica away for longer than the 5 s lease: a Job's lock lapses, and is
            // taken over only once its Job has ended.
            long from = System.nanoTime();
            stop(replicas, 0);
            stop(replicas, 1);
            Thread.sleep(6_000);
            startReplica(api, clients, replicas, 0, guards);
            startReplica(api, clients, replicas, 1, guards);
            fault("outage-past-lease");
            work.disruption("outage", from, SETTLED);
            outageDone = true;
          } else {
            disrupt(random, api, test, clients, replicas, guards);
          }
          // Mostly one fault after another; now and then a calm stretch, in which a free lock
          // must never idle while someone waits for it.
          long gap = random.nextInt(4) == 0 ? 20_000 : 500 + random.nextInt(3_000);
          nextDisruption = System.nanoTime() + Duration.ofMillis(gap).toNanos();
        }
        Thread.sleep(150 + random.nextInt(450));
      }
    } catch (Exception e) {
      work.violation("fault injector crashed: " + e);
    }
  }

  /** How long after a fault a free lock may idle: a new leader elected and at work. */
  private static final Duration SETTLED = Duration.ofSeconds(6);

  /**
   * After a replica stalled: it still answers the others' probes (only its API calls are held), so
   * its places, which may stand before live waiters, count as gone only once its heartbeat times
   * out (12 s). A killed replica refuses the probe and settles within {@link #SETTLED}.
   */
  private static final Duration SETTLED_AFTER_STALL = Duration.ofSeconds(16);

  /**
   * One fault to the replicas: the leader stopped gracefully or killed (preferably while a Job
   * runs), the leader stalled past every lease, leadership flapping, a replica killed with clients
   * waiting on it.
   */
  private void disrupt(
      Random random,
      EmbeddedKubernetes api,
      KubernetesClient test,
      List<KubernetesClient> clients,
      AtomicReferenceArray<Replica> replicas,
      Guards guards)
      throws Exception {
    int leader = replicas.get(0).operator().leadership().leading() ? 0 : 1;
    boolean jobRuns = jobRunning.values().stream().anyMatch(b -> b);
    String during = jobRuns ? "-while-job-ran" : "";
    int roll = random.nextInt(jobRuns ? 6 : 10);
    long from = System.nanoTime();
    if (roll < 3) {
      // The leader stops (a rolling update) and comes back: it hands leadership on, its waiters
      // are told to retry elsewhere, a running Job's lock is renewed once more.
      stop(replicas, leader);
      Thread.sleep(100 + random.nextInt(700));
      startReplica(api, clients, replicas, leader, guards);
      fault("leader-restart" + during);
      work.disruption("leader-restart", from, SETTLED);
    } else if (roll < 6) {
      // The leader is killed: no release, no renewal, waiters dropped unanswered.
      kill(replicas, leader);
      Thread.sleep(200 + random.nextInt(1_000));
      startReplica(api, clients, replicas, leader, guards);
      fault("leader-killed" + during);
      work.disruption("leader-killed", from, SETTLED);
    } else if (roll < 8) {
      // The leader stalls (SIGSTOP, a long GC pause, a partition) longer than the lock's 5 s
      // lease and the election's 3 s, at times longer than the 12 s a heartbeat lasts; whatever
      // it had under way goes out when it resumes.
      gates.get(leader).pause();
      Thread.sleep(6_000 + random.nextInt(8_000));
      gates.get(leader).resume();
      fault("leader-stalled-past-lease" + during);
      work.disruption("leader-stalled", from, SETTLED_AFTER_STALL);
    } else if (roll < 9) {
      flapLeadership(random, test, replicas);
      fault("leadership-flapping" + during);
      work.disruption("leadership-flapping", from, SETTLED);
    } else {
      // Any replica dies with clients waiting on it: their places must not block the line.
      int victim = random.nextInt(2);
      kill(replicas, victim);
      Thread.sleep(500 + random.nextInt(2_500));
      startReplica(api, clients, replicas, victim, guards);
      fault("replica-killed");
      work.disruption("replica-killed", from, SETTLED);
    }
  }

  /** Stops replica {@code i} gracefully. */
  private void stop(AtomicReferenceArray<Replica> replicas, int i) {
    Replica r = replicas.get(i);
    String run = r.operator().locks().replica();
    r.close();
    work.runEnded(run);
  }

  /**
   * Kills replica {@code i}: from now on none of its requests reaches the API, its backend's
   * connections are dropped unanswered, and what it does while it goes down changes nothing.
   */
  private void kill(AtomicReferenceArray<Replica> replicas, int i) {
    Replica r = replicas.get(i);
    String run = r.operator().locks().replica();
    gates.get(i).die();
    r.backend().halt();
    work.runEnded(run);
    morgue.submit(
        () -> {
          try {
            r.operator().close();
          } catch (RuntimeException e) {
            // Dead: every call it makes fails.
          }
        });
  }

  /**
   * Leadership lost and won back several times in quick succession: another candidate takes the
   * election Lease for a moment (as after a partition) and lets it go, so the leader stops
   * reconciling in the middle of its work and starts again, again and again.
   */
  private void flapLeadership(
      Random random, KubernetesClient test, AtomicReferenceArray<Replica> replicas)
      throws InterruptedException {
    int flaps = 3 + random.nextInt(3);
    for (int flap = 0; flap < flaps; flap++) {
      long until = System.nanoTime() + Duration.ofMillis(300 + random.nextInt(1_200)).toNanos();
      while (System.nanoTime() < until) {
        editLeaderLease(test, "intruder");
        Thread.sleep(100);
      }
      editLeaderLease(test, null);
      long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
      while (System.nanoTime() < deadline
          && !replicas.get(0).operator().leadership().leading()
          && !replicas.get(1).operator().leadership().leading()) {
        Thread.sleep(50);
      }
    }
  }

  private static void editLeaderLease(KubernetesClient test, String holder) {
    try {
      test.leases()
          .inNamespace(NS)
          .withName(LeaseholdOperator.LEADER_LEASE)
          .edit(
              (Lease l) -> {
                java.time.ZonedDateTime now = java.time.ZonedDateTime.now(java.time.ZoneOffset.UTC);
                l.getSpec().setHolderIdentity(holder);
                l.getSpec().setAcquireTime(now);
                l.getSpec().setRenewTime(now);
                l.getSpec().setLeaseDurationSeconds(holder == null ? 1 : 3);
                return l;
              });
    } catch (RuntimeException e) {
      // A conflict with a candidate's write: the next try wins.
    }
  }

  // ---- watches and the checker ----

  /**
   * Every version of the Lease the API stores, in the order it stored them, as it stores them: a
   * watch could skip versions when it reconnects, and the checker must see each one.
   */
  private void recordLeaseVersions(EmbeddedKubernetes api, StateNames names) {
    api.onStored(
        write -> {
          JsonNode o = write.object();
          if (!"Lease".equals(o.path("kind").asText())
              || !names.leaseName().equals(o.path("metadata").path("name").asText())) {
            return;
          }
          if ("DELETE".equals(write.method())) {
            work.violation("the lock Lease was deleted during the run");
            return;
          }
          Lease l = Serialization.jsonMapper().convertValue(o, Lease.class);
          work.leaseVersion(System.nanoTime(), l);
        });
  }
}
