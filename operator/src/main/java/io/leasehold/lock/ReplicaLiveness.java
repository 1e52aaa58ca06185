package io.leasehold.lock;

import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import java.security.SecureRandom;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZonedDateTime;
import java.time.temporal.ChronoUnit;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Which operator replicas are alive, as every replica can tell: each replica renews a heartbeat
 * Lease of its own in the leader-election namespace, naming this run of the process (its identity
 * and a nonce drawn at start, {@link #self()}), and watches the others'. A replica counts as alive
 * while its heartbeat was seen to change within the timeout, measured on this replica's own clock
 * (so clocks that disagree do not matter). A process that restarts under the same identity (a
 * container restart keeps the pod name) is a new run: the places in line of its previous run are
 * not its own, and count as a dead replica's.
 *
 * <p>Places in line name the run of the replica holding the request; the places of a run that is
 * not alive are dropped in the next write to the lock, whether or not anyone waits.
 *
 * <p>A heartbeat tells that a replica is gone only once it has stopped for the timeout. So that a
 * free lock does not wait that long for a replica that died just as the lock freed, a replica whose
 * turn it is to take the lock for its client and that does not take it is asked directly ({@link
 * #suspect}): each replica advertises the address of its backend in its heartbeat, and a refused
 * connection means the run is gone now, no answer within {@link #PROBE_TIMEOUT} means it is away
 * until its heartbeat changes again, and an answer naming another run means this run ended (its
 * process restarted). The answer is not trusted for anything else: at worst a forged one makes a
 * live replica's clients lose their turn once (they keep their places).
 */
public final class ReplicaLiveness implements AutoCloseable {

  /** Label on heartbeat Leases; its value is the leader-election Lease's name. */
  public static final String LABEL = "leasehold.io/replica-heartbeat";

  /** Annotation on a heartbeat Lease: where the replica answers {@link #suspect}'s probe. */
  public static final String PROBE_ANNOTATION = "leasehold.io/probe";

  /** The path, under a backend's root, of the answer naming the replica's run. */
  public static final String PROBE_PATH = "/v1/replica";

  /** How long a replica has to answer a probe before it counts as away. */
  static final Duration PROBE_TIMEOUT = Duration.ofSeconds(1);

  /** A replica is probed at most this often. */
  static final Duration PROBE_INTERVAL = Duration.ofSeconds(1);

  /** How often a replica renews its heartbeat, and how long one that stops counts as alive. */
  public record Timing(Duration period, Duration timeout) {
    public static final Timing DEFAULTS = new Timing(Duration.ofSeconds(3), Duration.ofSeconds(12));
  }

  private static final Logger LOG = LoggerFactory.getLogger(ReplicaLiveness.class);

  private final String self;
  private final KubernetesClient client;
  private final String namespace;
  private final String group;
  private final String leaseName;
  private final Timing timing;
  private final Clock clock;
  private final LongSupplier nanos;
  private final Map<String, Seen> seen = new ConcurrentHashMap<>();
  private final List<Runnable> listeners = new CopyOnWriteArrayList<>();
  private final ScheduledExecutorService timer;
  private volatile SharedIndexInformer<Lease> informer;
  private volatile String ownVersion;
  private volatile boolean closed;
  private volatile String advertised;
  private final Map<String, Long> probed = new ConcurrentHashMap<>();
  private volatile Prober prober;

  /**
   * When a heartbeat was last seen to change, on this replica's clock, and where the replica
   * answers probes (null when it does not say).
   */
  private record Seen(
      String name, String version, long at, boolean dead, String probe, Verdict verdict) {
    Seen markedDead(Verdict why) {
      return new Seen(name, version, at, true, probe, why);
    }
  }

  /** Why a run whose heartbeat goes on was counted as gone. */
  private enum Verdict {
    /** Its heartbeat stopped, or names another run now. */
    HEARTBEAT,
    /** Its address refused the probe, or answered as another run. */
    PROBE_REFUSED,
    /**
     * Refused, then its heartbeat was renewed once: a renewal sent just before it died may still
     * arrive, so a second one is needed to tell that it runs.
     */
    PROBE_REFUSED_RENEWED,
    /** It did not answer the probe in time. */
    PROBE_SILENT
  }

  /**
   * Runs whose address refused a probe (or answered as another run) while they went on renewing
   * their heartbeat: the address is wrong or blocked, and their probes are not trusted again.
   */
  private final java.util.Set<String> distrusted = ConcurrentHashMap.newKeySet();

  /** Asks a replica at {@code url} which run it is; what it found. */
  interface Prober {
    Probe probe(String url);
  }

  /** What a probe found: the run that answered, or why none did. */
  record Probe(Optional<String> run, String failure, boolean refused) {
    static Probe answered(String run) {
      return new Probe(Optional.of(run), null, false);
    }

    static Probe refused(String why) {
      return new Probe(Optional.empty(), why, true);
    }

    static Probe silent(String why) {
      return new Probe(Optional.empty(), why, false);
    }

    /** Neither an answer nor a refusal that says anything (an answer not naming a run). */
    static Probe unknown(String why) {
      return new Probe(Optional.of(""), why, false);
    }
  }

  /** A heartbeat unchanged this long belongs to a replica that is gone for good: deleted. */
  static final Duration FORGOTTEN_AFTER = Duration.ofHours(1);

  private ReplicaLiveness(
      String identity,
      KubernetesClient client,
      String namespace,
      String group,
      Timing timing,
      Clock clock,
      LongSupplier nanos) {
    if (client == null) {
      this.self = identity;
    } else {
      byte[] nonce = new byte[4];
      new SecureRandom().nextBytes(nonce);
      this.self = identity + "#" + HexFormat.of().formatHex(nonce);
    }
    this.client = client;
    this.namespace = namespace;
    this.group = group;
    this.leaseName = heartbeatName(group, identity);
    this.timing = timing;
    this.clock = clock;
    this.nanos = nanos;
    this.timer =
        client == null
            ? null
            : Executors.newSingleThreadScheduledExecutor(
                r -> {
                  Thread t = new Thread(r, "leasehold-heartbeat");
                  t.setDaemon(true);
                  return t;
                });
    this.probes =
        client == null
            ? null
            : Executors.newSingleThreadExecutor(
                r -> {
                  Thread t = new Thread(r, "leasehold-replica-probe");
                  t.setDaemon(true);
                  return t;
                });
    this.prober = client == null ? null : HttpProber.create(PROBE_TIMEOUT);
  }

  private final java.util.concurrent.ExecutorService probes;

  /** Probes with {@code p} instead of over HTTP (tests). */
  void probeWith(Prober p) {
    prober = p;
  }

  /**
   * A single replica (no leader election): only this replica is alive, and it is named by its
   * identity alone (a restart finds its places and marks those whose requests it lost as away).
   */
  public static ReplicaLiveness alone(String identity) {
    return new ReplicaLiveness(identity, null, null, null, Timing.DEFAULTS, null, System::nanoTime);
  }

  /**
   * Heartbeats in {@code namespace}, among the replicas electing a leader on Lease {@code group}.
   * Renews this run's heartbeat and watches the others' until {@link #close()}.
   */
  public static ReplicaLiveness heartbeating(
      KubernetesClient client, String namespace, String group, String identity, Timing timing) {
    ReplicaLiveness r =
        new ReplicaLiveness(
            identity, client, namespace, group, timing, Clock.systemUTC(), System::nanoTime);
    r.start();
    return r;
  }

  /** This run of this replica: its identity and the nonce drawn at start. */
  public String self() {
    return self;
  }

  /** How many replicas are alive as this one sees them: itself (while running) and the others. */
  public int aliveCount() {
    int alive = closed ? 0 : 1;
    for (String run : seen.keySet()) {
      if (alive(run)) {
        alive++;
      }
    }
    return alive;
  }

  /** Whether {@code replica} (a run, as places in line name it) is alive. */
  public boolean alive(String replica) {
    if (self.equals(replica)) {
      return !closed;
    }
    Seen s = replica == null ? null : seen.get(replica);
    return s != null && !s.dead() && nanos.getAsLong() - s.at() < timing.timeout().toNanos();
  }

  /** Runs {@code listener} whenever a replica is seen to come or go. */
  public void onChange(Runnable listener) {
    listeners.add(listener);
  }

  /**
   * Advertises, in this run's heartbeat, where it answers probes: {@code url} answers {@link
   * #PROBE_PATH}'s GET with {@link #self()}. Without it the others learn this run is gone only from
   * its heartbeat.
   */
  public void advertise(String url) {
    Prober p = prober;
    if (p == null || closed) {
      return;
    }
    try {
      probes.execute(
          () -> {
            // Asked first of itself: a wrong address (POD_IP) would make the others count this
            // replica as gone whenever its client's turn comes.
            Probe own = p.probe(url);
            if (own.run().filter(self::equals).isPresent()) {
              advertiseAs(url);
            } else {
              LOG.warn(
                  "this replica does not answer as itself at {} ({}): its address is not"
                      + " advertised, and the other replicas learn that it is gone from its"
                      + " heartbeat alone (check POD_IP)",
                  shown(url),
                  own.refused()
                      ? "refused"
                      : own.run().isEmpty() ? "no answer in time" : "another answer");
            }
          });
    } catch (java.util.concurrent.RejectedExecutionException e) {
      // Closing.
    }
  }

  /** Advertises {@code url} without asking it first (tests that advertise what is not there). */
  void advertiseAs(String url) {
    advertised = url;
    if (timer != null && !closed) {
      timer.execute(this::renew);
    }
  }

  /**
   * Tells that {@code replica} (a run) has let its turn pass: the lock is free and its client is
   * first. Unless it was asked within {@link #PROBE_INTERVAL}, it is asked now, in the background;
   * if it is gone or does not answer, it counts as not alive from then on (until its heartbeat
   * changes again) and the {@link #onChange} listeners run.
   */
  public void suspect(String replica) {
    Prober p = prober;
    if (p == null || closed || replica == null || replica.equals(self)) {
      return;
    }
    Seen s = seen.get(replica);
    if (s == null || s.probe() == null || !alive(replica) || distrusted.contains(replica)) {
      return;
    }
    long now = nanos.getAsLong();
    Long last = probed.get(replica);
    if (last != null && now - last < PROBE_INTERVAL.toNanos()) {
      return;
    }
    if (last == null
        ? probed.putIfAbsent(replica, now) != null
        : !probed.replace(replica, last, now)) {
      return;
    }
    try {
      probes.execute(() -> probe(p, replica, s));
    } catch (java.util.concurrent.RejectedExecutionException e) {
      // Closing.
    }
  }

  /** The version of {@code replica}'s heartbeat last seen, or null (tests). */
  String seenVersion(String replica) {
    Seen s = seen.get(replica);
    return s == null ? null : s.version();
  }

  /** Whether {@code replica}'s probes are no longer trusted. */
  boolean distrusts(String replica) {
    return distrusted.contains(replica);
  }

  /** Whether {@code replica}'s heartbeat says where it answers probes. */
  boolean knowsProbe(String replica) {
    Seen s = seen.get(replica);
    return s != null && s.probe() != null;
  }

  /** Probes {@code replica} now, on this thread (tests). */
  void probeNow(String replica) {
    Seen s = seen.get(replica);
    if (s != null && s.probe() != null) {
      probe(prober, replica, s);
    }
  }

  private void probe(Prober p, String replica, Seen s) {
    if (distrusted.contains(replica)) {
      return;
    }
    Probe found = p.probe(s.probe());
    String at = shown(s.probe());
    String why;
    Verdict verdict;
    if (found.refused()) {
      why = "its backend at " + at + " refused the connection";
      verdict = Verdict.PROBE_REFUSED;
    } else if (found.run().isEmpty()) {
      why =
          "its backend at "
              + at
              + " did not answer within "
              + PROBE_TIMEOUT.toMillis()
              + " ms; away until its heartbeat is renewed";
      verdict = Verdict.PROBE_SILENT;
    } else if (!found.run().get().isEmpty() && !found.run().get().equals(replica)) {
      // The answer is not shown: anyone who may write the heartbeat chooses the address.
      why = "its address " + at + " answers as another run";
      verdict = Verdict.PROBE_REFUSED;
    } else {
      return;
    }
    // Only the heartbeat version probed: a renewal since then says it is alive after all.
    if (seen.replace(replica, s, s.markedDead(verdict))) {
      gone(replica, why);
    }
  }

  /** A probe address as it may be shown in a log: its scheme, host and port, or "invalid". */
  private static String shown(String probe) {
    return probe == null
        ? "(none)"
        : HttpProber.probeAddress(probe)
            .map(u -> u.getScheme() + "://" + u.getRawAuthority())
            .orElse("(invalid)");
  }

  private void gone(String replica, String why) {
    reported.put(replica, false);
    LOG.info(
        "replica {} is gone: {}; its places in line are marked away (they no longer block the lock)",
        replica,
        why);
    changed();
  }

  private void start() {
    renew();
    informer =
        client
            .leases()
            .inNamespace(namespace)
            .withLabel(LABEL, group)
            .inform(
                new ResourceEventHandler<>() {
                  @Override
                  public void onAdd(Lease lease) {
                    observe(lease, true);
                  }

                  @Override
                  public void onUpdate(Lease before, Lease after) {
                    observe(after, false);
                  }

                  @Override
                  public void onDelete(Lease lease, boolean unknown) {
                    String run = run(lease);
                    if (run != null && seen.remove(run) != null) {
                      changed();
                    }
                  }
                },
                0);
    long period = timing.period().toMillis();
    timer.scheduleWithFixedDelay(this::renew, period, period, TimeUnit.MILLISECONDS);
    // Replicas whose heartbeat stopped are noticed on this clock, not by an event.
    timer.scheduleWithFixedDelay(
        this::expire, period, Math.max(250, period / 3), TimeUnit.MILLISECONDS);
  }

  private void observe(Lease lease, boolean first) {
    String run = run(lease);
    if (run == null || run.equals(self)) {
      return;
    }
    String version = lease.getMetadata().getResourceVersion();
    Seen before = seen.get(run);
    if (before != null && before.version().equals(version)) {
      return;
    }
    String name = lease.getMetadata().getName();
    for (var e : seen.entrySet()) {
      if (!e.getKey().equals(run) && e.getValue().name().equals(name) && !e.getValue().dead()) {
        // Its heartbeat names another run now: the process restarted, this run ended.
        seen.replace(e.getKey(), e.getValue(), e.getValue().markedDead(Verdict.HEARTBEAT));
        gone(e.getKey(), "its heartbeat now names another run (the process restarted)");
      }
    }
    boolean dead = false;
    if (first && before == null) {
      // A heartbeat found at start: alive for the benefit of the doubt, unless it says itself
      // that it stopped long ago.
      Instant renewed = renewTime(lease);
      long seconds =
          lease.getSpec().getLeaseDurationSeconds() == null
              ? 0
              : lease.getSpec().getLeaseDurationSeconds();
      dead =
          renewed != null
              && renewed.plusSeconds(seconds).plus(Duration.ofMinutes(1)).isBefore(clock.instant());
    }
    long at = nanos.getAsLong();
    if (dead) {
      // Stopped long ago: counted as unchanged since then, so it is tidied away in time.
      at -= FORGOTTEN_AFTER.toNanos();
    }
    var annotations = lease.getMetadata().getAnnotations();
    String probe = annotations == null ? null : annotations.get(PROBE_ANNOTATION);
    Verdict verdict = null;
    boolean gone = dead;
    if (before != null && !dead && before.verdict() == Verdict.PROBE_REFUSED) {
      // Still gone: this renewal may have been on its way when the replica died.
      verdict = Verdict.PROBE_REFUSED_RENEWED;
      gone = true;
    } else if (before != null
        && !dead
        && before.verdict() == Verdict.PROBE_REFUSED_RENEWED
        && distrusted.add(run)) {
      LOG.warn(
          "replica {} renews its heartbeat although its probe address {} refused the connection:"
              + " that address is wrong or blocked (POD_IP, a NetworkPolicy that rejects); its"
              + " probes are no longer trusted, and it counts as gone only once its heartbeat"
              + " stops",
          run,
          shown(before.probe()));
    }
    seen.put(run, new Seen(name, version, at, gone, probe, verdict));
    if (before == null || before.dead() != gone || !wasAlive(before)) {
      changed();
    }
  }

  private boolean wasAlive(Seen s) {
    return !s.dead() && nanos.getAsLong() - s.at() < timing.timeout().toNanos();
  }

  private final Map<String, Boolean> reported = new ConcurrentHashMap<>();

  private void expire() {
    boolean change = false;
    for (var e : seen.entrySet()) {
      Seen s = e.getValue();
      if (nanos.getAsLong() - s.at() > FORGOTTEN_AFTER.toNanos()) {
        // Tried again in ten minutes should the deletion fail.
        seen.replace(
            e.getKey(),
            s,
            new Seen(
                s.name(),
                s.version(),
                s.at() + Duration.ofMinutes(10).toNanos(),
                s.dead(),
                s.probe(),
                s.verdict()));
        forget(s);
      }
      boolean alive = wasAlive(e.getValue());
      Boolean was = reported.put(e.getKey(), alive);
      if (was != null && was != alive) {
        change = true;
        LOG.info(
            "replica {} is {}",
            e.getKey(),
            alive
                ? "alive again"
                : "gone: its heartbeat stopped; its places in line are marked away (they no longer block the lock)");
      }
    }
    if (change) {
      changed();
    }
  }

  /** Deletes the heartbeat of a replica gone for good, at the version last seen. */
  private void forget(Seen s) {
    try {
      client
          .leases()
          .inNamespace(namespace)
          .withName(s.name())
          .lockResourceVersion(s.version())
          .delete();
      LOG.info(
          "heartbeat {}/{} of a replica gone for over {} deleted",
          namespace,
          s.name(),
          FORGOTTEN_AFTER);
    } catch (KubernetesClientException e) {
      // Changed meanwhile (the replica is back) or deleted by another replica: nothing to do.
      LOG.debug("heartbeat {}/{} not deleted: {}", namespace, s.name(), e.getMessage());
    }
  }

  private void changed() {
    for (Runnable l : listeners) {
      try {
        l.run();
      } catch (RuntimeException e) {
        LOG.warn("a replica liveness listener failed: {}", e.toString());
      }
    }
  }

  private void renew() {
    if (closed) {
      return;
    }
    try {
      ZonedDateTime now = ZonedDateTime.now(clock).truncatedTo(ChronoUnit.MICROS);
      Lease lease =
          new LeaseBuilder()
              .withMetadata(
                  new ObjectMetaBuilder()
                      .withName(leaseName)
                      .withNamespace(namespace)
                      .withResourceVersion(ownVersion)
                      .addToLabels(LABEL, group)
                      .withAnnotations(
                          advertised == null ? null : Map.of(PROBE_ANNOTATION, advertised))
                      .build())
              .withNewSpec()
              .withHolderIdentity(self)
              .withLeaseDurationSeconds((int) Math.max(1, timing.timeout().toSeconds()))
              .withRenewTime(now)
              .withAcquireTime(now)
              .endSpec()
              .build();
      Lease written;
      if (ownVersion == null) {
        Lease existing = client.leases().inNamespace(namespace).withName(leaseName).get();
        if (existing == null) {
          written = client.leases().inNamespace(namespace).resource(lease).create();
        } else {
          lease.getMetadata().setResourceVersion(existing.getMetadata().getResourceVersion());
          written = client.leases().inNamespace(namespace).resource(lease).update();
        }
      } else {
        written = client.leases().inNamespace(namespace).resource(lease).update();
      }
      ownVersion = written.getMetadata().getResourceVersion();
    } catch (KubernetesClientException e) {
      // Conflict or gone: read it afresh at the next renewal.
      ownVersion = null;
      LOG.debug("heartbeat {}/{} not renewed: {}", namespace, leaseName, e.getMessage());
    } catch (RuntimeException e) {
      ownVersion = null;
      LOG.warn("heartbeat {}/{} not renewed: {}", namespace, leaseName, e.toString());
    }
  }

  /** Stops renewing and watching, and leaves the heartbeat behind: as a crash would. */
  void halt() {
    closed = true;
    timer.shutdownNow();
    probes.shutdownNow();
    informer.close();
  }

  /**
   * Stops renewing and deletes this run's heartbeat, so the others drop its places at once (a
   * graceful stop; a killed replica's heartbeat times out instead).
   */
  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    if (timer != null) {
      timer.shutdownNow();
      probes.shutdownNow();
    }
    if (informer != null) {
      informer.close();
    }
    if (client != null) {
      try {
        client.leases().inNamespace(namespace).withName(leaseName).delete();
      } catch (RuntimeException e) {
        LOG.warn("heartbeat {}/{} not deleted: {}", namespace, leaseName, e.toString());
      }
    }
  }

  private static String run(Lease lease) {
    return lease.getSpec() == null ? null : lease.getSpec().getHolderIdentity();
  }

  private static Instant renewTime(Lease lease) {
    return lease.getSpec() == null || lease.getSpec().getRenewTime() == null
        ? null
        : lease.getSpec().getRenewTime().toInstant();
  }

  /** The heartbeat Lease of replica {@code identity} among those electing on {@code group}. */
  static String heartbeatName(String group, String identity) {
    if (group == null) {
      return null;
    }
    String id = identity.toLowerCase().replaceAll("[^a-z0-9.-]", "-");
    String name = group + "-replica-" + id;
    name = name.length() > 253 ? name.substring(0, 253) : name;
    return name.replaceAll("[.-]+$", "");
  }
}
