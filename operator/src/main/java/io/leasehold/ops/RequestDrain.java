package io.leasehold.ops;

import io.vertx.ext.web.Router;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Counts an HTTP server's requests in progress so that shutdown can let them finish, and refuses
 * new ones once draining: 503 with {@code Connection: close} and {@code Retry-After}, which
 * Terraform's HTTP client retries, on a new connection that reaches another replica.
 */
public final class RequestDrain {

  private static final int FIRST = -1_000_000;

  private final AtomicInteger inProgress = new AtomicInteger();
  private final AtomicBoolean draining = new AtomicBoolean();
  private final Object idle = new Object();

  /**
   * Counts the requests {@code router} serves and refuses them while draining: a route of its own,
   * ahead of all others. The count falls when a response ends or its connection closes.
   */
  public Router install(Router router) {
    router
        .route()
        .order(FIRST)
        .handler(
            ctx -> {
              if (draining.get()) {
                ctx.response()
                    .setStatusCode(503)
                    .putHeader("Connection", "close")
                    .putHeader("Retry-After", "1")
                    .putHeader("Content-Type", "text/plain; charset=utf-8")
                    .end(
                        "this leasehold replica is shutting down: retry, another replica will"
                            + " answer\n");
                return;
              }
              inProgress.incrementAndGet();
              AtomicBoolean done = new AtomicBoolean();
              ctx.addEndHandler(
                  r -> {
                    if (done.compareAndSet(false, true) && inProgress.decrementAndGet() == 0) {
                      synchronized (idle) {
                        idle.notifyAll();
                      }
                    }
                  });
              ctx.addHeadersEndHandler(
                  v -> {
                    if (draining.get()) {
                      // Answered while draining: the client's next request opens a new
                      // connection, which reaches another replica.
                      ctx.response().putHeader("Connection", "close");
                    }
                  });
              ctx.next();
            });
    return router;
  }

  /** Requests in progress now. */
  public int inProgress() {
    return inProgress.get();
  }

  public boolean draining() {
    return draining.get();
  }

  /** Refuses every request that arrives from now on. */
  public void refuseNew() {
    draining.set(true);
  }

  /**
   * Waits until no request is in progress, or {@code timeout} has passed; returns how many still
   * are.
   */
  public int awaitIdle(Duration timeout) throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    synchronized (idle) {
      while (inProgress.get() > 0) {
        long left = deadline - System.nanoTime();
        if (left <= 0) {
          break;
        }
        idle.wait(Math.max(1, left / 1_000_000));
      }
    }
    return inProgress.get();
  }
}
