package io.leasehold.backend;

import io.leasehold.lock.Caller;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.state.StateNames;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import java.time.Duration;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The LOCK requests of this replica that wait ({@code ?wait=30s}) for a state's lock. Their order
 * is not kept here but in the state's line on the Lease ({@link io.leasehold.lock.Line}), shared by
 * every replica; this class keeps what only this replica knows: which of its waiting requests are
 * still connected. A waiting request holds no thread: it is a pending promise, served when the
 * Lease changes (its watch says so), answered 423 when its wait runs out, and dropped from the
 * running the moment its connection closes.
 *
 * <p>Per state, one attempt runs at a time on a worker; changes that arrive meanwhile make it run
 * once more.
 */
final class LockWaiters {

  private static final Logger LOG = LoggerFactory.getLogger(LockWaiters.class);
  private static final long SAFETY_POLL_MILLIS = 2_000;

  /** A request's connection, as far as waiting for the lock needs it. */
  interface Connection {
    boolean open();

    /** Runs {@code closed} once if the connection closes before the request is answered. */
    void onClose(Runnable closed);
  }

  /** How a LOCK ended: the reply to send and, when it was granted, the grant to undo if unsent. */
  record Outcome(Reply reply, Optional<LockService.Granted> grant) {}

  private final Vertx vertx;
  private final LockService service;
  private final LeaseholdMetrics metrics;
  private final WaiterUpkeep upkeep;
  private final Map<String, StateLine> lines = new HashMap<>();
  private final long poll;

  private final class Waiter {
    final LockInfo info;
    final Caller caller;
    final Promise<Outcome> promise = Promise.promise();
    final long since = System.nanoTime();
    long timer = -1;
    boolean arrived;
    boolean once;
    Reply lastHeld;

    Waiter(LockInfo info, Caller caller) {
      this.info = info;
      this.caller = caller;
    }
  }

  /** The waiting requests of one state on this replica, in the order they arrived here. */
  private final class StateLine {
    final StateNames names;
    final LinkedHashMap<String, Waiter> waiting = new LinkedHashMap<>();
    boolean running;
    boolean again;

    StateLine(StateNames names) {
      this.names = names;
    }
  }

  LockWaiters(Vertx vertx, LockService service, LeaseholdMetrics metrics) {
    this.vertx = vertx;
    this.service = service;
    this.metrics = metrics;
    this.upkeep = new WaiterUpkeep(vertx, service);
    this.poll = vertx.setPeriodic(SAFETY_POLL_MILLIS, id -> serveAll());
    // A replica that is gone no longer holds anyone's place: serve at once.
    service.liveness().onChange(() -> vertx.runOnContext(v -> serveAll()));
  }

  /**
   * A LOCK that may wait up to {@code wait}: granted when its turn comes while it is connected,
   * answered 423 when the wait runs out, never granted once its connection closed (it then keeps
   * its place in line for the grace period, in case the same lock ID comes back).
   */
  synchronized Future<Outcome> lock(
      StateNames names, LockInfo info, Caller caller, Duration wait, Connection connection) {
    StateLine line = lines.computeIfAbsent(key(names), k -> new StateLine(names));
    Waiter inFlight = line.waiting.get(info.id());
    if (inFlight != null && !sameRequest(inFlight, info, caller)) {
      // Another request with this lock ID is under way here: this one is not its retry, and
      // must not cancel it (nor be told it holds the lock that one may be granted).
      return Future.succeededFuture(new Outcome(idInUse(info), Optional.empty()));
    }
    Waiter waiter = new Waiter(info, caller);
    waiter.once = wait.isZero();
    Waiter earlier = line.waiting.put(info.id(), waiter);
    if (earlier != null) {
      // The same client asks again (its earlier request is still open here, e.g. behind a proxy
      // that cut it): the new request takes over the place; the old one gets a plain answer.
      vertx.cancelTimer(earlier.timer);
      earlier.promise.tryComplete(
          new Outcome(
              Reply.text(409, "superseded by a newer LOCK request with the same lock ID"),
              Optional.empty()));
    }
    if (!waiter.once) {
      waiter.timer = vertx.setTimer(Math.max(1, wait.toMillis()), t -> timedOut(line, waiter));
    }
    connection.onClose(() -> disconnected(line, waiter));
    if (!connection.open()) {
      disconnected(line, waiter);
      return waiter.promise.future();
    }
    serve(line);
    return waiter.promise.future();
  }

