package io.leasehold.state;

/** The stored state cannot be read; the message names the object and the fault. */
public class StateUnreadableException extends Exception {
  private final String objectName;

  public StateUnreadableException(String objectName, String message, Throwable cause) {
    super(message, cause);
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
