package io.leasehold.fault;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.leasehold.api.TerraformState;
import io.leasehold.backend.Access;
import io.leasehold.backend.HttpBackend;
import io.leasehold.backend.JobPods;
import io.leasehold.cli.Replica;
import io.leasehold.embedded.EmbeddedKubernetes;
import io.leasehold.kube.OnChange;
import io.leasehold.lock.LockInfo;
import io.leasehold.operator.Leadership;
import io.leasehold.operator.LeaseholdOperator;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateStore;
import io.leasehold.support.RunnerJobFixtures;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
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
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Many concurrent clients and runner Jobs against one state while faults are injected: API errors
 * (500, 409), operator instances stopped and started, an operator outage longer than the lease,
 * clients that vanish holding the lock and clients that force-unlock it. A checker then reads the
 * recorded history: never two holders, every acknowledged write kept and in order, no write
 * accepted from a broken lock, stored state always readable, Jobs admitted one at a time.
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
  private static final ObjectMapper JSON = new ObjectMapper();

  private record Ack(String writeId, long serial, String lockId, long sentNanos, long ackNanos) {}

  private record Broken(String lockId, long atNanos) {}

  private record Holder(long nanos, String holder) {}

  private final Map<String, AtomicInteger> counts = new ConcurrentHashMap<>();
  private final Map<String, AtomicInteger> faults = new ConcurrentHashMap<>();
  private final List<Ack> acks = Collections.synchronizedList(new ArrayList<>());
  private final List<Broken> broken = Collections.synchronizedList(new ArrayList<>());
  private final List<String> violations = Collections.synchronizedList(new ArrayList<>());
  private final List<Holder> holders = Collections.synchronizedList(new ArrayList<>());

  private void count(String what) {
    counts.computeIfAbsent(what, k -> new AtomicInteger()).incrementAndGet();
  }

  private void fault(String what) {
    faults.computeIfAbsent(what, k -> new AtomicInteger()).incrementAndGet();
  }

  @Test
  @DisplayName(
      "Under concurrent clients, Jobs and injected faults, the recorded history shows one holder"
          + " at a time, every acknowledged write kept in order, no write from a broken lock,"
          + " state always readable")
  void historyHoldsUnderFaults() throws Exception {
    long seed = Long.getLong("leasehold.fault.seed", System.nanoTime());
    int ops = Integer.getInteger("leasehold.fault.ops", 500);
    System.out.printf("fault injection: seed %d, %d operations, %d clients%n", seed, ops, CLIENTS);
    StateNames names = new StateNames(NS, STATE, "default");
    try (EmbeddedKubernetes api = EmbeddedKubernetes.start(0);
        KubernetesClient client = api.newClient();
        KubernetesClient test = api.newClient()) {
      TerraformState state = new TerraformState();
      state.getMetadata().setName(STATE);
      state.getMetadata().setNamespace(NS);
      state.getSpec().getLock().setLeaseDurationSeconds(5);
      state.getSpec().getHistory().setKeep(100);
      test.resource(state).create();

      AtomicReference<LeaseholdOperator> operator = new AtomicReference<>(startOperator(client));
      // A second replica that stays up and serves the backend, while the first is stopped and
      // started; leader election decides which one reconciles.
      Replica backend =
          Replica.start(
              client,
              options("fault-backend"),
              new Replica.Backend(
                  Access.NONE,
                  JobPods.NONE,
                  new HttpBackend.Config("127.0.0.1", 0, Duration.ofSeconds(30)),
                  16L * 1024 * 1024));
      String url = backend.url() + NS + "/" + STATE;
      SharedIndexInformer<Lease> leaseWatch = watchLease(test, names);
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
                runClient(index, new Random(seed + index), url, remaining);
              } catch (Throwable t) {
                violations.add("client " + index + " crashed: " + t);
              } finally {
                clientsDone.countDown();
              }
            });
      }
      pool.submit(() -> runJobs(test, done, jobRunning));
      Random faultRandom = new Random(seed ^ 0x5eed);
      Thread injector =
          new Thread(
              () -> injectFaults(faultRandom, api.mockServer(), names, operator, client, done));
      injector.start();

      assertThat(clientsDone.await(15, TimeUnit.MINUTES)).as("clients finished").isTrue();
      done.set(true);
      injector.join(60_000);
      pool.shutdown();
      assertThat(pool.awaitTermination(2, TimeUnit.MINUTES)).isTrue();

      // Quiesce: the operator is up, Jobs finish, the final state is read.
      Thread.sleep(1000);
      check(url, names, client, jobAdmissions);
      leaseWatch.close();
      jobWatch.close();
      backend.close();
      operator.get().close();
    }
    System.out.printf(
        "fault injection: seed %d; operations %s; faults injected %s; acknowledged writes %d;"
            + " violations %d%n",
        seed,
        new java.util.TreeMap<>(counts),
        new java.util.TreeMap<>(faults),
        acks.size(),
        violations.size());
    violations.forEach(v -> System.out.println("  VIOLATION " + v));
    assertThat(violations).isEmpty();
    assertThat(acks).as("some writes were acknowledged").isNotEmpty();
  }

  private static LeaseholdOperator startOperator(KubernetesClient client) {
    return LeaseholdOperator.start(client, options("fault-operator"));
  }

  private static LeaseholdOperator.Options options(String identity) {
    return new LeaseholdOperator.Options(Set.of(), Optional.of(NS), identity)
        .withElection(
            new Leadership.Timing(
                Duration.ofSeconds(3), Duration.ofSeconds(2), Duration.ofMillis(500)));
  }

  // ---- clients ----

  private void runClient(int index, Random random, String url, AtomicInteger remaining)
      throws Exception {
    HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    while (remaining.getAndDecrement() > 0) {
      int roll = random.nextInt(100);
      try {
        if (roll < 65) {
          lockedWrite(http, url, index, random);
        } else if (roll < 75) {
          count("unlocked-write");
          write(http, url, null, "c" + index + "-nolock-" + random.nextInt(1_000_000));
        } else if (roll < 80) {
          forceUnlock(http, url);
        } else {
          read(http, url);
        }
      } catch (java.io.IOException e) {
        count("request-failed");
      }
    }
  }

  private void lockedWrite(HttpClient http, String url, int index, Random random) throws Exception {
    String lockId = "c" + index + "-" + Long.toHexString(random.nextLong());
    LockInfo info =
        new LockInfo(
            lockId,
            "OperationTypeApply",
            "",
            "client-" + index + "@fault",
            "1.11.4",
            java.time.Instant.now().toString(),
            "");
    String wait = random.nextBoolean() ? "?wait=" + (1 + random.nextInt(3)) + "s" : "";
    HttpResponse<String> lock = send(http, "LOCK", url + "/lock" + wait, info.toJson());
    count("lock-" + lock.statusCode());
    if (lock.statusCode() != 200) {
      return;
    }
    int writes = 1 + random.nextInt(2);
    for (int i = 0; i < writes; i++) {
      write(http, url, lockId, lockId + "-w" + i);
    }
    if (random.nextInt(100) < 4) {
      count("vanished-holding-lock");
      return;
    }
    HttpResponse<String> unlock = send(http, "UNLOCK", url + "/lock", info.toJson());
    count("unlock-" + unlock.statusCode());
  }

  private void write(HttpClient http, String url, String lockId, String writeId) throws Exception {
    HttpResponse<String> current = send(http, "GET", url, null);
    List<String> items = new ArrayList<>();
    long serial = 0;
    if (current.statusCode() == 200) {
      JsonNode state = JSON.readTree(current.body());
      serial = state.get("serial").asLong();
      state.at("/outputs/items/value").forEach(v -> items.add(v.asText()));
    } else if (current.statusCode() != 404) {
      count("read-before-write-failed");
      return;
    }
    items.add(writeId);
    String body = stateJson(serial + 1, items);
    long sent = System.nanoTime();
    HttpResponse<String> post =
        send(http, "POST", url + (lockId == null ? "" : "?ID=" + lockId), body);
    count("write-" + post.statusCode());
    if (post.statusCode() == 200 && post.body().contains("stored")) {
      acks.add(new Ack(writeId, serial + 1, lockId, sent, System.nanoTime()));
    }
  }

  private void forceUnlock(HttpClient http, String url) throws Exception {
    HttpResponse<String> r = send(http, "UNLOCK", url + "/lock", null);
    count("force-unlock-" + r.statusCode());
    String body = r.body();
    if (r.statusCode() == 200 && body.startsWith("lock ") && body.contains(" held by ")) {
      broken.add(new Broken(body.substring(5, body.indexOf(" held by ")), System.nanoTime()));
    }
  }

  private void read(HttpClient http, String url) throws Exception {
    HttpResponse<String> r = send(http, "GET", url, null);
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

  private static HttpResponse<String> send(HttpClient http, String method, String url, String body)
      throws Exception {
    return http.send(
        HttpRequest.newBuilder(URI.create(url))
            .timeout(Duration.ofSeconds(60))
            .method(
                method,
                body == null
                    ? HttpRequest.BodyPublishers.noBody()
                    : HttpRequest.BodyPublishers.ofString(body))
            .build(),
        HttpResponse.BodyHandlers.ofString());
  }

  // ---- runner Jobs ----

  private void runJobs(KubernetesClient test, AtomicBoolean done, Map<String, Boolean> running) {
    int n = 0;
    try {
      while (!done.get()) {
        if (n < 40 && running.size() < 200) {
          RunnerJobFixtures.create(test, String.format("chaos-job-%03d", n++), STATE);
          count("job-created");
        }
        for (Job job :
            test.batch()
                .v1()
                .jobs()
                .inNamespace(NS)
                .withLabel(RunnerJobs.STATE_LABEL, STATE)
                .list()
                .getItems()) {
          if (RunnerJobFixtures.running(job)) {
            RunnerJobFixtures.finish(test, job.getMetadata().getName(), true);
            count("job-completed");
          }
        }
        Thread.sleep(150);
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
      KubernetesMockServer server,
      StateNames names,
      AtomicReference<LeaseholdOperator> operator,
      KubernetesClient client,
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
          operator.get().close();
          Thread.sleep(100 + random.nextInt(700));
          operator.set(startOperator(client));
          fault("operator-restart");
        } else if (!outageDone) {
          // Longer than the 5 s lease: a Job's lock may expire and be taken over meanwhile.
          operator.get().close();
          Thread.sleep(6_000);
          operator.set(startOperator(client));
          fault("operator-outage-past-lease");
          outageDone = true;
        }
        Thread.sleep(150 + random.nextInt(450));
      }
    } catch (Exception e) {
      violations.add("fault injector crashed: " + e);
    }
  }

  // ---- watches and the checker ----

  private SharedIndexInformer<Lease> watchLease(KubernetesClient test, StateNames names) {
    return test.leases()
        .inNamespace(NS)
        .withField("metadata.name", names.leaseName())
        .inform(
            OnChange.of(
                (Lease l) -> {
                  if (names.leaseName().equals(l.getMetadata().getName())) {
                    holders.add(
                        new Holder(
                            System.nanoTime(),
                            l.getSpec() == null ? null : l.getSpec().getHolderIdentity()));
                  }
                }));
  }

  private SharedIndexInformer<Job> watchJobs(
      KubernetesClient test, Map<String, Boolean> running, Map<String, AtomicInteger> admissions) {
    return test.batch()
        .v1()
        .jobs()
        .inNamespace(NS)
        .withLabel(RunnerJobs.STATE_LABEL, STATE)
        .inform(
            OnChange.of(
                (Job j) -> {
                  String name = j.getMetadata().getName();
                  boolean active = !RunnerJobs.suspended(j) && !RunnerJobs.finished(j);
                  Boolean was = running.put(name, active);
                  if (active && !Boolean.TRUE.equals(was)) {
                    admissions.computeIfAbsent(name, k -> new AtomicInteger()).incrementAndGet();
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
    // 1. One holder at a time: the Lease never goes from one client's lock straight to another's.
    synchronized (holders) {
      String previous = null;
      for (Holder h : holders) {
        if (previous != null && h.holder() != null && !previous.equals(h.holder())) {
          boolean jobHandover = previous.startsWith(io.leasehold.lock.LeaseLock.JOB_PREFIX);
          if (!jobHandover) {
            violations.add(
                "lock went from " + previous + " to " + h.holder() + " without being released");
          }
        }
        previous = h.holder();
      }
    }
    // 2. Every acknowledged write is in the final state, in the order of its serial.
    HttpResponse<String> last = send(HttpClient.newHttpClient(), "GET", url, null);
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
    // 3. No write accepted from a lock after it was broken.
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
    // 4. The stored state decodes, and so does every kept version.
    StateStore.Current stored = new StateStore(client, names).read().orElseThrow();
    assertThat(stored.facts().getSerial()).isEqualTo(finalState.get("serial").asLong());
    HttpResponse<String> history = send(HttpClient.newHttpClient(), "GET", url + "/history", null);
    for (JsonNode v : JSON.readTree(history.body()).get("versions")) {
      HttpResponse<String> version =
          send(HttpClient.newHttpClient(), "GET", url + "/history/" + v.get("id").asText(), null);
      if (version.statusCode() != 200) {
        violations.add(
            "history version " + v.get("id").asText() + " does not decode: " + version.body());
      }
    }
    // 5. Every admitted Job ran exactly once.
    jobAdmissions.forEach(
        (job, n) -> {
          if (n.get() != 1) {
            violations.add("Job " + job + " admitted " + n.get() + " times");
          }
        });
    counts.put("jobs-admitted", new AtomicInteger(jobAdmissions.size()));
    counts.put("broken-locks", new AtomicInteger(broken.size()));
  }
}
