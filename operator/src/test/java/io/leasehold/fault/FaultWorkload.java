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
import io.leasehold.lock.LeaseSize;
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
 * force-unlock, hang up while they wait, vanish holding the lock, write under someone else's lock
 * ID, send LockInfos with fields near and over their bounds (control characters, multi-byte text),
 * and send two LOCKs of one identity with one lock ID at once. The run records every acknowledged
 * write, every broken lock and every version of the lock Lease; {@link #check} then reads that
 * history:
 *
 * <ul>
 *   <li>never two holders without a release between them;
 *   <li>every acknowledged write kept and in order; none accepted from a broken lock, nor under a
 *       lock ID of another identity;
 *   <li>the lock never granted to a waiter its replica had marked as gone, and never held for long
 *       by a client that hung up without an answer;
 *   <li>order: the lock never goes to one in line while a Job or a connected client stands before
 *       it;
 *   <li>the stored state and every kept version decode; every admitted Job ran once;
 *   <li>a runner Job's lock never goes to anyone else while the Job runs, and at most one believes
 *       it holds the lock at any time: no two clients (two requests sharing a lock ID included)
 *       told they hold it without an UNLOCK or a force-unlock between, no client while a Job runs;
 *   <li>LockInfos with fields near their bounds are stored and shown exactly as sent, those over
 *       them refused 400 naming the field; the lock Lease's annotations stay within leasehold's
 *       budget (counted as the API server counts them), so the Lease is always writable;
 *   <li>once faults have settled, a free lock never idles longer than {@link #IDLE_BOUND} while a
 *       client waits for it connected or a runner Job waits to be admitted, and the places of a
 *       replica that died are gone from the line within {@link #DEAD_PLACES_BOUND}.
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

  /** A lock broken by a force-unlock sent at {@code sentNanos} and answered at {@code atNanos}. */
  private record Broken(String lockId, long sentNanos, long atNanos) {}

  /** One version of the Lease as the API stored it. */
  private record Seen(long nanos, String holder, List<Ticket> line) {}

  /**
   * A client that believed it held the lock: from the moment it was told so until it sent its
   * UNLOCK (or gave up on it).
   */
  private record Belief(String believer, String lockId, long from, long to) {}

  /** A span of time: a LOCK waiting with its connection open, or a fault and its settling. */
  private record Span(String what, long from, long to) {}

  /**
   * How long a free lock may stay free while a client waits connected or a runner Job waits to be
   * admitted, once faults have settled: the backend's safety poll (2 s) plus a write.
   */
  static final Duration IDLE_BOUND = Duration.ofMillis(2_500);

  /**
   * How long after a replica's run ended (stopped or killed) its places may still be in line: its
   * heartbeat's timeout (12 s) and a renewal period.
   */
  static final Duration DEAD_PLACES_BOUND = Duration.ofSeconds(16);

  /**
   * How long a place marked away is kept in line for a client to come back to: the replicas' ticket
   * grace ({@code LockService.Settings} in the tests that run them).
   */
  static final Duration TICKET_GRACE = Duration.ofSeconds(10);

  private final Environment env;
  private final String ns;
  private final String state;
  private final String lineage;
  private final StateNames names;
  private final Map<String, AtomicInteger> counts = new ConcurrentHashMap<>();
  private final Map<String, AtomicInteger> faults = new ConcurrentHashMap<>();
  private final List<Ack> acks = Collections.synchronizedList(new ArrayList<>());
  private final List<Broken> broken = Collections.synchronizedList(new ArrayList<>());

  /** When each force-unlock that got no answer was sent. */
  private final List<Long> unanswered = Collections.synchronizedList(new ArrayList<>());

  /**
   * How long after it was sent a force-unlock that got no answer may still break a lock: the
   * backend's deadline for deciding one after its arrival, and a margin for its way there.
   */
  private static final long UNANSWERED_FORCE_NANOS =
      io.leasehold.backend.LockRequests.FORCE_UNLOCK_DEADLINE.plusSeconds(1).toNanos();

  private final List<String> violations = Collections.synchronizedList(new ArrayList<>());
  private final List<Seen> seen = Collections.synchronizedList(new ArrayList<>());
  private final Map<String, Long> hungUp = new ConcurrentHashMap<>();
  private final List<Belief> beliefs = Collections.synchronizedList(new ArrayList<>());
  private final List<Span> waits = Collections.synchronizedList(new ArrayList<>());
  private final List<Span> disruptions = Collections.synchronizedList(new ArrayList<>());
  private final Map<String, Long> jobCreated = new ConcurrentHashMap<>();
  private final Map<String, Long> jobStarted = new ConcurrentHashMap<>();
  private final Map<String, Long> jobFinishing = new ConcurrentHashMap<>();
  private final Map<String, Long> runEnded = new ConcurrentHashMap<>();
  private final Map<String, LockInfo> largeInfos = new ConcurrentHashMap<>();
  private final java.util.concurrent.atomic.AtomicLong largestLease =
      new java.util.concurrent.atomic.AtomicLong();
  private final java.util.concurrent.atomic.AtomicLong longestCalmIdle =
      new java.util.concurrent.atomic.AtomicLong();
  private volatile long clientsEnded = Long.MAX_VALUE;

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

  /**
   * Records one version of the lock Lease, in the order the API stored them, and checks that it
   * stays writable: its annotations, counted as the API server counts them, within leasehold's
   * budget (and so well within the API server's 256 KiB).
   */
  public void leaseVersion(long nanos, Lease lease) {
    seen.add(
        new Seen(
            nanos,
            lease.getSpec() == null ? null : lease.getSpec().getHolderIdentity(),
            LeaseLock.line(lease).tickets()));
    long bytes = LeaseSize.of(lease);
    largestLease.accumulateAndGet(bytes, Math::max);
    if (bytes > LeaseSize.BUDGET) {
      violations.add(
          "the lock Lease's annotations take "
              + bytes
              + " bytes as stored, over leasehold's budget of "
              + LeaseSize.BUDGET
              + (bytes > LeaseSize.API_LIMIT
                  ? " and the API server's limit of " + LeaseSize.API_LIMIT + ": unwritable"
                  : ""));
    }
  }

  /** A write of the lock Lease the API refused as invalid: it may have become unwritable. */
  public void leaseWriteRefused(String what) {
    violations.add("a write of the lock Lease was refused as invalid: " + what);
  }

  /** Runner Job {@code name} was created now. */
  public void jobCreated(String name) {
    jobCreated.putIfAbsent(name, System.nanoTime());
  }

  /** Runner Job {@code name} is about to be made to end (its run ends after this moment). */
  public void jobFinishing(String name) {
    jobFinishing.putIfAbsent(name, System.nanoTime());
  }

  /**
   * A fault that began at {@code fromNanos} ended now; until {@code settle} has passed, a free lock
   * may idle (no leader yet, a replica's places not yet known dead).
   */
  public void disruption(String what, long fromNanos, Duration settle) {
    disruptions.add(new Span(what, fromNanos, System.nanoTime() + settle.toNanos()));
  }

  /**
   * A run of a replica (its identity and start nonce, as places in line name it) ended now, killed
   * or stopped: its places must be gone from the line within {@link #DEAD_PLACES_BOUND}.
   */
  public void runEnded(String run) {
    runEnded.putIfAbsent(run, System.nanoTime());
  }

  /** The clients have used up their operations. */
  public void clientsEnded() {
    clientsEnded = System.nanoTime();
  }

  /** Prints what the run did and found. */
  public void report(String label, long seed) {
    System.out.printf(
        "%s: seed %d; operations %s; faults injected %s; acknowledged writes %d; largest lock"
            + " Lease %d bytes of annotations; longest free-lock idle once settled %d ms;"
            + " violations %d%n",
        label,
        seed,
        counts(),
        new TreeMap<>(faults),
        acks.size(),
        largestLease.get(),
        longestCalmIdle.get() / 1_000_000,
        violations.size());
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
                    jobStarted.putIfAbsent(j.getMetadata().getName(), System.nanoTime());
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
        if (roll < 50) {
          lockedWrite(http, random, index);
        } else if (roll < 57) {
          count("unlocked-write");
          write(http, url(random), null, me, "c" + index + "-nolock-" + random.nextInt(1_000_000));
        } else if (roll < 61) {
          forceUnlock(http, url(random));
        } else if (roll < 70) {
          hangUpWhileWaiting(random, index);
        } else if (roll < 77) {
          stealLock(http, random, index);
        } else if (roll < 84) {
          largeLockInfo(http, random, index);
        } else if (roll < 90) {
          sharedLockId(random, index);
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
        waitingLock(http, env.baseUrl(replica) + lockPath, info, me, !wait.isEmpty());
    for (int retry = 0; retry < 2 && lock.statusCode() == 503; retry++) {
      // A replica that is stopping answered: retry with the same lock ID on the other one, as
      // Terraform's HTTP client does; the place in line is kept.
      count("lock-503-retried");
      replica = (replica + 1) % env.replicas();
      lock = waitingLock(http, env.baseUrl(replica) + lockPath, info, me, !wait.isEmpty());
    }
    count("lock-" + lock.statusCode());
    if (lock.statusCode() >= 500) {
      String why = lock.body().trim();
      count("lock-" + lock.statusCode() + " " + why.substring(0, Math.min(60, why.length())));
    }
    if (lock.statusCode() == 423) {
      checkShownHolder(lock.body());
    }
    if (lock.statusCode() != 200) {
      return;
    }
    long granted = System.nanoTime();
    try {
      int writes = 1 + random.nextInt(2);
      for (int i = 0; i < writes; i++) {
        write(http, url(random), lockId, me, lockId + "-w" + i);
      }
      if (random.nextInt(100) < 4) {
        count("vanished-holding-lock");
        return;
      }
    } finally {
      // Until it sends its UNLOCK (or vanishes, or a replica it talks to goes away), the client
      // believes it holds the lock.
      beliefs.add(new Belief(me, lockId, granted, System.nanoTime()));
    }
    HttpResponse<String> unlock = send(http, "UNLOCK", url(random) + "/lock", info.toJson(), me);
    count("unlock-" + unlock.statusCode());
  }

  /** A LOCK; one with {@code ?wait=} is recorded as waiting, connected, until it is answered. */
  private HttpResponse<String> waitingLock(
      HttpClient http, String url, LockInfo info, String user, boolean waiting) throws Exception {
    long sent = System.nanoTime();
    HttpResponse<String> r = send(http, "LOCK", url, info.toJson(), user);
    if (waiting) {
      waits.add(new Span(info.id(), sent, System.nanoTime()));
    }
    return r;
  }

  /**
   * A 423 names the holder with its LockInfo (Terraform prints it): a LockInfo taken with fields
   * near their bounds is shown as it was sent (Info excepted: a refusal explains itself there).
   */
  private void checkShownHolder(String body) {
    Optional<LockInfo> shown = LockInfo.parse(body);
    if (shown.isEmpty() || shown.get().id() == null) {
      return;
    }
    // The answer's ID is the holder's lock ID, then " (" and what is said about it (who holds the
    // lock since when, or why the LOCK was refused), the one field Terraform prints.
    String shownId = shown.get().id();
    LockInfo sent = largeInfos.get(shownId);
    if (sent == null) {
      for (Map.Entry<String, LockInfo> e : largeInfos.entrySet()) {
        if (shownId.startsWith(e.getKey() + " (")) {
          sent = e.getValue();
          break;
        }
      }
    }
    if (sent == null) {
      return;
    }
    LockInfo s = shown.get();
    if ((s.info() != null && s.info().startsWith("the lock is free but"))
        || shownId.contains(" (refused by leasehold: ")) {
      // Not the holder's LockInfo as sent: the first in line, as its place names it, or a
      // refusal, whose Who and Info say why.
      return;
    }
    boolean createdReadable =
        sent.created() != null
            && sent.created()
                .matches(
                    "\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})");
    if (!java.util.Objects.equals(s.who(), sent.who())
        || !java.util.Objects.equals(s.operation(), sent.operation())
        || !java.util.Objects.equals(s.version(), sent.version())
        // A Created Terraform could not read is shown as the answer's time (else Terraform
        // would show nothing of the answer).
        || (createdReadable && !java.util.Objects.equals(s.created(), sent.created()))
        || !java.util.Objects.equals(s.path(), sent.path())) {
      violations.add(
          "a 423 showed holder "
              + sent.id()
              + "'s LockInfo other than it was sent: "
              + body.substring(0, Math.min(300, body.length())));
    }
    count("large-lockinfo-shown-as-sent");
  }

  /**
   * Pieces of text and the bytes each takes as stored (JSON-escaped UTF-8), counted here by hand:
   * control characters are escaped to six bytes ({@code \\u0001}) or two ({@code \\n}), quotes and
   * backslashes to two, and characters outside ASCII take two to four bytes.
   */
  private static final String[] PIECES = {
    "a", "\u00e9", "\u20ac", "\ud83d\ude00", "\u0001", "\n", "\"", "\\", "\u001f", "\t"
  };

  private static final int[] PIECE_BYTES = {1, 2, 3, 4, 6, 2, 2, 2, 6, 2};

  /** Text that takes exactly {@code bytes} bytes as stored, of pieces of every kind. */
  private static String storedText(Random random, int bytes) {
    StringBuilder text = new StringBuilder();
    int left = bytes;
    while (left > 6) {
      int p = random.nextInt(PIECES.length);
      text.append(PIECES[p]);
      left -= PIECE_BYTES[p];
    }
    return text + "a".repeat(left);
  }

  /**
   * A client whose LockInfo has one field near its bound, or over it, or a lock ID with a control
   * character: over the bound it must be refused 400 naming the field; within it, it is taken as
   * any other and stored exactly as sent (and shown so to others in their 423s); never does it
   * leave the lock Lease too large to write.
   */
  private void largeLockInfo(HttpClient http, Random random, int index) throws Exception {
    String me = "client-" + index;
    String lockId = "c" + index + "-L" + Long.toHexString(random.nextLong());
    String[] fields = {"ID", "Operation", "Who", "Version", "Created", "Info", "Path"};
    int[] limits = {
      LockInfo.MAX_ID,
      LockInfo.MAX_SHORT,
      LockInfo.MAX_WHO,
      LockInfo.MAX_SHORT,
      LockInfo.MAX_SHORT,
      LockInfo.MAX_TEXT,
      LockInfo.MAX_TEXT
    };
    int f = random.nextInt(fields.length);
    int limit = limits[f];
    int size =
        random.nextInt(8) == 0 ? limit * (2 + random.nextInt(6)) : limit - 8 + random.nextInt(17);
    String value;
    boolean over;
    String[] v = {
      lockId,
      "OperationTypeApply",
      me + "@fault",
      "1.11.4",
      java.time.Instant.now().toString(),
      "",
      ""
    };
    if (f == 0) {
      // A lock ID is counted in characters, and takes none that are not printable.
      boolean control = random.nextInt(4) == 0;
      String id = lockId + (control ? "\u0007" : "");
      value = id + "x".repeat(Math.max(0, size - id.length()));
      over = control || value.length() > limit;
    } else {
      value = storedText(random, size);
      over = size > limit;
    }
    v[f] = value;
    LockInfo info = new LockInfo(v[0], v[1], v[5], v[2], v[3], v[4], v[6]);
    if (!over) {
      largeInfos.put(info.id(), info);
    }
    String wait = random.nextBoolean() ? "?wait=" + (1 + random.nextInt(3)) + "s" : "";
    int replica = random.nextInt(env.replicas());
    String url = stateUrl(replica);
    HttpResponse<String> lock =
        waitingLock(http, url + "/lock" + wait, info, me, !wait.isEmpty() && !over);
    for (int retry = 0; retry < 2 && lock.statusCode() == 503; retry++) {
      // A replica that is stopping refuses every request before it reads it: the client retries
      // on the other one, as Terraform does.
      replica = (replica + 1) % env.replicas();
      url = stateUrl(replica);
      lock = waitingLock(http, url + "/lock" + wait, info, me, !wait.isEmpty() && !over);
    }
    if (lock.statusCode() == 503) {
      count("large-lockinfo-503");
      return;
    }
    String what = fields[f] + " of " + (f == 0 ? value.length() + " characters" : size + " bytes");
    count("large-lockinfo-" + (over ? "over" : "within") + "-" + lock.statusCode());
    String body = lock.body();
    if (over) {
      String named = f == 0 ? "lock ID" : fields[f] + " is";
      if (lock.statusCode() != 400 || !body.contains(named)) {
        violations.add(
            "a LockInfo with "
                + what
                + " (over the bound of "
                + limit
                + ") was answered "
                + lock.statusCode()
                + ", not a 400 naming the field: "
                + body.substring(0, Math.min(200, body.length())));
      }
      if (lock.statusCode() == 200) {
        send(http, "UNLOCK", url + "/lock", info.toJson(), me);
      }
      return;
    }
    if (lock.statusCode() == 400) {
      violations.add(
          "a LockInfo with "
              + what
              + " (within the bound of "
              + limit
              + ") was refused: "
              + body.substring(0, Math.min(200, body.length())));
      return;
    }
    if (lock.statusCode() == 423) {
      checkShownHolder(body);
    }
    if (lock.statusCode() != 200) {
      return;
    }
    long granted = System.nanoTime();
    try {
      Lease lease = env.admin().leases().inNamespace(ns).withName(names.leaseName()).get();
      if (lease != null && info.id().equals(lease.getSpec().getHolderIdentity())) {
        Map<String, String> annotations = lease.getMetadata().getAnnotations();
        String stored =
            annotations == null ? null : annotations.get(LeaseLock.LOCK_INFO_ANNOTATION);
        if (!LockInfo.parse(stored).equals(Optional.of(info))) {
          violations.add(
              "a LockInfo with "
                  + what
                  + " was stored other than it was sent: "
                  + (stored == null ? null : stored.substring(0, Math.min(300, stored.length()))));
        }
        count("large-lockinfo-stored-as-sent");
      }
    } finally {
      beliefs.add(new Belief(me, lockId, granted, System.nanoTime()));
    }
    HttpResponse<String> unlock = send(http, "UNLOCK", url + "/lock", info.toJson(), me);
    count("large-lockinfo-unlock-" + unlock.statusCode());
  }

  /**
   * Two requests of one identity with one lock ID at once, on either replica, waiting or not: with
   * different LockInfos (two runs that reuse an ID) at most one may ever be told it holds the lock
   * at a time; with the same LockInfo (a retry whose first answer is still on its way) both may.
   */
  private void sharedLockId(Random random, int index) throws Exception {
    String me = "client-" + index;
    String lockId = "c" + index + "-S" + Long.toHexString(random.nextLong());
    boolean retry = random.nextInt(5) == 0;
    String created = java.time.Instant.now().toString();
    LockInfo a = new LockInfo(lockId, "OperationTypeApply", "", me + "@a", "1.11.4", created, "");
    LockInfo b =
        retry
            ? a
            : new LockInfo(lockId, "OperationTypeApply", "", me + "@b", "1.11.4", created, "");
    long seed = random.nextLong();
    java.util.concurrent.CompletableFuture<long[]> first =
        new java.util.concurrent.CompletableFuture<>();
    Thread other =
        new Thread(
            () -> {
              try {
                first.complete(sharedLock(new Random(seed), me, me + "/b", b, !retry));
              } catch (Throwable t) {
                first.completeExceptionally(t);
              }
            },
            "shared-lock-id-" + index);
    other.start();
    long[] answer = sharedLock(random, me, me + "/a", a, !retry);
    other.join(120_000);
    long[] otherAnswer;
    try {
      otherAnswer = first.getNow(new long[] {-1, 0});
    } catch (java.util.concurrent.CompletionException e) {
      if (e.getCause() instanceof IOException io) {
        throw io;
      }
      throw e;
    }
    int mine = (int) answer[0];
    int theirs = (int) otherAnswer[0];
    if (retry && (mine == 200 || theirs == 200)) {
      // One client that sent its LOCK twice: it holds the lock from the first 200 it heard until
      // its one UNLOCK, once both answers are in.
      long granted =
          Math.min(
              mine == 200 ? answer[1] : Long.MAX_VALUE,
              theirs == 200 ? otherAnswer[1] : Long.MAX_VALUE);
      Thread.sleep(random.nextInt(300));
      beliefs.add(new Belief(me + "/retry", lockId, granted, System.nanoTime()));
      send(env.http(), "UNLOCK", url(random) + "/lock", a.toJson(), me);
    }
    count(
        "shared-lock-id"
            + (retry ? "-retry" : "")
            + "-"
            + Math.min(mine, theirs)
            + "-"
            + Math.max(mine, theirs));
  }

  /**
   * One of the two requests of {@link #sharedLockId}: its LOCK's status and when it was answered.
   * With {@code release}, a 200 is held a moment and released by this request's own UNLOCK.
   */
  private long[] sharedLock(
      Random random, String user, String believer, LockInfo info, boolean release)
      throws Exception {
    HttpClient http = env.http();
    String wait = random.nextBoolean() ? "?wait=" + (1 + random.nextInt(3)) + "s" : "";
    String url = url(random);
    HttpResponse<String> lock =
        waitingLock(http, url + "/lock" + wait, info, user, !wait.isEmpty());
    long answered = System.nanoTime();
    if (lock.statusCode() != 200 || !release) {
      return new long[] {lock.statusCode(), answered};
    }
    Thread.sleep(random.nextInt(300));
    beliefs.add(new Belief(believer, info.id(), answered, System.nanoTime()));
    send(http, "UNLOCK", url + "/lock", info.toJson(), user);
    return new long[] {200, answered};
  }

  /** A client that gives up while it waits (Ctrl-C, a cancelled CI job, a proxy timeout). */
  private void hangUpWhileWaiting(Random random, int index) throws Exception {
    String me = "client-" + index;
    String lockId = "c" + index + "-h" + Long.toHexString(random.nextLong());
    LockInfo info = lockInfo(index, lockId);
    int replica = random.nextInt(env.replicas());
    long sent = System.nanoTime();
    RawLock r =
        env.rawLock(
            env.baseUrl(replica),
            ns + "/" + state,
            info,
            "?wait=30s",
            Map.of("Authorization", env.authorization(me)));
    RawLock.Answer answer = r.answer(Duration.ofMillis(random.nextInt(400)));
    waits.add(new Span(lockId, sent, System.nanoTime()));
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
      beliefs.add(new Belief(me, lockId, System.nanoTime(), System.nanoTime()));
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
      long granted = System.nanoTime();
      int status;
      do {
        status = write(http, stateUrl(1 % env.replicas()), lockId, "client-1", "c1-stolen-x");
      } while (status == 503 && System.nanoTime() < deadline);
      count(status == 200 ? "stolen-write-ACCEPTED" : "stolen-write-refused");
      beliefs.add(new Belief("client-0", lockId, granted, System.nanoTime()));
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
    long sent = System.nanoTime();
    HttpResponse<String> r;
    try {
      r = send(http, "UNLOCK", url + "/lock", null, ADMIN);
    } catch (java.io.IOException e) {
      // No answer (the replica stopped, stalled past the timeout, or was cut off): the
      // force-unlock may still have been decided, but only within the backend's deadline after
      // it arrived, breaking whatever was held then.
      unanswered.add(sent);
      throw e;
    }
    count("force-unlock-" + r.statusCode());
    String body = r.body();
    if (r.statusCode() == 200 && body.startsWith("lock ") && body.contains(" held by ")) {
      broken.add(new Broken(body.substring(5, body.indexOf(" held by ")), sent, System.nanoTime()));
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
    checkJobLocksKept(versions);
    checkBeliefs();
    checkIdle(versions);
    checkDeadPlaces(versions);
    counts.put("jobs-admitted", new AtomicInteger(jobAdmissions.size()));
    counts.put("broken-locks", new AtomicInteger(broken.size()));
    counts.put("force-unlocks-unanswered", new AtomicInteger(unanswered.size()));
    counts.put("grants-checked", new AtomicInteger(grantsChecked));
    counts.put("lease-versions-seen", new AtomicInteger(versions.size()));
    counts.put("beliefs-checked", new AtomicInteger(beliefs.size()));
  }

  /**
   * When a lock ID's lock was first broken by a force-unlock, if it was: from the moment that
   * force-unlock was sent (lock IDs are drawn anew for every lock, so a break of the ID is a break
   * of this lock, though its answer may reach the holder after the break).
   */
  private long brokenAt(String lockId) {
    long at = Long.MAX_VALUE;
    synchronized (broken) {
      for (Broken b : broken) {
        if (b.lockId().equals(lockId)) {
          at = Math.min(at, b.sentNanos());
        }
      }
    }
    return at;
  }

  /**
   * Whether a force-unlock that got no answer could have released the lock at {@code nanos}: it was
   * sent before, within the time the backend may still decide it.
   */
  private boolean unansweredForceUnlockAround(long nanos) {
    synchronized (unanswered) {
      return unanswered.stream()
          .anyMatch(sent -> sent <= nanos && nanos - sent <= UNANSWERED_FORCE_NANOS);
    }
  }

  /**
   * The earliest moment from {@code from} on at which a force-unlock that got no answer could have
   * broken the lock held then, if one could.
   */
  private long unansweredBreak(long from) {
    long at = Long.MAX_VALUE;
    synchronized (unanswered) {
      for (long sent : unanswered) {
        if (sent + UNANSWERED_FORCE_NANOS >= from) {
          at = Math.min(at, Math.max(from, sent));
        }
      }
    }
    return at;
  }

  /** When runner Job {@code name}'s lock was first broken, if it was. */
  private long jobLockBrokenAt(String name) {
    long at = Long.MAX_VALUE;
    synchronized (broken) {
      for (Broken b : broken) {
        if (b.lockId().startsWith(LeaseLock.JOB_PREFIX)
            && LeaseLock.jobName(b.lockId()).equals(name)) {
          at = Math.min(at, b.sentNanos());
        }
      }
    }
    return at;
  }

  /** The times given, and the lock's holders around them, in ms from the first Lease version. */
  private String timeline(long... times) {
    List<Seen> versions;
    synchronized (seen) {
      versions = new ArrayList<>(seen);
    }
    long zero = versions.isEmpty() ? 0 : versions.get(0).nanos();
    long lo = Long.MAX_VALUE;
    long hi = Long.MIN_VALUE;
    StringBuilder out = new StringBuilder("at");
    for (long t : times) {
      out.append(' ').append(t == Long.MAX_VALUE ? "never" : (t - zero) / 1_000_000);
      if (t != Long.MAX_VALUE) {
        lo = Math.min(lo, t);
        hi = Math.max(hi, t);
      }
    }
    out.append("; holders");
    String last = "";
    for (Seen v : versions) {
      if (v.nanos() >= lo - 3_000_000_000L && v.nanos() <= hi + 1_000_000_000L) {
        String h = String.valueOf(v.holder());
        if (!h.equals(last)) {
          out.append(' ').append((v.nanos() - zero) / 1_000_000).append('=').append(h);
          last = h;
        }
      }
    }
    synchronized (disruptions) {
      for (Span d : disruptions) {
        if (d.to() >= lo - 10_000_000_000L && d.from() <= hi) {
          out.append("; fault ")
              .append(d.what())
              .append(' ')
              .append((d.from() - zero) / 1_000_000)
              .append('-')
              .append((d.to() - zero) / 1_000_000);
        }
      }
    }
    return out.toString();
  }

  /** When Job {@code name} was surely running: from seen running until it was made to end. */
  private Optional<long[]> jobRun(String name) {
    Long from = jobStarted.get(name);
    if (from == null) {
      return Optional.empty();
    }
    long to = jobFinishing.getOrDefault(name, Long.MAX_VALUE);
    to = Math.min(to, jobLockBrokenAt(name));
    return to > from ? Optional.of(new long[] {from, to}) : Optional.empty();
  }

  /**
   * 9. A runner Job's lock is never taken over, released or handed on while the Job runs (unless
   * force-unlocked): the Lease never goes from the Job to anyone else between the Job being seen
   * running and its being made to end.
   */
  private void checkJobLocksKept(List<Seen> versions) {
    for (int i = 1; i < versions.size(); i++) {
      Seen prev = versions.get(i - 1);
      Seen next = versions.get(i);
      if (prev.holder() == null
          || !prev.holder().startsWith(LeaseLock.JOB_PREFIX)
          || prev.holder().equals(next.holder())) {
        continue;
      }
      String job = LeaseLock.jobName(prev.holder());
      Optional<long[]> run = jobRun(job);
      if (run.isPresent()
          && next.nanos() > run.get()[0]
          && next.nanos() < run.get()[1]
          && !(next.holder() == null && unansweredForceUnlockAround(next.nanos()))) {
        violations.add(
            "the lock of runner Job "
                + job
                + " went to "
                + next.holder()
                + " while the Job ran ("
                + (next.nanos() - run.get()[0]) / 1_000_000
                + " ms after it was seen running, before it was made to end): "
                + timeline(next.nanos(), run.get()[0], run.get()[1]));
      }
    }
  }

  /**
   * 10. At most one believes it holds the lock at any time: two clients (the two requests sharing a
   * lock ID included) are never both told they hold it without an UNLOCK or a force-unlock between,
   * and no client is told so while a runner Job runs.
   */
  private void checkBeliefs() {
    List<Belief> all = new ArrayList<>();
    synchronized (beliefs) {
      for (Belief b : beliefs) {
        long to = Math.min(Math.min(b.to(), brokenAt(b.lockId())), unansweredBreak(b.from()));
        if (to > b.from()) {
          all.add(new Belief(b.believer(), b.lockId(), b.from(), to));
        }
      }
    }
    all.sort(java.util.Comparator.comparingLong(Belief::from));
    for (int i = 0; i < all.size(); i++) {
      Belief a = all.get(i);
      for (int j = i + 1; j < all.size() && all.get(j).from() < a.to(); j++) {
        Belief b = all.get(j);
        if (!a.believer().equals(b.believer())) {
          violations.add(
              b.believer()
                  + " was told it holds the lock (ID "
                  + b.lockId()
                  + ") while "
                  + a.believer()
                  + " held it (ID "
                  + a.lockId()
                  + ") for "
                  + (Math.min(a.to(), b.to()) - b.from()) / 1_000_000
                  + " ms more: "
                  + timeline(a.from(), a.to(), b.from(), b.to()));
        }
      }
    }
    for (String job : jobStarted.keySet()) {
      Optional<long[]> run = jobRun(job);
      if (run.isEmpty()) {
        continue;
      }
      for (Belief b : all) {
        if (b.from() < run.get()[1] && b.to() > run.get()[0]) {
          violations.add(
              b.believer()
                  + " was told it holds the lock (ID "
                  + b.lockId()
                  + ") while runner Job "
                  + job
                  + " ran: "
                  + timeline(b.from(), b.to(), run.get()[0], run.get()[1]));
        }
      }
    }
  }

  /**
   * 11. Once faults have settled, a free lock never idles longer than {@link #IDLE_BOUND} while a
   * client waits for it with its connection open or a runner Job waits to be admitted. The lock is
   * free while the Lease names no holder, or names a runner Job that was made to end.
   */
  private void checkIdle(List<Seen> versions) {
    long end = Math.min(clientsEnded, System.nanoTime());
    long margin = Duration.ofMillis(300).toNanos();
    List<Span> candidates = new ArrayList<>();
    synchronized (waits) {
      for (Span w : waits) {
        candidates.add(new Span("client " + w.what(), w.from() + margin, w.to() - margin));
      }
    }
    jobCreated.forEach(
        (job, created) -> {
          long until =
              Math.min(
                  jobStarted.getOrDefault(job, Long.MAX_VALUE),
                  jobFinishing.getOrDefault(job, Long.MAX_VALUE));
          candidates.add(new Span("runner Job " + job, created + margin, until));
        });
    candidates.removeIf(c -> c.to() <= c.from());
    candidates.sort(java.util.Comparator.comparingLong(Span::from));
    List<Span> settling;
    synchronized (disruptions) {
      settling = new ArrayList<>(disruptions);
    }
    settling.sort(java.util.Comparator.comparingLong(Span::from));
    // The spans in which the lock was free, consecutive free versions merged.
    long freeFrom = -1;
    for (int i = 0; i < versions.size() && versions.get(i).nanos() < end; i++) {
      Seen v = versions.get(i);
      long until = i + 1 < versions.size() ? Math.min(end, versions.get(i + 1).nanos()) : end;
      long from = freeSince(v);
      boolean free = from < until;
      if (freeFrom >= 0 && (!free || from > v.nanos())) {
        idleSpan(freeFrom, v.nanos(), candidates, settling);
        freeFrom = -1;
      }
      if (free && freeFrom < 0) {
        freeFrom = from;
      }
    }
    if (freeFrom >= 0) {
      idleSpan(freeFrom, end, candidates, settling);
    }
  }

  /** When the lock of this version is free: now, once its Job was made to end, or never. */
  private long freeSince(Seen v) {
    if (v.holder() == null) {
      return v.nanos();
    }
    if (v.holder().startsWith(LeaseLock.JOB_PREFIX)) {
      Long finishing = jobFinishing.get(LeaseLock.jobName(v.holder()));
      return finishing == null ? Long.MAX_VALUE : Math.max(v.nanos(), finishing);
    }
    return Long.MAX_VALUE;
  }

  private void idleSpan(long from, long to, List<Span> candidates, List<Span> settling) {
    for (Span c : candidates) {
      if (c.from() >= to) {
        break;
      }
      long a = Math.max(from, c.from());
      long b = Math.min(to, c.to());
      if (b <= a) {
        continue;
      }
      // The longest part of [a, b) outside every fault and its settling.
      long longest = 0;
      long cursor = a;
      for (Span d : settling) {
        if (d.to() <= cursor) {
          continue;
        }
        if (d.from() >= b) {
          break;
        }
        longest = Math.max(longest, d.from() - cursor);
        cursor = Math.max(cursor, d.to());
        if (cursor >= b) {
          break;
        }
      }
      if (cursor < b) {
        longest = Math.max(longest, b - cursor);
      }
      longestCalmIdle.accumulateAndGet(longest, Math::max);
      if (longest > IDLE_BOUND.toNanos()) {
        violations.add(
            "the lock stayed free for "
                + longest / 1_000_000
                + " ms while "
                + c.what()
                + " waited for it, with no fault in progress or settling");
      }
    }
  }

  /**
   * 12. The places in line of a replica's run that ended (stopped, or killed without answering its
   * waiters) are marked away in every version of the Lease written {@link #DEAD_PLACES_BOUND} after
   * it ended, so they never block the line, and are gone from it once the ticket grace has passed
   * too (kept that long so a client retrying on another replica with the same lock ID finds its
   * place).
   */
  private void checkDeadPlaces(List<Seen> versions) {
    Map<String, Long> ended = new java.util.HashMap<>(runEnded);
    java.util.Set<String> reported = new java.util.HashSet<>();
    for (Seen v : versions) {
      for (Ticket t : v.line()) {
        Long at = t.replica() == null ? null : ended.get(t.replica());
        long late = at == null ? 0 : v.nanos() - at;
        boolean stillWaiting = t.gone() == null && late > DEAD_PLACES_BOUND.toNanos();
        boolean stillKept = late > DEAD_PLACES_BOUND.plus(TICKET_GRACE).toNanos();
        if (at != null && (stillWaiting || stillKept) && reported.add(t.id() + " " + t.replica())) {
          violations.add(
              "the place of "
                  + t.id()
                  + " of replica run "
                  + t.replica()
                  + (stillWaiting ? " was still waiting in line " : " was still in line ")
                  + late / 1_000_000
                  + " ms after that run ended");
        }
      }
    }
  }
}
