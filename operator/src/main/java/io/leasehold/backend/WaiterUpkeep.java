package io.leasehold.backend;

import io.leasehold.lock.Caller;
import io.leasehold.lock.LeaseLock;
import io.leasehold.lock.LockService;
import io.leasehold.ops.AuditLog;
import io.leasehold.state.StateNames;
import io.vertx.core.Vertx;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The lock-service calls {@link LockWaiters} makes off the event loop (they block on the Kubernetes
 * API): marking a request's place in line as left, dropping it once its grace period is over, and
 * undoing a grant whose answer could not be delivered, so the lock is never held for a request that
 * is not there.
 */
final class WaiterUpkeep {

  private static final Logger LOG = LoggerFactory.getLogger(LockWaiters.class);

  private final Vertx vertx;
  private final LockService service;

  WaiterUpkeep(Vertx vertx, LockService service) {
    this.vertx = vertx;
    this.service = service;
  }

  /**
   * Request {@code id} ended without the lock: its place is marked as left (kept for the grace
   * period only), then {@code then} runs, whether or not that write succeeded; once the grace
   * period is over, the place goes (if it was not taken back meanwhile).
   */
  void left(StateNames names, String id, Runnable then) {
    blocking(
        () -> {
          service.left(names, id);
          return null;
        },
        ignored -> then.run(),
        failure -> then.run());
    vertx.setTimer(
        service.settings().ticketGrace().toMillis() + 1_000,
        t ->
            blocking(
                () -> {
                  service.prune(names);
                  return null;
                },
                ignored -> {},
                failure -> {}));
  }

  /**
   * A grant whose answer could not be delivered is undone with a conditional write; then {@code
   * then} runs (to serve the next waiter).
   *
   * @param caller who was granted it; null to take the identity recorded on the Lease written
   */
  void undo(StateNames names, LockService.Granted grant, Caller caller, Runnable then) {
    blocking(
        () -> service.undo(names, grant, caller == null ? ownerOf(grant) : caller),
        undone -> {
          if (undone) {
            AuditLog.line("lock-grant-undone", names.namespace(), names.name())
                .with("workspace", names.workspace())
                .with("lockId", grant.lockId())
                .with("replica", service.replica())
                .with("reason", "its requester went away before it was told")
                .log();
            LOG.info(
                "{}/{}: lock {} released again: its requester went away before it was told",
                names.namespace(),
                names.name(),
                grant.lockId());
          }
          then.run();
        },
        failure ->
            LOG.warn(
                "{}/{}: lock {} granted to a request that went away could not be released: {}",
                names.namespace(),
                names.name(),
                grant.lockId(),
                failure.getMessage()));
  }

  /** The identity recorded on the Lease written by a grant. */
  private static Caller ownerOf(LockService.Granted grant) {
    String owner =
        grant.lease() == null || grant.lease().getMetadata().getAnnotations() == null
            ? ""
            : grant
                .lease()
                .getMetadata()
                .getAnnotations()
                .getOrDefault(LeaseLock.OWNER_ANNOTATION, "");
    return Caller.of(owner, owner);
  }

  /** Runs {@code work} on a worker, then {@code done} or {@code failed} on the event loop. */
  <T> void blocking(Callable<T> work, Consumer<T> done, Consumer<Throwable> failed) {
    vertx
        .<T>executeBlocking(work, false)
        .onComplete(
            r -> {
              if (r.succeeded()) {
                done.accept(r.result());
              } else {
                failed.accept(r.cause());
              }
            });
  }
}
