package io.leasehold.backend;

import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.LockService;
import io.leasehold.lock.ReplicaLiveness;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.ops.RequestDrain;
import io.leasehold.state.StateNames;
import io.leasehold.tls.BackendTls;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.http.HttpMethod;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerOptions;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Serves Terraform's {@code http} backend protocol: {@code GET|POST|DELETE /v1/states/NS/NAME} and
 * {@code LOCK|UNLOCK /v1/states/NS/NAME/lock}, plus the state's history. Requests are answered on
 * Vert.x event loops; work that calls the Kubernetes API runs on workers, and LOCKs waiting with
 * {@code ?wait=} hold no thread at all.
 *
 * <p>This class starts and stops the server (its options, connection limits, draining); the
 * requests are routed by {@link Routes}, checked by {@link RequestChecks}, LOCK and UNLOCK handled
 * by {@link LockHandlers}, and answered by {@link Responses}.
 */
public final class HttpBackend implements AutoCloseable {

  public static final HttpMethod LOCK = HttpMethod.valueOf("LOCK");
  public static final HttpMethod UNLOCK = HttpMethod.valueOf("UNLOCK");
  private static final Logger LOG = LoggerFactory.getLogger(HttpBackend.class);

  /**
   * @param host address to listen on
   * @param port port to listen on (0: a free one)
   * @param maxWait upper bound of {@code ?wait=} on LOCK
   * @param namespaces namespaces served (empty: all)
   * @param timeouts how long idle connections and slow bodies are given
   * @param tls HTTPS; empty serves plain HTTP
   * @param heldLockWait how long a LOCK without {@code ?wait=} waits in line for a lock that is
   *     held (zero: answered at once). While it waits its client is connected, so the lock goes to
   *     it the moment it is free instead of idling until Terraform's next retry; when the wait runs
   *     out it is answered 423 and keeps its place in line for its retries.
   */
  public record Config(
      String host,
      int port,
      Duration maxWait,
      java.util.Set<String> namespaces,
      Timeouts timeouts,
      Optional<BackendTls> tls,
      Duration heldLockWait) {

    /**
     * The command line's {@code --held-lock-wait} default: long enough to catch most handoffs
     * between Terraform's retries, short enough that Ctrl-C is acted on soon.
     */
    public static final Duration DEFAULT_HELD_LOCK_WAIT = Duration.ofSeconds(10);

    /** Serving every namespace; a LOCK without {@code ?wait=} answered at once. */
    public Config(String host, int port, Duration maxWait) {
      this(host, port, maxWait, java.util.Set.of());
    }

    public Config(String host, int port, Duration maxWait, java.util.Set<String> namespaces) {
      this(host, port, maxWait, namespaces, Timeouts.DEFAULT, Optional.empty(), Duration.ZERO);
    }

    public Config withTimeouts(Timeouts other) {
      return new Config(host, port, maxWait, namespaces, other, tls, heldLockWait);
    }

    public Config withNamespaces(java.util.Set<String> serving) {
      return new Config(host, port, maxWait, serving, timeouts, tls, heldLockWait);
    }

    /** The same on another port. */
    public Config withPort(int other) {
      return new Config(host, other, maxWait, namespaces, timeouts, tls, heldLockWait);
    }

    /** The same, serving HTTPS with {@code backendTls}. */
    public Config withTls(BackendTls backendTls) {
      return new Config(
          host, port, maxWait, namespaces, timeouts, Optional.of(backendTls), heldLockWait);
    }

    /** The same, a LOCK without {@code ?wait=} waiting up to {@code wait} for a held lock. */
    public Config withHeldLockWait(Duration wait) {
      return new Config(host, port, maxWait, namespaces, timeouts, tls, wait);
    }
  }

