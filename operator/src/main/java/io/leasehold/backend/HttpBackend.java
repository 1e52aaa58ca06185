package io.leasehold.backend;

import io.leasehold.api.DisplayText;
import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.Caller;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.ops.RequestDrain;
import io.leasehold.state.IncomingState;
import io.leasehold.state.StateNames;
import io.leasehold.tls.BackendTls;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.HttpConnection;
import io.vertx.core.http.HttpMethod;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Serves Terraform's {@code http} backend protocol: {@code GET|POST|DELETE /v1/states/NS/NAME} and
 * {@code LOCK|UNLOCK /v1/states/NS/NAME/lock}, plus the state's history. Requests are answered on
 * Vert.x event loops; work that calls the Kubernetes API runs on workers, and LOCKs waiting with
 * {@code ?wait=} hold no thread at all.
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

  /** Where a request's drain time is kept in its routing context. */
  private static final String DRAIN_KEY = "leasehold.drain";

  /** Largest LOCK or UNLOCK body: a LockInfo is a few hundred bytes. */
  static final int LOCK_BODY_LIMIT = 64 * 1024;

  /** Bytes of a streamed body handed to the connection at a time. */
  private static final int STREAM_PIECE = 64 * 1024;

  /** How long stopping waits for requests in flight; inside the pods' 30 s grace period. */
  static final Duration DRAIN_TIMEOUT = Duration.ofSeconds(20);

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
    return new HttpBackend(vertx, server, waiters, config.host(), config.tls().isPresent(), drain);
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
    close(Duration.ofSeconds(20));
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

  /** The routes and handlers. */
  private static final class Routes {
    private final Vertx vertx;
    private final StateBackend backend;
    private final LockRequests locks;
    private final Access access;
    private final Config config;
    private final ConnectionGuard connections;

    Routes(
        Vertx vertx,
        StateBackend backend,
        LockRequests locks,
        Access access,
        Config config,
        ConnectionGuard connections) {
      this.vertx = vertx;
      this.backend = backend;
      this.locks = locks;
      this.access = access;
      this.config = config;
      this.connections = connections;
    }

    Router router() {
      Router router = Router.router(vertx);
      String state = "/v1/states/:ns/:name";
      String lock = state + "/lock";
      // Before anything else: framing and encoding are checked, and the body is left unread
      // until the request is authenticated and authorized.
      router.route().handler(this::admit);
      router.route(HttpMethod.POST, state).handler(this::post);
      router
          .route(HttpMethod.GET, state)
          .handler(ctx -> serve(ctx, Access.Verb.GET, (t, who) -> backend.get(t)));
      router
          .route(HttpMethod.DELETE, state)
          .handler(
              ctx ->
                  serve(
                      ctx,
                      Access.Verb.DELETE,
                      (t, who) -> backend.delete(t, ctx.request().getParam("ID"), who)));
      router.route(LOCK, lock).handler(this::lock);
      router.route(UNLOCK, lock).handler(this::unlock);
      router
          .route(HttpMethod.GET, state + "/history")
          .handler(ctx -> serve(ctx, Access.Verb.GET, (t, who) -> backend.history(t)));
      router
          .route(HttpMethod.GET, state + "/history/:version")
          .handler(
              ctx ->
                  serve(
                      ctx,
                      Access.Verb.GET,
                      (t, who) -> backend.historyVersion(t, ctx.pathParam("version"))));
      router
          .route(HttpMethod.POST, state + "/history/:version/restore")
          .handler(
              ctx ->
                  serve(
                      ctx,
                      Access.Verb.UPDATE,
                      (t, who) -> backend.restore(t, ctx.pathParam("version"), who)));
      router.route(state).handler(ctx -> notAllowed(ctx, "GET, POST, DELETE"));
      router.route(lock).handler(ctx -> notAllowed(ctx, "LOCK, UNLOCK"));
      router
          .route()
          .handler(
              ctx ->
                  send(
                      ctx,
                      Reply.text(
                          404,
                          "not a backend address: states are at /v1/states/NS/NAME and their"
                              + " locks at /v1/states/NS/NAME/lock")));
      router
          .route()
          .failureHandler(
              ctx -> {
                Throwable f = ctx.failure();
                if (f == null) {
                  send(
                      ctx,
                      Reply.text(ctx.statusCode() > 0 ? ctx.statusCode() : 500, "request failed"));
                } else {
                  failed(ctx, f);
                }
              });
      return router;
    }

    /**
     * First for every request: the connection is busy now; the body waits (paused) until the
     * request may go on; ambiguous framing and compressed bodies are refused before any of it is
     * read.
     */
    private void admit(RoutingContext ctx) {
      HttpServerRequest request = ctx.request();
      request.pause();
      BodyReader.Watch.start(request);
      ctx.put(DRAIN_KEY, config.timeouts().drain());
      HttpConnection connection = request.connection();
      connections.requestStarted(connection);
      ctx.addEndHandler(v -> connections.requestEnded(connection));
      if (ConnectionGuard.conflictingFraming(request.headers())) {
        send(
            ctx,
            Reply.text(
                400,
                "the request has both Content-Length and Transfer-Encoding: its length is"
                    + " ambiguous, so it is refused and the connection closed"));
        return;
      }
      String encoding = request.getHeader("Content-Encoding");
      if (encoding != null
          && !encoding.isBlank()
          && !encoding.trim().equalsIgnoreCase("identity")) {
        send(
            ctx,
            Reply.text(
                415,
                "Content-Encoding "
                    + DisplayText.clean(encoding, 40)
                    + " is not accepted: send the body uncompressed (Terraform and OpenTofu do)"));
        return;
      }
      ctx.next();
    }

    private interface Handler {
      Reply handle(StateBackend.Target target, Requester who);
    }

    /** The state a request addresses, who sent it and what they may do, once checked. */
    private record Resolved(StateBackend.Target target, Requester who, Access.Verb allowed) {}

    /** A namespace outside --namespace is not served: the operator may not read it. */
    private boolean served(RoutingContext ctx) {
      String ns = ctx.pathParam("ns");
      if (config.namespaces().isEmpty() || config.namespaces().contains(ns)) {
        return true;
      }
      send(
          ctx,
          Reply.text(
              404,
              "namespace "
                  + DisplayText.clean(ns, 80)
                  + " is not served by this leasehold (it watches "
                  + String.join(", ", new java.util.TreeSet<>(config.namespaces()))
                  + ")"));
      return false;
    }

    /**
     * Refuses at once a request whose Content-Length says its body is over {@code limit}: nothing
     * of it is read.
     */
    private boolean lengthWithin(RoutingContext ctx, long limit, String what, String hint) {
      String length = ctx.request().getHeader("Content-Length");
      if (length == null) {
        return true;
      }
      String digits = length.trim();
      if (!digits.matches("[0-9]{1,19}")) {
        send(ctx, Reply.text(400, "Content-Length is not a number"));
        return false;
      }
      if (digits.length() > 18 || Long.parseLong(digits) > limit) {
        send(
            ctx,
            Reply.text(
                413,
                what + " is over the limit of " + limit + " bytes" + hint + ". Nothing was done."));
        return false;
      }
      return true;
    }

    /**
     * Authenticates the requester and checks one of {@code verbs} (the first that is allowed) on
     * the state, off the event loop; nothing of the body is read before.
     */
    private Future<Resolved> authorize(RoutingContext ctx, Access.Verb... verbs) {
      String authorization = ctx.request().getHeader("Authorization");
      // A verified client certificate identifies the client where no token is sent.
      var certificate = ClientCertificate.of(ctx.request());
      String ns = ctx.pathParam("ns");
      String name = ctx.pathParam("name");
      return vertx.executeBlocking(
          () -> {
            Requester who = access.authenticate(authorization, certificate);
            ReplyException refused = null;
            for (Access.Verb verb : verbs) {
              try {
                access.authorize(who, verb, ns, name);
                return new Resolved(backend.resolve(ns, name), who, verb);
              } catch (ReplyException e) {
                if (refused == null) {
                  refused = e;
                }
              }
            }
            throw refused;
          },
          false);
    }

    /** A request without a body (GET, DELETE, history, restore). */
    private void serve(RoutingContext ctx, Access.Verb verb, Handler handler) {
      if (!served(ctx) || !lengthWithin(ctx, 0, "a " + method(ctx) + " body", "")) {
        return;
      }
      authorize(ctx, verb)
          .compose(
              resolved ->
                  BodyReader.read(
                          vertx,
                          ctx.request(),
                          "a " + method(ctx) + " body",
                          0,
                          config.timeouts().bodyStall(),
                          config.timeouts().smallBodyDeadline(),
                          b -> true)
                      .map(resolved))
          .compose(
              resolved ->
                  vertx.executeBlocking(
                      () -> handler.handle(resolved.target(), resolved.who()), false))
          .onComplete(result -> reply(ctx, result));
    }

    /**
     * POST of a state: refused at once when its Content-Length is over the limit; otherwise, once
     * the requester may write it, its body is taken as it arrives, on the event loop, into its MD5
     * and gzip'd parts (see {@link IncomingState.Receiver}), and written by a worker when complete.
     */
    private void post(RoutingContext ctx) {
      long max = backend.maxStateBytes();
      if (!served(ctx) || !lengthWithin(ctx, max, "the state", " (--max-state-bytes)")) {
        return;
      }
      HttpServerRequest request = ctx.request();
      String lockId = request.getParam("ID");
      Optional<String> badId = LockInfo.idProblem(lockId);
      if (lockId != null && badId.isPresent()) {
        send(ctx, Reply.text(400, "?ID=: " + badId.get() + ". Nothing was written."));
        return;
      }
      String contentMd5 = request.getHeader("Content-MD5");
      IncomingState.Receiver receiver = new IncomingState.Receiver(max);
      authorize(ctx, Access.Verb.UPDATE)
          .compose(
              resolved -> {
                if ("100-continue".equalsIgnoreCase(request.getHeader("Expect"))) {
                  request.response().writeContinue();
                }
                return BodyReader.read(
                        vertx,
                        request,
                        "the state",
                        Long.MAX_VALUE,
                        config.timeouts().bodyStall(),
                        null,
                        buffer -> {
                          byte[] bytes = buffer.getBytes();
                          return receiver.accept(bytes, 0, bytes.length);
                        })
                    .map(resolved);
              })
          .compose(
              resolved ->
                  vertx.executeBlocking(
                      () ->
                          backend.post(
                              resolved.target(),
                              lockId,
                              receiver.finish(),
                              contentMd5,
                              resolved.who()),
                      false))
          .onComplete(result -> reply(ctx, result));
    }

    /** The LOCK or UNLOCK body, once the requester may send it: bounded, any content type. */
    private Future<byte[]> lockBody(RoutingContext ctx, String what) {
      Buffer body = Buffer.buffer();
      return BodyReader.read(
              vertx,
              ctx.request(),
              what,
              LOCK_BODY_LIMIT,
              config.timeouts().bodyStall(),
              config.timeouts().smallBodyDeadline(),
              buffer -> {
                body.appendBuffer(buffer);
                return true;
              })
          .map(complete -> body.getBytes());
    }

    /** The LockInfo of a LOCK or UNLOCK body, or a 400 that says what is wrong with it. */
    private static LockInfo lockInfo(byte[] body, String what) {
      Optional<LockInfo> info = LockInfo.parse(new String(body, StandardCharsets.UTF_8));
      if (info.isEmpty() || info.get().id() == null || info.get().id().isBlank()) {
        throw ReplyException.text(400, what + " is not a Terraform LockInfo with an ID");
      }
      info.get()
          .problem()
          .ifPresent(
              p -> {
                throw ReplyException.text(400, what + " is refused: " + p);
              });
      return info.get();
    }

    private void lock(RoutingContext ctx) {
      if (!served(ctx) || !lengthWithin(ctx, LOCK_BODY_LIMIT, "the LOCK body", "")) {
        return;
      }
      String waitParam = ctx.request().getParam("wait");
      Duration wait;
      try {
        wait = waitParam == null ? config.heldLockWait() : WaitDuration.parse(waitParam);
      } catch (IllegalArgumentException e) {
        send(
            ctx,
            Reply.text(400, "?wait=" + DisplayText.clean(waitParam, 40) + ": " + e.getMessage()));
        return;
      }
      if (wait.compareTo(config.maxWait()) > 0) {
        wait = config.maxWait();
      }
      Duration waitFor = wait;
      authorize(ctx, Access.Verb.UPDATE)
          .compose(
              resolved ->
                  lockBody(ctx, "the LOCK body")
                      .map(body -> new Locking(resolved, lockInfo(body, "the LOCK body"))))
          .compose(
              locking -> {
                StateBackend.Target target = locking.resolved().target();
                Requester who = locking.resolved().who();
                Caller caller = locks.caller(who);
                Future<LockWaiters.Outcome> outcome =
                    waitFor.isZero()
                        ? locks.lockNow(target, locking.info(), who, caller, connection(ctx))
                        : locks.lockWaiting(
                            target, locking.info(), who, caller, waitFor, connection(ctx));
                return outcome.map(o -> new Delivery(target, caller, o));
              })
          .onComplete(
              result -> {
                if (result.failed()) {
                  failed(ctx, result.cause());
                } else {
                  deliver(ctx, result.result());
                }
              });
    }

    private record Locking(Resolved resolved, LockInfo info) {}

    private record Delivery(
        StateBackend.Target target, Caller caller, LockWaiters.Outcome outcome) {}

    /**
     * Sends a LOCK's answer. A grant that cannot be delivered (the client went away meanwhile) is
     * undone, so the lock is never held for a request that is not there.
     */
    private void deliver(RoutingContext ctx, Delivery d) {
      LockWaiters.Outcome outcome = d.outcome();
      if (outcome.reply() == null) {
        // The client went away while it waited: there is nobody to answer.
        return;
      }
      Optional<LockService.Granted> grant = outcome.grant();
      if (grant.isEmpty()) {
        send(ctx, outcome.reply());
        return;
      }
      if (ctx.response().closed() || ctx.response().ended()) {
        locks.undeliverable(d.target(), grant.get(), d.caller());
        return;
      }
      send(ctx, outcome.reply())
          .onFailure(f -> locks.undeliverable(d.target(), grant.get(), d.caller()));
    }

    private static LockWaiters.Connection connection(RoutingContext ctx) {
      return new LockWaiters.Connection() {
        @Override
        public boolean open() {
          return !ctx.response().closed() && !ctx.response().ended();
        }

        @Override
        public void onClose(Runnable closed) {
          // An end handler, not the response's one close handler, which the router uses: it is
          // told with a failure when the connection closes before the answer is sent.
          ctx.addEndHandler(
              ended -> {
                if (ended.failed()) {
                  closed.run();
                }
              });
        }
      };
    }

    private void unlock(RoutingContext ctx) {
      if (!served(ctx) || !lengthWithin(ctx, LOCK_BODY_LIMIT, "the UNLOCK body", "")) {
        return;
      }
      // May the requester unlock at all (with the holder's ID, or by force)? Only then is the
      // body read; then the verb its body needs is checked.
      authorize(ctx, Access.Verb.UPDATE, Access.Verb.FORCE_UNLOCK)
          .compose(
              resolved ->
                  lockBody(ctx, "the UNLOCK body").map(body -> new Object[] {resolved, body}))
          .compose(
              read -> {
                Resolved resolved = (Resolved) read[0];
                byte[] body = (byte[]) read[1];
                boolean force = body.length == 0;
                if (!force) {
                  lockInfo(body, "the UNLOCK body");
                }
                Access.Verb needed = force ? Access.Verb.FORCE_UNLOCK : Access.Verb.UPDATE;
                return vertx.executeBlocking(
                    () -> {
                      if (needed != resolved.allowed()) {
                        access.authorize(
                            resolved.who(), needed, ctx.pathParam("ns"), ctx.pathParam("name"));
                      }
                      return force
                          ? locks.forceUnlock(resolved.target(), resolved.who())
                          : locks.unlock(
                              resolved.target(),
                              lockInfo(body, "the UNLOCK body"),
                              resolved.who(),
                              locks.caller(resolved.who()));
                    },
                    false);
              })
          .onComplete(result -> reply(ctx, result));
    }

    private void reply(RoutingContext ctx, io.vertx.core.AsyncResult<Reply> result) {
      if (result.succeeded()) {
        send(ctx, result.result());
      } else {
        failed(ctx, result.cause());
      }
    }

    /**
     * A request that did not end with a reply of its own: refused (its reply is sent), the client
     * gone (one log line, nothing to send), or a fault (logged with its cause, 500).
     */
    private static void failed(RoutingContext ctx, Throwable cause) {
      if (cause instanceof ReplyException e) {
        send(ctx, e.reply());
      } else if (cause instanceof BodyReader.Refused refused) {
        send(ctx, refused.reply());
      } else if (cause instanceof LockService.Busy busy) {
        // Nothing was changed: the request may simply be sent again.
        LOG.warn("backend request {} {}: {}", method(ctx), path(ctx), busy.getMessage());
        send(ctx, Reply.text(503, busy.getMessage()).withHeader("Retry-After", "1"));
      } else if (clientGone(ctx, cause)) {
        LOG.info(
            "backend request {} {}: {}",
            method(ctx),
            path(ctx),
            cause instanceof BodyReader.ClientGone
                ? cause.getMessage()
                : "the client went away (" + describe(cause) + ")");
      } else {
        LOG.error("backend request {} {} failed", method(ctx), path(ctx), cause);
        send(ctx, Reply.text(500, "the backend failed: " + describe(cause)));
      }
    }

    private static boolean clientGone(RoutingContext ctx, Throwable cause) {
      return cause instanceof BodyReader.ClientGone
          || cause instanceof io.vertx.core.http.HttpClosedException
          || cause instanceof java.nio.channels.ClosedChannelException
          || ctx.response().closed();
    }

    private static String describe(Throwable t) {
      return t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage();
    }

    private static void notAllowed(RoutingContext ctx, String allowed) {
      send(
          ctx,
          Reply.text(405, ctx.request().method().name() + " is not supported here; use " + allowed)
              .withHeader("Allow", allowed));
    }

    private static Future<Void> send(RoutingContext ctx, Reply reply) {
      HttpServerResponse response = ctx.response();
      if (response.ended() || response.closed()) {
        return Future.failedFuture("the response was already sent or its connection closed");
      }
      HttpServerRequest request = ctx.request();
      // Answered before its body was read (refused, or over a limit): the rest is never read
      // into anything, and the connection carries no request after it.
      boolean ambiguous = ConnectionGuard.conflictingFraming(request.headers());
      boolean unread = !request.isEnded() || ambiguous;
      response.setStatusCode(reply.status()).putHeader("Content-Type", reply.contentType());
      if (unread) {
        response.putHeader("Connection", "close");
      }
      for (Map.Entry<String, String> h : reply.headers().entrySet()) {
        response.putHeader(h.getKey(), h.getValue());
      }
      if (reply.stream() != null) {
        stream(ctx, reply.stream());
        return Future.succeededFuture();
      }
      return response
          .end(io.vertx.core.buffer.Buffer.buffer(reply.body()))
          .onComplete(
              v -> {
                if (ambiguous) {
                  request.connection().close();
                } else if (unread) {
                  Duration drain = ctx.get(DRAIN_KEY);
                  closeAfterDrain(ctx, drain == null ? Timeouts.DEFAULT.drain() : drain);
                }
              });
    }

    /**
     * Closes a connection whose request body was left unread, after letting the client finish
     * sending it for a moment (its bytes are dropped as they come): a client that reads its answer
     * only once it has sent everything still sees why it was refused.
     */
    private static void closeAfterDrain(RoutingContext ctx, Duration drain) {
      HttpServerRequest request = ctx.request();
      HttpConnection connection = request.connection();
      long timer = ctx.vertx().setTimer(drain.toMillis(), id -> connection.close());
      request.handler(buffer -> {});
      request.exceptionHandler(t -> {});
      request.endHandler(
          v -> {
            ctx.vertx().cancelTimer(timer);
            connection.close();
          });
      request.resume();
    }

    /**
     * Sends a streamed body piece by piece as the connection takes it (the response's write queue
     * bounds what is buffered), on the event loop: the stream is in memory and never blocks.
     */
    private static void stream(RoutingContext ctx, Reply.Streamed body) {
      HttpServerResponse response = ctx.response();
      InputStream in;
      try {
        in = body.open();
      } catch (IOException e) {
        LOG.error("backend request {} {}: cannot open the body", method(ctx), path(ctx), e);
        response.setStatusCode(500).end("the state cannot be read: " + e.getMessage() + "\n");
        return;
      }
      response.putHeader("Content-Length", Long.toString(body.length()));
      ctx.addEndHandler(ended -> closeQuietly(in));
      new Pump(ctx, in).run();
    }

    /** Copies a stream into the response while its write queue has room. */
    private static final class Pump {
      private final RoutingContext ctx;
      private final InputStream in;
      private final byte[] buffer = new byte[STREAM_PIECE];

      Pump(RoutingContext ctx, InputStream in) {
        this.ctx = ctx;
        this.in = in;
      }

      void run() {
        HttpServerResponse response = ctx.response();
        try {
          while (!response.closed()) {
            if (response.writeQueueFull()) {
              response.drainHandler(v -> run());
              return;
            }
            int n = in.readNBytes(buffer, 0, buffer.length);
            if (n > 0) {
              response.write(io.vertx.core.buffer.Buffer.buffer(Arrays.copyOf(buffer, n)));
            }
            if (n < buffer.length) {
              closeQuietly(in);
              response.end();
              return;
            }
          }
          closeQuietly(in);
        } catch (IOException | RuntimeException e) {
          closeQuietly(in);
          if (response.closed()) {
            // The client went away; nothing to tell it.
            return;
          }
          // Cut short: the client sees fewer bytes than Content-Length said, never a bad state.
          LOG.error("backend request {} {}: sending the body failed", method(ctx), path(ctx), e);
          ctx.request().connection().close();
        }
      }
    }

    private static void closeQuietly(InputStream in) {
      try {
        in.close();
      } catch (IOException e) {
        // Nothing held but memory.
      }
    }

    private static HttpMethod method(RoutingContext ctx) {
      return ctx.request().method();
    }

    private static String path(RoutingContext ctx) {
      return ctx.request().path();
    }
  }
}
