package io.leasehold.fault;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import io.leasehold.kube.OnChange;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.Ticket;
import io.leasehold.queue.RunnerJobs;
import io.leasehold.state.StateNames;
import io.leasehold.state.StateStore;
import io.leasehold.support.RawLock;
import java.io.IOException;
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
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The clients, the record and the checker of a fault-injection run, wherever it runs (the embedded
 * API in this JVM, or a real control plane with the operator in processes of its own).
 *
 * <p>Clients take the lock (with and without {@code ?wait=}) and write under it, write without it,
 * force-unlock, hang up while they wait, vanish holding the lock, and write under someone else's
 * lock ID. The run records every acknowledged write, every broken lock and every version of the
 * lock Lease; {@link #check} then reads that history:
 *
 * <ul>
 *   <li>never two holders without a release between them;
 *   <li>every acknowledged write kept and in order; none accepted from a broken lock, nor under a
 *       lock ID of another identity;
 *   <li>the lock never granted to a waiter its replica had marked as gone, and never held for long
 *       by a client that hung up without an answer;
 *   <li>order: the lock never goes to one in line while a Job or a connected client stands before
 *       it;
 *   <li>the stored state and every kept version decode; every admitted Job ran once.
 * </ul>
 */
public final class FaultWorkload {

  /** Where the run happens: the replicas' backends, identities and the API. */
  public interface Environment {
    /** How many replicas serve the backend. */
    int replicas();

    /** A replica's backend prefix, ending in {@code /v1/states/}. */
    String baseUrl(int replica);

    /**
     * The Authorization header of {@code user} ({@code client-N}, {@link #ADMIN}, {@code reader}).
     */
    String authorization(String user);

    /** An HTTP client that trusts the backend. */
    HttpClient http();

    /** A LOCK on its own connection, which the client can hang up. */
    RawLock rawLock(
        String base, String statePath, LockInfo info, String query, Map<String, String> headers)
        throws IOException;

    /** A client with the rights to read the Lease and the state's Secrets. */
    KubernetesClient admin();
  }

  /** The identity that may force-unlock. */
  public static final String ADMIN = "admin";

  private static final ObjectMapper JSON = new ObjectMapper();

  private record Ack(
      String writeId, long serial, String lockId, String client, long sentNanos, long ackNanos) {}

  private record Broken(String lockId, long atNanos) {}

  /** One version of the Lease as the API stored it. */
  private record Seen(long nanos, String holder, List<Ticket> line) {}

  private final Environment env;
  private final String ns;
  private final String state;
  private final String lineage;
  private final StateNames names;
  private final Map<String, AtomicInteger> counts = new ConcurrentHashMap<>();
  private final Map<String, AtomicInteger> faults = new ConcurrentHashMap<>();
  private final List<Ack> acks = Collections.synchronizedList(new ArrayList<>());
  private final List<Broken> broken = Collections.synchronizedList(new ArrayList<>());
  private final List<String> violations = Collections.synchronizedList(new ArrayList<>());
  private final List<Seen> seen = Collections.synchronizedList(new ArrayList<>());
  private final Map<String, Long> hungUp = new ConcurrentHashMap<>();

  public FaultWorkload(Environment env, String namespace, String state, String lineage) {
    this.env = env;
    this.ns = namespace;
    this.state = state;
    this.lineage = lineage;
    this.names = new StateNames(namespace, state, "default");
  }

  /** An HTTP client of the environment. */
  public HttpClient http() {
    return env.http();
  }

  public StateNames names() {
    return names;
  }

  /** The state's URL on a replica. */
  public String stateUrl(int replica) {
    return env.baseUrl(replica) + ns + "/" + state;
  }

  public void count(String what) {
    counts.computeIfAbsent(what, k -> new AtomicInteger()).incrementAndGet();
  }

  public void fault(String what) {
    faults.computeIfAbsent(what, k -> new AtomicInteger()).incrementAndGet();
  }

  public void violation(String what) {
    violations.add(what);
  }

  public List<String> violations() {
    synchronized (violations) {
      return List.copyOf(violations);
    }
  }

  public Map<String, Integer> counts() {
    Map<String, Integer> out = new TreeMap<>();
    counts.forEach((k, v) -> out.put(k, v.get()));
    return out;
  }

  public int acknowledgedWrites() {
    return acks.size();
  }

  /** Records one version of the lock Lease, in the order the API stored them. */
  public void leaseVersion(long nanos, Lease lease) {
    seen.add(
        new Seen(
            nanos,
            lease.getSpec() == null ? null : lease.getSpec().getHolderIdentity(),
            LeaseLock.line(lease).tickets()));
  }

  /** Prints what the run did and found. */
  public void report(String label, long seed) {
    System.out.printf(
        "%s: seed %d; operations %s; faults injected %s; acknowledged writes %d; violations %d%n",
        label, seed, counts(), new TreeMap<>(faults), acks.size(), violations.size());
    violations().stream().limit(50).forEach(v -> System.out.println("  VIOLATION " + v));
  }

  /** Jobs are followed by UID, whatever their labels become. */
  public SharedIndexInformer<Job> watchJobs(
      KubernetesClient test, Map<String, Boolean> running, Map<String, AtomicInteger> admissions) {
    return test.batch()
        .v1()
        .jobs()
        .inNamespace(ns)
        .inform(
            OnChange.of(
                (Job j) -> {
                  String uid = j.getMetadata().getUid();
                  boolean ours =
                      RunnerJobs.stateName(j).map(state::equals).orElse(false)
                          || RunnerJobs.admittedFor(j, state)
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

  // ---- clients ----

  private String url(Random random) {
    return stateUrl(random.nextInt(env.replicas()));
  }

  /**
   * Runs {@code clients} clients on {@code pool}, each with a random source of its own derived from
   * {@code seed}, until {@code remaining} operations are used up; a client that crashes is a
   * violation. The latch counts down as each client ends.
   */
  public java.util.concurrent.CountDownLatch startClients(
      java.util.concurrent.ExecutorService pool, int clients, long seed, AtomicInteger remaining) {
    java.util.concurrent.CountDownLatch done = new java.util.concurrent.CountDownLatch(clients);
    for (int c = 0; c < clients; c++) {
      int index = c;
      pool.submit(
          () -> {
            try {
              runClient(index, new Random(seed + index), remaining);
            } catch (Throwable t) {
              violation("client " + index + " crashed: " + t);
            } finally {
              done.countDown();
            }
          });
    }
    return done;
  }

  /** One client: operations until {@code remaining} runs out. */
  public void runClient(int index, Random random, AtomicInteger remaining) throws Exception {
    HttpClient http = env.http();
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
          stealLock(http, random, index);
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
    int replica = random.nextInt(env.replicas());
    String lockPath = ns + "/" + state + "/lock" + wait;
    HttpResponse<String> lock =
        send(http, "LOCK", env.baseUrl(replica) + lockPath, info.toJson(), me);
    for (int retry = 0; retry < 2 && lock.statusCode() == 503; retry++) {
      // A replica that is stopping answered: retry with the same lock ID on the other one, as
      // Terraform's HTTP client does; the place in line is kept.
      count("lock-503-retried");
      replica = (replica + 1) % env.replicas();
      lock = send(http, "LOCK", env.baseUrl(replica) + lockPath, info.toJson(), me);
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
    int replica = random.nextInt(env.replicas());
    RawLock r =
        env.rawLock(
            env.baseUrl(replica),
            ns + "/" + state,
            info,
            "?wait=30s",
            Map.of("Authorization", env.authorization(me)));
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
      send(
          env.http(),
          "UNLOCK",
          env.baseUrl(replica) + ns + "/" + state + "/lock",
          info.toJson(),
          me);
    }
  }

  /**
   * Client 0 takes the lock (breaking a lock left behind, and retrying while Jobs or others hold
   * it) and client 1 writes under client 0's lock ID: a write that only a missing ownership guard
   * accepts. Gives up after {@code within}.
   */
  public void writeUnderAnothersLock(Duration within) throws Exception {
    HttpClient http = env.http();
    long deadline = System.nanoTime() + within.toNanos();
    while (System.nanoTime() < deadline) {
      String lockId = "c0-" + Long.toHexString(new Random().nextLong());
      LockInfo info = lockInfo(0, lockId);
      HttpResponse<String> lock =
          send(http, "LOCK", stateUrl(0) + "/lock?wait=5s", info.toJson(), "client-0");
      if (lock.statusCode() != 200) {
        Lease lease = env.admin().leases().inNamespace(ns).withName(names.leaseName()).get();
        String holder = lease == null ? null : lease.getSpec().getHolderIdentity();
        if (holder != null && !holder.startsWith(LeaseLock.JOB_PREFIX)) {
          forceUnlock(http, stateUrl(0));
        }
        continue;
      }
      // A fault injected in the run and not met yet (a Secret read or write the API refuses) is
      // met here: the backend answers 503, nothing written, retry. The write is tried again.
      int status;
      do {
        status = write(http, stateUrl(1 % env.replicas()), lockId, "client-1", "c1-stolen-x");
      } while (status == 503 && System.nanoTime() < deadline);
      count(status == 200 ? "stolen-write-ACCEPTED" : "stolen-write-refused");
      send(http, "UNLOCK", stateUrl(0) + "/lock", info.toJson(), "client-0");
      return;
    }
    violations.add("client 0 never got the lock to have a write attempted under it");
  }

  /** A client that writes under the lock ID of whoever holds the lock now. */
  private void stealLock(HttpClient http, Random random, int index) throws Exception {
    Lease lease = env.admin().leases().inNamespace(ns).withName(names.leaseName()).get();
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

  public void forceUnlock(HttpClient http, String url) throws Exception {
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
      if (!state.has("serial") || !lineage.equals(state.path("lineage").asText())) {
        violations.add(
            "a read returned something that is not the state: "
                + r.body().substring(0, Math.min(200, r.body().length())));
      }
    } else if (r.statusCode() == 500 && r.body().contains("cannot be read")) {
      violations.add("stored state did not decode: " + r.body());
    }
  }

  private String stateJson(long serial, List<String> items) throws Exception {
    var root = JSON.createObjectNode();
    root.put("version", 4)
        .put("terraform_version", "1.11.4")
        .put("serial", serial)
        .put("lineage", lineage);
    var out = root.putObject("outputs").putObject("items");
    var values = out.putArray("value");
    items.forEach(values::add);
    out.putArray("type").add("list").add("string");
    root.putArray("resources");
    root.putNull("check_results");
    return root.toString();
  }

  private HttpResponse<String> send(
      HttpClient http, String method, String url, String body, String user) throws Exception {
    return http.send(
        HttpRequest.newBuilder(URI.create(url))
            .timeout(Duration.ofSeconds(60))
            .header("Authorization", env.authorization(user))
            .method(
                method,
                body == null
                    ? HttpRequest.BodyPublishers.noBody()
                    : HttpRequest.BodyPublishers.ofString(body))
            .build(),
        HttpResponse.BodyHandlers.ofString());
  }

  /**
   * Reads the recorded history and the final state and adds a violation for every broken rule.
   *
   * @param jobAdmissions how many times each runner Job was seen to start running
   */
  public void check(Map<String, AtomicInteger> jobAdmissions) throws Exception {
    String url = stateUrl(0);
    KubernetesClient client = env.admin();
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
    HttpResponse<String> last = send(env.http(), "GET", url, null, "reader");
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
    HttpResponse<String> history = send(env.http(), "GET", url + "/history", null, "reader");
    for (JsonNode v : JSON.readTree(history.body()).get("versions")) {
      HttpResponse<String> version =
          send(env.http(), "GET", url + "/history/" + v.get("id").asText(), null, "reader");
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