  /**
   * Whether a LOCK is the same request as {@code earlier}, sent again (its answer was lost): the
   * same LockInfo, Created time included, from the same identity.
   */
  private static boolean sameRequest(Waiter earlier, LockInfo info, Caller caller) {
    return earlier.info.equals(info) && earlier.caller.identity().equals(caller.identity());
  }

  /** 423, which Terraform retries, for a LOCK whose lock ID another request under way uses. */
  private static Reply idInUse(LockInfo info) {
    return LockAnswers.refused(
        423,
        "another LOCK request with lock ID "
            + info.id()
            + " and a different LockInfo (or identity) is under way; a LOCK with a lock ID in use"
            + " is taken only as a retry of the same request (same LockInfo); use a new lock ID",
        Optional.empty());
  }

  private void arrived(StateLine line, Waiter waiter, LockService.Answer answer) {
    Waiter now = line.waiting.get(waiter.info.id());
    if (now != waiter) {
      // Gone meanwhile (disconnected, timed out or superseded). Superseded by the same request
      // sent again, the grant stands: that retry is granted it.
      if (answer instanceof LockService.Granted g
          && (now == null || !sameRequest(now, waiter.info, waiter.caller))) {
        undoLater(line.names, g, waiter.caller);
      }
      return;
    }
    if (answer instanceof LockService.Granted g) {
      finish(line, waiter, g, null);
    } else if (answer instanceof LockService.NotNow n) {
      waiter.lastHeld = LockAnswers.notNow(n);
      if (waiter.once) {
        // A LOCK without ?wait=: answered now, and it never joins the line.
        vertx.cancelTimer(waiter.timer);
        line.waiting.remove(waiter.info.id(), waiter);
        waiter.promise.tryComplete(new Outcome(waiter.lastHeld, Optional.empty()));
      }
    } else if (answer instanceof LockService.Refused r) {
      finish(line, waiter, null, LockRequests.lockRefused(r));
    } else {
      finish(line, waiter, null, new IllegalStateException(answer.toString()));
    }
  }

  /** The lock of {@code names} may have changed hands: serve this replica's waiters. */
  synchronized void wake(StateNames names) {
    wake(names.namespace(), names.name());
  }

  /** The lock of state {@code namespace/name} may have changed hands. */
  synchronized void wake(String namespace, String name) {
    StateLine line = lines.get(namespace + "/" + name);
    if (line != null) {
      serve(line);
    }
  }

  /** The connected waiting requests of this replica for {@code names}, by lock ID. */
  synchronized Map<String, LockService.Waiting> local(StateNames names) {
    StateLine line = lines.get(key(names));
    return line == null ? Map.of() : snapshot(line);
  }

  /** Waiting requests of this replica for {@code names}. */
  synchronized int waiting(StateNames names) {
    StateLine line = lines.get(key(names));
    return line == null ? 0 : line.waiting.size();
  }

  /** The connected waiters of this replica whose turn may come. */
  private Map<String, LockService.Waiting> snapshot(StateLine line) {
    Map<String, LockService.Waiting> local = new LinkedHashMap<>();
    line.waiting.forEach((id, w) -> local.put(id, new LockService.Waiting(w.info, w.caller)));
    return local;
  }

  private synchronized void serveAll() {
    for (StateLine line : lines.values().toArray(StateLine[]::new)) {
      serve(line);
    }
  }

