package io.leasehold.fault;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
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
import io.leasehold.kube.OnChange;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.lock.Ticket;
import io.leasehold.operator.Leadership;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateStore;
import io.leasehold.support.RawLock;
import io.leasehold.support.RunnerJobFixtures;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
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
 * Jobs, while faults are injected: API errors (500, 409), the leader stopped and started again, an
 * outage of every replica longer than the lease, clients that hang up while they wait, clients that
 * vanish holding the lock, clients that force-unlock it, clients that write under someone else's
 * lock ID, and running Jobs that lose their label. A checker then reads the recorded history:
 *
 * <ul>
 *   <li>never two holders without a release between them, never two Jobs running;
 *   <li>every acknowledged write kept and in order; none accepted from a broken lock, nor under a
 *       lock ID of another identity;
 *   <li>the lock never granted to a waiter its replica had marked as gone, and never held for long
 *       by a client that hung up without an answer;
 *   <li>order: the lock never goes to one in line while a Job or a connected client stands before
 *       it;
 *   <li>the stored state and every kept version decode.
 * </ul>
 *
 * <p>Short by default (CI). Long: {@code mvn -B -pl operator test -Dtest=FaultInjectionTest
 * -Dleasehold.fault.ops=10000}. Rerun a run's choices with {@code -Dleasehold.fault.seed=SEED}
 * (thread timing still varies).
 */
class FaultInjectionTest {

  private static final String NS = "default";
  private static final String STATE = "chaos";
  private static final String LINEAGE = "chaos-lineage";
  private static final int CLIENTS = 16;
  private static final String ADMIN = "admin";
  private static final ObjectMapper JSON = new ObjectMapper();

  /** What the run checks with its guards on, and with one guard off on purpose. */
  enum Guards {
    ON,
    /** Every requester is the same identity: a lock ID alone lets anyone write under it. */
    NO_OWNERSHIP
  }

  private record Ack(
      String writeId, long serial, String lockId, String client, long sentNanos, long ackNanos) {}

  private record Broken(String lockId, long atNanos) {}

  /** One version of the Lease as the API stored it. */
  private record Seen(long nanos, String holder, List<Ticket> line) {}

  private final Map<String, AtomicInteger> counts = new ConcurrentHashMap<>();
  private final Map<String, AtomicInteger> faults = new ConcurrentHashMap<>();
  private final List<Ack> acks = Collections.synchronizedList(new ArrayList<>());
  private final List<Broken> broken = Collections.synchronizedList(new ArrayList<>());
  private final List<String> violations = Collections.synchronizedList(new ArrayList<>());
  private final List<Seen> seen = Collections.synchronizedList(new ArrayList<>());
  private final Map<String, Long> hungUp = new ConcurrentHashMap<>();
  private final AtomicReferenceArray<String> urls = new AtomicReferenceArray<>(2);

  private void count(String what) {
    counts.computeIfAbsent(what, k -> new AtomicInteger()).incrementAndGet();
  }

  private void fault(String what) {
    faults.computeIfAbsent(what, k -> new AtomicInteger()).incrementAndGet();
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
    assertThat(violations).isEmpty();
    assertThat(acks).as("some writes were acknowledged").isNotEmpty();
    assertThat(counts).containsKeys("stolen-write-refused", "hung-up-waiting");
  }

  @Test
  @DisplayName(
      "With the ownership guard off on purpose (everyone the same identity), the checker reports"
          + " writes accepted under another client's lock")
  void checkerCatchesABrokenGuard() throws Exception {
    long seed = Long.getLong("leasehold.fault.seed", System.nanoTime());
    run(Guards.NO_OWNERSHIP, seed, 300);
    assertThat(violations).anyMatch(v -> v.contains("under lock") && v.contains("of client"));
  }

