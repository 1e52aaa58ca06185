package io.leasehold.backend;

import io.leasehold.kube.EventRecorder;
import io.leasehold.lock.Caller;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.leasehold.ops.AuditLog;
import io.leasehold.ops.LeaseholdMetrics;
import io.leasehold.state.StateNames;
import io.vertx.core.Future;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The lock part of Terraform's {@code http} backend: LOCK (at once, or waiting in line with {@code
 * ?wait=}), UNLOCK, force-unlock, and the lock check of every write. The decisions are the {@link
 * LockService}'s; this class turns them into HTTP answers and records what users need to see.
 */
public final class LockRequests implements WriteLock {

  private final LockService locks;
  private final LockWaiters waiters;
  private final Access access;
  private final JobPods jobPods;
  private final EventRecorder events;
  private final LeaseholdMetrics metrics;
  private final Map<String, Deque<String>> recentlyReleased = new ConcurrentHashMap<>();
  private final StateBackend.Audit audit;

  LockRequests(
      LockService locks,
      LockWaiters waiters,
      Access access,
      JobPods jobPods,
      EventRecorder events,
      LeaseholdMetrics metrics,
      StateBackend.Audit audit) {
    this.audit = audit;
    this.locks = locks;
    this.waiters = waiters;
    this.access = access;
    this.jobPods = jobPods;
    this.events = events;
    this.metrics = metrics;
  }

  public LockService service() {
    return locks;
  }

  /** The lock service's view of a requester: its identity, and whether it is a Job's pod. */
  Caller caller(Requester who) {
    return new Caller() {
      @Override
      public String identity() {
        return who.user();
      }

      @Override
      public boolean isPodOfJob(String namespace, String jobUid) {
        return jobPods.isPodOfJob(who, namespace, jobUid);
      }

      @Override
      public String describe() {
        return who.toString();
      }

      @Override
      public Optional<io.leasehold.lock.HolderPod> pod() {
        return io.leasehold.lock.HolderPod.of(
            who.user(), who.podName().orElse(null), who.podUid().orElse(null));
      }

      @Override
      public String toString() {
        return who.toString();
      }
    };
  }

  /** The HTTP status of a refusal. */
  static int status(LockService.Refused refused) {
    return switch (refused.refusal()) {
      case NOT_OWNER -> 403;
      // Terraform treats 423 as "locked" and retries under -lock-timeout; a 503 it gives up on.
      case LINE_FULL -> 423;
      case STALE_LOCK -> 409;
      case PLAN_LOCK -> 409;
      case LOCKED -> 423;
      case DELETING -> 409;
      // Locked by the request that took the lock with this ID: retried under -lock-timeout.
      case ID_IN_USE -> 423;
      case TOO_LARGE -> 400;
      // Nothing was done; asking again decides on the lock as it is then.
      case TOO_LATE -> 503;
      // Cancelled while it waited: Terraform prints the reason (and retries under -lock-timeout,
      // refused again each time).
      case CANCELLED -> 409;
    };
  }

  /**
   * The answer to a LOCK refused with {@code refused}: a refusal Terraform reads as "locked" (a
   * full line, a lock ID in use, a state being deleted) answers with a LockInfo whose ID and Info
   * say why ({@link LockAnswers}), so Terraform prints it; every other refusal is text with its
   * status.
   */
  static ReplyException lockRefused(LockService.Refused refused) {
    int status = status(refused);
    String reason = reason(refused);
    if (status != 423 && status != 409) {
      return new ReplyException(Reply.text(status, refused.message()), reason);
    }
    return new ReplyException(
        LockAnswers.refused(status, refused.message(), refused.holder()), reason);
  }

  /** A refusal's reason in the audit trail: {@code line-full}, {@code stale-lock}, ... */
  static String reason(LockService.Refused refused) {
    return refused.refusal().name().toLowerCase(java.util.Locale.ROOT).replace('_', '-');
  }

  /**
   * LOCK without waiting, in turn with this replica's other requests for the state: granted now, or
   * 423 with the holder (or with the first in line, when the lock is free but others are before the
   * requester).
   */
  Future<LockWaiters.Outcome> lockNow(
      StateBackend.Target target,
      LockInfo info,
      Requester who,
      Caller caller,
      LockWaiters.Connection connection) {
    return lockWaiting(target, info, who, caller, Duration.ZERO, connection);
  }

