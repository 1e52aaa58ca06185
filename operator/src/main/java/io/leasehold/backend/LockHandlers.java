package io.leasehold.backend;

import io.leasehold.api.DisplayText;
import io.leasehold.backend.RequestChecks.Resolved;
import io.leasehold.lock.Caller;
import io.leasehold.lock.LockInfo;
import io.leasehold.lock.LockService;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.ext.web.RoutingContext;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Locale;
import java.util.Optional;

/**
 * The LOCK and UNLOCK handlers: the body (a Terraform LockInfo, bounded) is read only once the
 * requester may send it; a LOCK waits in line up to its {@code ?wait=} (or {@code
 * --held-lock-wait}) holding no thread, and a grant whose answer cannot be delivered is undone; an
 * UNLOCK without a body is a force-unlock and needs that permission.
 */
final class LockHandlers {

  /** Largest LOCK or UNLOCK body: a LockInfo is a few hundred bytes. */
  static final int LOCK_BODY_LIMIT = 64 * 1024;

  private final Vertx vertx;
  private final LockRequests locks;
  private final Access access;
  private final HttpBackend.Config config;
  private final RequestChecks checks;

  LockHandlers(
      Vertx vertx,
      LockRequests locks,
      Access access,
      HttpBackend.Config config,
      RequestChecks checks) {
    this.vertx = vertx;
    this.locks = locks;
    this.access = access;
    this.config = config;
    this.checks = checks;
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

  /** LOCK: takes the lock, or waits in line for it. */
  void lock(RoutingContext ctx) {
    if (!checks.served(ctx) || !checks.lengthWithin(ctx, LOCK_BODY_LIMIT, "the LOCK body", "")) {
      return;
    }
    String waitParam = ctx.request().getParam("wait");
    Duration wait;
    try {
      wait = waitParam == null ? config.heldLockWait() : WaitDuration.parse(waitParam);
    } catch (IllegalArgumentException e) {
      Responses.send(
          ctx,
          Reply.text(400, "?wait=" + DisplayText.clean(waitParam, 40) + ": " + e.getMessage()));
      return;
    }
    if (wait.compareTo(config.maxWait()) > 0) {
      wait = config.maxWait();
    }
    Duration waitFor = wait;
    checks
        .authorize(ctx, Access.Verb.UPDATE)
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
              if (result.failed() && result.cause() instanceof ReplyException e) {
                // Refused as "locked" (the state's names collide, say): Terraform prints why.
                Responses.send(ctx, LockAnswers.forLock(e.reply()));
              } else if (result.failed()) {
                Responses.failed(ctx, result.cause());
              } else {
                deliver(ctx, result.result());
              }
            });
  }

  private record Locking(Resolved resolved, LockInfo info) {}

  private record Delivery(StateBackend.Target target, Caller caller, LockWaiters.Outcome outcome) {}

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
      Responses.send(ctx, outcome.reply());
      return;
    }
    if (ctx.response().closed() || ctx.response().ended()) {
      locks.undeliverable(d.target(), grant.get(), d.caller());
      return;
    }
    Responses.send(ctx, outcome.reply())
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

  /** UNLOCK: with the holder's LockInfo, or with no body a force-unlock. */
  void unlock(RoutingContext ctx) {
    if (!checks.served(ctx) || !checks.lengthWithin(ctx, LOCK_BODY_LIMIT, "the UNLOCK body", "")) {
      return;
    }
    // A force-unlock is decided within a deadline counted from here (LockRequests.forceUnlock).
    java.time.Instant arrived = java.time.Instant.now();
    // May the requester unlock at all (with the holder's ID, or by force)? Only then is the
    // body read; then the verb its body needs is checked.
    checks
        .authorize(ctx, Access.Verb.UPDATE, Access.Verb.FORCE_UNLOCK)
        .compose(
            resolved -> lockBody(ctx, "the UNLOCK body").map(body -> new Object[] {resolved, body}))
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
                      try {
                        access.authorize(
                            resolved.who(), needed, ctx.pathParam("ns"), ctx.pathParam("name"));
                      } catch (ReplyException e) {
                        AuditLines.of(
                                force ? "force-unlock-refused" : "unlock-refused",
                                resolved.target(),
                                resolved.who())
                            .with("status", e.reply().status())
                            .with(
                                "reason",
                                "may not "
                                    + needed.name().toLowerCase(Locale.ROOT).replace('_', '-'))
                            .log();
                        throw e;
                      }
                    }
                    return force
                        ? locks.forceUnlock(resolved.target(), resolved.who(), arrived)
                        : locks.unlock(
                            resolved.target(),
                            lockInfo(body, "the UNLOCK body"),
                            resolved.who(),
                            locks.caller(resolved.who()));
                  },
                  false);
            })
        .onComplete(result -> Responses.reply(ctx, result));
  }
}