  /**
   * Takes new waiters into the line, then grants the lock to this replica's first connected waiter
   * if its turn has come. One run per state at a time, so this replica's own writes never race.
   */
  private void serve(StateLine line) {
    if (line.running) {
      line.again = true;
      return;
    }
    if (line.waiting.isEmpty()) {
      lines.remove(key(line.names));
      return;
    }
    line.running = true;
    line.again = false;
    java.util.List<Waiter> arriving =
        line.waiting.values().stream().filter(w -> !w.arrived).toList();
    arriving.forEach(w -> w.arrived = true);
    Map<String, LockService.Waiting> local = snapshot(line);
    java.util.Set<String> answeredAtOnce =
        line.waiting.values().stream()
            .filter(w -> w.once)
            .map(w -> w.info.id())
            .collect(java.util.stream.Collectors.toSet());
    java.util.List<Waiter> all = java.util.List.copyOf(line.waiting.values());
    upkeep.blocking(
        () -> {
          Map<Waiter, Object> answers = new LinkedHashMap<>();
          // Who still waits once the newcomers have their answers: a LOCK without ?wait= is
          // answered at once, and one granted or refused waits no more.
          Map<String, LockService.Waiting> stillWaiting = new LinkedHashMap<>(local);
          for (Waiter w : arriving) {
            Object answer;
            try {
              answer = service.lock(line.names, w.info, w.caller, !w.once, local);
            } catch (RuntimeException e) {
              answer = e;
            }
            answers.put(w, answer);
            if (w.once || !(answer instanceof LockService.NotNow)) {
              stillWaiting.remove(w.info.id());
            }
          }
          stillWaiting.keySet().removeAll(answeredAtOnce);
          // Requests whose runs were cancelled while they waited are told so, and never served.
          Map<String, LockService.Refused> cancelled =
              service.cancelled(line.names, stillWaiting.keySet());
          for (Waiter w : all) {
            LockService.Refused refused = cancelled.get(w.info.id());
            if (refused != null && !answers.containsKey(w)) {
              answers.put(w, refused);
              stillWaiting.remove(w.info.id());
            }
          }
          Optional<String> closed = service.closed(line.names);
          if (closed.isPresent()) {
            // The state is being deleted: nobody still waiting will be served; each is told so
            // now (a newcomer got the lock service's own answer above: the holder and a runner
            // Job's pod may still lock).
            for (Waiter w : all) {
              if (!answers.containsKey(w)) {
                answers.put(
                    w,
                    new LockService.Refused(
                        LockService.Refusal.DELETING, closed.get(), Optional.empty()));
              }
            }
            return new Served(answers, Optional.empty(), null);
          }
          Optional<LockService.Granted> granted = service.serve(line.names, stillWaiting);
          return new Served(
              answers,
              granted,
              granted
                  .map(g -> stillWaiting.get(g.lockId()))
                  .map(LockService.Waiting::caller)
                  .orElse(null));
        },
        served -> served(line, served),
        failure -> {
          LOG.warn(
              "{}/{}: serving waiting LOCKs failed: {}",
              line.names.namespace(),
              line.names.name(),
              failure.getMessage());
          synchronized (LockWaiters.this) {
            line.running = false;
            if (line.again) {
              serve(line);
            }
          }
        });
  }

  /**
   * @param grantedTo the identity the lock was granted to: a grant whose waiter left meanwhile is
   *     undone as that identity's (a plan's lock is its own, whoever else holds the lock beside it)
   */
  private record Served(
      Map<Waiter, Object> answers, Optional<LockService.Granted> granted, Caller grantedTo) {}

  private synchronized void served(StateLine line, Served served) {
    line.running = false;
    served
        .answers()
        .forEach(
            (waiter, answer) -> {
              if (answer instanceof LockService.Answer a) {
                arrived(line, waiter, a);
              } else if (line.waiting.get(waiter.info.id()) == waiter) {
                finish(line, waiter, null, (Throwable) answer);
              }
            });
    if (served.granted().isPresent()) {
      LockService.Granted g = served.granted().get();
      Waiter waiter = line.waiting.get(g.lockId());
      if (waiter == null) {
        // Its connection closed while the grant was written: the lock is never held for it.
        undoLater(line.names, g, served.grantedTo());
      } else {
        finish(line, waiter, g, null);
      }
      // After a grant the lock is held; the next waiter is served when it is released.
    }
    if (line.again || line.waiting.values().stream().anyMatch(w -> !w.arrived)) {
      serve(line);
    } else if (line.waiting.isEmpty()) {
      lines.remove(key(line.names));
    }
  }