  /**
   * @param idleConnection a connection with no request in progress (fresh, between keep-alive
   *     requests, or still sending its headers) is closed after this
   * @param bodyStall a request body that sends nothing for this long is ended with 408
   * @param smallBodyDeadline a small body (LOCK, UNLOCK, or none) must be complete within this
   * @param drain how long the rest of a refused body is let in (and dropped) before the connection
   *     closes, so that the client sees the answer
   */
  public record Timeouts(
      Duration idleConnection, Duration bodyStall, Duration smallBodyDeadline, Duration drain) {

    /** A connection is kept idle longer than Go's clients keep one (90 s), so they close first. */
    public static final Timeouts DEFAULT =
        new Timeouts(
            Duration.ofSeconds(120),
            Duration.ofSeconds(30),
            Duration.ofSeconds(30),
            Duration.ofSeconds(5));
  }

  /** How long stopping waits for requests in flight; inside the pods' 30 s grace period. */
  private static final Duration DRAIN_TIMEOUT = Duration.ofSeconds(20);

  private final Vertx vertx;
  private final HttpServer server;
  private final LockWaiters waiters;
  private final String host;
  private final boolean https;
  private final RequestDrain drain;

  private HttpBackend(
      Vertx vertx,
      HttpServer server,
      LockWaiters waiters,
      String host,
      boolean https,
      RequestDrain drain) {
    this.vertx = vertx;
    this.server = server;
    this.waiters = waiters;
    this.host = host;
    this.https = https;
    this.drain = drain;
  }

  /**
   * Starts serving; returns once the port is bound.
   *
   * @param locks the replica's lock service; its Lease watch wakes waiting LOCKs
   * @param states where TerraformStates are looked up (the replica's watch cache)
   */
  public static HttpBackend start(
      LockService locks,
      StateBackend.States states,
      StateBackend.Factory backendFactory,
      Access access,
      JobPods jobPods,
      EventRecorder events,
      Config config,
      LeaseholdMetrics metrics,
      StateBackend.Audit audit) {
    Vertx vertx = Vertx.vertx(new VertxOptions().setWorkerPoolSize(32));
    LockWaiters waiters = new LockWaiters(vertx, locks, metrics);
    LockRequests lockRequests =
        new LockRequests(locks, waiters, access, jobPods, events, metrics, audit);
    StateBackend backend = backendFactory.create(lockRequests).withStates(states);
    // A changed Lease, whoever changed it (stock Terraform too), may make a waiter's turn come.
    locks.onLeaseChange(
        lease -> {
          var labels = lease.getMetadata().getLabels();
          String suffix = labels == null ? null : labels.get(StateNames.LABEL_SUFFIX);
          if (suffix != null) {
            waiters.wake(lease.getMetadata().getNamespace(), suffix);
          }
        });
    // Responses are compressed for clients that ask; request bodies never are inflated (a
    // compressed body is refused before it is read).
    HttpServerOptions options =
        new HttpServerOptions()
            .setHost(config.host())
            .setPort(config.port())
            .setCompressionSupported(true)
            .setDecompressionSupported(false)
            // HTTP/1.1 only (Terraform and OpenTofu speak nothing else to the backend): the
            // limits and timeouts here are written for it.
            .setHttp2ClearTextEnabled(false);
    config.tls().ifPresent(tls -> tls.configure(options));
    ConnectionGuard connections =
        new ConnectionGuard(vertx, options, config.timeouts().idleConnection());
    Routes routes = new Routes(vertx, backend, lockRequests, access, config, connections);
    HttpServer server = vertx.createHttpServer(options);
    server.connectionHandler(connections::connected);
    // A connection reset by its client is the client's business: one line, no stack trace.
    server.exceptionHandler(
        t ->
            LOG.debug("backend connection ended: {}", t.getMessage() == null ? t : t.getMessage()));
    RequestDrain drain = new RequestDrain();
    metrics.requestsInProgress(drain);
    server.requestHandler(drain.install(routes.router()));
    try {
      server.listen().toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
    } catch (Exception e) {
      waiters.close();
      vertx.close();
      throw new IllegalStateException(
          "cannot serve the Terraform backend on "
              + config.host()
              + ":"
              + config.port()
              + ": "
              + e.getMessage(),
          e);
    }
    config.tls().ifPresent(tls -> tls.keepCurrent(vertx));
    config
        .tls()
        .ifPresent(
            tls ->
                metrics.certificateNotAfter(
                    () -> tls.current().leaf().getNotAfter().toInstant().getEpochSecond()));
    HttpBackend started =
        new HttpBackend(vertx, server, waiters, config.host(), config.tls().isPresent(), drain);
    advertisedHost(config.host(), System.getenv(POD_IP))
        .ifPresent(
            host -> locks.liveness().advertise(started.root(host) + ReplicaLiveness.PROBE_PATH));
    return started;
  }