  private void run(Guards guards, long seed, int ops) throws Exception {
    System.out.printf(
        "fault injection (%s): seed %d, %d operations, %d clients, 2 replicas%n",
        guards, seed, ops, CLIENTS);
    StateNames names = new StateNames(NS, STATE, "default");
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient test = api.newClient()) {
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
      Map<String, Boolean> jobRunning = new ConcurrentHashMap<>();
      Map<String, AtomicInteger> jobAdmissions = new ConcurrentHashMap<>();
      SharedIndexInformer<Job> jobWatch = watchJobs(test, jobRunning, jobAdmissions);

      AtomicInteger remaining = new AtomicInteger(ops);
      AtomicBoolean done = new AtomicBoolean();
      ExecutorService pool = Executors.newFixedThreadPool(CLIENTS + 2);
      CountDownLatch clientsDone = new CountDownLatch(CLIENTS);
      for (int c = 0; c < CLIENTS; c++) {
        int index = c;
        pool.submit(
            () -> {
              try {
                runClient(index, new Random(seed + index), remaining, test, names);
              } catch (Throwable t) {
                violations.add("client " + index + " crashed: " + t);
              } finally {
                clientsDone.countDown();
              }
            });
      }
      pool.submit(() -> runJobs(test, done, new Random(seed ^ 0x10b5)));
      Random faultRandom = new Random(seed ^ 0x5eed);
      Thread injector =
          new Thread(
              () ->
                  injectFaults(
                      faultRandom, api, api.mockServer(), names, clients, replicas, guards, done));
      injector.start();

      assertThat(clientsDone.await(20, TimeUnit.MINUTES)).as("clients finished").isTrue();
      done.set(true);
      injector.join(60_000);
      pool.shutdown();
      assertThat(pool.awaitTermination(2, TimeUnit.MINUTES)).isTrue();

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
                  forceUnlock(HttpClient.newHttpClient(), urls.get(0) + NS + "/" + STATE);
                }
                for (Job job : test.batch().v1().jobs().inNamespace(NS).list().getItems()) {
                  if (RunnerJobFixtures.running(job)) {
                    RunnerJobFixtures.finish(test, job.getMetadata().getName(), true);
                  }
                }
                return jobRunning.values().stream().noneMatch(b -> b)
                    && test.batch().v1().jobs().inNamespace(NS).list().getItems().stream()
                        .allMatch(RunnerJobs::finished);
              });
      System.out.printf(
          "fault injection (%s): operations %s; faults injected %s%n",
          guards, new java.util.TreeMap<>(counts), new java.util.TreeMap<>(faults));
      check(urls.get(0) + NS + "/" + STATE, names, test, jobAdmissions);
      jobWatch.close();
      for (int i = 0; i < 2; i++) {
        Replica r = replicas.get(i);
        if (r != null) {
          r.close();
        }
      }
      clients.forEach(KubernetesClient::close);
    }
    System.out.printf(
        "fault injection (%s): seed %d; operations %s; faults injected %s; acknowledged writes %d;"
            + " violations %d%n",
        guards,
        seed,
        new java.util.TreeMap<>(counts),
        new java.util.TreeMap<>(faults),
        acks.size(),
        violations.size());
    violations.stream().limit(50).forEach(v -> System.out.println("  VIOLATION " + v));
  }

  private void startReplica(
      EmbeddedKubernetes api,
      List<KubernetesClient> clients,
      AtomicReferenceArray<Replica> replicas,
      int i,
      Guards guards) {
    KubernetesClient client = api.newClient();
    clients.add(client);
    Replica replica =
        Replica.start(
            client,
            new LeaseholdOperator.Options(Set.of(), Optional.of(NS), "fault-replica-" + i)
                .withElection(
                    new Leadership.Timing(
                        Duration.ofSeconds(3), Duration.ofSeconds(2), Duration.ofMillis(300)))
                .withLocks(new LockService.Settings(Duration.ofSeconds(10), Duration.ofSeconds(2))),
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

  // ---- clients ----

  private String url(Random random) {
    return urls.get(random.nextInt(2)) + NS + "/" + STATE;
  }

  private void runClient(
      int index, Random random, AtomicInteger remaining, KubernetesClient test, StateNames names)
      throws Exception {
    HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    String me = "client-" + index;
    while (remaining.getAndDecrement() > 0) {
      int roll = random.nextInt(100);
      try {
        if (roll < 55) {
          lockedWrite(http, random, index);
        } else if (roll < 63) {
          count("unlocked-write");
          write(http, url(random), null, me, "c" + index + "-nolock-" + random.nextInt(1_000_000));
        } else if (roll < 68) {
          forceUnlock(http, url(random));
        } else if (roll < 78) {
          hangUpWhileWaiting(random, index);
        } else if (roll < 86) {
          stealLock(http, random, index, test, names);
        } else {
          read(http, url(random));
        }
      } catch (java.io.IOException e) {
        // A replica is down (stopped or restarting): like a client behind a Service, try again
        // in a moment; the operation is not used up.
        count("request-failed");
        remaining.incrementAndGet();
        Thread.sleep(100 + random.nextInt(200));
      }
    }
  }

  private LockInfo lockInfo(int index, String lockId) {
    return new LockInfo(
        lockId,
        "OperationTypeApply",
        "",
        "client-" + index + "@fault",
        "1.11.4",
        java.time.Instant.now().toString(),
        "");
  }

  private void lockedWrite(HttpClient http, Random random, int index) throws Exception {
    String me = "client-" + index;
    String lockId = "c" + index + "-" + Long.toHexString(random.nextLong());
    LockInfo info = lockInfo(index, lockId);
    String wait = random.nextInt(3) > 0 ? "?wait=" + (1 + random.nextInt(5)) + "s" : "";
    int replica = random.nextInt(2);
    String lockPath = NS + "/" + STATE + "/lock" + wait;
    HttpResponse<String> lock = send(http, "LOCK", urls.get(replica) + lockPath, info.toJson(), me);
    for (int retry = 0; retry < 2 && lock.statusCode() == 503; retry++) {
      // A replica that is stopping answered: retry with the same lock ID on the other one, as
      // Terraform's HTTP client does; the place in line is kept.
      count("lock-503-retried");
      replica = 1 - replica;
      lock = send(http, "LOCK", urls.get(replica) + lockPath, info.toJson(), me);
    }
    count("lock-" + lock.statusCode());
    if (lock.statusCode() >= 500) {
      String why = lock.body().trim();
      count("lock-" + lock.statusCode() + " " + why.substring(0, Math.min(60, why.length())));
    }
    if (lock.statusCode() != 200) {
      return;
    }
    int writes = 1 + random.nextInt(2);
    for (int i = 0; i < writes; i++) {
      write(http, url(random), lockId, me, lockId + "-w" + i);
    }
    if (random.nextInt(100) < 4) {
      count("vanished-holding-lock");
      return;
    }
    HttpResponse<String> unlock = send(http, "UNLOCK", url(random) + "/lock", info.toJson(), me);
    count("unlock-" + unlock.statusCode());
  }

  /** A client that gives up while it waits (Ctrl-C, a cancelled CI job, a proxy timeout). */
  private void hangUpWhileWaiting(Random random, int index) throws Exception {
    String me = "client-" + index;
    String lockId = "c" + index + "-h" + Long.toHexString(random.nextLong());
    LockInfo info = lockInfo(index, lockId);
    int replica = random.nextInt(2);
    RawLock r =
        RawLock.send(
            urls.get(replica),
            NS + "/" + STATE,
            info,
            "?wait=30s",
            Map.of("Authorization", auth(me)));
    RawLock.Answer answer = r.answer(Duration.ofMillis(random.nextInt(400)));
    if (answer == null) {
      answer = r.hangUp(Duration.ofSeconds(20)).orElse(null);
      if (answer == null) {
        // The server saw it go: from now on the lock must never stay with this ID.
        hungUp.put(lockId, System.nanoTime());
        count("hung-up-waiting");
        return;
      }
      count("hung-up-but-granted-first");
    }
    r.close();
    if (answer.status() == 200) {
      HttpClient http = HttpClient.newHttpClient();
      send(http, "UNLOCK", urls.get(replica) + NS + "/" + STATE + "/lock", info.toJson(), me);
    }
  }

  /** A client that writes under the lock ID of whoever holds the lock now. */
  private void stealLock(
      HttpClient http, Random random, int index, KubernetesClient test, StateNames names)
      throws Exception {
    Lease lease = test.leases().inNamespace(NS).withName(names.leaseName()).get();
    String holder = lease == null ? null : lease.getSpec().getHolderIdentity();
    if (holder == null || holder.startsWith("c" + index + "-")) {
      count("steal-nothing-to-steal");
      return;
    }
    String me = "client-" + index;
    int status =
        write(http, url(random), holder, me, "c" + index + "-stolen-" + random.nextInt(1_000_000));
    count(status == 200 ? "stolen-write-ACCEPTED" : "stolen-write-refused");
  }

  private int write(HttpClient http, String url, String lockId, String client, String writeId)
      throws Exception {
    HttpResponse<String> current = send(http, "GET", url, null, client);
    List<String> items = new ArrayList<>();
    long serial = 0;
    if (current.statusCode() == 200) {
      JsonNode state = JSON.readTree(current.body());
      serial = state.get("serial").asLong();
      state.at("/outputs/items/value").forEach(v -> items.add(v.asText()));
    } else if (current.statusCode() != 404) {
      count("read-before-write-failed");
      return current.statusCode();
    }
    items.add(writeId);
    String body = stateJson(serial + 1, items);
    long sent = System.nanoTime();
    HttpResponse<String> post =
        send(http, "POST", url + (lockId == null ? "" : "?ID=" + lockId), body, client);
    count("write-" + post.statusCode());
    if (post.statusCode() == 200 && post.body().contains("stored")) {
      acks.add(new Ack(writeId, serial + 1, lockId, client, sent, System.nanoTime()));
    }
    return post.statusCode();
  }

  private void forceUnlock(HttpClient http, String url) throws Exception {
    HttpResponse<String> r = send(http, "UNLOCK", url + "/lock", null, ADMIN);
    count("force-unlock-" + r.statusCode());
    String body = r.body();
    if (r.statusCode() == 200 && body.startsWith("lock ") && body.contains(" held by ")) {
      broken.add(new Broken(body.substring(5, body.indexOf(" held by ")), System.nanoTime()));
    }
  }

  private void read(HttpClient http, String url) throws Exception {
    HttpResponse<String> r = send(http, "GET", url, null, "reader");
    count("read-" + r.statusCode());
    if (r.statusCode() == 200) {
      JsonNode state = JSON.readTree(r.body());
      if (!state.has("serial") || !LINEAGE.equals(state.path("lineage").asText())) {
        violations.add(
            "a read returned something that is not the state: "
                + r.body().substring(0, Math.min(200, r.body().length())));
      }
    } else if (r.statusCode() == 500 && r.body().contains("cannot be read")) {
      violations.add("stored state did not decode: " + r.body());
    }
  }

  private static String stateJson(long serial, List<String> items) throws Exception {
    var root = JSON.createObjectNode();
    root.put("version", 4)
        .put("terraform_version", "1.11.4")
        .put("serial", serial)
        .put("lineage", LINEAGE);
    var out = root.putObject("outputs").putObject("items");
    var values = out.putArray("value");
    items.forEach(values::add);
    out.putArray("type").add("list").add("string");
    root.putArray("resources");
    root.putNull("check_results");
    return root.toString();
  }

  private static HttpResponse<String> send(
      HttpClient http, String method, String url, String body, String user) throws Exception {
    return http.send(
        HttpRequest.newBuilder(URI.create(url))
            .timeout(Duration.ofSeconds(60))
            .header("Authorization", auth(user))
            .method(
                method,
                body == null
                    ? HttpRequest.BodyPublishers.noBody()
                    : HttpRequest.BodyPublishers.ofString(body))
            .build(),
        HttpResponse.BodyHandlers.ofString());
  }

  // ---- runner Jobs ----

  private void runJobs(KubernetesClient test, AtomicBoolean done, Random random) {
    int n = 0;
    Set<String> unlabelled = ConcurrentHashMap.newKeySet();
    try {
      while (!done.get()) {
        if (n < 30 && random.nextInt(4) == 0) {
          RunnerJobFixtures.create(test, String.format("chaos-job-%03d", n++), STATE);
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
          RunnerJobFixtures.finish(test, name, true);
          count("job-completed");
        }
        Thread.sleep(150);
      }
      // Let every Job still running end.
      for (Job job : test.batch().v1().jobs().inNamespace(NS).list().getItems()) {
        if (RunnerJobFixtures.running(job)) {
          RunnerJobFixtures.finish(test, job.getMetadata().getName(), true);
        }
      }
    } catch (Exception e) {
      if (!done.get()) {
        violations.add("job driver crashed: " + e);
      }
    }
  }

  // ---- faults ----

  private void injectFaults(
      Random random,
      EmbeddedKubernetes api,
      KubernetesMockServer server,
      StateNames names,
      List<KubernetesClient> clients,
      AtomicReferenceArray<Replica> replicas,
      Guards guards,
      AtomicBoolean done) {
    String leasePath =
        "/apis/coordination.k8s.io/v1/namespaces/" + NS + "/leases/" + names.leaseName();
    String secretPath = "/api/v1/namespaces/" + NS + "/secrets/" + names.secretName();
    boolean outageDone = false;
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
        } else if (roll < 88) {
          // The leader stops (a rolling update, a crash) and comes back.
          int leader = replicas.get(0).operator().leadership().leading() ? 0 : 1;
          replicas.get(leader).close();
          Thread.sleep(100 + random.nextInt(700));
          startReplica(api, clients, replicas, leader, guards);
          fault("leader-restart");
        } else if (!outageDone) {
          // Every replica away for longer than the 5 s lease: a Job's lock may expire and be
          // taken over meanwhile.
          replicas.get(0).close();
          replicas.get(1).close();
          Thread.sleep(6_000);
          startReplica(api, clients, replicas, 0, guards);
          startReplica(api, clients, replicas, 1, guards);
          fault("outage-past-lease");
          outageDone = true;
        }
        Thread.sleep(150 + random.nextInt(450));
      }
    } catch (Exception e) {
      violations.add("fault injector crashed: " + e);
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
            violations.add("the lock Lease was deleted during the run");
            return;
          }
          Lease l = Serialization.jsonMapper().convertValue(o, Lease.class);
          seen.add(
              new Seen(
                  System.nanoTime(),
                  l.getSpec() == null ? null : l.getSpec().getHolderIdentity(),
                  LeaseLock.line(l).tickets()));
        });
  }

  /** Jobs are followed by UID, whatever their labels become. */
  private SharedIndexInformer<Job> watchJobs(
      KubernetesClient test, Map<String, Boolean> running, Map<String, AtomicInteger> admissions) {
    return test.batch()
        .v1()
        .jobs()
        .inNamespace(NS)
        .inform(
            OnChange.of(
                (Job j) -> {
                  String uid = j.getMetadata().getUid();
                  boolean ours =
                      RunnerJobs.stateName(j).map(STATE::equals).orElse(false)
                          || RunnerJobs.admittedFor(j, STATE)
                          || running.containsKey(uid);
                  if (!ours) {
                    return;
                  }
                  boolean active = !RunnerJobs.suspended(j) && !RunnerJobs.finished(j);
                  Boolean was = running.put(uid, active);
                  if (active && !Boolean.TRUE.equals(was)) {
                    admissions
                        .computeIfAbsent(j.getMetadata().getName(), k -> new AtomicInteger())
                        .incrementAndGet();
                    long now = running.values().stream().filter(b -> b).count();
                    if (now > 1) {
                      violations.add("two runner Jobs admitted at once: " + running);
                    }
                  }
                }));
  }

  private void check(
      String url,
      StateNames names,
      KubernetesClient client,
      Map<String, AtomicInteger> jobAdmissions)
      throws Exception {
    List<Seen> versions;
    synchronized (seen) {
      versions = new ArrayList<>(seen);
    }
    int grantsChecked = 0;
    for (int i = 1; i < versions.size(); i++) {
      Seen prev = versions.get(i - 1);
      Seen next = versions.get(i);
      // 1. One holder at a time: the lock never goes from one client's lock straight to another's.
      if (prev.holder() != null
          && next.holder() != null
          && !prev.holder().equals(next.holder())
          && !prev.holder().startsWith(LeaseLock.JOB_PREFIX)) {
        violations.add(
            "lock went from " + prev.holder() + " to " + next.holder() + " without being released");
      }
      if (next.holder() == null || next.holder().equals(prev.holder())) {
        continue;
      }
      grantsChecked++;
      String granted = next.holder();
      String grantedTicket = LeaseLock.jobUid(granted).orElse(granted);
      // 2. Never granted to a waiter its replica had marked as gone.
      for (Ticket t : prev.line()) {
        if (t.id().equals(grantedTicket) && t.gone() != null) {
          violations.add("lock granted to " + granted + ", a waiter marked gone at " + t.gone());
        }
      }
      // 3. FIFO: nobody before the grantee in line may still be waiting and connected.
      for (Ticket ahead : prev.line()) {
        if (ahead.id().equals(grantedTicket)) {
          break;
        }
        Optional<Ticket> after =
            next.line().stream().filter(t -> t.id().equals(ahead.id())).findFirst();
        boolean stillWaiting =
            after.isPresent() && (after.get().isJob() || after.get().gone() == null);
        if (stillWaiting && !granted.startsWith("leasehold-delete/")) {
          violations.add(
              "lock granted to "
                  + granted
                  + " while "
                  + (ahead.isJob() ? "Job " : "connected client ")
                  + ahead.who()
                  + " stood before it in line");
        }
      }
    }
    // 4. A client that hung up without an answer never keeps the lock.
    for (int i = 0; i < versions.size(); i++) {
      Seen v = versions.get(i);
      Long gone = v.holder() == null ? null : hungUp.get(v.holder());
      if (gone == null) {
        continue;
      }
      long until = i + 1 < versions.size() ? versions.get(i + 1).nanos() : System.nanoTime();
      if (until - v.nanos() > 3_000_000_000L) {
        violations.add(
            "lock held for "
                + (until - v.nanos()) / 1_000_000
                + " ms by "
                + v.holder()
                + ", a client that had hung up without an answer");
      }
    }
    // 5. Every acknowledged write is in the final state, in the order of its serial.
    HttpResponse<String> last = send(HttpClient.newHttpClient(), "GET", url, null, "reader");
    assertThat(last.statusCode()).as(last.body()).isEqualTo(200);
    JsonNode finalState = JSON.readTree(last.body());
    List<String> items = new ArrayList<>();
    finalState.at("/outputs/items/value").forEach(v -> items.add(v.asText()));
    List<Ack> ordered = new ArrayList<>(acks);
    ordered.sort((a, b) -> Long.compare(a.serial(), b.serial()));
    int lastPosition = -1;
    long lastSerial = 0;
    for (Ack ack : ordered) {
      int position = items.indexOf(ack.writeId());
      if (position < 0) {
        violations.add(
            "acknowledged write " + ack.writeId() + " (serial " + ack.serial() + ") is lost");
      } else if (position < lastPosition) {
        violations.add("write " + ack.writeId() + " is out of order");
      } else {
        lastPosition = position;
      }
      if (ack.serial() == lastSerial) {
        violations.add("two writes acknowledged with serial " + ack.serial());
      }
      lastSerial = ack.serial();
    }
    // 6. No write accepted from a lock after it was broken, nor under another client's lock.
    for (Broken b : broken) {
      for (Ack ack : acks) {
        if (b.lockId().equals(ack.lockId()) && ack.sentNanos() > b.atNanos()) {
          violations.add(
              "write "
                  + ack.writeId()
                  + " accepted with lock "
                  + b.lockId()
                  + " after it was broken");
        }
      }
    }
    for (Ack ack : acks) {
      if (ack.lockId() != null
          && ack.lockId().startsWith("c")
          && !ack.lockId().startsWith(ack.client().replace("client-", "c") + "-")) {
        violations.add(
            "write "
                + ack.writeId()
                + " by "
                + ack.client()
                + " accepted under lock "
                + ack.lockId()
                + " of client "
                + ack.lockId().substring(1, ack.lockId().indexOf('-')));
      }
    }
    // 7. The stored state decodes, and so does every kept version.
    StateStore.Current stored = new StateStore(client, names).read().orElseThrow();
    assertThat(stored.facts().getSerial()).isEqualTo(finalState.get("serial").asLong());
    HttpResponse<String> history =
        send(HttpClient.newHttpClient(), "GET", url + "/history", null, "reader");
    for (JsonNode v : JSON.readTree(history.body()).get("versions")) {
      HttpResponse<String> version =
          send(
              HttpClient.newHttpClient(),
              "GET",
              url + "/history/" + v.get("id").asText(),
              null,
              "reader");
      if (version.statusCode() != 200) {
        violations.add(
            "history version " + v.get("id").asText() + " does not decode: " + version.body());
      }
    }
    // 8. Every admitted Job ran exactly once.
    jobAdmissions.forEach(
        (job, n) -> {
          if (n.get() != 1) {
            violations.add("Job " + job + " admitted " + n.get() + " times");
          }
        });
    counts.put("jobs-admitted", new AtomicInteger(jobAdmissions.size()));
    counts.put("broken-locks", new AtomicInteger(broken.size()));
    counts.put("grants-checked", new AtomicInteger(grantsChecked));
    counts.put("lease-versions-seen", new AtomicInteger(versions.size()));
  }
}
