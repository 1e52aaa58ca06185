package io.leasehold.backend;

import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.ops.RequestDrain;
import io.leasehold.state.StateNames;
import io.leasehold.tls.BackendTls;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.http.HttpMethod;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.core.http.HttpServerResponse;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.BodyHandler;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
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
   * @param tls HTTPS; empty serves plain HTTP
   */
  public record Config(
      String host,
      int port,
      Duration maxWait,
      java.util.Set<String> namespaces,
      Optional<BackendTls> tls) {

    public Config(String host, int port, Duration maxWait, java.util.Set<String> namespaces) {
      this(host, port, maxWait, namespaces, Optional.empty());
    }

    /** Serving every namespace. */
    public Config(String host, int port, Duration maxWait) {
      this(host, port, maxWait, java.util.Set.of());
    }

    public Config withNamespaces(java.util.Set<String> serving) {
      return new Config(host, port, maxWait, serving, tls);
    }

    /** The same on another port. */
    public Config withPort(int other) {
      return new Config(host, other, maxWait, namespaces, tls);
    }

    /** The same, serving HTTPS with {@code backendTls}. */
    public Config withTls(BackendTls backendTls) {
      return new Config(host, port, maxWait, namespaces, Optional.of(backendTls));
    }
  }

  /** Where a POST's {@link RequestBody} is kept in its routing context. */
  private static final String BODY = "leasehold.requestBody";

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
    Routes routes = new Routes(vertx, backend, lockRequests, access, config);
    HttpServerOptions options =
        new HttpServerOptions()
            .setHost(config.host())
            .setPort(config.port())
            .setCompressionSupported(true)
            .setDecompressionSupported(true);
    config.tls().ifPresent(tls -> tls.configure(options));
    HttpServer server = vertx.createHttpServer(options);
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

    Routes(Vertx vertx, StateBackend backend, LockRequests locks, Access access, Config config) {
      this.vertx = vertx;
      this.backend = backend;
      this.locks = locks;
      this.access = access;
      this.config = config;
    }

    Router router() {
      Router router = Router.router(vertx);
      String state = "/v1/states/:ns/:name";
      String lock = state + "/lock";
      // Before the body handler: a state's body is streamed, never buffered whole.
      router.route(HttpMethod.POST, state).handler(this::post);
      router
          .route("/v1/states/*")
          .handler(
              BodyHandler.create(false)
                  .setBodyLimit(backend.maxStateBytes())
                  .setDeleteUploadedFilesOnEnd(true));
      router
          .route(HttpMethod.GET, state)
          .handler(ctx -> serve(ctx, Access.Verb.GET, t -> backend.get(t)));
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
          .handler(ctx -> serve(ctx, Access.Verb.GET, t -> backend.history(t)));
      router
          .route(HttpMethod.GET, state + "/history/:version")
          .handler(
              ctx ->
                  serve(
                      ctx,
                      Access.Verb.GET,
                      t -> backend.historyVersion(t, ctx.pathParam("version"))));
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
                if (ctx.statusCode() == 413) {
                  send(ctx, tooLarge(backend.maxStateBytes()));
                } else {
                  Throwable f = ctx.failure();
                  LOG.error(
                      "backend request {} {} failed",
                      ctx.request().method(),
                      ctx.request().path(),
                      f);
                  send(
                      ctx,
                      Reply.text(
                          ctx.statusCode() > 0 ? ctx.statusCode() : 500,
                          "request failed: " + (f == null ? "unknown error" : f.getMessage())));
                }
              });
      return router;
    }

    private interface Handler {
      Reply handle(StateBackend.Target target, Requester who);
    }

    private void serve(
        RoutingContext ctx, Access.Verb verb, Function<StateBackend.Target, Reply> handler) {
      serve(ctx, verb, (t, who) -> handler.apply(t));
    }

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
                  + ns
                  + " is not served by this leasehold (it watches "
                  + String.join(", ", new java.util.TreeSet<>(config.namespaces()))
                  + ")"));
      return false;
    }

    private void serve(RoutingContext ctx, Access.Verb verb, Handler handler) {
      if (!served(ctx)) {
        return;
      }
      String authorization = ctx.request().getHeader("Authorization");
      var certificate = ClientCertificate.of(ctx.request());
      String ns = ctx.pathParam("ns");
      String name = ctx.pathParam("name");
      vertx
          .executeBlocking(
              () -> {
                Requester who = access.authenticate(authorization, certificate);
                access.authorize(who, verb, ns, name);
                StateBackend.Target target = backend.resolve(ns, name);
                return handler.handle(target, who);
              },
              false)
          .onComplete(result -> reply(ctx, result));
    }

    /**
     * POST of a state: refused at once when its Content-Length is over the limit; otherwise its
     * body is read, after authentication, by a worker as it arrives (see {@link RequestBody}).
     */
    private void post(RoutingContext ctx) {
      HttpServerRequest request = ctx.request();
      RequestBody body = RequestBody.of(request, vertx.getOrCreateContext());
      ctx.put(BODY, body);
      if (!served(ctx)) {
        return;
      }
      long max = backend.maxStateBytes();
      String length = request.getHeader("Content-Length");
      if (length != null
          && length.trim().matches("[0-9]{1,18}")
          && Long.parseLong(length.trim()) > max) {
        send(ctx, tooLarge(max));
        return;
      }
      if ("100-continue".equalsIgnoreCase(request.getHeader("Expect"))) {
        request.response().writeContinue();
      }
      String authorization = request.getHeader("Authorization");
      var certificate = ClientCertificate.of(request);
      String ns = ctx.pathParam("ns");
      String name = ctx.pathParam("name");
      String lockId = request.getParam("ID");
      String contentMd5 = request.getHeader("Content-MD5");
      vertx
          .executeBlocking(
              () -> {
                Requester who = access.authenticate(authorization, certificate);
                access.authorize(who, Access.Verb.UPDATE, ns, name);
                StateBackend.Target target = backend.resolve(ns, name);
                return backend.post(target, lockId, body, contentMd5, who);
              },
              false)
          .onComplete(result -> reply(ctx, result));
    }

    private static Reply tooLarge(long max) {
      return Reply.text(
          413,
          "the request body is over the limit of "
              + max
              + " bytes (--max-state-bytes). Nothing was written.");
    }

    private void lock(RoutingContext ctx) {
      if (!served(ctx)) {
        return;
      }
      String authorization = ctx.request().getHeader("Authorization");
      var certificate = ClientCertificate.of(ctx.request());
      String ns = ctx.pathParam("ns");
      String name = ctx.pathParam("name");
      String waitParam = ctx.request().getParam("wait");
      byte[] body = body(ctx);
      Duration wait;
      try {
        wait = waitParam == null ? Duration.ZERO : WaitDuration.parse(waitParam);
      } catch (IllegalArgumentException e) {
        send(ctx, Reply.text(400, "?wait=" + waitParam + ": " + e.getMessage()));
        return;
      }
      if (wait.compareTo(config.maxWait()) > 0) {
        wait = config.maxWait();
      }
      Optional<LockInfo> info = LockInfo.parse(new String(body, StandardCharsets.UTF_8));
      if (info.isEmpty() || info.get().id() == null || info.get().id().isBlank()) {
        send(ctx, Reply.text(400, "the LOCK body is not a Terraform LockInfo with an ID"));
        return;
      }
      Duration waitFor = wait;
      vertx
          .executeBlocking(
              () -> {
                Requester who = access.authenticate(authorization, certificate);
                access.authorize(who, Access.Verb.UPDATE, ns, name);
                return new Resolved(backend.resolve(ns, name), who, locks.caller(who));
              },
              false)
          .compose(
              resolved -> {
                if (waitFor.isZero()) {
                  return locks
                      .lockNow(
                          resolved.target(),
                          info.get(),
                          resolved.who(),
                          resolved.caller(),
                          connection(ctx))
                      .map(outcome -> new Delivery(resolved, outcome));
                }
                return locks
                    .lockWaiting(
                        resolved.target(),
                        info.get(),
                        resolved.who(),
                        resolved.caller(),
                        waitFor,
                        connection(ctx))
                    .map(outcome -> new Delivery(resolved, outcome));
              })
          .onComplete(
              result -> {
                if (result.failed()) {
                  reply(ctx, io.vertx.core.Future.failedFuture(result.cause()));
                  return;
                }
                Delivery d = result.result();
                deliver(ctx, d.resolved(), d.outcome());
              });
    }

    private record Resolved(
        StateBackend.Target target, Requester who, io.leasehold.lock.Caller caller) {}

    private record Delivery(Resolved resolved, LockWaiters.Outcome outcome) {}

    /**
     * Sends a LOCK's answer. A grant that cannot be delivered (the client went away meanwhile) is
     * undone, so the lock is never held for a request that is not there.
     */
    private void deliver(RoutingContext ctx, Resolved resolved, LockWaiters.Outcome outcome) {
      if (outcome.reply() == null) {
        // The client went away while it waited: there is nobody to answer.
        return;
      }
      Optional<io.leasehold.lock.LockService.Granted> grant = outcome.grant();
      if (grant.isEmpty() || resolved == null) {
        send(ctx, outcome.reply());
        return;
      }
      if (ctx.response().closed() || ctx.response().ended()) {
        locks.undeliverable(resolved.target(), grant.get(), resolved.caller());
        return;
      }
      send(ctx, outcome.reply())
          .onFailure(f -> locks.undeliverable(resolved.target(), grant.get(), resolved.caller()));
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
      if (!served(ctx)) {
        return;
      }
      String authorization = ctx.request().getHeader("Authorization");
      var certificate = ClientCertificate.of(ctx.request());
      String ns = ctx.pathParam("ns");
      String name = ctx.pathParam("name");
      byte[] body = body(ctx);
      boolean force = body.length == 0;
      Optional<LockInfo> info =
          force ? Optional.empty() : LockInfo.parse(new String(body, StandardCharsets.UTF_8));
      if (!force && (info.isEmpty() || info.get().id() == null || info.get().id().isBlank())) {
        send(ctx, Reply.text(400, "the UNLOCK body is not a Terraform LockInfo with an ID"));
        return;
      }
      vertx
          .executeBlocking(
              () -> {
                Requester who = access.authenticate(authorization, certificate);
                access.authorize(
                    who, force ? Access.Verb.FORCE_UNLOCK : Access.Verb.UPDATE, ns, name);
                StateBackend.Target target = backend.resolve(ns, name);
                return force
                    ? locks.forceUnlock(target, who)
                    : locks.unlock(target, info.get(), who, locks.caller(who));
              },
              false)
          .onComplete(result -> reply(ctx, result));
    }

    private static byte[] body(RoutingContext ctx) {
      return ctx.body() == null || ctx.body().buffer() == null
          ? new byte[0]
          : ctx.body().buffer().getBytes();
    }

    private void reply(RoutingContext ctx, io.vertx.core.AsyncResult<Reply> result) {
      if (result.succeeded()) {
        send(ctx, result.result());
      } else if (result.cause() instanceof ReplyException e) {
        send(ctx, e.reply());
      } else {
        LOG.error(
            "backend request {} {} failed",
            ctx.request().method(),
            ctx.request().path(),
            result.cause());
        send(ctx, Reply.text(500, "the backend failed: " + result.cause().getMessage()));
      }
    }

    private static void notAllowed(RoutingContext ctx, String allowed) {
      send(
          ctx,
          Reply.text(405, ctx.request().method().name() + " is not supported here; use " + allowed)
              .withHeader("Allow", allowed));
    }

    private static io.vertx.core.Future<Void> send(RoutingContext ctx, Reply reply) {
      HttpServerResponse response = ctx.response();
      if (response.ended() || response.closed()) {
        return io.vertx.core.Future.failedFuture(
            "the response was already sent or its connection closed");
      }
      RequestBody body = ctx.get(BODY);
      if (body != null && !body.complete()) {
        // Answered before the whole body was read: the rest is read and dropped.
        body.discard();
      }
      response.setStatusCode(reply.status()).putHeader("Content-Type", reply.contentType());
      for (Map.Entry<String, String> h : reply.headers().entrySet()) {
        response.putHeader(h.getKey(), h.getValue());
      }
      if (reply.stream() != null) {
        stream(ctx, reply.stream());
        return io.vertx.core.Future.succeededFuture();
      }
      return response.end(io.vertx.core.buffer.Buffer.buffer(reply.body()));
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
