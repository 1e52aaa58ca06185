package io.leasehold.backend;

import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import java.time.Duration;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The backend's requests being answered, so that stopping lets them finish: a state upload cut in
 * the middle would fail an apply that the next replica could have served. Once draining, new
 * requests get 503 with {@code Connection: close}, which Terraform's HTTP client retries.
 */
final class InFlightRequests {

  private final ReentrantLock lock = new ReentrantLock();
  private final Condition idle = lock.newCondition();
  private int active;
  private boolean draining;

  /** Counts every request the router serves; registered before all other routes. */
  void track(Router router) {
    router.route().order(Integer.MIN_VALUE).handler(this::enter);
  }

  private void enter(RoutingContext ctx) {
    lock.lock();
    try {
      if (draining) {
        ctx.response()
            .setStatusCode(503)
            .putHeader("Connection", "close")
            .putHeader("Retry-After", "1")
            .putHeader("Content-Type", "text/plain; charset=utf-8")
            .end("leasehold is shutting down: retry, another replica will answer\n");
        return;
      }
      active++;
    } finally {
      lock.unlock();
    }
    // Called once the response is ended or its connection closed, whichever comes first.
    ctx.addEndHandler(done -> leave());
    ctx.next();
  }

  private void leave() {
    lock.lock();
    try {
      active--;
      if (active == 0) {
        idle.signalAll();
      }
    } finally {
      lock.unlock();
    }
  }

  /**
   * Refuses new requests from now on and waits until the requests in flight are answered, at most
   * {@code timeout}; returns how many were still unanswered then.
   */
  int drain(Duration timeout) {
    long left = timeout.toNanos();
    lock.lock();
    try {
      draining = true;
      while (active > 0 && left > 0) {
        left = idle.awaitNanos(left);
      }
      return active;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return active;
    } finally {
      lock.unlock();
    }
  }

  /** Requests being answered now. */
  int active() {
    lock.lock();
    try {
      return active;
    } finally {
      lock.unlock();
    }
  }
}