  /** LOCK that waits in line up to {@code wait} while its connection is open. */
  Future<LockWaiters.Outcome> lockWaiting(
      StateBackend.Target target,
      LockInfo info,
      Requester who,
      Caller caller,
      Duration wait,
      LockWaiters.Connection connection) {
    return waiters
        .lock(target.names(), info, caller, wait, connection)
        .onFailure(
            failure -> {
              if (failure instanceof ReplyException refused) {
                lockLine("lock-refused", target, who, info)
                    .with("status", refused.reply().status())
                    .with("reason", refused.reason())
                    .log();
              }
            })
        .map(
            outcome -> {
              if (outcome.grant().isPresent()) {
                granted(target, who, info, outcome.grant().get());
                audit.record(target, who, "LOCK granted (lock " + info.id() + ")");
              } else if (outcome.reply() != null) {
                lockLine("lock-refused", target, who, info)
                    .with("status", outcome.reply().status())
                    .with("reason", wait.isZero() ? "held" : "held after waiting " + wait)
                    .log();
                audit.record(
                    target,
                    who,
                    wait.isZero()
                        ? "LOCK: not granted now (" + outcome.reply().status() + ")"
                        : "LOCK: waited " + wait + ", answered " + outcome.reply().status());
              } else {
                audit.record(target, who, "LOCK: went away while it waited; not granted");
              }
              return outcome;
            });
  }

  /**
   * The audit line of a grant: one per lock taken (a retry of a LOCK that already holds the lock
   * writes nothing and adds no line).
   */
  private void granted(
      StateBackend.Target target, Requester who, LockInfo info, LockService.Granted grant) {
    if (grant.tookOver()) {
      metrics.lockExpiredTakenOver();
    }
    if (grant.lease() != null) {
      lockLine(grant.tookOver() ? "lock-taken-over" : "lock-granted", target, who, info).log();
    }
  }

  private AuditLog.Line lockLine(
      String event, StateBackend.Target target, Requester who, LockInfo info) {
    return AuditLines.lock(AuditLines.of(event, target, who), info)
        .with("replica", locks.replica());
  }

  /** A granted LOCK whose answer could not be delivered: the grant is undone. */
  void undeliverable(StateBackend.Target target, LockService.Granted grant, Caller caller) {
    waiters.undoLater(target.names(), grant, caller);
  }

  /**
   * UNLOCK with the holder's lock ID; another identity's lock needs the force-unlock permission.
   * Blocking.
   */
  Reply unlock(StateBackend.Target target, LockInfo info, Requester who, Caller caller) {
    StateNames names = target.names();
    LockService.Answer answer = locks.unlock(names, info.id(), caller);
    if (answer instanceof LockService.Refused r && r.refusal() == LockService.Refusal.NOT_OWNER) {
      try {
        requireForceUnlock(target, who, r);
      } catch (ReplyException e) {
        lockLine("force-unlock-refused", target, who, info)
            .with("status", e.reply().status())
            .with("reason", e.reply().status() == 403 ? "not-owner" : null)
            .log();
        throw e;
      }
      answer = locks.forceUnlock(names, Optional.of(info.id()));
      if (answer instanceof LockService.Released released) {
        forced(target, released, who, info.id());
        return Reply.text(
            200,
            "lock "
                + info.id()
                + " of "
                + released.previous().summary()
                + " released with the force-unlock permission");
      }
    }
    if (answer instanceof LockService.Released released) {
      remember(names, info.id());
      waiters.wake(names);
      lockLine("lock-released", target, who, info)
          .with("reason", released.nested() ? "unlock of a lock nested under a Job's" : "unlock")
          .log();
      audit.record(target, who, "UNLOCK (lock " + info.id() + ")");
      if (released.nested()) {
        return Reply.text(
            200, "lock " + info.id() + " released; the runner Job keeps the state's lock");
      }
      released
          .previous()
          .info()
          .map(LockInfo::created)
          .flatMap(LockRequests::instant)
          .ifPresent(t -> metrics.lockHeld(Duration.between(t, Instant.now()), "client"));
      return Reply.text(200, "lock " + info.id() + " released");
    }
    if (answer instanceof LockService.NotHeld n) {
      AuditLog.Line line =
          lockLine("unlock-refused", target, who, info)
              .with("status", n.holder().isEmpty() ? 409 : 423)
              .with("reason", "not-held");
      n.holder().ifPresent(h -> AuditLines.holder(line, h));
      line.log();
      return n.holder().isEmpty()
          ? Reply.text(409, n.message() + releasedNote(names, info.id()))
          : Reply.json(423, io.leasehold.lock.LeaseLock.holderJson(locks.current(names)));
    }
    if (answer instanceof LockService.Refused r) {
      lockLine("unlock-refused", target, who, info)
          .with("status", status(r))
          .with("reason", reason(r))
          .log();
      return Reply.text(status(r), r.message());
    }
    throw new IllegalStateException(answer.toString());
  }