  /** The environment variable that names the pod's address (the chart sets it). */
  static final String POD_IP = "POD_IP";

  /**
   * The address other replicas reach this one at: the pod's address when known, else the address
   * the backend listens on unless that is every address (then none is advertised: a guess could
   * name another process, and the others then learn that this replica is gone from its heartbeat
   * alone).
   */
  static Optional<String> advertisedHost(String bindHost, String podIp) {
    if (podIp != null && !podIp.isBlank()) {
      return Optional.of(podIp.strip());
    }
    if (bindHost == null
        || bindHost.isBlank()
        || bindHost.equals("0.0.0.0")
        || bindHost.equals("::")
        || bindHost.equals("[::]")) {
      return Optional.empty();
    }
    return Optional.of(bindHost);
  }

  /** {@code scheme://host:port} of this backend at {@code host}. */
  private String root(String host) {
    String h = host.contains(":") && !host.startsWith("[") ? "[" + host + "]" : host;
    return (https ? "https://" : "http://") + h + ":" + port();
  }

  public int port() {
    return server.actualPort();
  }

  /** Base URL of the state addresses: append {@code NS/NAME}. */
  public String url() {
    String h = host.contains(":") ? "[" + host + "]" : host;
    return (https ? "https://" : "http://") + h + ":" + port() + "/v1/states/";
  }

  /**
   * Drains the backend before it closes: requests that arrive from now on are refused with 503 and
   * {@code Connection: close} (Terraform retries them, on another replica once this one has left
   * the Service's endpoints), and this waits up to {@code timeout} for the requests in progress to
   * finish. Returns how many were still in progress when it gave up.
   */
  public int drain(Duration timeout) throws InterruptedException {
    drain.refuseNew();
    // Waiting ?wait= LOCKs are requests in progress too: they are answered now (503), so their
    // clients retry on another replica, where their places in line wait for them.
    waiters.drain(Duration.ofSeconds(5));
    return drain.awaitIdle(timeout);
  }

  /**
   * Stops serving: waiting LOCKs are answered first (503, so they retry against another replica and
   * keep their place in line), then in-flight requests finish and the server closes.
   */
  @Override
  public void close() {
    close(DRAIN_TIMEOUT);
  }

  /** Stops within about {@code grace}: see {@link #close()}. */
  public void close(Duration grace) {
    try {
      int left = drain(grace);
      if (left > 0) {
        LOG.warn("{} backend request(s) still running after {}; stopping anyway", left, grace);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    waiters.close();
    try {
      vertx.close().toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
    } catch (Exception e) {
      LOG.warn("backend did not stop cleanly: {}", e.getMessage());
    }
  }

  /**
   * Stops at once, as a killed process does: open connections are dropped, waiting LOCKs get no
   * answer and nothing is drained. The places in line of this run's waiters are left for the other
   * replicas to drop once this run's heartbeat stops.
   */
  public void halt() {
    waiters.close();
    try {
      vertx.close().toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
    } catch (Exception e) {
      LOG.warn("backend did not halt cleanly: {}", e.getMessage());
    }
  }
}
