package io.leasehold.backend;

/** Ends a request early with a prepared answer (an error that names the problem). */
public final class ReplyException extends RuntimeException {
  private final transient Reply reply;
  private final String reason;

  public ReplyException(Reply reply) {
    this(reply, null);
  }

  /**
   * @param reason why, in a word (the lock's refusal), for the audit trail; null when the reply
   *     says it
   */
  public ReplyException(Reply reply, String reason) {
    super(reply.bodyText().trim(), null, false, false);
    this.reply = reply;
    this.reason = reason;
  }

  public static ReplyException text(int status, String message) {
    return new ReplyException(Reply.text(status, message));
  }

  public Reply reply() {
    return reply;
  }

  /** Why, in a word, when the reply was made from a refusal of the lock; else null. */
  public String reason() {
    return reason;
  }
}
