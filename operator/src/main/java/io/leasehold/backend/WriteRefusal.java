package io.leasehold.backend;

import java.util.Optional;

/** Why a write is refused: its HTTP status and the metric's fixed reason (never a name). */
enum WriteRefusal {
  TOO_LARGE(413, "too_large"),
  CONTENT_MD5(400, "content_md5"),
  NOT_A_STATE(400, "not_a_state"),
  NOT_ENCRYPTED(409, "not_encrypted"),
  LOCKED(423, "locked"),
  STALE_LOCK(409, "stale_lock"),
  PLAN_LOCK(409, "plan_lock"),
  NOT_OWNER(403, "not_owner"),
  STATE_MISSING(409, "state_missing"),
  DELETING(409, "deleting"),
  LINEAGE(409, "lineage"),
  SERIAL(409, "serial"),
  CONFLICT(409, "conflict"),
  INTERRUPTED(503, "interrupted");

  final int status;
  final String reason;

  WriteRefusal(int status, String reason) {
    this.status = status;
    this.reason = reason;
  }

  /** A refusal with the message that says why. */
  record Problem(WriteRefusal kind, String message) {
    static Optional<Problem> of(WriteRefusal kind, String message) {
      return Optional.of(new Problem(kind, message));
    }
  }
}