  private synchronized void timedOut(StateLine line, Waiter waiter) {
    if (line.waiting.get(waiter.info.id()) != waiter) {
      return;
    }
    line.waiting.remove(waiter.info.id());
    metrics.lockWaited(Duration.ofNanos(System.nanoTime() - waiter.since), false);
    Reply held =
        waiter.lastHeld != null
            ? waiter.lastHeld
            : Reply.text(423, "the lock was taken by requests before this one in line; retry");
    waiter.promise.tryComplete(new Outcome(held, Optional.empty()));
    left(line, waiter);
  }

  private synchronized void disconnected(StateLine line, Waiter waiter) {
    if (line.waiting.get(waiter.info.id()) != waiter) {
      return;
    }
    line.waiting.remove(waiter.info.id());
    vertx.cancelTimer(waiter.timer);
    metrics.lockWaited(Duration.ofNanos(System.nanoTime() - waiter.since), false);
    LOG.info(
        "{}/{}: LOCK {} by {} left the line: its connection closed while it waited",
        line.names.namespace(),
        line.names.name(),
        waiter.info.id(),
        waiter.caller.describe());
    waiter.promise.tryComplete(new Outcome(null, Optional.empty()));
    left(line, waiter);
  }

  /** The request ended without the lock: its place is kept for the grace period only. */
  private void left(StateLine line, Waiter waiter) {
    upkeep.left(line.names, waiter.info.id(), () -> wake(line.names));
    serve(line);
  }

  private void finish(StateLine line, Waiter waiter, LockService.Granted grant, Throwable failure) {
    vertx.cancelTimer(waiter.timer);
    line.waiting.remove(waiter.info.id(), waiter);
    if (failure != null) {
      waiter.promise.tryFail(failure);
      if (!waiter.once) {
        left(line, waiter);
      } else {
        serve(line);
      }
      return;
    }
    if (!waiter.once) {
      metrics.lockWaited(Duration.ofNanos(System.nanoTime() - waiter.since), true);
    }
    waiter.promise.tryComplete(
        new Outcome(Reply.json(200, waiter.info.toJson()), Optional.of(grant)));
  }

  /**
   * A grant whose answer could not be delivered is undone with a conditional write, and the next
   * waiter is served.
   */
  void undoLater(StateNames names, LockService.Granted grant, Caller caller) {
    upkeep.undo(names, grant, caller, () -> wake(names));
  }

  /**
   * This replica is stopping: every waiting request is answered 503 at once, so its client retries
   * (Terraform's HTTP client does, with the same lock ID) and reaches another replica, where its
   * place in line is waiting for it. The places are marked as left first, so no replica waits for a
   * grant this one will not make.
   */
  void drain(Duration within) {
    java.util.List<Runnable> answers = new java.util.ArrayList<>();
    java.util.List<java.util.Map.Entry<StateNames, String>> leaving = new java.util.ArrayList<>();
    synchronized (this) {
      vertx.cancelTimer(poll);
      for (StateLine line : lines.values()) {
        for (Waiter w : line.waiting.values()) {
          vertx.cancelTimer(w.timer);
          leaving.add(java.util.Map.entry(line.names, w.info.id()));
          answers.add(
              () ->
                  w.promise.tryComplete(
                      new Outcome(
                          Reply.text(
                                  503,
                                  "this leasehold replica is shutting down; retry with the same"
                                      + " lock ID: your place in line is kept for "
                                      + service.settings().ticketGrace().toSeconds()
                                      + "s")
                              .withHeader("Retry-After", "1"),
                          Optional.empty())));
        }
        line.waiting.clear();
      }
      lines.clear();
    }
    long deadline = System.nanoTime() + within.toNanos();
    for (var left : leaving) {
      if (System.nanoTime() > deadline) {
        break;
      }
      try {
        service.left(left.getKey(), left.getValue());
      } catch (RuntimeException e) {
        LOG.warn(
            "{}/{}: could not mark LOCK {} as left while stopping: {}",
            left.getKey().namespace(),
            left.getKey().name(),
            left.getValue(),
            e.getMessage());
      }
    }
    answers.forEach(Runnable::run);
  }

  void close() {
    vertx.cancelTimer(poll);
  }

  private static String key(StateNames names) {
    return names.namespace() + "/" + names.name();
  }
}
