package io.leasehold.backend;

/** Ends a request early with a prepared answer (an error that names the problem). */
public final class ReplyException extends RuntimeException {
  private final transient Reply reply;

  public ReplyException(Reply reply) {
    super(reply.bodyText().trim(), null, false, false);
    this.reply = reply;
  }

  public static ReplyException text(int status, String message) {
    return new ReplyException(Reply.text(status, message));
  }

  public Reply reply() {
    return reply;
  }
}
