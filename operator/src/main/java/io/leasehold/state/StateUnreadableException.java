package io.leasehold.state;

/**
 * The stored state cannot be read; the message names the object and the fault (by kind and
 * position, never by the state's text: see {@link ParseFault}).
 */
public class StateUnreadableException extends Exception {
  private final String objectName;

  /**
   * @param cause kept unless it is a parser's exception, whose message quotes the state's text and
   *     would reach a log with the stack trace
   */
  public StateUnreadableException(String objectName, String message, Throwable cause) {
    super(
        message,
        cause instanceof com.fasterxml.jackson.core.JsonProcessingException
                || cause instanceof java.io.CharConversionException
            ? null
            : cause);
    this.objectName = objectName;
  }

  public StateUnreadableException(String objectName, String message) {
    this(objectName, message, null);
  }

  /** The Secret at fault. */
  public String objectName() {
    return objectName;
  }
}
