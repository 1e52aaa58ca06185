package io.leasehold.backend;

import io.leasehold.lock.Holder;
import io.leasehold.lock.LockInfo;
import io.leasehold.ops.AuditLog;

/** The backend's audit lines ({@link AuditLog}): the state, the requester and the lock. */
final class AuditLines {

  private AuditLines() {}

  /** A line for {@code event} on {@code target} asked for by {@code who}. */
  static AuditLog.Line of(String event, StateBackend.Target target, Requester who) {
    return AuditLog.line(event, target.names().namespace(), target.names().name())
        .with("workspace", target.names().workspace())
        .with("who", who);
  }

  /** The lock ID, Who and operation of the LockInfo a request carries. */
  static AuditLog.Line lock(AuditLog.Line line, LockInfo info) {
    return line.with("lockId", info.id())
        .with("lockWho", info.who())
        .with("operation", info.operation());
  }

  /** Who held a lock that was released or stays held. */
  static AuditLog.Line holder(AuditLog.Line line, Holder holder) {
    return line.with("holderLockId", holder.id())
        .with("holder", holder.summary())
        .with("jobUid", holder.jobUid().orElse(null));
  }
}