  /**
   * How long after its arrival a force-unlock that names no lock may still be decided: past it, it
   * is refused (503, nothing released) rather than break a lock taken since it was asked for.
   */
  public static final Duration FORCE_UNLOCK_DEADLINE = Duration.ofSeconds(5);

  /**
   * UNLOCK with an empty body ({@code terraform force-unlock}): releases whatever lock is held when
   * it is decided, if that is within {@link #FORCE_UNLOCK_DEADLINE} of its arrival.
   */
  Reply forceUnlock(StateBackend.Target target, Requester who, Instant arrived) {
    LockService.Answer answer =
        locks.forceUnlock(target.names(), Optional.empty(), arrived.plus(FORCE_UNLOCK_DEADLINE));
    if (answer instanceof LockService.Refused r) {
      AuditLines.of("force-unlock-refused", target, who)
          .with("replica", locks.replica())
          .with("status", status(r))
          .with("reason", reason(r))
          .log();
      return Reply.text(status(r), r.message());
    }
    if (answer instanceof LockService.Released released) {
      forced(target, released, who, null);
      return Reply.text(
          200,
          "lock "
              + released.previous().id()
              + " held by "
              + released.previous().summary()
              + " released");
    }
    AuditLines.of("force-unlock-not-needed", target, who)
        .with("replica", locks.replica())
        .with("reason", "not locked")
        .log();
    return Reply.text(200, "the state is not locked");
  }

  /**
   * @param lockId the lock ID the UNLOCK named, null for {@code terraform force-unlock}
   */
  private void forced(
      StateBackend.Target target, LockService.Released released, Requester who, String lockId) {
    AuditLines.holder(AuditLines.of("force-unlock", target, who), released.previous())
        .with("lockId", lockId)
        .with("nested", released.nested() ? "true" : null)
        .with("replica", locks.replica())
        .with(
            "reason",
            lockId == null
                ? "force-unlock through the HTTP backend"
                : "UNLOCK of another identity's lock with the force-unlock permission")
        .log();
    metrics.lockForced("http");
    remember(target.names(), released.previous().id());
    waiters.wake(target.names());
    events.warning(
        target.state(),
        "ForceUnlocked",
        "lock "
            + released.previous().id()
            + " held by "
            + released.previous().summary()
            + " was force-unlocked through the HTTP backend by "
            + who);
  }

  /**
   * Whether a POST or DELETE carrying {@code lockId} may go ahead: empty when it may, otherwise the
   * refusal (423 locked, 409 stale lock, 403 another identity's lock without the force-unlock
   * verb). Blocking.
   */
  Optional<LockService.Refused> checkWrite(
      StateBackend.Target target, String lockId, Requester who, Caller caller, String what) {
    LockService.Answer answer = locks.checkWrite(target.names(), lockId, caller, what);
    if (answer instanceof LockService.Refused r) {
      if (r.refusal() == LockService.Refusal.NOT_OWNER) {
        return mayForceUnlock(target, who) ? Optional.empty() : Optional.of(r);
      }
      if (r.refusal() == LockService.Refusal.STALE_LOCK && lockId != null) {
        return Optional.of(
            new LockService.Refused(
                r.refusal(), r.message() + releasedNote(target.names(), lockId), r.holder()));
      }
      return Optional.of(r);
    }
    return Optional.empty();
  }

