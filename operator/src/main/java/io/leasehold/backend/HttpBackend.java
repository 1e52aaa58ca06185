package io.leasehold.backend;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import io.leasehold.api.TerraformState;
import io.leasehold.kube.OnChange;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockInfo;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.state.StateNames;
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
import java.util.List;
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
   */
  public record Config(String host, int port, Duration maxWait, java.util.Set<String> namespaces) {

    /** Serving every namespace. */
    public Config(String host, int port, Duration maxWait) {
      this(host, port, maxWait, java.util.Set.of());
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
  private final List<SharedIndexInformer<?>> watches;
  private final String host;
  private final InFlightRequests inFlight;

  private HttpBackend(
      Vertx vertx,
      HttpServer server,
      List<SharedIndexInformer<?>> watches,
      String host,
      InFlightRequests inFlight) {
    this.vertx = vertx;
    this.server = server;
    this.watches = watches;
    this.host = host;
    this.inFlight = inFlight;
  }

  /** Starts serving; returns once the port is bound. */
  public static HttpBackend start(
      KubernetesClient client,
      StateBackend.Factory backendFactory,
      Access access,
      Config config,
      LeaseholdMetrics metrics) {
    Vertx vertx = Vertx.vertx(new VertxOptions().setWorkerPoolSize(32));
    LockWaiters waiters = new LockWaiters(vertx, metrics);
    StateBackend backend = backendFactory.create(names -> waiters.wake(StateBackend.key(names)));
    // A released lock, whoever released it (stock Terraform too), wakes the waiting LOCKs. With
    // --namespace the watch stays inside the namespaces the operator may read.
    ResourceEventHandler<Lease> wake =
        OnChange.includingDeletes(
            (Lease lease) -> {
              String suffix = lease.getMetadata().getLabels().get(StateNames.LABEL_SUFFIX);
              if (suffix != null && LeaseLock.Holder.of(lease).isEmpty()) {
                waiters.wake(lease.getMetadata().getNamespace() + "/" + suffix);
              }
            });
    List<SharedIndexInformer<?>> watches = new java.util.ArrayList<>();
    List<SharedIndexInformer<TerraformState>> stateWatch = new java.util.ArrayList<>();
    if (config.namespaces().isEmpty()) {
      watches.add(
          client
              .leases()
              .inAnyNamespace()
              .withLabel(StateNames.LABEL_TFSTATE, "true")
              .inform(wake));
      stateWatch.add(client.resources(TerraformState.class).inAnyNamespace().inform());
    } else {
      for (String ns : config.namespaces()) {
        watches.add(
            client
                .leases()
                .inNamespace(ns)
                .withLabel(StateNames.LABEL_TFSTATE, "true")
                .inform(wake));
        stateWatch.add(client.resources(TerraformState.class).inNamespace(ns).inform());
      }
    }
    watches.addAll(stateWatch);
    // Every request names a TerraformState: read it from the watch cache, and from the API only
    // when the cache has not seen it (created a moment ago, or not there at all).
    backend.withStates(
        (ns, name) -> {
          for (SharedIndexInformer<TerraformState> watch : stateWatch) {
            TerraformState cached = watch.getStore().getByKey(ns + "/" + name);
            if (cached != null) {
              return cached;
            }
          }
          return client.resources(TerraformState.class).inNamespace(ns).withName(name).get();
        });
    Routes routes = new Routes(vertx, backend, access, waiters, config);
    HttpServer server =
        vertx.createHttpServer(
            new HttpServerOptions()
                .setHost(config.host())
                .setPort(config.port())
                .setCompressionSupported(true)
                .setDecompressionSupported(true));
    Router router = routes.router();
    InFlightRequests inFlight = new InFlightRequests();
    inFlight.track(router);
    server.requestHandler(router);
    try {
      server.listen().toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
    } catch (Exception e) {
      watches.forEach(SharedIndexInformer::close);
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
    return new HttpBackend(vertx, server, watches, config.host(), inFlight);
  }

  public int port() {
    return server.actualPort();
  }

  /** Base URL of the state addresses: append {@code NS/NAME}. */
  public String url() {
    String h = host.contains(":") ? "[" + host + "]" : host;
    return "http://" + h + ":" + port() + "/v1/states/";
  }

  /** Stops serving: requests in flight are answered first (for at most {@link #DRAIN_TIMEOUT}). */
  @Override
  public void close() {
    int active = inFlight.active();
    if (active > 0) {
      LOG.info("stopping: waiting for {} backend request(s) in flight", active);
    }
    int unanswered = inFlight.drain(DRAIN_TIMEOUT);
    if (unanswered > 0) {
      LOG.warn(
          "stopping with {} backend request(s) unanswered after {} s",
          unanswered,
          DRAIN_TIMEOUT.toSeconds());
    }
    watches.forEach(SharedIndexInformer::close);
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
    private final Access access;
    private final LockWaiters waiters;
    private final Config config;

    Routes(Vertx vertx, StateBackend backend, Access access, LockWaiters waiters, Config config) {
      this.vertx = vertx;
      this.backend = backend;
      this.access = access;
      this.waiters = waiters;
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
      String ns = ctx.pathParam("ns");
      String name = ctx.pathParam("name");
      vertx
          .executeBlocking(
              () -> {
                Requester who = access.authenticate(authorization);
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
      String ns = ctx.pathParam("ns");
      String name = ctx.pathParam("name");
      String lockId = request.getParam("ID");
      String contentMd5 = request.getHeader("Content-MD5");
      vertx
          .executeBlocking(
              () -> {
                Requester who = access.authenticate(authorization);
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
                Requester who = access.authenticate(authorization);
                access.authorize(who, Access.Verb.UPDATE, ns, name);
                StateBackend.Target target = backend.resolve(ns, name);
                return new Object[] {target, who};
              },
              false)
          .compose(
              resolved -> {
                StateBackend.Target target = (StateBackend.Target) resolved[0];
                Requester who = (Requester) resolved[1];
                LockWaiters.Attempt attempt = () -> backend.tryLock(target, info.get(), who);
                if (waitFor.isZero()) {
                  return vertx.executeBlocking(() -> attempt.get().reply(), false);
                }
                Runnable undo =
                    () ->
                        backend.unlock(
                            target, info.get().toJson().getBytes(StandardCharsets.UTF_8), who);
                return waiters.enqueue(
                    StateBackend.key(target.names()),
                    attempt,
                    undo,
                    () -> backend.heldReply(target),
                    waitFor);
              })
          .onComplete(result -> reply(ctx, result));
    }

    private void unlock(RoutingContext ctx) {
      if (!served(ctx)) {
        return;
      }
      String authorization = ctx.request().getHeader("Authorization");
      String ns = ctx.pathParam("ns");
      String name = ctx.pathParam("name");
      byte[] body = body(ctx);
      boolean force = body.length == 0;
      vertx
          .executeBlocking(
              () -> {
                Requester who = access.authenticate(authorization);
                access.authorize(
                    who, force ? Access.Verb.FORCE_UNLOCK : Access.Verb.UPDATE, ns, name);
                StateBackend.Target target = backend.resolve(ns, name);
                return backend.unlock(target, body, who);
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

    private static void send(RoutingContext ctx, Reply reply) {
      HttpServerResponse response = ctx.response();
      if (response.ended()) {
        return;
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
        return;
      }
      response.end(io.vertx.core.buffer.Buffer.buffer(reply.body()));
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
      response.closeHandler(v -> closeQuietly(in));
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
