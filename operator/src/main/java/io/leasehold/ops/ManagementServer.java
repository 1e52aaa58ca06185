package io.leasehold.ops;

import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.ext.web.Router;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * {@code /metrics} (Prometheus), {@code /healthz} (the process works) and {@code /readyz} (it can
 * serve: informers synced, leader known, backend listening) on their own port, so that probes and
 * scrapes never queue behind Terraform traffic.
 */
public final class ManagementServer implements AutoCloseable {

  /** A check's verdict and the reason a person reads. */
  public record Check(boolean ok, String detail) {}

  private final Vertx vertx;
  private final HttpServer server;

  private ManagementServer(Vertx vertx, HttpServer server) {
    this.vertx = vertx;
    this.server = server;
  }

  public static ManagementServer start(
      String host,
      int port,
      PrometheusMeterRegistry registry,
      Supplier<Check> health,
      Supplier<Check> readiness) {
    Vertx vertx = Vertx.vertx();
    Router router = Router.router(vertx);
    router
        .get("/metrics")
        .handler(
            ctx ->
                vertx
                    .executeBlocking(() -> registry.scrape(), false)
                    .onSuccess(
                        text ->
                            ctx.response()
                                .putHeader(
                                    "Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                                .end(text))
                    .onFailure(ctx::fail));
    router.get("/healthz").handler(ctx -> answer(vertx, ctx, health));
    router.get("/readyz").handler(ctx -> answer(vertx, ctx, readiness));
    HttpServer server = vertx.createHttpServer(new HttpServerOptions().setHost(host).setPort(port));
    server.requestHandler(router);
    try {
      server.listen().toCompletionStage().toCompletableFuture().get(30, TimeUnit.SECONDS);
    } catch (Exception e) {
      vertx.close();
      throw new IllegalStateException(
          "cannot serve metrics and health on " + host + ":" + port + ": " + e.getMessage(), e);
    }
    return new ManagementServer(vertx, server);
  }

  private static void answer(
      Vertx vertx, io.vertx.ext.web.RoutingContext ctx, Supplier<Check> check) {
    vertx
        .executeBlocking(() -> check.get(), false)
        .onComplete(
            r -> {
              Check c = r.succeeded() ? r.result() : new Check(false, String.valueOf(r.cause()));
              ctx.response()
                  .setStatusCode(c.ok() ? 200 : 503)
                  .putHeader("Content-Type", "text/plain; charset=utf-8")
                  .end((c.ok() ? "ok: " : "not ready: ") + c.detail() + "\n");
            });
  }

  public int port() {
    return server.actualPort();
  }

  @Override
  public void close() {
    try {
      vertx.close().toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
    } catch (Exception e) {
      // Shutting down anyway.
    }
  }
}