  @Override
  public Optional<WriteRefusal.Problem> refusal(
      StateBackend.Target target, String lockId, Requester who, String what) {
    return checkWrite(target, lockId, who, caller(who), what)
        .map(
            r ->
                new WriteRefusal.Problem(
                    switch (r.refusal()) {
                      case LOCKED -> WriteRefusal.LOCKED;
                      case NOT_OWNER -> WriteRefusal.NOT_OWNER;
                      case DELETING -> WriteRefusal.DELETING;
                      case PLAN_LOCK -> WriteRefusal.PLAN_LOCK;
                      default -> WriteRefusal.STALE_LOCK;
                    },
                    r.message()));
  }

  /**
   * LOCK for a request of the backend's own (a restore), decided on the calling worker thread: it
   * never waits for a task on the pool it runs on, which a burst of such requests could fill.
   */
  @Override
  public StateBackend.LockAttempt tryLock(
      StateBackend.Target target, LockInfo info, Requester who) {
    Caller caller = caller(who);
    LockService.Answer answer =
        locks.lock(target.names(), info, caller, false, waiters.local(target.names()));
    if (answer instanceof LockService.Granted g) {
      granted(target, who, info, g);
      audit.record(target, who, "LOCK granted (lock " + info.id() + ")");
      return new StateBackend.LockAttempt(true, Reply.json(200, info.toJson()));
    }
    if (answer instanceof LockService.NotNow n) {
      lockLine("lock-refused", target, who, info).with("status", 423).with("reason", "held").log();
      audit.record(target, who, "LOCK: not granted now (423)");
      return new StateBackend.LockAttempt(false, LockAnswers.notNow(n));
    }
    if (answer instanceof LockService.Refused r) {
      lockLine("lock-refused", target, who, info)
          .with("status", status(r))
          .with("reason", reason(r))
          .log();
      throw lockRefused(r);
    }
    throw new IllegalStateException(answer.toString());
  }

  @Override
  public Reply unlock(StateBackend.Target target, byte[] body, Requester who) {
    LockInfo info =
        LockInfo.parse(new String(body, java.nio.charset.StandardCharsets.UTF_8))
            .orElseThrow(
                () -> ReplyException.text(400, "the UNLOCK body is not a Terraform LockInfo"));
    return unlock(target, info, who, caller(who));
  }

  /** Whether {@code who} holds the force-unlock verb on the state. */
  private boolean mayForceUnlock(StateBackend.Target target, Requester who) {
    try {
      access.authorize(
          who,
          Access.Verb.FORCE_UNLOCK,
          target.names().namespace(),
          target.state().getMetadata().getName());
      return true;
    } catch (ReplyException e) {
      if (e.reply().status() == 403) {
        return false;
      }
      throw e;
    }
  }

  /** 403 naming the holder unless {@code who} may force-unlock. */
  private void requireForceUnlock(
      StateBackend.Target target, Requester who, LockService.Refused refused) {
    try {
      access.authorize(
          who,
          Access.Verb.FORCE_UNLOCK,
          target.names().namespace(),
          target.state().getMetadata().getName());
    } catch (ReplyException e) {
      if (e.reply().status() == 403) {
        throw ReplyException.text(403, refused.message());
      }
      throw e;
    }
  }

  private void remember(StateNames names, String id) {
    Deque<String> ids = recentlyReleased.computeIfAbsent(key(names), k -> new ArrayDeque<>());
    synchronized (ids) {
      ids.addFirst(id + "@" + Instant.now());
      while (ids.size() > 32) {
        ids.removeLast();
      }
    }
  }

  private String releasedNote(StateNames names, String id) {
    Deque<String> ids = recentlyReleased.get(key(names));
    if (ids == null) {
      return "";
    }
    synchronized (ids) {
      for (String entry : ids) {
        if (entry.startsWith(id + "@")) {
          return " (it was released at " + entry.substring(id.length() + 1) + ")";
        }
      }
    }
    return "";
  }

  private static String key(StateNames names) {
    return names.namespace() + "/" + names.name();
  }

  private static Optional<Instant> instant(String text) {
    try {
      return Optional.of(OffsetDateTime.parse(text).toInstant());
    } catch (RuntimeException e) {
      return Optional.empty();
    }
  }
}
