package io.leasehold.backend;

import io.leasehold.api.DisplayText;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.ReplicaLiveness;
import io.leasehold.state.IncomingState;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpConnection;
import io.vertx.core.http.HttpMethod;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import java.util.Optional;

/**
 * The backend's addresses and the handlers of the state itself: {@code GET|POST|DELETE
 * /v1/states/NS/NAME} and its history; LOCK and UNLOCK go to {@link LockHandlers}. First for every
 * request, framing and encoding are checked and the body is left unread (paused) until the request
 * is authenticated and authorized ({@link RequestChecks}).
 */
final class Routes {

  private interface Handler {
    Reply handle(StateBackend.Target target, Requester who);
  }

  private final Vertx vertx;
  private final StateBackend backend;
  private final HttpBackend.Config config;
  private final ConnectionGuard connections;
  private final RequestChecks checks;
  private final LockHandlers lockHandlers;
  private final String run;

  Routes(
      Vertx vertx,
      StateBackend backend,
      LockRequests locks,
      Access access,
      HttpBackend.Config config,
      ConnectionGuard connections) {
    this.vertx = vertx;
    this.backend = backend;
    this.config = config;
    this.connections = connections;
    this.checks = new RequestChecks(vertx, backend, access, config);
    this.lockHandlers = new LockHandlers(vertx, locks, access, config, checks);
    this.run = locks.service().replica();
  }

  Router router() {
    Router router = Router.router(vertx);
    String state = "/v1/states/:ns/:name";
    String lock = state + "/lock";
    // Before anything else: framing and encoding are checked, and the body is left unread
    // until the request is authenticated and authorized.
    // Which run of which replica this is, for the other replicas' probes: no authentication, no
    // state, nothing but the run's name (its pod name and a nonce).
    router
        .get(ReplicaLiveness.PROBE_PATH)
        .handler(
            ctx ->
                ctx.response()
                    .putHeader("Content-Type", "text/plain; charset=utf-8")
                    .putHeader("Cache-Control", "no-store")
                    .end(run + "\n"));
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
    router.route(HttpBackend.LOCK, lock).handler(lockHandlers::lock);
    router.route(HttpBackend.UNLOCK, lock).handler(lockHandlers::unlock);
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
    router.route(state).handler(ctx -> Responses.notAllowed(ctx, "GET, POST, DELETE"));
    router.route(lock).handler(ctx -> Responses.notAllowed(ctx, "LOCK, UNLOCK"));
    router
        .route()
        .handler(
            ctx ->
                Responses.send(
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
                Responses.send(
                    ctx,
                    Reply.text(ctx.statusCode() > 0 ? ctx.statusCode() : 500, "request failed"));
              } else {
                Responses.failed(ctx, f);
              }
            });
    return router;
  }

  /**
   * First for every request: the connection is busy now; the body waits (paused) until the request
   * may go on; ambiguous framing and compressed bodies are refused before any of it is read.
   */
  private void admit(RoutingContext ctx) {
    HttpServerRequest request = ctx.request();
    request.pause();
    BodyReader.Watch.start(request);
    ctx.put(Responses.DRAIN_KEY, config.timeouts().drain());
    HttpConnection connection = request.connection();
    connections.requestStarted(connection);
    ctx.addEndHandler(v -> connections.requestEnded(connection));
    if (ConnectionGuard.conflictingFraming(request.headers())) {
      Responses.send(
          ctx,
          Reply.text(
              400,
              "the request has both Content-Length and Transfer-Encoding: its length is"
                  + " ambiguous, so it is refused and the connection closed"));
      return;
    }
    String encoding = request.getHeader("Content-Encoding");
    if (encoding != null && !encoding.isBlank() && !encoding.trim().equalsIgnoreCase("identity")) {
      Responses.send(
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

  /** A request without a body (GET, DELETE, history, restore). */
  private void serve(RoutingContext ctx, Access.Verb verb, Handler handler) {
    if (!checks.served(ctx)
        || !checks.lengthWithin(ctx, 0, "a " + Responses.method(ctx) + " body", "")) {
      return;
    }
    checks
        .authorize(ctx, verb)
        .compose(
            resolved ->
                BodyReader.read(
                        vertx,
                        ctx.request(),
                        "a " + Responses.method(ctx) + " body",
                        0,
                        config.timeouts().bodyStall(),
                        config.timeouts().smallBodyDeadline(),
                        b -> true)
                    .map(resolved))
        .compose(
            resolved ->
                vertx.executeBlocking(
                    () -> handler.handle(resolved.target(), resolved.who()), false))
        .onComplete(result -> Responses.reply(ctx, result));
  }

  /**
   * POST of a state: refused at once when its Content-Length is over the limit; otherwise, once the
   * requester may write it, its body is taken as it arrives, on the event loop, into its MD5 and
   * gzip'd parts (see {@link IncomingState.Receiver}), and written by a worker when complete.
   */
  private void post(RoutingContext ctx) {
    long max = backend.maxStateBytes();
    if (!checks.served(ctx)
        || !checks.lengthWithin(ctx, max, "the state", " (--max-state-bytes)")) {
      return;
    }
    HttpServerRequest request = ctx.request();
    String lockId = request.getParam("ID");
    Optional<String> badId = LockInfo.idProblem(lockId);
    if (lockId != null && badId.isPresent()) {
      Responses.send(ctx, Reply.text(400, "?ID=: " + badId.get() + ". Nothing was written."));
      return;
    }
    String contentMd5 = request.getHeader("Content-MD5");
    IncomingState.Receiver receiver = new IncomingState.Receiver(max);
    checks
        .authorize(ctx, Access.Verb.UPDATE)
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
        .onComplete(result -> Responses.reply(ctx, result));
  }
}
