package io.leasehold.backend;

import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.HashMap;
import java.util.Map;
import java.util.function.Supplier;

/**
 * LOCK requests that wait ({@code ?wait=30s}) for a held lock, in arrival order per state. A
 * waiting request holds no thread: it is a pending promise, tried again when the lock is released
 * (the Lease watch or this backend's own UNLOCK says so) and answered 423 with the holder when its
 * wait runs out.
 */
final class LockWaiters {

  /** One attempt to take the lock: blocking, run on a worker. */
  interface Attempt extends Supplier<StateBackend.LockAttempt> {}

  /** What to answer a waiter whose wait ran out: 423 with the current holder (blocking). */
  interface Held extends Supplier<Reply> {}

  private static final long SAFETY_POLL_MILLIS = 2_000;

  private final Vertx vertx;
  private final Map<String, Deque<Waiter>> queues = new HashMap<>();
  private final Map<String, Boolean> trying = new HashMap<>();

  private final class Waiter {
    final Attempt attempt;
    final Runnable undo;
    final Held held;
    final Promise<Reply> promise;
    final long timer;
    final long since = System.nanoTime();
    Reply lastHeld;

    Waiter(
        String key,
        Attempt attempt,
        Runnable undo,
        Held held,
        Promise<Reply> promise,
        Duration wait) {
      this.attempt = attempt;
      this.undo = undo;
      this.held = held;
      this.promise = promise;
      this.timer = vertx.setTimer(Math.max(1, wait.toMillis()), id -> expire(key, this));
    }
  }

  private final io.leasehold.ops.LeaseholdMetrics metrics;

  LockWaiters(Vertx vertx, io.leasehold.ops.LeaseholdMetrics metrics) {
    this.vertx = vertx;
    this.metrics = metrics;
    vertx.setPeriodic(SAFETY_POLL_MILLIS, id -> wakeAll());
  }

  /**
   * Queues a LOCK that may wait up to {@code wait}; the future ends with its answer. {@code undo}
   * releases a lock taken for a waiter that was answered (timed out) while its attempt ran, so a
   * client told 423 never holds the lock.
   */
  synchronized io.vertx.core.Future<Reply> enqueue(
      String key, Attempt attempt, Runnable undo, Held held, Duration wait) {
    Promise<Reply> promise = Promise.promise();
    Deque<Waiter> queue = queues.computeIfAbsent(key, k -> new ArrayDeque<>());
    queue.addLast(new Waiter(key, attempt, undo, held, promise, wait));
    if (queue.size() == 1) {
      tryHead(key);
    }
    return promise.future();
  }

  /** The lock of {@code key} may be free: the first waiter tries to take it. */
  synchronized void wake(String key) {
    if (queues.containsKey(key)) {
      tryHead(key);
    }
  }

  synchronized int waiting(String key) {
    Deque<Waiter> q = queues.get(key);
    return q == null ? 0 : q.size();
  }

  private synchronized void wakeAll() {
    for (String key : queues.keySet().toArray(String[]::new)) {
      tryHead(key);
    }
  }

  private void tryHead(String key) {
    Deque<Waiter> queue = queues.get(key);
    if (queue == null || queue.isEmpty() || Boolean.TRUE.equals(trying.get(key))) {
      return;
    }
    Waiter head = queue.peekFirst();
    trying.put(key, true);
    vertx
        .<StateBackend.LockAttempt>executeBlocking(() -> head.attempt.get(), false)
        .onComplete(
            result -> {
              synchronized (LockWaiters.this) {
                trying.put(key, false);
                if (result.failed()) {
                  finish(key, head, null, result.cause());
                } else if (result.result().acquired() && head.promise.future().isComplete()) {
                  vertx.executeBlocking(
                      () -> {
                        head.undo.run();
                        return null;
                      },
                      false);
                  tryHead(key);
                } else if (result.result().acquired()) {
                  finish(key, head, result.result().reply(), null);
                } else {
                  head.lastHeld = result.result().reply();
                  if (head.promise.future().isComplete()) {
                    tryHead(key);
                  }
                }
              }
            });
  }

  private void finish(String key, Waiter waiter, Reply reply, Throwable failure) {
    vertx.cancelTimer(waiter.timer);
    Deque<Waiter> queue = queues.get(key);
    if (queue != null) {
      queue.remove(waiter);
      if (queue.isEmpty()) {
        queues.remove(key);
        trying.remove(key);
      }
    }
    if (failure != null) {
      waiter.promise.tryFail(failure);
    } else {
      metrics.lockWaited(Duration.ofNanos(System.nanoTime() - waiter.since), true);
      waiter.promise.tryComplete(reply);
    }
    // After a failure the next waiter tries at once; after a success the lock is held and the
    // next waiter is woken when it is released.
    if (queue != null && !queue.isEmpty() && failure != null) {
      tryHead(key);
    }
  }

  private synchronized void expire(String key, Waiter waiter) {
    metrics.lockWaited(Duration.ofNanos(System.nanoTime() - waiter.since), false);
    Deque<Waiter> queue = queues.get(key);
    boolean wasHead = queue != null && queue.peekFirst() == waiter;
    if (queue != null) {
      queue.remove(waiter);
      if (queue.isEmpty()) {
        queues.remove(key);
      }
    }
    if (waiter.lastHeld != null) {
      waiter.promise.tryComplete(waiter.lastHeld);
    } else {
      vertx
          .executeBlocking(waiter.held::get, false)
          .onComplete(
              r -> {
                if (r.succeeded()) {
                  waiter.promise.tryComplete(r.result());
                } else {
                  waiter.promise.tryFail(r.cause());
                }
              });
    }
    if (wasHead) {
      tryHead(key);
    }
  }
}
